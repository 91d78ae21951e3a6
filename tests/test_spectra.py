"""Jacobian spectra against dense numpy/jnp.linalg, matrix-free against dense, per-layer
gradient norms against jax.grad layer by layer, and the Lipschitz bounds — including the
scaled-residual claim ``α ≤ β/Lip(f) ⇒ ‖(1−β)I + αJ_f(x)‖₂ ≤ 1`` on hypothesis-generated
blocks.

Kept fast on 2 cores: every test's computation is one ``filter_jit`` (one compile), nets
share one shape, data comes from numpy, and keys are ``rbg`` keys (threefry's compile
dominated the first version of this file).
"""

import itertools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from terrain_jax import (
    ConvField,
    HighwayNet,
    LinearField,
    MLPField,
    PlainNet,
    ResidualNet,
    ScaledResidualNet,
)
from terrain_jax import spectra as S
from terrain_jax.fields import _ACTIVATIONS

WIDTH, HIDDEN, DEPTH = 6, 12, 4
jit = eqx.filter_jit


@pytest.fixture
def key():
    """Fresh rbg keys, deterministic per test: ``k = key()``."""
    counter = itertools.count()
    return lambda: jax.random.key(next(counter), impl="rbg")


def _normal(seed, shape, scale=1.0):
    return jnp.asarray(scale * np.random.default_rng(seed).standard_normal(shape), jnp.float32)


def _assert_same_multiset(a, b, atol):
    """Every eigenvalue of ``a`` is close to one of ``b`` and vice versa (complex)."""
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape
    d = np.abs(a[:, None] - b[None, :])
    assert d.min(axis=1).max() < atol and d.min(axis=0).max() < atol, d


def _make(family, key, **kw):
    return family(WIDTH, HIDDEN, DEPTH, key=key, **kw)


# ------------------------------------------------------------------ dense vs numpy


@jit
def _dense_all(fn, x):
    return (
        S.jacobian(fn, x),
        S.jacobian_eigenvalues(fn, x),
        S.jacobian_singular_values(fn, x),
        S.condition_number(fn, x),
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
        S.jacobian(lambda z: B @ z, x), B, rtol=1e-6
    )  # reverse mode for m < n
    with pytest.raises(ValueError, match="square"):
        S.jacobian_eigenvalues(lambda z: B @ z, x)


@jit
def _layer_and_field(net, ks, x):
    return [(S.layer_jacobian(net, k, x), S.block_field_jacobian(net, k, x)) for k in ks]


def test_residual_layer_eigenvalues_are_block_eigenvalues_shifted_by_one(key):
    x = _normal(0, (WIDTH,))
    net = _make(ResidualNet, key(), h=1.0)
    eye = np.eye(WIDTH)
    for J, Jf in _layer_and_field(net, (0, 3), x):
        np.testing.assert_allclose(J, eye + Jf, atol=1e-6)
        lam_layer = np.linalg.eigvals(np.asarray(J, dtype=np.float64))
        lam_f = np.linalg.eigvals(np.asarray(Jf, dtype=np.float64))
        _assert_same_multiset(lam_layer, 1.0 + lam_f, atol=1e-4)
        assert np.max(np.abs(lam_f)) > 0.1  # the shift is not vacuous
    # the library's eigenvalues of the layer are those same shifted ones
    _, ev, _, _ = _dense_all(net.layer_map(3), x)
    _assert_same_multiset(ev, lam_layer, atol=1e-4)
    # h < 1, the scaled residual, and the plain layer: I + hJ_f, (1 − β)I + αJ_f, J_f
    ((J, Jf),) = _layer_and_field(_make(ResidualNet, key(), T=1.0), (2,), x)
    np.testing.assert_allclose(J, eye + Jf / DEPTH, atol=1e-6)
    ((J, Jf),) = _layer_and_field(_make(ScaledResidualNet, key(), alpha=0.3, beta=0.2), (1,), x)
    np.testing.assert_allclose(J, 0.8 * eye + 0.3 * Jf, atol=1e-6)
    ((J, Jf),) = _layer_and_field(_make(PlainNet, key()), (2,), x)
    np.testing.assert_allclose(J, Jf, atol=1e-7)


def test_block_field_jacobian_refuses_highway(key):
    net = _make(HighwayNet, key())
    with pytest.raises(ValueError, match="layer_jacobian"):
        S.block_field_jacobian(net, 0, _normal(0, (WIDTH,)))


