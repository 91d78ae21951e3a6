"""Jacobian spectra against dense numpy/jnp.linalg, matrix-free against dense (the layer
Jacobian and gradient-norm tests of depth nets are in test_nets_diagnostics.py), and the
Lipschitz bounds — including the
scaled-residual claim ``α ≤ β/Lip(f) ⇒ ‖(1−β)I + αJ_f(x)‖₂ ≤ 1`` on hypothesis-generated
blocks.

Kept fast on 2 cores: every test's computation is one ``filter_jit`` (one compile), nets
share one shape, data comes from numpy, and keys are ``rbg`` keys (threefry's compile
dominated the first version of this file).
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import assert_same_multiset as _assert_same_multiset
from helpers import normal32 as _normal
from helpers import rbg_keys
from hypothesis import given, settings
from hypothesis import strategies as st

import terrain_jax as tj
from terrain_jax import (
    HighwayNet,
    MLPField,
    PlainNet,
    ResidualNet,
    ScaledResidualNet,
)

WIDTH, HIDDEN, DEPTH = 6, 12, 4
jit = eqx.filter_jit


@pytest.fixture
def key():
    """Fresh rbg keys, deterministic per test: ``k = key()``."""
    return rbg_keys()


def _make(family, key, **kw):
    return family(WIDTH, HIDDEN, DEPTH, key=key, **kw)


# ------------------------------------------------------------------ dense vs numpy


@jit
def _dense_all(fn, x):
    return (
        tj.jacobian(fn, x),
        tj.jacobian_eigenvalues(fn, x),
        tj.jacobian_singular_values(fn, x),
        tj.condition_number(fn, x),
    )


class _Linear(eqx.Module):
    A: jax.Array

    def __call__(self, z):
        return (self.A @ z.ravel()).reshape(z.shape)


def test_dense_spectra_of_a_linear_map_match_numpy():
    A = _normal(0, (6, 6))
    x = _normal(1, (2, 3))  # any state shape: flattened in C order
    J, ev, sv, cond = _dense_all(_Linear(A), x)
    An = np.asarray(A, dtype=np.float64)
    np.testing.assert_allclose(J, A, rtol=1e-6, atol=1e-6)
    _assert_same_multiset(ev, np.linalg.eigvals(An), atol=1e-4)
    assert np.all(np.diff(np.abs(np.asarray(ev))) <= 1e-6)  # largest modulus first
    np.testing.assert_allclose(sv, np.linalg.svd(An, compute_uv=False), rtol=1e-5)
    np.testing.assert_allclose(cond, np.linalg.cond(An), rtol=1e-4)


def test_wide_jacobian_and_square_check():
    B, x = _normal(0, (2, 7)), _normal(1, (7,))
    np.testing.assert_allclose(
        tj.jacobian(lambda z: B @ z, x), B, rtol=1e-6
    )  # reverse mode for m < n
    with pytest.raises(ValueError, match="square"):
        tj.jacobian_eigenvalues(lambda z: B @ z, x)


def test_condition_number_matches_numpy(key):
    net = _make(ScaledResidualNet, key(), alpha=2.0, beta=0.5)
    x = _normal(0, (WIDTH,))
    J, _, _, cond = _dense_all(net.layer_map(2), x)
    np.testing.assert_allclose(cond, np.linalg.cond(np.asarray(J, dtype=np.float64)), rtol=1e-4)
    assert float(cond) > 1.5  # not the trivial identity


# ------------------------------------------------------- matrix-free vs dense


@jit
def _three_ways(fn, x, k1, k2, k, num_matvecs=None):
    return (
        tj.jacobian_singular_values(fn, x),
        tj.jacobian_singular_values_lanczos(fn, x, k, key=k1, num_matvecs=num_matvecs),
        tj.top_singular_value(fn, x, key=k2, iters=300),
    )


@pytest.mark.parametrize("family", [ResidualNet, HighwayNet])
def test_singular_values_dense_lanczos_power_agree(key, family):
    net = _make(family, key())
    dense, lz, top = _three_ways(net.layer_map(1), _normal(0, (WIDTH,)), key(), key(), 4)
    np.testing.assert_allclose(lz, dense[:4], rtol=1e-4)  # full Krylov space: exact
    np.testing.assert_allclose(top, dense[0], rtol=1e-4)
    assert float(top) <= float(dense[0]) * (1 + 1e-5)  # power iteration never overshoots


class _TanhMap(eqx.Module):
    W: jax.Array

    def __call__(self, z):
        return jnp.tanh(self.W @ z.ravel()).reshape(z.shape)


def test_lanczos_with_fewer_matvecs_finds_the_top_of_the_spectrum(key):
    # a (4, 10) state, n = 40, and 24 of 40 Krylov steps
    fn, x = _TanhMap(_normal(0, (40, 40), 40**-0.5)), _normal(1, (4, 10))
    dense, lz, top = _three_ways(fn, x, key(), key(), 3, num_matvecs=24)
    np.testing.assert_allclose(lz, dense[:3], rtol=2e-3)
    np.testing.assert_allclose(top, dense[0], rtol=1e-3)
    with pytest.raises(ValueError, match="num_matvecs"):
        tj.jacobian_singular_values_lanczos(fn, x, 3, key=key(), num_matvecs=41)
    with pytest.raises(ValueError, match="k must"):
        tj.jacobian_singular_values_lanczos(fn, x, 0, key=key())


class _Zero(eqx.Module):
    def __call__(self, z):
        return 0.0 * z


@jit
def _breakdown_cases(fns, x, k):
    return [
        (tj.jacobian_singular_values(f, x), tj.jacobian_singular_values_lanczos(f, x, 4, key=k))
        for f in fns
    ] + [tj.top_singular_value(fns[1], x, key=k)]


def test_matrix_free_survives_krylov_breakdown(key):
    # J = I (zero-initialised residual block), J = 0, and rank-2 J (hidden 2 < width)
    fns = (
        _make(ResidualNet, key(), zero_last=True).layer_map(0),
        _Zero(),
        PlainNet(WIDTH, 2, DEPTH, key=key()).layer_map(0),
    )
    *cases, top_zero = _breakdown_cases(fns, _normal(0, (WIDTH,)), key())
    for dense, lz in cases:
        assert np.all(np.isfinite(lz))
        np.testing.assert_allclose(lz, dense[:4], rtol=1e-4, atol=2e-3)
    np.testing.assert_allclose(cases[0][1], 1.0, rtol=1e-6)
    assert float(top_zero) == 0.0


# --------------------------------------------- the α ≤ β/Lip(f) bound (hypothesis)
# (the field bounds themselves are tested in test_fields_lipschitz.py)


@jit
def _scaled_block_check(field, xs, beta, fraction):
    """α = fraction·β/Lip(f) with Lip(f) the upper bound; the worst ‖layer Jacobian‖₂."""
    lip = tj.lipschitz_upper_bound(field)
    alpha = fraction * beta / lip
    width = xs.shape[-1]
    net = ScaledResidualNet(width, 1, 1, key=jax.random.key(0, impl="rbg"), tied=True, blocks=field)
    # the constructor's α, β are annotated as Python floats; traced values go in afterwards
    net = eqx.tree_at(lambda n: (n.alpha, n.beta), net, (alpha, beta))
    norms = jax.vmap(lambda x: jnp.linalg.norm(tj.layer_jacobian(net, 0, x), 2))(xs)
    J, Jf = tj.layer_jacobian(net, 0, xs[3]), tj.block_field_jacobian(net, 0, xs[3])
    return lip, alpha, jnp.max(norms), J, Jf


@settings(max_examples=25, deadline=None)
@given(
    width=st.integers(2, 16),
    hidden=st.integers(2, 32),
    layers=st.integers(1, 2),
    activation=st.sampled_from(sorted(tj.ACTIVATION_LIPSCHITZ)),
    log_scale=st.floats(-1.5, 1.5),
    beta=st.floats(0.01, 1.0),
    fraction=st.floats(0.05, 1.0),
    seed=st.integers(0, 2**16),
)
def test_alpha_below_beta_over_lip_makes_the_scaled_block_non_expansive(
    width, hidden, layers, activation, log_scale, beta, fraction, seed
):
    """α ≤ β/Lip(f), Lip(f) from lipschitz_upper_bound ⇒ ‖(1−β)I + αJ_f(x)‖₂ ≤ 1."""
    rng = np.random.default_rng(seed)
    sizes = [width] + [hidden] * layers + [width]
    scale = np.exp(log_scale)
    weights = [
        jnp.asarray(rng.uniform(-scale, scale, (o, i)) / np.sqrt(i), jnp.float32)
        for i, o in zip(sizes[:-1], sizes[1:], strict=True)
    ]
    biases = [jnp.asarray(rng.standard_normal(o), jnp.float32) for o in sizes[1:]]
    # the field's structure without running its (compile-heavy) random initialisation
    shape = eqx.filter_eval_shape(
        MLPField, width, hidden, layers, key=jax.random.key(0, impl="rbg"), activation=activation
    )
    field = eqx.tree_at(lambda f: (f.weights, f.biases), shape, (weights, biases))
    # 24 random states from radius ~0.1 to ~4 (through the saturated regions), and 0
    xs = rng.standard_normal((25, width)) * np.linspace(0.1, 4.0, 25)[:, None]
    xs[0] = 0.0
    lip, alpha, worst, J, Jf = _scaled_block_check(
        field, jnp.asarray(xs, jnp.float32), jnp.float32(beta), jnp.float32(fraction)
    )
    assert float(worst) <= 1.0 + 1e-5, (float(worst), float(alpha), beta, float(lip))
    # the Jacobian really is (1 − β)I + αJ_f: the bound is about this matrix
    np.testing.assert_allclose(J, (1 - beta) * np.eye(width) + alpha * Jf, atol=1e-5)
