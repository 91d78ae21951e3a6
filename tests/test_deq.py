"""Tests for the DEQ layer (terrain_jax.nets.DEQBlock / DEQCell)."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from terrain_jax.nets import DEQBlock, DEQCell

BATCH, WIDTH = 6, 8


def _setup(getkey, **kw):
    cell = DEQCell(WIDTH, key=getkey(), **kw)
    x = jax.random.normal(getkey(), (BATCH, WIDTH))
    return cell, x


def _rel_residual(cell, z, x):
    fz = jax.vmap(cell)(z, x)
    return jnp.linalg.norm(fz - z, axis=-1) / jnp.linalg.norm(z, axis=-1)


@pytest.mark.parametrize("solver", ["anderson", "newton"])
def test_fixed_point_satisfies_cell(getkey, solver):
    cell, x = _setup(getkey)
    block = DEQBlock(cell, solver=solver, tol=1e-5)
    solve = jax.jit(lambda block, x, z0: block.solve(x, z0))
    z, info = solve(block, x, jnp.zeros_like(x))
    assert z.shape == x.shape and info.steps.shape == (BATCH,)
    assert bool(jnp.all(info.converged))
    assert float(jnp.max(_rel_residual(cell, z, x))) <= 1e-5
    # a warm start at z* takes no steps
    _, warm = solve(block, x, z)
    assert int(jnp.max(warm.steps)) == 0


def test_implicit_gradient_matches_unrolled(getkey):
    cell, x = _setup(getkey, weight_scale=0.6)
    target = jax.random.normal(getkey(), (BATCH, WIDTH))

    @jax.jit
    def grads(cell, x):
        def loss(cx, backward):
            block = DEQBlock(cx[0], tol=1e-6, max_steps=60, backward=backward)
            return jnp.mean((block(cx[1]) - target) ** 2)

        return jax.grad(loss)((cell, x), "implicit"), jax.grad(loss)((cell, x), "unroll")

    g_imp, g_unr = grads(cell, x)
    leaves_imp, leaves_unr = jax.tree_util.tree_leaves(g_imp), jax.tree_util.tree_leaves(g_unr)
    assert len(leaves_imp) == 4  # W, U, b and x
    for a, b in zip(leaves_imp, leaves_unr, strict=True):
        assert float(jnp.max(jnp.abs(a))) > 0
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-6)


def test_training_reduces_loss(getkey):
    cell, x = _setup(getkey)
    target = jnp.tanh(jax.random.normal(getkey(), (BATCH, WIDTH)))
    block = DEQBlock(cell, tol=1e-5)
    opt = optax.adam(3e-2)
    params, static = eqx.partition(block, eqx.is_inexact_array)

    def loss(params):
        return jnp.mean((eqx.combine(params, static)(x) - target) ** 2)

    @jax.jit
    def step(params, state):
        value, g = jax.value_and_grad(loss)(params)
        with jax.numpy_dtype_promotion("standard"):  # optax mixes floats and int32 counts
            updates, state = opt.update(g, state, params)
        return optax.apply_updates(params, updates), state, value

    state = opt.init(params)
    losses = []
    for _ in range(25):
        params, state, value = step(params, state)
        losses.append(float(value))
    print(f"DEQ loss {losses[0]:.4f} -> {losses[-1]:.4f}")
    assert losses[-1] < 0.5 * losses[0]


def test_spectral_bound_contracts_and_radius(getkey):
    c = 0.6
    cell, x = _setup(getkey, weight_scale=2.0, spectral_bound=c)
    assert float(jnp.linalg.norm(cell.weight, 2)) > 1.5  # unnormalised W expands
    np.testing.assert_allclose(jnp.linalg.norm(cell.effective_weight(), 2), c, rtol=1e-5)
    block = DEQBlock(cell, solver="picard", tol=1e-6, max_steps=100)
    z, info = block.solve(x)
    assert bool(jnp.all(info.converged))
    # Banach: residuals shrink at least like c^k (‖Δz_{k+1}‖ ≤ c ‖Δz_k‖, up to ‖z‖ drift)
    tr = np.asarray(info.trace[0])[: int(info.steps[0])]
    assert np.all(tr[1:] <= 1.05 * c * tr[:-1])
    rho = block.spectral_radius(x, z)
    assert rho.shape == (BATCH,)
    dense = [
        np.max(np.abs(np.linalg.eigvals(np.asarray(jax.jacfwd(cell)(z[i], x[i])))))
        for i in range(2)
    ]
    np.testing.assert_allclose(rho[:2], dense, rtol=1e-4)
    assert float(jnp.max(rho)) <= c + 1e-5


def test_jacobian_penalty(getkey):
    cell, x = _setup(getkey, weight_scale=0.8)
    z = DEQBlock(cell)(x)
    dense = np.asarray(jax.jit(jax.vmap(jax.jacfwd(cell)))(z, x), np.float64)
    exact = np.mean([np.sum(J**2) for J in dense])
    n = 500
    pen = float(DEQBlock(cell).jacobian_penalty(x, z, getkey(), samples=n))
    # Rademacher variance per sample 2(‖A‖_F² − Σ A_ii²), A = JᵀJ; mean over the batch
    var = sum(2 * (np.sum((J.T @ J) ** 2) - np.sum(np.diag(J.T @ J) ** 2)) for J in dense)
    assert abs(pen - exact) <= 5 * np.sqrt(var / n) / BATCH
    # differentiable in the parameters: a training penalty
    g = eqx.filter_grad(lambda c: DEQBlock(c).jacobian_penalty(x, z, jax.random.PRNGKey(1)))(cell)
    assert float(jnp.linalg.norm(g.weight)) > 0
