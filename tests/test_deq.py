"""Tests for the DEQ layer (terrain_jax.nets.DEQBlock / DEQCell)."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.test_util import check_grads

from terrain_jax.fields import ConvField
from terrain_jax.nets import ContractiveConvCell, DEQBlock, DEQCell, conv_norm_bound

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


@jax.jit
def _dense_conv(kernel, x0):
    """Dense matrix of the 'SAME' convolution with ``kernel`` on inputs shaped like ``x0``."""
    field = ConvField(kernel.shape[1], kernel.shape[0], key=jax.random.PRNGKey(0),
                      dims=x0.ndim - 1, kernel_size=kernel.shape[-1])  # fmt: skip
    J = jax.jacfwd(lambda x: field._conv(kernel, jnp.zeros(kernel.shape[0]), x))(x0)
    return J.reshape(J.shape[0] * int(np.prod(x0.shape[1:])), -1)


def _dense_conv_norm(kernel, space):
    dense = _dense_conv(kernel, jnp.zeros((kernel.shape[1], *space)))
    return np.linalg.svd(np.asarray(dense), compute_uv=False)[0]


@pytest.mark.parametrize("space", [(7,), (5, 6)])
def test_conv_norm_bound_dominates_dense_norm(getkey, space):
    kernel = jax.random.normal(getkey(), (5, 4) + (3,) * len(space))
    bound = float(conv_norm_bound(kernel, space))
    assert _dense_conv_norm(kernel, space) <= bound * (1 + 1e-5)
    # tight on long signals: the zero-padded convolution tends to the circular one
    if len(space) == 1:
        long, bound_long = _dense_conv_norm(kernel, (120,)), float(conv_norm_bound(kernel, (120,)))
        assert 0.99 * bound_long <= long <= bound_long * (1 + 1e-5)


def test_contractive_conv_cell(getkey):
    c, C, L = 0.8, 4, 9
    field = ConvField(C, 6, key=getkey(), dims=1)
    field = eqx.tree_at(lambda f: f.kernels, field, [3.0 * k for k in field.kernels])
    cell = ContractiveConvCell(field, lipschitz=c, space=(L,))
    x = jax.random.normal(getkey(), (BATCH, C, L))
    z = jax.random.normal(getkey(), (C, L))

    @jax.jit
    def run(cell):
        J = jax.jacfwd(cell)(z, x[0]).reshape(C * L, C * L)
        zs, info = DEQBlock(cell, solver="picard", tol=1e-6, max_steps=100).solve(x)
        return cell.lipschitz_bound(), cell.lipschitz_bound(cell.scaled_field()), J, info

    raw, scaled, J, info = run(cell)
    assert float(raw) > 2.0  # the raw field expands
    np.testing.assert_allclose(scaled, c, rtol=1e-5)
    assert np.linalg.svd(np.asarray(J), compute_uv=False)[0] <= c * (1 + 1e-5)
    # Banach: Picard converges, residuals shrink at least like c^k
    assert bool(jnp.all(info.converged))
    tr = np.asarray(info.trace[0])[: int(info.steps[0])]
    assert np.all(tr[1:] <= 1.05 * c * tr[:-1])
    # within the bound the field is used as is
    small = eqx.tree_at(lambda f: f.kernels, field, [0.1 * k for k in field.kernels])
    loose = ContractiveConvCell(small, lipschitz=c, space=(L,))
    np.testing.assert_allclose(loose(z, x[0]), x[0] + small(0.0, z), rtol=1e-6, atol=1e-6)
    # the normalisation is differentiable in the kernels: gradients vs central finite
    # differences, in float64 (float32 differences are too noisy at this size)
    with jax.enable_x64(True):
        f64 = jax.tree_util.tree_map(lambda a: a.astype(jnp.float64), field)
        cell64 = ContractiveConvCell(f64, lipschitz=c, space=(L,))
        z64, x64_, u = z.astype(jnp.float64), x[0].astype(jnp.float64), jnp.ones((C, L))

        @jax.jit
        def out(k1, k2):
            ks = [jnp.asarray(k1), jnp.asarray(k2)]  # check_grads passes numpy arrays
            cl = eqx.tree_at(lambda c_: c_.field.kernels, cell64, ks)
            return jnp.sum(u * jnp.sin(cl(z64, x64_)))

        check_grads(out, tuple(f64.kernels), order=1, modes=["rev"], eps=1e-6)
    with pytest.raises(ValueError, match="valid"):
        ContractiveConvCell(ConvField(C, 6, key=getkey(), activation="gelu"), lipschitz=c,
                            space=(L,))  # fmt: skip
