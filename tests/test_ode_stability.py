"""Linear stability: R(z) against closed forms, stability intervals against the literature,
step-size bounds against closed forms, and regions against the actual diffrax solvers.

References: R(z) of explicit RK methods is the truncated exponential up to the order
(Hairer & Wanner, *Solving ODEs II*, §IV.2); RK4's real stability interval is
(−2.7853, 0) and its imaginary one [−2√2, 2√2]; DOPRI5's real interval is (−3.3066, 0)
(same book, Fig. IV.2.1).
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from terrain_jax.fields import LinearField
from terrain_jax.ode import (
    RESULTS,
    integrate,
    max_stable_step,
    real_stability_interval,
    region,
    stability_function,
    tableau,
)


def _random_z(getkey, n=64, scale=2.0):
    re = scale * jax.random.normal(getkey(), (n,))
    im = scale * jax.random.normal(getkey(), (n,))
    return np.asarray(jax.lax.complex(re, im)).astype(np.complex128)


def _R(solver, z):
    return np.asarray(stability_function(solver, np.asarray(z, dtype=np.complex128)))


def _rotation(lam: complex) -> LinearField:
    """``y' = λy`` for complex ``λ = a + ib`` on the real state ``(Re y, Im y)``."""
    a, b = lam.real, lam.imag
    return LinearField(jnp.array([[a, -b], [b, a]]))


def _solve_linear(lam: complex, solver: str, *, h: float, steps: int) -> np.ndarray:
    """Complex iterates ``y_0 = 1, y_1, …, y_steps`` of the real diffrax solver on y' = λy.

    Runs in float64 so the comparison with R(z) is not limited by float32 cancellation in
    large tableaus (Tsit5's coefficients reach ~10).
    """
    with jax.enable_x64(True):
        traj = integrate(
            _rotation(lam),
            jnp.array([1.0, 0.0]),
            t1=steps * h,
            steps=steps,
            solver=solver,
            saveat="steps",
        )
        assert traj.result == RESULTS.successful, traj.message()
        ys = np.asarray(traj.ys, dtype=np.float64)
    return ys[:, 0] + 1j * ys[:, 1]


def _R64(solver: str, z: complex) -> complex:
    """Float64 reference ``1 + z bᵀ(I − zA)⁻¹1`` straight from the extracted tableau."""
    tab = tableau(solver)
    k = len(tab.b)
    return complex(1 + z * (tab.b @ np.linalg.solve(np.eye(k) - z * tab.A, np.ones(k))))


def test_fixed_step_integrate_accepts_any_t1():
    traj = integrate(LinearField(jnp.array([[-1.0]])), jnp.array([1.0]), t1=0.1, steps=3)
    assert float(traj.y1[0]) == pytest.approx((1 - 0.1 / 3) ** 3, rel=1e-6)


# --- R(z) against closed forms ---------------------------------------------------------


def test_euler_stability_function_is_1_plus_z(getkey):
    z = _random_z(getkey)
    np.testing.assert_allclose(_R("euler", z), 1 + z, rtol=1e-6, atol=1e-6)


