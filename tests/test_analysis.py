import math

import numpy as np
import pytest

from terrain_jax.analysis import (
    GradientDecay,
    LinearFit,
    MeanStderr,
    Rate,
    first_where,
    gradient_decay,
    linear_fit,
    log_linear_rate,
    loglog_slope,
    mean_stderr,
    rank_correlation,
    runs,
    steps_agree,
    steps_to_tolerance,
)


def test_loglog_slope_recovers_power_and_mask_drops_points():
    x = np.logspace(-3, 0, 12)
    for p in (-1.5, 1.0, 4.0):
        assert abs(loglog_slope(x, 3.7 * x**p) - p) < 1e-12
    # a round-off floor at the small end: without the mask the slope is wrong
    y = 2.0 * x**2
    y[:4] = 1e-9
    assert abs(loglog_slope(x, y) - 2.0) > 0.1
    mask = np.arange(x.size) >= 4
    assert abs(loglog_slope(x, y, mask=mask) - 2.0) < 1e-12
    # integer x is fine; fewer than two fitted points gives NaN
    assert abs(loglog_slope(np.array([1, 2, 4, 8]), np.array([3.0, 6.0, 12.0, 24.0])) - 1) < 1e-12
    assert math.isnan(loglog_slope(x, y, mask=np.arange(x.size) == 5))
    assert math.isnan(loglog_slope(np.array([]), np.array([])))


