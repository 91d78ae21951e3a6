"""Depth-net diagnostics (terrain_jax.nets): layer / block / end-to-end Jacobians against
the layer formulas, per-layer gradient norms against jax.grad layer by layer, the stable
norm at float32's extremes, lesion masks, effective receptive fields and Dinh et al.'s
function-preserving rescaling.

Kept fast on 2 cores: every test's computation is one ``filter_jit`` (one compile), nets
share one shape, data comes from numpy, and keys are ``rbg`` keys.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import assert_same_multiset as _assert_same_multiset
from helpers import normal32 as _normal
from helpers import rbg_keys

from terrain_jax.linalg import jacobian_eigenvalues
from terrain_jax.nets import (
    GRADIENT_NORM_METHODS,
    HighwayNet,
    PlainNet,
    ResidualNet,
    ScaledResidualNet,
    block_field_jacobian,
    effective_receptive_field,
    end_to_end_jacobian,
    layer_gradient_norms,
    layer_jacobian,
    lesion_masks,
    lesion_summary,
    per_layer_norms,
    receptive_field_mass,
    receptive_field_width,
    rescale_relu_layer,
    stable_norm,
)

WIDTH, HIDDEN, DEPTH = 6, 12, 4
jit = eqx.filter_jit


@pytest.fixture
def key():
    """Fresh rbg keys, deterministic per test: ``k = key()``."""
    return rbg_keys()


def _make(family, key, **kw):
    return family(WIDTH, HIDDEN, DEPTH, key=key, **kw)


# ------------------------------------------------------------------------- Jacobians


@jit
def _layer_and_field(net, ks, x):
    return [(layer_jacobian(net, k, x), block_field_jacobian(net, k, x)) for k in ks]


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
    ev = jit(jacobian_eigenvalues)(net.layer_map(3), x)
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
        block_field_jacobian(net, 0, _normal(0, (WIDTH,)))


@jit
def _end_to_end_and_layers(net, x):
    _, hs = net(x, return_hidden=True)
    layers = [layer_jacobian(net, k, hs[k]) for k in range(net.depth)]
    return end_to_end_jacobian(net, x), layers


def test_end_to_end_jacobian_is_the_product_of_layer_jacobians(key):
    net = _make(HighwayNet, key(), gate_bias=0.0)
    J, layers = _end_to_end_and_layers(net, _normal(0, (WIDTH,)))
    P = np.eye(WIDTH)
    for Jk in layers:
        P = np.asarray(Jk, dtype=np.float64) @ P
    np.testing.assert_allclose(J, P, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("family", [PlainNet, ResidualNet, HighwayNet, ScaledResidualNet])
def test_layer_map_is_layer_update_at_layer_time(key, family):
    """The public protocol the diagnostics use: ``layer_map(k)`` is ``layer_update`` of block
    ``k`` at ``layer_time(k)``, and the net is those maps composed."""
    net = _make(family, key())
    x = _normal(0, (WIDTH,))
    y = x
    for k in range(DEPTH):
        t = net.layer_time(jnp.asarray(float(k)))
        step = net.layer_update(net.block(k), t, y)
        np.testing.assert_array_equal(step, net.layer_map(k)(y))
        y = step
    np.testing.assert_allclose(net(x), y, rtol=1e-6, atol=1e-7)
    if family is ResidualNet:
        np.testing.assert_allclose(net.layer_time(jnp.asarray(2.0)), 2.0 * net.h)


# ----------------------------------------------------------- per-layer gradient norms


def _loss(out, y):
    return jnp.mean(jnp.sin(out) * y) + 0.5 * jnp.mean(out**2)


@jit
def _ours(net, x, y):
    return {m: layer_gradient_norms(net, _loss, x, y, method=m) for m in GRADIENT_NORM_METHODS}


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
        layer_gradient_norms(net, _loss, x, y, method="adjoint")


def test_gradient_norms_neither_overflow_nor_underflow_in_float32():
    """Deep plain nets produce float32 gradients near 1e-30 and 1e30, where ``Σ g²`` is
    not representable; the per-layer norms must still be exact."""
    for scale in (1e-30, 1e-20, 1.0, 1e20, 1e30):
        v = jnp.full((16,), scale, jnp.float32)
        np.testing.assert_allclose(float(stable_norm(v)), 4.0 * scale, rtol=1e-6)
    assert float(stable_norm(jnp.array([1.0, jnp.inf]))) == np.inf
    assert np.isnan(float(stable_norm(jnp.array([1.0, jnp.nan]))))
    assert np.isnan(float(jax.jit(stable_norm)(jnp.full((8,), jnp.nan))))
    g = jnp.stack([jnp.full((3, 4), 1e-25), jnp.full((3, 4), 1e25), jnp.zeros((3, 4))])
    np.testing.assert_allclose(
        np.asarray(per_layer_norms(g)), [np.sqrt(12) * 1e-25, np.sqrt(12) * 1e25, 0.0], rtol=1e-6
    )


# ------------------------------------------------------------ lesions, receptive fields


def test_lesion_masks_rows_and_their_effect(key):
    depth, kmax, draws = 5, 3, 4
    masks = lesion_masks(depth, kmax, draws, seed=0)
    assert masks.shape == (1 + depth + kmax * draws, depth) and masks.dtype == bool
    assert masks[0].all()
    np.testing.assert_array_equal(masks[1 : 1 + depth], ~np.eye(depth, dtype=bool))
    deleted = (~masks[1 + depth :]).sum(axis=1)
    np.testing.assert_array_equal(deleted, np.repeat(np.arange(1, kmax + 1), draws))
    np.testing.assert_array_equal(masks, lesion_masks(depth, kmax, draws, seed=0))
    # a deleted layer passes its input through: the lesioned net is the intact net's
    # remaining layers composed
    net = ResidualNet(WIDTH, HIDDEN, depth, key=key(), h=1.0)
    x = _normal(0, (WIDTH,))
    m = masks[-1]
    y = x
    for k in np.flatnonzero(m):
        y = net.layer_map(int(k))(y)
    np.testing.assert_allclose(jit(lambda n, x, m: n(x, mask=m))(net, x, m), y, rtol=1e-6)
    with pytest.raises(ValueError, match="mask"):
        net(x, mask=np.ones(depth + 1, bool))


def test_lesion_summary_reads_the_rows_of_lesion_masks():
    # an "accuracy" that is a known function of the mask: 0.9 minus the deleted blocks'
    # weights, so every summary has a closed form
    depth, kmax, draws = 5, 3, 4
    masks = lesion_masks(depth, kmax, draws, seed=1)
    w = np.array([0.01, 0.02, 0.3, 0.04, 0.05])
    accs = 0.9 - (~masks).astype(float) @ w
    s = lesion_summary(accs, depth, kmax, draws)
    assert s["intact"] == 0.9
    np.testing.assert_allclose(s["single"], 0.9 - w)
    np.testing.assert_allclose(s["single_mean"], 0.9 - w.mean())
    np.testing.assert_allclose([s["single_worst"], s["single_worst_drop"]], [0.6, 0.3])
    np.testing.assert_allclose(s["single_mean_drop"], w.mean())
    by_k = [accs[1 + depth + k * draws : 1 + depth + (k + 1) * draws] for k in range(kmax)]
    np.testing.assert_allclose(s["k_mean"], [0.9, *(np.mean(a) for a in by_k)])
    np.testing.assert_allclose(s["k_std"], [0.0, *(np.std(a) for a in by_k)])
    assert s["k_std"][1:].min() > 0  # the draws differ
    with pytest.raises(ValueError, match="lesion_masks"):
        lesion_summary(accs[:-1], depth, kmax, draws)


def test_effective_receptive_field_of_one_linear_conv_is_its_kernel(key):
    """For ``y = K * x`` (one 'SAME' conv, no bias) ``∂ Σ_c y[c, centre] / ∂x[c']`` is the
    flipped kernel summed over output channels, for every input: the ERF is ``Σ_c |K|``
    placed around the centre, zero elsewhere."""
    size, channels = 7, 2
    kernel = _normal(0, (channels, channels, 3, 3))

    def net(x):
        return jax.lax.conv_general_dilated(x, kernel, (1, 1), "SAME")

    erf = effective_receptive_field(net, _normal(1, (3, channels, size, size)))
    want = np.zeros((size, size), np.float32)
    c = size // 2
    want[c - 1 : c + 2, c - 1 : c + 2] = np.sum(np.abs(np.asarray(kernel).sum(axis=0)), axis=0)
    np.testing.assert_allclose(erf, want, rtol=1e-6, atol=1e-7)


def test_relu_rescaling_preserves_the_function_not_the_parameters(key):
    mlp = eqx.nn.MLP(3, 2, 8, 1, activation=jax.nn.relu, key=jax.random.PRNGKey(0))
    scaled = rescale_relu_layer(mlp, 5.0)
    xs = _normal(0, (16, 3))
    np.testing.assert_allclose(jax.vmap(scaled)(xs), jax.vmap(mlp)(xs), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(scaled.layers[0].weight, 5.0 * mlp.layers[0].weight)
    np.testing.assert_allclose(scaled.layers[1].weight, mlp.layers[1].weight / 5.0)


def test_receptive_field_width_and_mass_closed_forms():
    delta = np.zeros((9, 9))
    delta[4, 4] = 3.0
    assert receptive_field_width(delta) == 0.0 and receptive_field_mass(delta, 0) == 1.0
    # uniform 3×3 around the centre: mean squared distance (4·1 + 4·2) / 9
    box = np.zeros((9, 9))
    box[3:6, 3:6] = 1.0
    np.testing.assert_allclose(receptive_field_width(box), np.sqrt(12 / 9))
    assert receptive_field_mass(box, 1) == 1.0
    np.testing.assert_allclose(receptive_field_mass(box, 0), 1 / 9)
    # a wide isotropic 2-D Gaussian: RMS radius σ√2
    r = np.arange(201) - 100
    s = 7.0
    g = np.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2 * s**2))
    np.testing.assert_allclose(receptive_field_width(g), s * np.sqrt(2), rtol=1e-6)
    # any rank: a 1-D map with mass 1 at offset −3 and 1 at +1
    line = np.zeros(11)
    line[2], line[6] = 1.0, 1.0
    np.testing.assert_allclose(receptive_field_width(line), np.sqrt((9 + 1) / 2))
    assert receptive_field_mass(line, 1) == 0.5 and receptive_field_mass(line, 3) == 1.0