def test_condition_number_matches_numpy(key):
    net = _make(ScaledResidualNet, key(), alpha=2.0, beta=0.5)
    x = _normal(0, (WIDTH,))
    J, _, _, cond = _dense_all(net.layer_map(2), x)
    np.testing.assert_allclose(cond, np.linalg.cond(np.asarray(J, dtype=np.float64)), rtol=1e-4)
    assert float(cond) > 1.5  # not the trivial identity


@jit
def _end_to_end_and_layers(net, x):
    _, hs = net(x, return_hidden=True)
    layers = [S.layer_jacobian(net, k, hs[k]) for k in range(net.depth)]
    return S.end_to_end_jacobian(net, x), layers


def test_end_to_end_jacobian_is_the_product_of_layer_jacobians(key):
    net = _make(HighwayNet, key(), gate_bias=0.0)
    J, layers = _end_to_end_and_layers(net, _normal(0, (WIDTH,)))
    P = np.eye(WIDTH)
    for Jk in layers:
        P = np.asarray(Jk, dtype=np.float64) @ P
    np.testing.assert_allclose(J, P, rtol=1e-4, atol=1e-6)


# ------------------------------------------------------- matrix-free vs dense


@jit
def _three_ways(fn, x, k1, k2, k, num_matvecs=None):
    return (
        S.jacobian_singular_values(fn, x),
        S.jacobian_singular_values_lanczos(fn, x, k, key=k1, num_matvecs=num_matvecs),
        S.top_singular_value(fn, x, key=k2, iters=300),
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
        S.jacobian_singular_values_lanczos(fn, x, 3, key=key(), num_matvecs=41)
    with pytest.raises(ValueError, match="k must"):
        S.jacobian_singular_values_lanczos(fn, x, 0, key=key())


class _Zero(eqx.Module):
    def __call__(self, z):
        return 0.0 * z


@jit
def _breakdown_cases(fns, x, k):
    return [
        (S.jacobian_singular_values(f, x), S.jacobian_singular_values_lanczos(f, x, 4, key=k))
        for f in fns
    ] + [S.top_singular_value(fns[1], x, key=k)]


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


# ------------------------------------------------------ per-layer gradient norms


def _loss(out, y):
    return jnp.mean(jnp.sin(out) * y) + 0.5 * jnp.mean(out**2)


@jit
def _ours(net, x, y):
    return {m: S.layer_gradient_norms(net, _loss, x, y, method=m) for m in S.GRADIENT_NORM_METHODS}


@jit
def _reference_norms(net, x, y):
    """∂L/∂x_k by splitting the forward at layer k; ∂L/∂θ_k by replacing block k only."""
    states = [x]
    for k in range(net.depth):
        states.append(net.layer_map(k)(states[-1]))

    def tail(z, k):
        for j in range(k, net.depth):
            z = net.layer_map(j)(z)
        return z

    state_norms = [
        jnp.linalg.norm(jax.grad(lambda z, k=k: _loss(tail(z, k), y))(states[k]))
        for k in range(net.depth + 1)
    ]
    params, static = eqx.partition(net.blocks, eqx.is_inexact_array)
    param_norms = []
    for k in range(net.depth):

        def loss_k(theta, k=k):
            p = jax.tree_util.tree_map(lambda a, t: a.at[k].set(t), params, theta)
            return _loss(eqx.tree_at(lambda n: n.blocks, net, eqx.combine(p, static))(x), y)

        theta_k = jax.tree_util.tree_map(lambda a, k=k: a[k], params)
        g = jax.grad(loss_k)(theta_k)
        param_norms.append(jnp.sqrt(sum(jnp.sum(gl**2) for gl in jax.tree_util.tree_leaves(g))))
    return _loss(net(x), y), jnp.stack(state_norms), jnp.stack(param_norms)


@pytest.mark.parametrize("family", [ResidualNet, PlainNet, HighwayNet])
def test_layer_gradient_norms_match_grad_layer_by_layer(key, family):
    net = _make(family, key())
    x, y = _normal(0, (3, WIDTH)), _normal(1, (3, WIDTH))
    loss, ref_state, ref_param = _reference_norms(net, x, y)
    assert float(np.min(ref_param)) > 1e-4  # every layer's gradient is tested, not zeros
    for method, out in _ours(net, x, y).items():
        assert out["state_grad_norms"].shape == (DEPTH + 1,), method
        assert out["param_grad_norms"].shape == (DEPTH,), method
        np.testing.assert_allclose(out["loss"], loss, rtol=1e-6)
        np.testing.assert_allclose(out["state_grad_norms"], ref_state, rtol=1e-4, atol=1e-7)
        np.testing.assert_allclose(out["param_grad_norms"], ref_param, rtol=1e-4, atol=1e-7)


def test_layer_gradient_norms_of_tied_net_are_state_norms_only(key):
    net = _make(ResidualNet, key(), tied=True)
    x, y = _normal(0, (WIDTH,)), _normal(1, (WIDTH,))
    outs = _ours(net, x, y)
    out = outs["sweep"]
    assert set(out) == set(outs["taps"]) == {"loss", "state_grad_norms"}
    assert out["state_grad_norms"].shape == (DEPTH + 1,)
    np.testing.assert_allclose(out["state_grad_norms"], outs["taps"]["state_grad_norms"], rtol=1e-5)
    # ∂L/∂x_L directly, and ∂L/∂x_0 directly
    g_last, g_first = jit(
        lambda net, x, y: (
            jax.grad(lambda z: _loss(z, y))(net(x)),
            jax.grad(lambda z: _loss(net(z), y))(x),
        )
    )(net, x, y)
    np.testing.assert_allclose(out["state_grad_norms"][-1], jnp.linalg.norm(g_last), rtol=1e-5)
    np.testing.assert_allclose(out["state_grad_norms"][0], jnp.linalg.norm(g_first), rtol=1e-5)
    with pytest.raises(ValueError, match="sweep"):
        S.layer_gradient_norms(net, _loss, x, y, method="adjoint")


# -------------------------------------------------------------------- Lipschitz


@jax.jit
def _max_slopes(z):
    return {n: jnp.max(jnp.abs(jax.vmap(jax.grad(f))(z))) for n, f in _ACTIVATIONS.items()}


def test_activation_table_covers_every_activation_and_bounds_its_slope():
    assert set(S.ACTIVATION_LIPSCHITZ) == set(_ACTIVATIONS)
    for name, slope in _max_slopes(jnp.linspace(-20.0, 20.0, 200_001)).items():
        c = S.ACTIVATION_LIPSCHITZ[name]
        assert float(slope) <= c, (name, float(slope), c)
        assert float(slope) >= 0.99 * c, (name, float(slope), c)  # and tight


def test_unknown_activation_and_field_are_refused(key):
    field = MLPField(3, 4, key=key())
    object.__setattr__(field, "activation", "mystery")
    with pytest.raises(ValueError, match="known activations"):
        S.lipschitz_upper_bound(field)
    with pytest.raises(TypeError):
        S.lipschitz_upper_bound(lambda t, y, a: y)
    with pytest.raises(ValueError, match="input_shape"):
        S.lipschitz_upper_bound(ConvField(2, 3, key=key()))


@jit
def _mlp_bounds(field, xs, k):
    return (
        S.lipschitz_upper_bound(field),
        S.lipschitz_lower_bound(field, xs, t=0.5),
        S.lipschitz_lower_bound(field, xs, t=0.5, key=k, iters=50),
    )


@pytest.mark.parametrize("activation", ["tanh", "gelu", "sigmoid"])
def test_mlp_lipschitz_lower_below_upper(key, activation):
    field = MLPField(WIDTH, HIDDEN, 2, key=key(), activation=activation, time=True, init="he")
    upper, lower, lower_mf = _mlp_bounds(field, _normal(0, (64, WIDTH), 3.0), key())
    assert 0.0 < float(lower_mf) <= float(lower) * (1 + 1e-5)
    assert float(lower) <= float(upper)
    # the hand-written product over the state columns of [W1 | w_t], W2, W3
    ws = [np.asarray(w, dtype=np.float64) for w in field.weights]
    ws[0] = ws[0][:, :WIDTH]
    c = S.ACTIVATION_LIPSCHITZ[activation]
    expected = c**2 * np.prod([np.linalg.norm(w, 2) for w in ws])
    np.testing.assert_allclose(upper, expected, rtol=1e-5)


@jit
def _stacked_and_linear(net, lin, xs):
    return (
        S.lipschitz_upper_bound(net.blocks),
        S.lipschitz_upper_bound(net.block(3)),
        S.lipschitz_upper_bound(lin),
        S.lipschitz_lower_bound(lin, xs),
    )


def test_stacked_blocks_and_linear_field_bounds(key):
    A = _normal(0, (WIDTH, WIDTH))
    stacked, one, lin_up, lin_low = _stacked_and_linear(
        _make(ResidualNet, key()), LinearField(A), _normal(1, (3, WIDTH))
    )
    assert stacked.shape == (DEPTH,)
    np.testing.assert_allclose(stacked[3], one, rtol=1e-6)
    norm_a = np.linalg.norm(np.asarray(A, dtype=np.float64), 2)
    np.testing.assert_allclose(lin_up, norm_a, rtol=1e-5)
    np.testing.assert_allclose(lin_low, norm_a, rtol=1e-5)


@jit
def _conv_bounds(field, xs):
    dims = field.dims
    spec = ("NCH", "OIH", "NCH") if dims == 1 else ("NCHW", "OIHW", "NCHW")

    def dense_norm(w, in_shape):
        def conv(z):
            return jax.lax.conv_general_dilated(
                z[None], w, (1,) * dims, "SAME", dimension_numbers=spec
            )[0]

        return S.jacobian_singular_values(conv, jnp.zeros(in_shape))[0]

    w1, w2 = field.kernels
    in_shape = xs.shape[1:]
    expected = dense_norm(w1, in_shape) * dense_norm(w2, (w1.shape[0], *in_shape[1:]))
    upper = S.lipschitz_upper_bound(field, input_shape=in_shape, key=jax.random.key(0, impl="rbg"))
    return upper, S.lipschitz_lower_bound(field, xs), expected


@pytest.mark.parametrize("dims", [1, 2])
def test_conv_lipschitz_bounds(key, dims):
    space = (9,) if dims == 1 else (4, 5)
    field = ConvField(2, 3, key=key(), dims=dims, activation="tanh")
    upper, lower, expected = _conv_bounds(field, _normal(0, (4, 2, *space)))
    assert 0.0 < float(lower) <= float(upper)
    # each convolution's operator norm by power iteration = the dense operator's ‖·‖₂
    np.testing.assert_allclose(upper, expected, rtol=1e-3)


# --------------------------------------------- the α ≤ β/Lip(f) bound (hypothesis)


@jit
def _scaled_block_check(field, xs, beta, fraction):
    """α = fraction·β/Lip(f) with Lip(f) the upper bound; the worst ‖layer Jacobian‖₂."""
    lip = S.lipschitz_upper_bound(field)
    alpha = fraction * beta / lip
    width = xs.shape[-1]
    net = ScaledResidualNet(width, 1, 1, key=jax.random.key(0, impl="rbg"), tied=True, blocks=field)
    # the constructor's α, β are annotated as Python floats; traced values go in afterwards
    net = eqx.tree_at(lambda n: (n.alpha, n.beta), net, (alpha, beta))
    norms = jax.vmap(lambda x: jnp.linalg.norm(S.layer_jacobian(net, 0, x), 2))(xs)
    J, Jf = S.layer_jacobian(net, 0, xs[3]), S.block_field_jacobian(net, 0, xs[3])
    return lip, alpha, jnp.max(norms), J, Jf


@settings(max_examples=25, deadline=None)
@given(
    width=st.integers(2, 16),
    hidden=st.integers(2, 32),
    layers=st.integers(1, 2),
    activation=st.sampled_from(sorted(S.ACTIVATION_LIPSCHITZ)),
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


def test_gradient_norms_neither_overflow_nor_underflow_in_float32():
    """Deep plain nets produce float32 gradients near 1e-30 and 1e30, where ``Σ g²`` is
    not representable; the per-layer norms must still be exact."""
    from terrain_jax.spectra import _norm, _per_layer_norms

    for scale in (1e-30, 1e-20, 1.0, 1e20, 1e30):
        v = jnp.full((16,), scale, jnp.float32)
        np.testing.assert_allclose(float(_norm(v)), 4.0 * scale, rtol=1e-6)
    assert float(_norm(jnp.array([1.0, jnp.inf]))) == np.inf
    assert np.isnan(float(_norm(jnp.array([1.0, jnp.nan]))))
    assert np.isnan(float(jax.jit(_norm)(jnp.full((8,), jnp.nan))))
    g = jnp.stack([jnp.full((3, 4), 1e-25), jnp.full((3, 4), 1e25), jnp.zeros((3, 4))])
    np.testing.assert_allclose(
        np.asarray(_per_layer_norms(g)), [np.sqrt(12) * 1e-25, np.sqrt(12) * 1e25, 0.0], rtol=1e-6
    )
