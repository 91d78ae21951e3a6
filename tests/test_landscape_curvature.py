"""terrain_jax.landscape curvature maps, on surfaces with known answers.

``surface_hessian_eigs`` and ``nonconvexity`` decide both claims of
``experiments.loss_surfaces`` (the fraction of a slice with significant negative curvature,
and its local minima). Here they run on closed-form surfaces: quadratics (where central
differences are exact), planted bumps and pits, float32 round-off, and huge far values like
the deep plain net's.
"""

import numpy as np
import pytest

from terrain_jax.landscape import nonconvexity
from terrain_jax.landscape import surface_hessian_eigs as hessian_eigs

CENTRE, NOISE_REL, REL_NEG = 0.5, 1e-5, 0.01  # nonconvexity's defaults

G = np.linspace(-1.0, 1.0, 21)  # h = 0.1, the experiment's [-1, 1]² slice
FINE = np.linspace(-1.0, 1.0, 41)  # h = 0.05, resolves the planted bumps


def _grid(f, gx=G, gy=G) -> np.ndarray:
    """``z[j, i] = f(gx[i], gy[j])``, the layout of ``surface_2d``."""
    xx, yy = np.meshgrid(gx, gy)
    return f(xx, yy)


def _gauss(x, y, x0, y0, s):
    return np.exp(-((x - x0) ** 2 + (y - y0) ** 2) / (2 * s**2))


def _interior(g):
    return g.size - 2