def test_rk4_stability_function_is_truncated_exponential(getkey):
    z = _random_z(getkey)
    expected = 1 + z + z**2 / 2 + z**3 / 6 + z**4 / 24
    np.testing.assert_allclose(_R("rk4", z), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("solver", ["heun", "midpoint", "ralston"])
def test_second_order_two_stage_methods_share_R(getkey, solver):
    z = _random_z(getkey)
    np.testing.assert_allclose(_R(solver, z), 1 + z + z**2 / 2, rtol=1e-5, atol=1e-5)


def test_implicit_euler_stability_function_is_1_over_1_minus_z(getkey):
    z = _random_z(getkey)
    z = z[np.abs(1 - z) > 0.2]  # keep away from the pole at z = 1
    np.testing.assert_allclose(_R("implicit_euler", z), 1 / (1 - z), rtol=1e-5, atol=1e-6)


# --- stability intervals and step-size bounds ------------------------------------------


def test_real_stability_interval_of_euler_is_minus_two_to_zero():
    a, b = real_stability_interval("euler")
    assert a == pytest.approx(-2.0, abs=1e-9)
    assert b == 0.0


def test_real_stability_interval_of_rk4_matches_literature():
    a, b = real_stability_interval("rk4")
    assert a == pytest.approx(-2.7853, abs=1e-4)  # Hairer & Wanner: 2.7853
    assert b == 0.0


def test_rk4_imaginary_axis_limit_is_two_root_two():
    # |R(iy)|² = 1 − y⁶/72 + y⁸/576 ≤ 1  ⇔  |y| ≤ 2√2
    assert max_stable_step("rk4", np.array([1j])) == pytest.approx(2 * math.sqrt(2), rel=1e-9)


def test_real_stability_interval_of_dopri5_matches_literature():
    a, _ = real_stability_interval("dopri5")
    assert a == pytest.approx(-3.3066, abs=1e-3)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gradient_descent_bound_is_two_over_lambda_max(seed):
    """GD on L = θᵀHθ/2 is Euler on θ' = −Hθ: stable iff η < 2/λ_max(H)."""
    rng = np.random.default_rng(seed)
    M = rng.normal(size=(6, 6))
    H = M @ M.T + 0.1 * np.eye(6)
    eigs = np.linalg.eigvalsh(H)
    eta = max_stable_step("euler", -eigs)
    assert eta == pytest.approx(2 / eigs.max(), rel=1e-9)

    # ... and the bound is sharp: iterate GD just below and just above it.
    theta0 = rng.normal(size=6)
    for factor, grows in [(0.98, False), (1.02, True)]:
        theta = theta0.copy()
        for _ in range(400):
            theta = theta - factor * eta * (H @ theta)
        assert (np.linalg.norm(theta) > np.linalg.norm(theta0)) == grows


def test_euler_max_step_on_complex_spectrum_matches_closed_form(getkey):
    """|1 + hλ| = 1  ⇔  h = −2 Re λ / |λ|², the bound is the smallest over the spectrum."""
    re = -jax.random.uniform(getkey(), (8,), minval=0.1, maxval=3.0)
    im = jax.random.normal(getkey(), (8,)) * 3.0
    lam = np.asarray(jax.lax.complex(re, im)).astype(np.complex128)
    per_eig = -2 * lam.real / np.abs(lam) ** 2
    for single, h in zip(lam, per_eig, strict=True):
        assert max_stable_step("euler", np.array([single])) == pytest.approx(h, rel=1e-9)
    assert max_stable_step("euler", lam) == pytest.approx(per_eig.min(), rel=1e-9)


@pytest.mark.parametrize("solver", ["implicit_euler", "kvaerno3", "kvaerno5"])
def test_a_stable_methods_have_no_step_limit_on_left_half_plane(getkey, solver):
    re = -jax.random.uniform(getkey(), (16,), minval=1e-3, maxval=1e3)
    im = jax.random.normal(getkey(), (16,)) * 100.0
    lam = np.asarray(jax.lax.complex(re, im)).astype(np.complex128)
    lam = np.concatenate([lam, [-1e4, -1e-3 + 10j, 1j]])  # stiff, oscillatory, imaginary
    assert max_stable_step(solver, lam) == math.inf
    assert real_stability_interval(solver) == (-math.inf, 0.0)


def test_explicit_methods_are_not_a_stable():
    lam = np.array([-1e4])
    for solver in ("euler", "heun", "rk4", "tsit5"):
        assert 0 < max_stable_step(solver, lam) < 1e-3


@pytest.mark.parametrize("solver", ["euler", "heun"])
def test_no_stable_step_on_imaginary_axis_gives_zero(solver):
    # |1 + iy| > 1 and |1 + iy − y²/2|² = 1 + y⁴/4 > 1 for every y ≠ 0
    assert max_stable_step(solver, np.array([1j])) == 0.0


def test_max_stable_step_ignores_zero_eigenvalues():
    assert max_stable_step("euler", np.array([0.0, -4.0])) == pytest.approx(0.5, rel=1e-9)
    assert max_stable_step("euler", np.array([0.0])) == math.inf


# --- region against |R| <= 1 and closed forms ------------------------------------------


@pytest.mark.parametrize("solver", ["euler", "heun", "rk4", "tsit5", "implicit_euler", "kvaerno5"])
def test_region_is_where_abs_R_at_most_one(solver):
    x, y = np.meshgrid(np.linspace(-6, 3, 61), np.linspace(-4, 4, 53))
    z = x + 1j * y
    inside = np.asarray(region(solver, z))
    absR = np.abs(_R(solver, z))
    assert inside.shape == z.shape and inside.dtype == bool
    clear = np.abs(absR - 1) > 1e-4  # away from the boundary, where float32 can't decide
    np.testing.assert_array_equal(inside[clear], absR[clear] <= 1)


def test_euler_region_is_the_unit_disk_around_minus_one():
    x, y = np.meshgrid(np.linspace(-3, 1, 81), np.linspace(-2, 2, 81))
    z = x + 1j * y
    clear = np.abs(np.abs(1 + z) - 1) > 1e-4
    np.testing.assert_array_equal(
        np.asarray(region("euler", z))[clear], (np.abs(1 + z) <= 1)[clear]
    )


# --- regions against the actual diffrax solvers ----------------------------------------

_H = 0.5
_STEPS = 12

# (solver, z = hλ, stable?) with the expectation worked out by hand from R(z).
_SIMULATION_CASES = [
    ("euler", -1 + 0.5j, True),  # |1 + z| = 0.5
    ("euler", -2.2 + 0j, False),  # |1 + z| = 1.2
    ("euler", 0.3j, False),  # |1 + z| = 1.044: oscillations grow under Euler
    ("rk4", -2.6 + 0j, True),  # R = 0.755
    ("rk4", -2.9 + 0j, False),  # R = 1.187
    ("rk4", 2.5j, True),  # inside |y| ≤ 2√2
    ("rk4", 3.0j, False),  # outside it
    ("tsit5", -3.3 + 0j, True),  # real interval (−3.507, 0)
    ("tsit5", -3.8 + 0j, False),
    ("implicit_euler", -0.5 + 3j, True),
    ("implicit_euler", 0.5 + 0j, False),  # |1/(1 − z)| = 2
    ("implicit_euler", 3.0 + 0j, True),  # |1/(1 − z)| = 0.5: decays although y' = λy grows
    ("kvaerno5", -50.0 + 0j, True),  # stiff decay
    ("kvaerno5", -1 + 8j, True),
    ("kvaerno5", 0.5 + 0j, False),  # R ≈ e^0.5
]


@pytest.mark.parametrize(("solver", "z", "stable"), _SIMULATION_CASES)
def test_region_predicts_decay_or_growth_of_the_actual_solver(solver, z, stable):
    """Integrate y' = λy with h = z/λ: iterates shrink inside the region, grow outside."""
    assert bool(region(solver, np.array([z]))[0]) == stable
    R = complex(_R(solver, np.array([z]))[0])

    ys = _solve_linear(z / _H, solver, h=_H, steps=_STEPS)
    # one step multiplies the state by R(z): the extracted tableau is the solver's step
    assert ys[1] / ys[0] == pytest.approx(_R64(solver, z), rel=1e-9, abs=1e-12)
    assert ys[1] / ys[0] == pytest.approx(R, rel=1e-4, abs=1e-6)  # library R, complex64
    norms = np.abs(ys)
    tracked = norms[:-1] > 1e-25
    np.testing.assert_allclose(norms[1:][tracked] / norms[:-1][tracked], abs(R), rtol=1e-4)
    if stable:
        assert norms[-1] < norms[0]
    else:
        assert norms[-1] > norms[0]


@pytest.mark.parametrize("lam", [-1.0 + 0j, -2.0 + 3.0j, 0.5 - 1.0j, -8.0 + 0.5j])
def test_tsit5_tableau_matches_one_diffrax_step(lam):
    """R(hλ) from the extracted tableau = y1/y0 of one real Tsit5 step."""
    h = 0.4
    ys = _solve_linear(lam, "tsit5", h=h, steps=1)
    ratio = ys[1] / ys[0]
    assert ratio == pytest.approx(complex(_R("tsit5", np.array([h * lam]))[0]), rel=1e-4)
    assert ratio == pytest.approx(_R64("tsit5", h * lam), rel=1e-10)
