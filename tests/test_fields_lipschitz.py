"""Lipschitz constants of fields: every activation's constant bounds its slope, the
structural upper bounds (``field.lipschitz_bound()``, ``lipschitz_upper_bound``) against
hand-written products and dense Jacobian norms, and the sampled lower bound below them.

Kept fast on 2 cores: every test's computation is one ``filter_jit`` (one compile), data
comes from numpy, and keys are ``rbg`` keys.
"""

import itertools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from terrain_jax import ConvField, LinearField, MLPField, ResidualNet
from terrain_jax.fields import (
    ACTIVATION_LIPSCHITZ,
    ACTIVATIONS,
    GradientField,
    lipschitz_lower_bound,
    lipschitz_upper_bound,
)
from terrain_jax.linalg import jacobian_singular_values

WIDTH, HIDDEN, DEPTH = 6, 12, 4
jit = eqx.filter_jit


@pytest.fixture
def key():
    """Fresh rbg keys, deterministic per test: ``k = key()``."""
    counter = itertools.count()
    return lambda: jax.random.key(next(counter), impl="rbg")


def _normal(seed, shape, scale=1.0):
    return jnp.asarray(scale * np.random.default_rng(seed).standard_normal(shape), jnp.float32)


@jax.jit
def _max_slopes(z):
    return {n: jnp.max(jnp.abs(jax.vmap(jax.grad(a.fn))(z))) for n, a in ACTIVATIONS.items()}


def test_activation_table_covers_every_activation_and_bounds_its_slope():
    assert set(ACTIVATION_LIPSCHITZ) == set(ACTIVATIONS)
    for name, slope in _max_slopes(jnp.linspace(-20.0, 20.0, 200_001)).items():
        c = ACTIVATION_LIPSCHITZ[name]
        assert float(slope) <= c, (name, float(slope), c)
        assert float(slope) >= 0.99 * c, (name, float(slope), c)  # and tight


def test_unknown_activation_and_field_are_refused(key):
    field = MLPField(3, 4, key=key())
    object.__setattr__(field, "activation", "mystery")
    with pytest.raises(ValueError, match="known activations"):
        lipschitz_upper_bound(field)
    with pytest.raises(TypeError):
        lipschitz_upper_bound(lambda t, y, a: y)
    with pytest.raises(ValueError, match="input_shape"):
        lipschitz_upper_bound(ConvField(2, 3, key=key()))
    with pytest.raises(NotImplementedError, match="no structural Lipschitz bound"):
        lipschitz_upper_bound(GradientField(lambda y: jnp.sum(y**2)))


@jit
def _mlp_bounds(field, xs, k):
    return (
        lipschitz_upper_bound(field),
        lipschitz_lower_bound(field, xs, t=0.5),
        lipschitz_lower_bound(field, xs, t=0.5, key=k, iters=50),
        field.lipschitz_bound(),
    )


@pytest.mark.parametrize("activation", ["tanh", "gelu", "sigmoid"])
def test_mlp_lipschitz_lower_below_upper(key, activation):
    field = MLPField(WIDTH, HIDDEN, 2, key=key(), activation=activation, time=True, init="he")
    upper, lower, lower_mf, method = _mlp_bounds(field, _normal(0, (64, WIDTH), 3.0), key())
    assert 0.0 < float(lower_mf) <= float(lower) * (1 + 1e-5)
    assert float(lower) <= float(upper)
    # the function is the method, bit for bit
    np.testing.assert_array_equal(upper, method)
    # the hand-written product over the state columns of [W1 | w_t], W2, W3
    ws = [np.asarray(w, dtype=np.float64) for w in field.weights]
    ws[0] = ws[0][:, :WIDTH]
    c = ACTIVATION_LIPSCHITZ[activation]
    expected = c**2 * np.prod([np.linalg.norm(w, 2) for w in ws])
    np.testing.assert_allclose(upper, expected, rtol=1e-5)


@jit
def _bound_and_jacobian_norms(field, xs):
    norms = jax.vmap(lambda x: jnp.linalg.norm(jax.jacfwd(lambda z: field(0.3, z))(x), 2))(xs)
    return field.lipschitz_bound(), norms


@pytest.mark.parametrize("activation", sorted(ACTIVATION_LIPSCHITZ))
@pytest.mark.parametrize("time", [False, True])
def test_mlp_bound_dominates_dense_jacobian_norms(key, activation, time):
    field = MLPField(WIDTH, HIDDEN, 2, key=key(), activation=activation, time=time, init="he")
    # through the saturated regions too: radii from ~0 to ~8
    xs = _normal(1, (48, WIDTH)) * jnp.linspace(0.0, 8.0, 48)[:, None]
    bound, norms = _bound_and_jacobian_norms(field, xs)
    assert float(jnp.max(norms)) > 0.0
    assert float(jnp.max(norms)) <= float(bound) * (1 + 1e-5), (float(jnp.max(norms)), bound)


@jit
def _stacked_and_linear(net, lin, xs):
    return (
        lipschitz_upper_bound(net.blocks),
        lipschitz_upper_bound(net.block(3)),
        lipschitz_upper_bound(lin),
        lipschitz_lower_bound(lin, xs),
        net.blocks.lipschitz_bound(),
        lin.lipschitz_bound(),
    )


def test_stacked_blocks_and_linear_field_bounds(key):
    A = _normal(0, (WIDTH, WIDTH))
    net = ResidualNet(WIDTH, HIDDEN, DEPTH, key=key())
    stacked, one, lin_up, lin_low, stacked_m, lin_m = _stacked_and_linear(
        net, LinearField(A), _normal(1, (3, WIDTH))
    )
    assert stacked.shape == (DEPTH,)
    np.testing.assert_array_equal(stacked, stacked_m)
    np.testing.assert_array_equal(lin_up, lin_m)
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

        return jacobian_singular_values(conv, jnp.zeros(in_shape))[0]

    w1, w2 = field.kernels
    in_shape = xs.shape[1:]
    expected = dense_norm(w1, in_shape) * dense_norm(w2, (w1.shape[0], *in_shape[1:]))
    k = jax.random.key(0, impl="rbg")
    upper = lipschitz_upper_bound(field, input_shape=in_shape, key=k)
    method = field.lipschitz_bound(input_shape=in_shape, key=k)
    return upper, lipschitz_lower_bound(field, xs), expected, method


@pytest.mark.parametrize("dims", [1, 2])
def test_conv_lipschitz_bounds(key, dims):
    space = (9,) if dims == 1 else (4, 5)
    field = ConvField(2, 3, key=key(), dims=dims, activation="tanh")
    upper, lower, expected, method = _conv_bounds(field, _normal(0, (4, 2, *space)))
    assert 0.0 < float(lower) <= float(upper)
    np.testing.assert_array_equal(upper, method)
    # each convolution's operator norm by power iteration = the dense operator's ‖·‖₂
    np.testing.assert_allclose(upper, expected, rtol=1e-3)
