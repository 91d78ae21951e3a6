import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jaxtyping import TypeCheckError

from terrain_jax.attractors import (
    basin_map,
    critical_points,
    fixed_points,
    nearest_minimum,
    orbit_fates,
    start_grid,
    uniform_starts,
)
from terrain_jax.fields import VanDerPolField
from terrain_jax.terrains import get_terrain

WELLS_1D = np.array([[-1.0], [1.0]])
# a wrong shape is refused by jaxtyping under the test hook, by a ValueError without it
SHAPE_ERRORS = (ValueError, TypeCheckError)


def _double_well_1d(x):
    return (x[0] ** 2 - 1.0) ** 2


# ----------------------------------------------------------------------------- basin maps


@pytest.mark.parametrize(
    "style, lr", [("sgd", 0.01), ("sgd", 0.1), ("sgd", 0.2), ("momentum", 0.01)]
)
def test_separable_double_well_map_is_its_1d_map(style, lr):
    """(θ1² − 1)² + θ2²: every style here acts coordinate-wise and θ2 settles at 0, so the
    2-D map is a union of vertical stripes equal to the map of the 1-D well in θ1."""
    terrain = get_terrain("double_well")
    a = np.linspace(-1.95, 1.95, 40, dtype=np.float32)  # θ1 = 0 (the saddle) left out
    b = np.linspace(-1.4, 1.4, 7, dtype=np.float32)
    starts = np.stack(np.meshgrid(a, b, indexing="ij"), -1).reshape(-1, 2)
    grid = {"learning_rate": jnp.asarray([lr])}
    two = basin_map(terrain.value, style, starts, np.asarray(terrain.minima), 600, hyper_grid=grid)
    lab = two.labels.reshape(1, a.size, b.size)
    assert two.labels.dtype == np.int8
    assert not two.changed.any()
    assert np.all(lab == lab[:, :, :1])  # depends on θ1 only
    one = basin_map(_double_well_1d, style, a[:, None], WELLS_1D, 600, hyper_grid=grid)
    np.testing.assert_array_equal(lab[:, :, 0], one.labels)
    if lr <= 0.1:  # bounded on |θ1| ≤ 2: every start reaches a well
        assert np.all(one.labels < 2)
    if style == "sgd" and lr < 1 / 12:  # GD keeps the sign of θ1 on |θ1| ≤ 2: the flow's map
        np.testing.assert_array_equal(one.labels[0], (a > 0).astype(np.int8))
    if lr >= 0.1:  # large steps send some starts to the other well
        assert np.any(one.labels[0] != (a > 0))


def test_basin_map_1d_gd_matches_the_map_iterated_by_hand():
    """GD on the 1-D well, θ ← θ − η·4θ(θ² − 1), iterated in float64 in NumPy."""
    etas = np.array([0.05, 0.12, 0.2])
    a = np.linspace(-1.9, 1.9, 39)
    x = np.broadcast_to(a, (etas.size, a.size)).copy()
    with np.errstate(over="ignore", invalid="ignore"):  # η = 0.2 throws some starts out
        for _ in range(400):
            x = x - etas[:, None] * 4.0 * x * (x * x - 1.0)
        expect = np.where(np.abs(x - 1) < 0.05, 1, np.where(np.abs(x + 1) < 0.05, 0, 2))
        expect = np.where(~np.isfinite(x) | (np.abs(x) > 1e3), 3, expect)
    with jax.enable_x64(True):
        got = basin_map(_double_well_1d, "sgd", jnp.asarray(a[:, None]), WELLS_1D, 400,
                        hyper_grid={"learning_rate": jnp.asarray(etas)}, check=False)  # fmt: skip
    assert got.labels_doubled is None
    np.testing.assert_array_equal(got.labels, expect)
    assert np.any(expect[2] != (a > 0))


def test_basin_map_refuses_bad_input():
    wells = np.array([[-1.0, 0.0], [1.0, 0.0]])
    dw = get_terrain("double_well").value
    with pytest.raises(ValueError, match="NaN or inf"):
        basin_map(dw, "sgd", jnp.asarray([[jnp.nan, 0.0]]), wells, 10)
    with pytest.raises(SHAPE_ERRORS):
        basin_map(dw, "sgd", jnp.zeros((3, 2)), np.zeros((2, 3)), 10)
    with pytest.raises(SHAPE_ERRORS):
        basin_map(dw, "sgd", jnp.zeros((3, 3, 2)), wells, 10)
    with pytest.raises(ValueError, match="valid"):
        basin_map(dw, "no_such_style", jnp.zeros((3, 2)), wells, 10)