def test_loglog_slope_refuses_bad_input():
    x = np.array([1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="positive"):
        loglog_slope(x, np.array([1.0, 0.0, 2.0]))
    with pytest.raises(ValueError, match="positive"):
        loglog_slope(np.array([-1.0, 2.0, 3.0]), x)
    with pytest.raises(ValueError, match="positive"):
        loglog_slope(x, np.array([1.0, np.nan, 2.0]))
    # the masked-out zero is not checked
    assert abs(loglog_slope(x, np.array([1.0, 0.0, 3.0]), mask=np.array([1, 0, 1]) > 0) - 1) < 1e-12
    # refused by our check, or earlier by jaxtyping's runtime check (a TypeError) in tests
    with pytest.raises((ValueError, TypeError)):
        loglog_slope(x, x[:2])
    with pytest.raises((ValueError, TypeError)):
        loglog_slope(x, x, mask=np.array([True, False]))


def test_loglog_slope_is_the_polyfit_the_experiments_used():
    rng = np.random.default_rng(0)
    x, y = rng.uniform(0.1, 1, 9), rng.uniform(0.1, 1, 9)
    mask = rng.uniform(size=9) > 0.3
    ref = float(np.polyfit(np.log(x[mask]), np.log(y[mask]), 1)[0])
    assert loglog_slope(x, y, mask=mask) == ref


def test_linear_fit_line_and_nan_for_non_finite():
    x = np.arange(6)
    fit = linear_fit(x, 3.0 * x + 2.0)
    assert isinstance(fit, LinearFit)
    assert abs(fit.slope - 3.0) < 1e-12 and abs(fit.intercept - 2.0) < 1e-12
    assert all(math.isnan(v) for v in linear_fit(x, np.where(x == 3, np.inf, x * 1.0)))
    assert math.isnan(linear_fit(np.array([1.0]), np.array([2.0])).slope)
    with pytest.raises((ValueError, TypeError)):
        linear_fit(x, x[:-1] * 1.0)


def test_log_linear_rate_exponential_noise_floor_and_too_few_points():
    n = np.arange(20, dtype=float)[::-1]  # layers back-propagated through, L − k
    s = 5.0 * np.exp(-0.3 * n)
    r = log_linear_rate(n, s)
    assert isinstance(r, Rate) and r.n_fit == 20
    assert abs(r.rate + 0.3) < 1e-12 and abs(r.intercept - math.log(5.0)) < 1e-12
    assert abs(r.r2 - 1.0) < 1e-12
    noisy = s * np.exp(np.random.default_rng(0).normal(0, 0.3, n.size))
    rn = log_linear_rate(n, noisy)
    assert 0.5 < rn.r2 < 1.0 - 1e-6 and abs(rn.rate + 0.3) < 0.1
    # entries at/below the floor and non-finite ones are left out of the fit
    t = s.copy()
    t[:5] = 0.0  # underflowed norms
    t[5] = np.nan
    t[6] = 1e-16
    rf = log_linear_rate(n, t, floor=1e-15)
    assert rf.n_fit == 13 and abs(rf.rate + 0.3) < 1e-12
    # constant ln y: rate 0 and R² defined as 1
    assert log_linear_rate(n, np.ones_like(n)).r2 == 1.0
    few = log_linear_rate(n, np.where(n < 2, s, 0.0))
    assert few.n_fit == 2 and all(math.isnan(v) for v in few[:3])


def test_log_linear_rate_matches_the_experiments_fit():
    rng = np.random.default_rng(1)
    s = np.exp(rng.normal(size=15)).astype(np.float32)
    s[3] = 0.0
    n = np.arange(s.size, dtype=float)[::-1]
    ok = np.isfinite(s) & (s > 1e-15)
    a, b = np.polyfit(n[ok], np.log(s[ok]), 1)
    r = log_linear_rate(n, s, floor=1e-15)
    assert (r.rate, r.intercept) == (float(a), float(b))


def test_gradient_decay_geometric_profile_closed_form_and_floor():
    # ‖∂L/∂x_k‖ = q^(L − k): ratio q^L, rate ln q per layer back-propagated through, R² = 1
    L, q = 12, 0.5
    s = (q ** np.arange(L + 1, dtype=float)[::-1]).astype(np.float32)
    d = gradient_decay(s)
    assert isinstance(d, GradientDecay) and d.ratio.dtype == np.float32
    assert d.ratio == np.float32(q**L) and abs(d.rate - math.log(q)) < 1e-6
    assert abs(d.r2 - 1.0) < 1e-12 and d.below_floor == 0
    # a batch of profiles: one entry per leading index; underflowed norms are counted and
    # left out; a zero last norm gives a NaN ratio
    rows = np.stack([s, np.where(np.arange(L + 1) < 4, 0.0, s), np.r_[s[:-1], 0.0]])
    b = gradient_decay(rows.reshape(3, 1, L + 1), floor=1e-15)
    assert b.rate.shape == b.ratio.shape == b.below_floor.shape == (3, 1)
    assert b.below_floor[:, 0].tolist() == [0, 4, 1]
    assert b.ratio[1, 0] == 0.0 and math.isnan(b.ratio[2, 0])
    assert abs(b.rate[1, 0] - math.log(q)) < 1e-6
    n = np.arange(L + 1, dtype=float)[::-1]
    assert b.rate[2, 0] == log_linear_rate(n, rows[2], floor=1e-15).rate
    with pytest.raises(ValueError, match="at least 2"):
        gradient_decay(np.ones(1))


def test_first_where_value_index_and_never():
    x = np.array([0.1, 0.3, 1.0, 3.0])
    assert first_where(x > 0.5, x) == 1.0 and isinstance(first_where(x > 0.5, x), float)
    assert first_where(np.array([False, True, True])) == 1
    assert first_where(x > 10, x) is None and first_where(np.zeros(3, bool)) is None
    with pytest.raises((ValueError, TypeError)):  # jaxtyping checks first under pytest
        first_where(x, x)
    with pytest.raises((ValueError, TypeError)):
        first_where(x > 0.5, x[:2])


def test_log_linear_rate_refuses_bad_input():
    n = np.arange(5.0)
    with pytest.raises(ValueError, match="floor"):
        log_linear_rate(n, np.exp(n), floor=-1.0)
    with pytest.raises((ValueError, TypeError)):
        log_linear_rate(n, np.exp(n)[:4])


def test_steps_to_tolerance_geometric_closed_form_and_never():
    k = np.arange(200)
    for q, tol in ((0.7, 1e-6), (0.9, 3e-4), (0.5, 1e-9)):
        expected = math.ceil(math.log(tol) / math.log(q))
        assert q**expected < tol <= q ** (expected - 1)  # no tie at the boundary
        assert steps_to_tolerance(q**k, tol) == expected
    # strictly below: a value equal to tol does not count
    assert steps_to_tolerance(0.5**k, 0.5**10) == 11
    # never below, and already below at step 0
    assert steps_to_tolerance(np.ones(10), 0.5) == np.inf
    assert steps_to_tolerance(np.full(10, 0.1), 0.5) == 0
    # must stay below: dipping under and coming back is not converged; the last value counts
    assert steps_to_tolerance(np.array([1.0, 0.1, 1.0, 0.1, 0.1]), 0.5) == 3
    assert steps_to_tolerance(np.array([1.0, 0.1, 0.1, 1.0]), 0.5) == np.inf
    # non-finite values count as not below
    assert steps_to_tolerance(np.array([0.1, np.nan, 0.1]), 0.5) == 2
    assert steps_to_tolerance(np.array([0.1, 0.1, -np.inf]), 0.5) == np.inf


def test_steps_to_tolerance_vectorised_over_rows_and_axis():
    k = np.arange(100)
    qs = np.array([0.5, 0.8, 1.0])
    runs = qs[:, None] ** k  # (3, 100)
    tol = 1e-3
    got = steps_to_tolerance(runs, tol)
    assert got.shape == (3,) and got.dtype == np.float64
    expected = [math.ceil(math.log(tol) / math.log(q)) for q in qs[:2]] + [np.inf]
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(steps_to_tolerance(runs.T, tol, axis=0), expected)
    batched = np.stack([runs, runs[::-1]])  # (2, 3, 100)
    np.testing.assert_array_equal(steps_to_tolerance(batched, tol), [expected, expected[::-1]])
    with pytest.raises(ValueError, match="empty"):
        steps_to_tolerance(np.zeros((3, 0)), tol)


def test_mean_stderr():
    x = np.array([1.0, 2.0, 3.0, 6.0])
    m = mean_stderr(x)
    assert isinstance(m, MeanStderr)
    assert m.mean == 3.0
    assert abs(m.stderr - math.sqrt(np.sum((x - 3.0) ** 2) / 3 / 4)) < 1e-15
    with pytest.raises(ValueError, match="2 samples"):
        mean_stderr(np.array([1.0]))


def test_steps_agree_counts_never_as_agreeing_with_never():
    inf = np.inf
    a = np.array([3.0, 3.0, 3.0, inf, inf, 5.0])
    b = np.array([3.0, 4.0, 5.0, inf, 4.0, 2.0])
    np.testing.assert_array_equal(steps_agree(a, b), [True, True, False, True, False, False])
    np.testing.assert_array_equal(steps_agree(a, b, within=3.0), [1, 1, 1, 1, 0, 1])
    # against a closed form: GD's ⌈ln(1/ε)/ln(1 + 2η)⌉ escape steps match themselves
    k = np.ceil(np.log(1e3) / np.log1p(2 * np.array([0.01, 0.1])))
    assert steps_agree(k, k + 1).all() and not steps_agree(k, k + 2).any()


def test_runs_of_a_mask_along_a_grid():
    x = np.arange(10) / 10
    mask = np.array([0, 1, 1, 0, 0, 1, 0, 1, 1, 1], bool)
    assert runs(x, mask) == [[0.1, 0.2], [0.5, 0.5], [0.7, 0.9]]
    assert runs(x, np.ones(10, bool)) == [[0.0, 0.9]]
    assert runs(x, np.zeros(10, bool)) == []
    with pytest.raises((ValueError, TypeError)):  # TypeError: the shape annotation in tests
        runs(x, mask[:5])


def test_rank_correlation_closed_forms():
    a = np.array([0.1, 2.0, 3.5, 40.0, 50.0])
    assert rank_correlation(a, np.exp(a)) == pytest.approx(1.0)  # monotone
    assert rank_correlation(a, -(a**3)) == pytest.approx(-1.0)
    assert rank_correlation(a, np.full(5, 2.0)) == 0.0  # constant: no association
    # ties take their average rank: b's ranks are [1, 2, 3.5, 5, 3.5]
    b = np.array([5.0, 6.0, 7.0, 8.0, 7.0])
    ra, rb = np.arange(1.0, 6.0), np.array([1, 2, 3.5, 5, 3.5])
    assert rank_correlation(a, b) == pytest.approx(np.corrcoef(ra, rb)[0, 1])
