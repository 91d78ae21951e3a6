"""Neural-ODE tooling: the explicit continuous adjoint agrees with reverse-mode through the
solver and with diffrax's backsolve; NFE counts are what the solver's tableau says; an
augmented NODE realises a map a plain 1-D NODE provably cannot; the RNODE regularisers
match closed forms for a linear field."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from helpers import tree_allclose
from scipy.linalg import expm

from terrain_jax import MLPField, ODEBlock
from terrain_jax.fields import ConvField, LinearField
from terrain_jax.nets import (
    AugmentedODEBlock,
    RegularisedODEBlock,
    adjoint_backward,
    adjoint_solve,
    nfe_forward_backward,
)
from terrain_jax.train import fit

WIDTH, HIDDEN, TOL = 3, 8, 1e-6


def _loss(y):
    return jnp.sum(jnp.sin(y) * jnp.arange(1.0, WIDTH + 1))


def test_adjoint_backward_matches_checkpoint_and_backsolve(getkey):
    field = MLPField(WIDTH, HIDDEN, key=getkey(), time=True)
    x = jax.random.normal(getkey(), (8, WIDTH))

    def block(adjoint):
        return ODEBlock(field, solver="bosh3", rtol=TOL, atol=TOL, T=1.5, adjoint=adjoint)

    @eqx.filter_jit
    def all_gradients(x):
        refs = [
            eqx.filter_grad(lambda bx: _loss(bx[0](bx[1])))((block(a), x))
            for a in ("checkpoint", "backsolve")
        ]
        b = block("checkpoint")
        # adjoint_solve: reverse mode through the same backward solve
        ours = eqx.filter_grad(lambda bx: _loss(adjoint_solve(*bx)))((b, x))
        return refs, adjoint_backward(b, x, jax.grad(_loss)(b(x))), ours

    refs, (gx, gblock, back), (ours_block, ours_x) = all_gradients(x)
    assert bool(back.ok) and int(back.nfe) > 0
    for ref_block, ref_x in [*refs, (ours_block, ours_x)]:
        # solver tolerance 1e-6 on O(1) gradients, float32
        assert tree_allclose(gx, ref_x, rtol=1e-4, atol=1e-5)
        assert tree_allclose(gblock.field, ref_block.field, rtol=1e-4, atol=1e-5)
    # adjoint_solve's gradient is adjoint_backward's, to round-off
    assert tree_allclose(ours_x, gx, rtol=1e-6, atol=1e-7)
    assert tree_allclose(ours_block.field, gblock.field, rtol=1e-6, atol=1e-7)
    # and the gradient is not trivially small
    assert float(jnp.max(jnp.abs(gx))) > 0.1


@pytest.mark.parametrize(("solver", "stages"), [("euler", 1), ("rk4", 4)])
def test_nfe_counts_fixed_steps_match_tableau(getkey, solver, stages):
    steps = 5
    block = ODEBlock(MLPField(WIDTH, HIDDEN, key=getkey()), solver=solver, steps=steps)
    x = jax.random.normal(getkey(), (4, WIDTH))
    n = nfe_forward_backward(block, x, _loss)
    assert n.forward == n.forward_counted == stages * steps
    # reverse-mode through stored steps: one VJP per stage; diffrax's Runge--Kutta stage
    # loop is itself checkpointed, so multi-stage solvers re-run each stage once
    assert n.checkpoint_vjp == stages * steps
    assert n.checkpoint == (0 if stages == 1 else stages * steps)
    assert n.backsolve == stages * steps  # the backward solve takes the same fixed grid
    assert n.backsolve_diffrax == -1


def test_augmented_block_is_a_manual_pad(getkey):
    block = ODEBlock(MLPField(WIDTH + 2, HIDDEN, key=getkey()), solver="rk4", steps=4)
    aug = AugmentedODEBlock(block, 2)
    x = jax.random.normal(getkey(), (5, WIDTH))
    manual = jnp.concatenate([x, jnp.zeros((5, 2))], axis=-1)
    # channels of a conv state (batch, C, L)
    conv = ODEBlock(ConvField(4, 8, key=getkey()), solver="euler", steps=2)
    xc = jax.random.normal(getkey(), (2, 3, 7))
    manual_c = jnp.concatenate([xc, jnp.zeros((2, 1, 7))], axis=-2)

    @eqx.filter_jit
    def outputs():
        aug_c = AugmentedODEBlock(conv, 1, axis=-2)
        return aug(x), block(manual), aug_c(xc), conv(manual_c)

    y, want, yc, want_c = outputs()
    assert y.shape == (5, WIDTH + 2) and yc.shape == (2, 4, 7)
    assert tree_allclose(y, want, rtol=0, atol=0)
    assert tree_allclose(yc, want_c, rtol=0, atol=0)
    with pytest.raises(ValueError, match="non-negative"):
        AugmentedODEBlock(block, -1)


class _Readout(eqx.Module):
    net: eqx.Module

    def __call__(self, x):
        return self.net(x)[..., :1]


def _train(model, key):
    x = jnp.array([[-1.0], [1.0]])
    y = -x

    def loss(m, xb, yb):
        return jnp.mean((m(xb) - yb) ** 2)

    model, _ = fit(model, loss, optax.adam(5e-2), x, y, steps=150, key=key)
    return eqx.filter_jit(model)(x), float(eqx.filter_jit(loss)(model, x, y))


def test_augmentation_lets_a_flow_cross_paths(getkey):
    """Flows are homeomorphisms: in 1-D they are monotone, so -1 -> 1, 1 -> -1 is out of
    reach (best MSE is 1, both points sent to 0); with one extra dimension the points
    can go around each other (Dupont et al. 2019)."""
    plain = _Readout(ODEBlock(MLPField(1, HIDDEN, key=getkey()), solver="rk4", steps=10))
    k = getkey()
    aug = _Readout(
        AugmentedODEBlock(ODEBlock(MLPField(2, HIDDEN, key=k), solver="rk4", steps=10), 1)
    )
    y_plain, loss_plain = _train(plain, getkey())
    y_aug, loss_aug = _train(aug, getkey())
    assert float(y_plain[0, 0]) < float(y_plain[1, 0])  # order preserved
    assert loss_plain > 0.99
    assert loss_aug < 0.05
    assert float(y_aug[0, 0]) > float(y_aug[1, 0])  # order reversed


def _kinetic_closed_form(A: np.ndarray, y0: np.ndarray, T: float) -> float:
    """∫_0^T ‖A e^{tA} y0‖² dt = y0ᵀ G y0, G = ∫ e^{tAᵀ} AᵀA e^{tA} dt (Van Loan 1978)."""
    n = A.shape[0]
    M = np.block([[-A.T, A.T @ A], [np.zeros((n, n)), A]])
    F = expm(M * T)
    G = F[n:, n:].T @ F[:n, n:]
    return float(y0 @ G @ y0)


def test_rnode_kinetic_energy_closed_form(getkey):
    A = np.array([[-0.4, 1.1, 0.0], [-0.9, 0.2, 0.3], [0.1, -0.2, -0.5]])
    T = 1.3
    y0 = np.asarray(jax.random.normal(getkey(), (4, 3)), dtype=np.float64)
    block = ODEBlock(LinearField(jnp.asarray(A, jnp.float32)), solver="rk4", steps=40, T=T)
    out = eqx.filter_jit(RegularisedODEBlock(block))(jnp.asarray(y0, jnp.float32), key=getkey())
    assert out.kinetic.shape == (4,) and out.jacobian.shape == (4,)
    want = np.array([_kinetic_closed_form(A, r, T) for r in y0])
    np.testing.assert_allclose(np.asarray(out.kinetic), want, rtol=1e-4)
    np.testing.assert_allclose(np.asarray(out.y1), y0 @ expm(T * A).T, rtol=1e-4, atol=1e-5)


def test_rnode_jacobian_estimate_is_unbiased(getkey):
    A = np.array([[-0.4, 1.1, 0.0], [-0.9, 0.2, 0.3], [0.1, -0.2, -0.5]], np.float32)
    T, n = 0.7, 4000
    block = ODEBlock(LinearField(jnp.asarray(A)), solver="rk4", steps=4, T=T)
    y0 = jnp.broadcast_to(jax.random.normal(getkey(), (3,)), (n, 3))
    out = eqx.filter_jit(RegularisedODEBlock(block))(y0, key=getkey())
    j = np.asarray(out.jacobian, dtype=np.float64)  # one probe per row
    want = T * float(np.sum(A.astype(np.float64) ** 2))
    se = j.std(ddof=1) / np.sqrt(n)
    assert se > 0
    assert abs(j.mean() - want) < 3 * se