def test_nearest_minimum_labels():
    mins = np.array([[0.0, 0.0], [1.0, 0.0]])
    pts = np.array(
        [[0.01, 0.0], [0.97, 0.02], [0.5, 0.0], [np.nan, 0.0], [2e3, 0.0], [np.inf, 1.0]]
    )
    lab = nearest_minimum(pts, mins, 0.05)
    np.testing.assert_array_equal(lab, [0, 1, 2, 3, 3, 3])
    assert lab.dtype == np.int8
    np.testing.assert_array_equal(nearest_minimum(pts, mins, 0.05, blowup=1e4)[4], 2)
    np.testing.assert_array_equal(nearest_minimum(pts, np.zeros((0, 2)), 0.05), [0, 0, 0, 1, 1, 1])
    np.testing.assert_array_equal(
        nearest_minimum(pts.reshape(2, 3, 2), mins, 0.05), lab.reshape(2, 3)
    )


# ----------------------------------------------------------------------------- orbit fates


def _tails(T: int = 16) -> np.ndarray:
    k = np.arange(T)
    logistic = [0.3]
    for _ in range(T - 1):
        logistic.append(4.0 * logistic[-1] * (1.0 - logistic[-1]))  # chaotic, bounded
    rows = [
        np.full(T, -1.0),  # at minimum 0
        np.full(T, 2.0 + 1e-12),  # at minimum 1
        np.where(k % 2 == 0, 0.5, -0.5),  # period 2
        np.array([0.1, 0.7, 0.4] * T)[:T],  # period 3
        10.0**k,  # diverging past 1e6
        np.where(k < 8, 1.0, np.nan),  # non-finite
        np.asarray(logistic),  # unsettled
        0.3 + 0.01 * 0.9**k,  # converging too slowly for tol: unsettled
        np.full(T, 0.25),  # a fixed point that is not a listed minimum
    ]
    return np.stack(rows)[..., None]


def test_orbit_fates_on_constructed_tails():
    mins = np.array([[-1.0], [2.0]])
    fates = orbit_fates(_tails(), mins, 1e-9)
    m = 2
    np.testing.assert_array_equal(fates.label, [0, 1, m + 2, m + 2, m + 1, m + 1, m, m, m + 2])
    np.testing.assert_array_equal(fates.period, [1, 1, 2, 3, 0, 0, 0, 0, 1])
    assert fates.label.dtype == np.int8
    assert fates.names(("left", "right")).tolist() == [
        "left", "right", "cycle", "cycle", "diverged", "diverged", "unsettled", "unsettled",
        "cycle",
    ]  # fmt: skip
    assert fates.names()[0] == "min0"
    # min_period=2: a constant tail off the minima is a "cycle" of period 2
    p2 = orbit_fates(_tails(), mins, 1e-9, min_period=2)
    np.testing.assert_array_equal(p2.period, [1, 1, 2, 3, 0, 0, 0, 0, 2])
    # max_period below 3 leaves the period-3 tail unsettled
    np.testing.assert_array_equal(orbit_fates(_tails(), mins, 1e-9, max_period=2).label[3], m)
    # a loose tolerance counts the slow convergence as arrived at a fixed point
    assert orbit_fates(_tails(), mins, 1e-1).label[7] == m + 2
    # batch axes and several dimensions; a tail of length 1 classifies end points
    t2 = np.concatenate([_tails(), -_tails()], -1).reshape(3, 3, 16, 2)
    f2 = orbit_fates(t2, np.array([[-1.0, 1.0]]), 1e-9)
    assert f2.label.shape == (3, 3) and f2.label[0, 0] == 0 and f2.period[0, 2] == 2
    ends = orbit_fates(_tails()[:, -1:], mins, 1e-9)
    np.testing.assert_array_equal(ends.label, [0, 1, m, m, m + 1, m + 1, m, m, m])


def test_orbit_fates_refuses_bad_shapes():
    with pytest.raises(SHAPE_ERRORS):
        orbit_fates(np.zeros(8), np.zeros((1, 1)), 1e-9)
    with pytest.raises(SHAPE_ERRORS):
        orbit_fates(np.zeros((3, 8, 1)), np.zeros(2), 1e-9)
    with pytest.raises(ValueError, match="below the tail length"):
        orbit_fates(np.zeros((3, 8, 1)), np.zeros((2, 1)), 1e-9, max_period=8)


# ----------------------------------------------------------------------------- fixed points


