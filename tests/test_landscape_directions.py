"""terrain_jax.landscape directions: filter normalisation checked against its definition,
Gram–Schmidt against the span, PCA planes against numpy's SVD."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import numpy as np
import pytest

from terrain_jax import landscape as L
from terrain_jax.fields import ConvField
from terrain_jax.nets import make_blocks


class _Net(eqx.Module):
    """A Linear, a Conv1d and stacked conv blocks (layers, out, in, k), plus an int buffer
    and a function leaf that are not parameters."""

    lin: eqx.nn.Linear
    conv: eqx.nn.Conv1d
    blocks: ConvField
    counts: jax.Array
    act: object

    def __init__(self, key):
        k1, k2, k3 = jax.random.split(key, 3)
        self.lin = eqx.nn.Linear(5, 7, key=k1)
        self.conv = eqx.nn.Conv1d(3, 4, 5, key=k2)
        self.blocks = make_blocks("conv1d", 4, 6, 3, key=k3)
        self.counts = jnp.arange(4)
        self.act = jax.nn.tanh


def _norms(a, axes):
    return np.sqrt(np.sum(np.square(np.asarray(a, np.float64)), axis=axes))


def test_filter_normalisation_matches_weight_norms(getkey):
    net = _Net(getkey())
    d = L.random_direction(getkey(), net, stack_axes=lambda n: n.blocks)
    # Linear (out, in): one norm per output neuron; Conv1d (out, in, k): per filter.
    np.testing.assert_allclose(_norms(d.lin.weight, 1), _norms(net.lin.weight, 1), rtol=1e-6)
    np.testing.assert_allclose(
        _norms(d.conv.weight, (1, 2)), _norms(net.conv.weight, (1, 2)), rtol=1e-6
    )
    # stacked (layers, out, in, k): per layer and output filter; stacked biases zeroed.
    for dk, wk in zip(d.blocks.kernels, net.blocks.kernels, strict=True):
        assert dk.shape[:2] == (3, wk.shape[1])
        np.testing.assert_allclose(_norms(dk, (2, 3)), _norms(wk, (2, 3)), rtol=1e-6)
    assert all(np.all(np.asarray(b) == 0) for b in d.blocks.biases)
    # the direction is not the weight itself
    assert not np.allclose(d.lin.weight, net.lin.weight)
    # 1-D parameters zeroed; non-parameters absent
    assert np.all(np.asarray(d.lin.bias) == 0) and np.all(np.asarray(d.conv.bias) == 0)
    assert d.counts is None and d.act is None


def test_ignore_1d_keep_and_layer_normalisation(getkey):
    net = _Net(getkey())
    d = L.random_direction(getkey(), net, ignore_1d="keep")
    for got, want in [(d.lin.bias, net.lin.bias), (d.conv.bias, net.conv.bias)]:
        np.testing.assert_allclose(_norms(got, None), _norms(want, None), rtol=1e-6)
        assert not np.allclose(np.abs(got), np.abs(want))  # whole-vector, not per element
    # without stack_axes a stacked kernel's "filters" are its layers
    k0, w0 = d.blocks.kernels[0], net.blocks.kernels[0]
    np.testing.assert_allclose(_norms(k0, (1, 2, 3)), _norms(w0, (1, 2, 3)), rtol=1e-6)
    lay = L.random_direction(getkey(), net, normalisation="layer")
    np.testing.assert_allclose(_norms(lay.conv.weight, None), _norms(net.conv.weight, None), 1e-6)
    per_filter = _norms(lay.conv.weight, (1, 2)) / _norms(net.conv.weight, (1, 2))
    assert np.ptp(per_filter) > 1e-2  # layer mode does not equalise filters
    with pytest.raises(ValueError, match="valid: filter, layer, none"):
        L.random_direction(getkey(), net, normalisation="filters")


def test_orthogonalised_directions(getkey):
    net = eqx.nn.MLP(6, 3, 8, 2, key=getkey())
    key = getkey()
    d1, d2 = L.random_directions(key, net, orthogonalise=True, ignore_1d="keep")
    raw1, raw2 = L.random_directions(key, net, orthogonalise=False, ignore_1d="keep")

    def flat(t):
        return np.concatenate([np.ravel(x) for x in jtu.tree_leaves(t)]).astype(np.float64)

    f1, f2, r1, r2 = map(flat, (d1, d2, raw1, raw2))
    assert abs(f1 @ r2) / (np.linalg.norm(f1) * np.linalg.norm(r2)) > 1e-3  # not already ⟂
    assert abs(f1 @ f2) / (np.linalg.norm(f1) * np.linalg.norm(f2)) < 1e-6
    np.testing.assert_allclose(f1, r1, rtol=1e-6)  # the first is untouched
    np.testing.assert_allclose(np.linalg.norm(f2), np.linalg.norm(r2), rtol=1e-5)
    # d2 lies in span(r1, r2)
    basis = np.stack([r1, r2], 1)
    resid = f2 - basis @ np.linalg.lstsq(basis, f2, rcond=None)[0]
    assert np.linalg.norm(resid) < 1e-5 * np.linalg.norm(f2)


@pytest.mark.parametrize("center", [True, False])
def test_pca_directions_match_numpy_svd(getkey, center):
    K = 12
    final = {"w": jax.random.normal(getkey(), (3, 4)), "b": jax.random.normal(getkey(), (5,))}
    P = 17
    u, v = np.asarray(jax.random.normal(getkey(), (2, P)), np.float64)
    t = np.linspace(1.0, 0.0, K)
    coef = np.stack([3 * t**2, np.sin(4 * t)], 1)  # a curved path into the final point
    noise = 1e-3 * np.asarray(jax.random.normal(getkey(), (K, P)), np.float64)
    noise[-1] = 0
    diffs = coef @ np.stack([u, v]) + noise
    flat_final = np.concatenate([np.ravel(final["b"]), np.ravel(final["w"])])  # leaf order
    rows = (flat_final + diffs).astype(np.float32)
    ckpts = {"b": jnp.asarray(rows[:, :5]), "w": jnp.asarray(rows[:, 5:].reshape(K, 3, 4))}
    plane = L.pca_directions(ckpts, center=center)

    x = (rows - rows[-1]).astype(np.float64)[:-1]
    x = x - x.mean(0) if center else x
    _, s, vt = np.linalg.svd(x, full_matrices=False)
    want_ratio = s[:2] ** 2 / np.sum(s**2)
    np.testing.assert_allclose(plane.explained_variance_ratio, want_ratio, rtol=1e-4)
    assert float(jnp.sum(plane.explained_variance_ratio)) > 0.999  # planted rank 2
    got = np.stack([np.concatenate([np.ravel(d["b"]), np.ravel(d["w"])]) for d in plane.directions])
    for g, w in zip(got, vt[:2], strict=True):
        np.testing.assert_allclose(g * np.sign(g @ w), w, atol=2e-4)
        assert np.argmax(np.abs(g)) == np.argmax(g)  # sign convention
    want_coords = (rows - rows[-1]).astype(np.float64) @ got.T
    np.testing.assert_allclose(plane.coords, want_coords, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(plane.coords[-1], 0.0)  # final point at the origin
    # an explicit final point = the last checkpoint, with the last row left in the fit
    # (it is a zero row: same directions without centring)
    if not center:
        explicit = L.pca_directions(ckpts, jtu.tree_map(lambda a: a[-1], ckpts), center=False)
        np.testing.assert_allclose(explicit.coords, plane.coords, rtol=1e-5, atol=1e-5)


def test_pca_plane_grid_spans_the_trajectory_with_a_margin():
    coords = jnp.array([[0.0, 0.0], [-1.0, 2.0], [3.0, 1.0]])
    plane = L.PCAPlane((), jnp.array([0.7, 0.3]), coords)
    gx, gy = plane.grid(9, margin=0.25)  # x ∈ [-1, 3] ± 1, y ∈ [0, 2] ± 0.5
    assert gx.dtype == gy.dtype == np.float64 and gx.shape == gy.shape == (9,)
    np.testing.assert_allclose([gx[0], gx[-1], gy[0], gy[-1]], [-2.0, 4.0, -0.5, 2.5])
    np.testing.assert_allclose(np.diff(gx), 0.75)
    gx0, gy0 = plane.grid(5, margin=0.0)  # no margin: exactly the trajectory's extent
    np.testing.assert_allclose([gx0[0], gx0[-1], gy0[0], gy0[-1]], [-1.0, 3.0, 0.0, 2.0])