def test_quadratic_eigenvalues_closed_form():
    # z = a x² + b xy + c y²: the Hessian is [[2a, b], [b, 2c]] everywhere, and central
    # differences are exact on quadratics; unequal spacings catch a swapped axis or step
    a, b, c = 1.0, 0.6, -0.3
    gx, gy = G, np.linspace(-1.5, 1.5, 13)
    lmin, lmax = hessian_eigs(_grid(lambda x, y: a * x**2 + b * x * y + c * y**2, gx, gy), gx, gy)
    want = np.linalg.eigvalsh(np.array([[2 * a, b], [b, 2 * c]]))
    assert lmin.shape == lmax.shape == (_interior(gy), _interior(gx))
    np.testing.assert_allclose(lmin, want[0], rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(lmax, want[1], rtol=1e-9, atol=1e-9)
    out = nonconvexity(_grid(lambda x, y: a * x**2 + b * x * y + c * y**2, gx, gy), gx, gy)
    assert out.neg_frac == 1.0
    # ρ = |λ_min / λ_max| at every point
    np.testing.assert_allclose(out.mean_ratio, -want[0] / want[1], rtol=1e-9)
    np.testing.assert_allclose(out.rho, -want[0] / want[1], rtol=1e-9)


def test_convex_bowl_has_no_negative_curvature():
    out = nonconvexity(_grid(lambda x, y: x**2 + y**2), G, G)
    assert out.neg_frac == 0.0 and out.neg_frac_centre == 0.0
    assert out.mean_ratio == 0.0 and np.all(out.rho == 0.0)
    assert out.local_minima == 1
    np.testing.assert_allclose(out.minima_xy, [[0.0, 0.0]], atol=1e-12)


@pytest.mark.parametrize(
    "f",
    [lambda x, y: x**2 - y**2, lambda x, y: 3.0 - x**2 - y**2],
    ids=["saddle", "concave_cap"],
)
def test_saddle_and_cap_are_negative_everywhere(f):
    out = nonconvexity(_grid(f), G, G)
    assert out.neg_frac == 1.0 and out.neg_frac_centre == 1.0
    np.testing.assert_allclose(out.mean_ratio, 1.0, rtol=1e-9)  # |λ_min| = |λ_max| = 2
    assert out.local_minima == 0


@pytest.mark.parametrize("k, frac", [(0.0025, 0.0), (0.05, 1.0)])
def test_significance_is_relative_to_lambda_max(k, frac):
    # z = x² − k y²: λ_min / λ_max = −k, significant only beyond REL_NEG; the round-off
    # floor (≤ 4 NOISE_REL · 1.05 / h² = 4.2e-3) stays below λ_min = −2k here
    assert 4 * NOISE_REL * 1.05 / 0.1**2 < 2 * 0.0025 < 2 * REL_NEG < 2 * 0.05
    out = nonconvexity(_grid(lambda x, y: x**2 - k * y**2), G, G)
    assert out.neg_frac == frac


def test_float32_round_off_is_not_curvature():
    # a convex bowl on a large offset, stored in float32 as the loss values are: the second
    # differences of the rounded values are negative in places, below the round-off floor
    z = _grid(lambda x, y: 1e6 + x**2 + y**2).astype(np.float32).astype(np.float64)
    lmin, _ = hessian_eigs(z, G, G)
    assert np.mean(lmin < 0) > 0.1  # the round-off the floor must absorb
    assert nonconvexity(z, G, G).neg_frac == 0.0


def test_far_spikes_do_not_hide_central_curvature():
    # the first full run's failure: a floor scaled by the slice's range (set by exploding far
    # corners, ~1e8 for the deep plain net) hid all negative curvature; the floor is local
    z = _grid(lambda x, y: 2.0 + x**2 - 0.5 * y**2)
    z[0, 0] = z[0, -1] = z[-1, 0] = z[-1, -1] = 1e8
    out = nonconvexity(z, G, G)
    n = _interior(G) ** 2
    assert out.neg_frac * n >= n - 4  # all but the 4 points whose stencil has a corner
    assert out.neg_frac_centre == 1.0


@pytest.mark.parametrize("x0, y0, in_centre", [(0.75, -0.75, False), (0.0, 0.25, True)])
def test_planted_bump_is_negative_where_expected(x0, y0, in_centre):
    # bowl + Gaussian hill of height A, width s: negative curvature only near the hill
    # (tangential curvature −A/s² e^{−r²/2s²} + 2 < 0 needs r < s √(2 ln(A/2s²)) ≈ 0.23)
    amp, s = 0.3, 0.1
    z = _grid(lambda x, y: x**2 + y**2 + amp * _gauss(x, y, x0, y0, s), FINE, FINE)
    out = nonconvexity(z, FINE, FINE)
    lmin, _ = hessian_eigs(z, FINE, FINE)
    xx, yy = np.meshgrid(FINE[1:-1], FINE[1:-1])
    r = np.hypot(xx - x0, yy - y0)
    # the analytic λ_min of the surface, where it is clearly one sign
    e = _gauss(xx, yy, x0, y0, s)
    exact_lmin = 2.0 + amp * e * np.minimum(-1.0 / s**2, (r**2 / s**2 - 1.0) / s**2)
    n = lmin.size
    n_neg = round(out.neg_frac * n)
    assert n_neg > 0
    # the ρ map is positive exactly where the measured λ_min is negative
    np.testing.assert_array_equal(out.rho > 0, lmin < 0)
    far = r > 0.3
    assert np.all(lmin[far] > 0)  # no curvature away from the hill …
    assert np.all(out.rho[far] == 0.0)
    assert np.all(lmin[exact_lmin < -1.0] < -1.0)  # … strongly negative on it
    assert n_neg >= np.sum(exact_lmin < -1.0)
    assert n_neg <= np.sum(r <= 0.3)
    centre = (np.abs(xx) <= CENTRE + 1e-9) & (np.abs(yy) <= CENTRE + 1e-9)
    n_centre = round(out.neg_frac_centre * centre.sum())
    assert n_centre == (n_neg if in_centre else 0)


def _pit_surface(g):
    # bowl + Gaussian pit: two basins, at the origin and near (0.6, −0.6)
    return _grid(lambda x, y: x**2 + y**2 - 0.5 * _gauss(x, y, 0.6, -0.6, 0.1), g, g)


def test_planted_pit_is_a_second_minimum():
    out = nonconvexity(_pit_surface(FINE), FINE, FINE)
    assert out.local_minima == 2
    xy = np.asarray(out.minima_xy)
    assert np.any(np.all(np.abs(xy) < 1e-12, axis=1))  # the bowl's minimum
    assert np.any(np.hypot(xy[:, 0] - 0.6, xy[:, 1] + 0.6) <= 0.1)  # the pit's
    assert out.neg_frac > 0  # the pit's rim is concave


@pytest.mark.parametrize("scale", [1e-8, 1e8])
def test_measure_is_scale_invariant(scale):
    # both floors are relative to |L|: an absolute floor or minimum margin would drop the
    # curvature and minima of the 1e-8 surface
    z = _pit_surface(FINE) + 0.3 * _grid(lambda x, y: _gauss(x, y, -0.5, 0.5, 0.1), FINE, FINE)
    ref = nonconvexity(z, FINE, FINE)
    out = nonconvexity(scale * z, FINE, FINE)
    assert ref.neg_frac > 0 and ref.local_minima == 2  # something to preserve
    for k in ("neg_frac", "neg_frac_centre", "local_minima"):
        assert getattr(out, k) == getattr(ref, k), k
    assert out.minima_xy == ref.minima_xy
    for k in ("mean_ratio", "mean_ratio_centre"):
        np.testing.assert_allclose(getattr(out, k), getattr(ref, k), rtol=1e-12)


def test_thresholds_and_centre_are_parameters():
    # z = x² − 0.05 y²: λ_min / λ_max = −0.05, significant under rel_neg = 0.01, not 0.1
    z = _grid(lambda x, y: x**2 - 0.05 * y**2)
    assert nonconvexity(z, G, G).neg_frac == 1.0
    assert nonconvexity(z, G, G, rel_neg=0.1).neg_frac == 0.0
    # a bump off-centre: inside the centre region only once the region covers it
    f = lambda x, y: x**2 + y**2 + 0.3 * _gauss(x, y, 0.75, -0.75, 0.1)  # noqa: E731
    zb = _grid(f, FINE, FINE)
    assert nonconvexity(zb, FINE, FINE).neg_frac_centre == 0.0
    whole = nonconvexity(zb, FINE, FINE, centre=1.0)
    assert whole.neg_frac_centre == whole.neg_frac > 0
    # a far larger noise floor swallows the bump's curvature
    assert nonconvexity(zb, FINE, FINE, noise_rel=1.0).neg_frac == 0.0