def test_critical_points_of_a_cubic_match_the_closed_form():
    """f = x³/3 − x + y³/3 − y: ∇f = (x² − 1, y² − 1), Hessian diag(2x, 2y)."""
    f = lambda p: p[0] ** 3 / 3 - p[0] + p[1] ** 3 / 3 - p[1]  # noqa: E731
    dom = ((-2.0, 2.0), (-2.0, 2.0))
    g = np.linspace(-2.0, 2.0, 21)
    starts = np.stack(np.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)
    mins, sads, maxs = critical_points(f, starts, dom)
    np.testing.assert_allclose(mins, [[1.0, 1.0]], atol=1e-12)
    np.testing.assert_allclose(maxs, [[-1.0, -1.0]], atol=1e-12)
    np.testing.assert_allclose(sads, [[-1.0, 1.0], [1.0, -1.0]], atol=1e-12)
    # a smaller domain keeps only what lies inside it
    mins, sads, maxs = critical_points(f, starts, ((0.0, 2.0), (0.0, 2.0)))
    assert mins.shape == (1, 2) and sads.shape == (0, 2) and maxs.shape == (0, 2)
    with pytest.raises(ValueError, match="NaN or inf"):
        critical_points(f, np.array([[np.nan, 0.0]]), dom)


def test_fixed_points_of_the_damped_duffing_field():
    """ẋ = y, ẏ = x − x³ − γy: a saddle at 0, stable spirals at (±1, 0) with
    eigenvalues (−γ ± i√(8 − γ²))/2."""
    gamma = 0.5
    field = lambda z: jnp.stack([z[1], z[0] - z[0] ** 3 - gamma * z[1]])  # noqa: E731
    g = np.linspace(-2.0, 2.0, 15)
    starts = np.stack(np.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)
    fp = fixed_points(field, starts)
    np.testing.assert_allclose(fp.points, [[-1.0, 0.0], [0.0, 0.0], [1.0, 0.0]], atol=1e-12)
    np.testing.assert_array_equal(fp.stable, [True, False, True])
    np.testing.assert_array_equal(fp.saddle, [False, True, False])
    assert not fp.unstable.any()
    lam = np.sort_complex(fp.eigenvalues[0])
    w = np.sqrt(8 - gamma**2) / 2
    np.testing.assert_allclose(lam, [-gamma / 2 - 1j * w, -gamma / 2 + 1j * w], atol=1e-12)
    saddle = np.sort(fp.eigenvalues[1].real)
    np.testing.assert_allclose(saddle, (-gamma + np.array([-1, 1]) * np.sqrt(gamma**2 + 4)) / 2)


@pytest.mark.parametrize("mu", [0.5, 3.0])
def test_van_der_pol_fixed_point_is_the_unstable_origin(mu):
    """Its only fixed point is 0, with eigenvalues (μ ± √(μ² − 4))/2 of [[0, 1], [−1, μ]];
    the closed-form Jacobian equals jax.jacfwd of the field."""
    vdp = VanDerPolField(mu)
    g = np.linspace(-3.0, 3.0, 9)
    starts = np.stack(np.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)
    fp = fixed_points(lambda y: vdp(0.0, y), starts, jacobian=lambda y: vdp.jacobian(y))
    np.testing.assert_allclose(fp.points, [[0.0, 0.0]], atol=1e-12)
    assert fp.unstable.all()
    lam = np.sort_complex(fp.eigenvalues[0])
    np.testing.assert_allclose(lam, np.sort_complex(np.roots([1.0, -mu, 1.0])), atol=1e-12)
    with jax.enable_x64(True):
        ys = jnp.asarray(starts)
        auto = jax.vmap(jax.jacfwd(lambda y: vdp(0.0, y)))(ys)
        np.testing.assert_allclose(vdp.jacobian(ys), auto, rtol=1e-14, atol=1e-14)


def test_uniform_starts_fill_the_box_and_repeat_per_key(getkey):
    domain = ((-2.0, 1.0), (0.0, 5.0))
    key = getkey()
    x = uniform_starts(key, domain, 4000)
    assert x.shape == (4000, 2) and x.dtype == jnp.zeros(()).dtype
    lo, hi = np.array([-2.0, 0.0]), np.array([1.0, 5.0])
    assert np.all((np.asarray(x) >= lo) & (np.asarray(x) < hi))
    np.testing.assert_allclose(np.asarray(x).mean(0), (lo + hi) / 2, atol=0.1)
    np.testing.assert_array_equal(x, uniform_starts(key, domain, 4000))
    assert start_grid(domain, 3).shape == (9, 2)
