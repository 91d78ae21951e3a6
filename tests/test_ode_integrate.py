"""``integrate``: convergence orders against closed forms, stiffness, adaptive stepping,
failure reporting (``RESULTS``), call counting, input validation, pytrees, and
jit / vmap / grad."""

import chex
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import numpy as np
import pytest
import scipy.linalg
from helpers import tree_allclose
from jax.flatten_util import ravel_pytree

from terrain_jax.fields import GradientField, HamiltonianField, LinearField, MLPField
from terrain_jax.ode import RESULTS, STATUS, Trajectory, count_calls, integrate, nfe_per_step

# ``integrate`` compiled as a whole: eager calls pay for many small op compilations.
jintegrate = eqx.filter_jit(integrate)

# Rotation plus decay: eigenvalues -0.5 ± 2i. The reference for linear problems is expm.
A_ROT = np.array([[-0.5, 2.0], [-2.0, -0.5]])
Y0_ROT = np.array([1.0, 0.5])


@pytest.fixture
def x64():
    """Double precision, so that round-off does not flatten high-order slopes."""
    with jax.enable_x64(True):
        yield


def _slope(hs, errs) -> float:
    """Least-squares slope of log(error) against log(h): the observed order."""
    return float(np.polyfit(np.log(np.asarray(hs)), np.log(np.asarray(errs)), 1)[0])


def _nonlinear(t, y, args):
    """y' = -2 t y², y(0) = 1: nonlinear and non-autonomous, y(t) = 1 / (1 + t²)."""
    return -2.0 * t * y**2


NL_T1 = 2.0
NL_EXACT = 1.0 / (1.0 + NL_T1**2)


def linear_errors(solver: str, steps: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Errors of fixed-step solves of y' = A y on [0, 1] against expm(A) y0 (float64)."""
    field = LinearField(jnp.asarray(A_ROT))
    y0 = jnp.asarray(Y0_ROT)
    ref = scipy.linalg.expm(A_ROT) @ Y0_ROT
    solve_all = jax.jit(lambda: [integrate(field, y0, solver=solver, steps=n) for n in steps])
    trajs = solve_all()
    for tr in trajs:
        assert tr.result == RESULTS.successful
    errs = np.array([np.max(np.abs(np.asarray(tr.y1) - ref)) for tr in trajs])
    return 1.0 / np.asarray(steps), errs


def nonlinear_errors(solver: str, steps: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Errors of fixed-step solves of y' = -2 t y² on [0, 2] against 1/(1+t²) (float64)."""
    y0 = jnp.ones(1)
    solve_all = jax.jit(
        lambda: [integrate(_nonlinear, y0, t1=NL_T1, solver=solver, steps=n) for n in steps]
    )
    trajs = solve_all()
    for tr in trajs:
        assert tr.result == RESULTS.successful
    errs = np.array([abs(float(tr.y1[0]) - NL_EXACT) for tr in trajs])
    return NL_T1 / np.asarray(steps), errs


# (solver, step counts, expected order, tolerance on the slope); a tolerance of None
# means "at least expected": tsit5 (order 5) shows super-convergence here (slope ≈ 5.5).
# The nonlinear non-autonomous problem checks every order condition up to order 4 (for
# scalar problems they coincide with the vector ones up to order 4) and the nodes c; the
# linear one (against expm) covers the first-order and the implicit solvers. Every
# tableau's order conditions are also checked algebraically in test_solvers.py.
LINEAR_CASES = [
    ("euler", (32, 64, 128), 1.0, 0.2),
    ("implicit_euler", (32, 64, 128), 1.0, 0.2),
    ("kvaerno3", (8, 16, 32), 3.0, 0.2),
]
NONLINEAR_CASES = [
    ("midpoint", (16, 32, 64), 2.0, 0.2),
    ("heun", (16, 32, 64), 2.0, 0.2),
    ("ralston", (16, 32, 64), 2.0, 0.2),
    ("rk4", (8, 16, 32), 4.0, 0.2),
    ("tsit5", (4, 8, 16), 4.8, None),
]


def _check_order(hs, errs, order, tol):
    # stay well above float64 round-off, so the slope measures truncation error
    assert np.all(errs > 1e-11), errs
    # error shrinks monotonically with h
    assert np.all(np.diff(errs) < 0), errs
    slope = _slope(hs, errs)
    if tol is None:
        assert slope >= order, slope
    else:
        assert abs(slope - order) <= tol, slope


@pytest.mark.parametrize(("solver", "steps", "order", "tol"), LINEAR_CASES)
def test_convergence_order_linear(x64, solver, steps, order, tol):
    hs, errs = linear_errors(solver, steps)
    _check_order(hs, errs, order, tol)


@pytest.mark.parametrize(("solver", "steps", "order", "tol"), NONLINEAR_CASES)
def test_convergence_order_nonlinear_nonautonomous(x64, solver, steps, order, tol):
    hs, errs = nonlinear_errors(solver, steps)
    _check_order(hs, errs, order, tol)


def test_kvaerno3_fixed_steps_nonlinear(x64):
    tr = jintegrate(_nonlinear, jnp.ones(1), t1=NL_T1, solver="kvaerno3", steps=16)
    assert tr.result == RESULTS.successful
    # Kvaerno3 with an optx.Newton(rtol=atol=1e-6) root finder reaches 2.7e-6 here
    assert abs(float(tr.y1[0]) - NL_EXACT) < 1e-5


# --------------------------------------------------------------------------- stiffness

LAM_FAST, LAM_SLOW = -1000.0, -1.0
STIFF_H, STIFF_STEPS = 0.1, 50  # |1 + h λ_fast| = 99 > 1: explicit Euler is unstable


def _stiff_matrix() -> np.ndarray:
    th = 0.3
    Q = np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
    return Q @ np.diag([LAM_FAST, LAM_SLOW]) @ Q.T  # symmetric negative definite


def _stiff_solve(solver, dtype=jnp.float32, **kw):
    A = _stiff_matrix()
    return jintegrate(
        LinearField(jnp.asarray(A, dtype)),
        jnp.array([1.0, 1.0], dtype),
        t1=STIFF_H * STIFF_STEPS,
        solver=solver,
        steps=STIFF_STEPS,
        saveat="steps",
        **kw,
    )


def test_stiff_explicit_euler_diverges_and_says_so():
    assert abs(1 + STIFF_H * LAM_FAST) > 1
    tr = _stiff_solve("euler")
    # 99^50 overflows float32: the run must be flagged, not returned as a number
    assert tr.result == RESULTS.diverged
    with pytest.raises(AssertionError):
        chex.assert_tree_all_finite(tr.ys)
    assert not bool(tr.ok)
    assert not np.all(np.isfinite(np.asarray(tr.y1)))
    assert "diverged" in tr.message()
    with pytest.raises(RuntimeError, match="diverged"):
        tr.raise_if_failed()
    with pytest.raises(eqx.EquinoxRuntimeError, match="diverged"):
        _stiff_solve("euler", throw=True)


def test_stiff_implicit_euler_is_stable_and_exact_for_linear():
    A = _stiff_matrix()
    tr = _stiff_solve("implicit_euler")
    assert tr.result == RESULTS.successful
    # backward Euler on y' = A y is y_{n+1} = (I - hA)^{-1} y_n, exactly
    M = np.linalg.inv(np.eye(2) - STIFF_H * A)
    y, expected = np.array([1.0, 1.0]), [np.array([1.0, 1.0])]
    for _ in range(STIFF_STEPS):
        y = M @ y
        expected.append(y)
    np.testing.assert_allclose(np.asarray(tr.ys), np.array(expected), rtol=1e-4, atol=1e-7)
    norms = np.linalg.norm(np.asarray(tr.ys), axis=1)
    assert np.all(np.diff(norms) < 0)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_stiff_kvaerno5_is_stable_and_accurate(dtype):
    A = _stiff_matrix()
    with jax.enable_x64(dtype == "float64"):
        tr = _stiff_solve("kvaerno5", dtype=jnp.dtype(dtype))
    assert tr.result == RESULTS.successful
    chex.assert_tree_all_finite(tr.ys)
    norms = np.linalg.norm(np.asarray(tr.ys), axis=1)
    assert np.all(np.diff(norms) < 0)
    # L-stable: the fast mode is damped away, the slow one is followed accurately
    ref = scipy.linalg.expm(STIFF_H * STIFF_STEPS * A) @ np.array([1.0, 1.0])
    np.testing.assert_allclose(np.asarray(tr.y1), ref, atol=1e-5)


# ---------------------------------------------------------------------------- adaptive


@pytest.mark.parametrize("solver", ["tsit5", "dopri5"])
def test_adaptive_reaches_expm_within_tolerance(x64, solver):
    field = LinearField(jnp.asarray(A_ROT))
    ref = scipy.linalg.expm(A_ROT) @ Y0_ROT
    first, later = nfe_per_step(solver)
    errs = []
    for tol in (1e-6, 1e-9):
        tr = jintegrate(field, jnp.asarray(Y0_ROT), solver=solver, rtol=tol, atol=tol)
        assert tr.result == RESULTS.successful
        n = int(tr.num_steps)
        assert n > 0
        assert 0 < int(tr.num_accepted) <= n
        assert int(tr.nfe) == first + later * (n - 1)
        err = float(np.max(np.abs(np.asarray(tr.y1) - ref)))
        # measured err/tol is about 0.3-1.1 for both solvers on this problem
        assert err < 10 * tol, (tol, err)
        errs.append((err, n))
    # tighter tolerance: smaller error, more steps
    assert errs[1][0] < errs[0][0] / 100
    assert errs[1][1] > errs[0][1]


def _counting_field():
    """LinearField(A_ROT) that counts its evaluations on the host."""
    return count_calls(LinearField(jnp.asarray(A_ROT)))


@pytest.mark.parametrize(
    ("solver", "kw"),
    [
        ("rk4", dict(steps=7)),
        # dt0 given (no initial step-size search) and small enough that no step is rejected
        ("tsit5", dict(rtol=1e-6, atol=1e-6, dt0=0.05)),
    ],
)
def test_nfe_matches_counted_evaluations(x64, solver, kw):
    f, count = _counting_field()
    tr = jintegrate(f, jnp.asarray(Y0_ROT), solver=solver, **kw)
    jax.block_until_ready(tr.ys)
    jax.effects_barrier()
    assert int(tr.num_accepted) == int(tr.num_steps)  # precondition: no rejections
    assert int(tr.nfe) == count.evals
    assert count.vjps == 0


def test_nfe_matches_counted_evaluations_with_rejections(x64):
    f, count = _counting_field()
    tr = jintegrate(f, jnp.asarray(Y0_ROT), solver="tsit5", rtol=1e-6, atol=1e-6, dt0=1.0)
    jax.block_until_ready(tr.ys)
    jax.effects_barrier()
    assert int(tr.num_accepted) < int(tr.num_steps)  # precondition: some rejections
    assert int(tr.nfe) == count.evals


def test_counter_measure_resets_and_counts_one_call(x64):
    """``measure`` returns the output and exactly the evaluations of that one call, however
    many ran before (7 RK4 steps: 28 stages, on every repeat)."""
    f, count = _counting_field()
    solve = jax.jit(lambda y0: integrate(f, y0, solver="rk4", steps=7))
    for _ in range(2):
        tr, evals = count.measure(solve, jnp.asarray(Y0_ROT))
        assert evals == count.evals == int(tr.nfe) == 28


@pytest.mark.parametrize(("solver", "stages"), [("euler", 1), ("rk4", 4)])
def test_counted_vjps_of_a_fixed_step_gradient(x64, solver, stages):
    """With ``vjps=True`` a reverse pass through 7 fixed steps adds one field VJP per stage
    (the VJPs transpose what the forward kept). Evaluations: the forward's, plus one
    re-run per stage for multi-stage solvers, whose Runge--Kutta stage loop diffrax
    checkpoints. The gradient is that of the bare field."""
    field = LinearField(jnp.asarray(A_ROT))
    counted, count = count_calls(field, vjps=True)

    def loss(f, y0):
        return jnp.sum(integrate(f, y0, solver=solver, steps=7).y1 ** 2)

    y0 = jnp.asarray(Y0_ROT)
    g = jax.jit(jax.grad(loss, argnums=1))(counted, y0)
    jax.block_until_ready(g)
    jax.effects_barrier()
    n = 7 * stages
    assert (count.evals, count.vjps) == ((n if stages == 1 else 2 * n), n)
    np.testing.assert_allclose(g, jax.jit(jax.grad(loss, argnums=1))(field, y0), rtol=1e-12)
    count.reset()
    assert (count.evals, count.vjps) == (0, 0)


def test_every_result_has_a_message_and_a_code():
    members = [
        RESULTS.successful,
        RESULTS.max_steps_reached,
        RESULTS.diverged,
        RESULTS.solver_failed,
    ]
    assert len(RESULTS) == len(members) == len(STATUS)
    for code, member in enumerate(members):
        assert RESULTS[member], member
        assert STATUS[code] == RESULTS[member]
        # a Trajectory with that status code reads back as that member, with its message
        tr = Trajectory(
            ts=jnp.zeros(1),
            ys=jnp.zeros((1, 2)),
            num_steps=jnp.asarray(1),
            num_accepted=jnp.asarray(1),
            nfe=jnp.asarray(1),
            status=jnp.asarray(code, jnp.int32),
        )
        assert tr.result == member
        assert tr.message() == RESULTS[member]
        assert bool(tr.ok) == (code == 0)
    assert RESULTS[RESULTS.successful] == "success"


def test_rk4_order_four_on_exponential_decay(x64):
    """RK4 on ``y' = -y`` over [0, 1]: the log-log slope of the error against ``h`` is 4."""
    steps = (4, 8, 16, 32)
    solve_all = jax.jit(
        lambda: [integrate(lambda t, y, a: -y, jnp.ones(1), solver="rk4", steps=n) for n in steps]
    )
    errs = np.array([abs(float(tr.y1[0]) - np.exp(-1.0)) for tr in solve_all()])
    _check_order(1.0 / np.asarray(steps), errs, 4.0, 0.1)


def test_max_steps_reported_and_raised():
    field = LinearField(jnp.asarray(A_ROT, jnp.float32))
    y0 = jnp.asarray(Y0_ROT, jnp.float32)
    tr = jintegrate(field, y0, solver="tsit5", rtol=1e-7, atol=1e-7, max_steps=3)
    assert tr.result == RESULTS.max_steps_reached
    assert int(tr.num_steps) == 3
    assert "max_steps" in tr.message()
    with pytest.raises(RuntimeError, match="max_steps"):
        tr.raise_if_failed()
    with pytest.raises(eqx.EquinoxRuntimeError, match="max_steps"):
        jintegrate(field, y0, solver="tsit5", rtol=1e-7, atol=1e-7, max_steps=3, throw=True)


# -------------------------------------------------------------------------- validation


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_y0_refused(bad):
    f = lambda t, y, a: -y
    with pytest.raises(ValueError, match="non-finite"):
        integrate(f, jnp.array([1.0, bad]), steps=2)
    with pytest.raises(ValueError, match="non-finite"):
        integrate(
            lambda t, y, a: jtu.tree_map(jnp.negative, y),
            {"a": jnp.ones(2), "b": jnp.array([bad])},
            steps=2,
        )


def test_non_finite_y0_refused_under_jit():
    solve = eqx.filter_jit(lambda y: integrate(lambda t, y, a: -y, y, steps=2).y1)
    np.testing.assert_allclose(solve(jnp.ones(2)), 0.25)  # (1 - 1/2)^2
    with pytest.raises(eqx.EquinoxRuntimeError, match="non-finite"):
        jax.block_until_ready(solve(jnp.array([1.0, jnp.nan])))


def test_argument_validation():
    f = lambda t, y, a: -y
    y0 = jnp.ones(2)
    with pytest.raises(ValueError, match="not both"):
        integrate(f, y0, steps=4, rtol=1e-3)
    with pytest.raises(ValueError, match="not both"):
        integrate(f, y0, steps=4, atol=1e-3)
    with pytest.raises(ValueError, match="steps=N"):
        integrate(f, y0)
    with pytest.raises(ValueError, match="positive integer"):
        integrate(f, y0, steps=0)
    with pytest.raises(ValueError, match="fixed steps"):
        integrate(f, y0, solver="tsit5", rtol=1e-3, atol=1e-3, saveat="steps")
    with pytest.raises(ValueError, match="adjoint"):
        integrate(f, y0, steps=2, adjoint="magic")
    with pytest.raises(ValueError, match="empty pytree"):
        integrate(f, {}, steps=2)


@pytest.mark.parametrize("solver", ["rk4", "euler"])
def test_adaptive_without_error_estimate_refused(solver):
    with pytest.raises(ValueError, match="no error estimate"):
        jintegrate(lambda t, y, a: -y, jnp.ones(2), solver=solver, rtol=1e-4, atol=1e-6)


# ------------------------------------------------------------- pytrees and transforms


def test_pytree_state_dict_and_tuple():
    A = jnp.asarray(A_ROT, jnp.float32)
    k = jnp.array([0.5, 1.0, 2.0])

    def f_dict(t, y, args):
        return {"rot": y["rot"] @ A.T, "decay": -k * y["decay"]}

    y0 = {"rot": jnp.asarray(Y0_ROT, jnp.float32), "decay": jnp.ones(3)}
    tr = jintegrate(f_dict, y0, solver="rk4", steps=20, saveat="steps")
    assert set(tr.ys) == {"rot", "decay"}
    chex.assert_shape([tr.ys["rot"], tr.ys["decay"]], [(21, 2), (21, 3)])
    np.testing.assert_allclose(
        tr.y1["rot"], scipy.linalg.expm(A_ROT) @ Y0_ROT, rtol=1e-5, atol=1e-6
    )
    np.testing.assert_allclose(tr.y1["decay"], np.exp(-np.asarray(k)), rtol=1e-5)

    def f_tuple(t, y, args):
        return (y[0] @ A.T, -k * y[1])

    tr_t = jintegrate(f_tuple, (y0["rot"], y0["decay"]), solver="rk4", steps=20)
    assert isinstance(tr_t.y1, tuple)
    chex.assert_trees_all_close(tr_t.y1, (tr.y1["rot"], tr.y1["decay"]), rtol=1e-6)


def test_jit_matches_eager():
    field = LinearField(jnp.asarray(A_ROT, jnp.float32))
    y0 = jnp.asarray(Y0_ROT, jnp.float32)
    eager = integrate(field, y0, solver="heun", steps=10).y1
    jitted = jax.jit(lambda y: integrate(field, y, solver="heun", steps=10).y1)(y0)
    np.testing.assert_allclose(jitted, eager, rtol=1e-6, atol=1e-7)


def test_vmap_over_y0(getkey):
    field = LinearField(jnp.asarray(A_ROT, jnp.float32))
    Y0 = jax.random.normal(getkey(), (5, 2))
    batched = jax.jit(jax.vmap(lambda y: integrate(field, y, solver="rk4", steps=20).y1))(Y0)
    assert batched.shape == (5, 2)
    ref = np.asarray(Y0) @ scipy.linalg.expm(A_ROT).T
    np.testing.assert_allclose(batched, ref, rtol=1e-4, atol=1e-5)
    one = jintegrate(field, Y0[3], solver="rk4", steps=20).y1
    np.testing.assert_allclose(batched[3], one, rtol=1e-6, atol=1e-7)


# One rk4 solve of y' = -k y per k, vmapped over k passed through ``args``; k = -2000
# makes |R(-k h)| ≈ 2.6e5 per step, which overflows float32 within 20 steps.
_solve_decays = jax.jit(
    jax.vmap(
        lambda k: integrate(lambda t, y, a: -a * y, jnp.ones(2), solver="rk4", steps=20, args=k)
    )
)
DECAY_KS = jnp.array([0.1, 0.5, 1.0, 3.0, -2000.0])


def test_vmap_over_args_and_batched_status():
    trs = _solve_decays(DECAY_KS)
    assert trs.status.shape == (5,)
    np.testing.assert_array_equal(
        np.asarray(trs.result == RESULTS.diverged), [False, False, False, False, True]
    )
    np.testing.assert_array_equal(np.asarray(trs.ok), [True, True, True, True, False])
    assert trs.ys.shape == (5, 1, 2)
    # 20 RK4 steps of y' = -k y multiply y by R(-k h)^20, R(z) = Σ_{j≤4} z^j / j!
    z = -np.asarray(DECAY_KS[:4], np.float64) / 20
    expected = (1 + z + z**2 / 2 + z**3 / 6 + z**4 / 24) ** 20
    np.testing.assert_allclose(trs.ys[:4, -1], expected[:, None] * np.ones(2), rtol=1e-5)
    # and that is exp(-k) up to RK4's truncation error (≤ 20 (kh)⁵/120 ≈ 1.3e-5)
    np.testing.assert_allclose(expected, np.exp(-np.asarray(DECAY_KS[:4], np.float64)), rtol=2e-5)
    # a batched result reports every failure
    msg = trs.message()
    assert "success" in msg and "diverged" in msg
    with pytest.raises(RuntimeError, match="diverged"):
        trs.raise_if_failed()


def test_y1_of_a_vmapped_trajectory():
    trs = _solve_decays(DECAY_KS)
    assert trs.y1.shape == (5, 2)


def _to_float64(tree):
    return jtu.tree_map(lambda a: a.astype(jnp.float64) if eqx.is_inexact_array(a) else a, tree)


def _central_fd(fun, x, eps=1e-6):
    """Central finite differences of scalar fun at flat x, vmapped over directions."""
    basis = jnp.eye(x.size, dtype=x.dtype)
    return jax.vmap(lambda e: (fun(x + eps * e) - fun(x - eps * e)) / (2 * eps))(basis)


def test_euler_grad_wrt_y0_matches_fd_and_closed_form(x64):
    field = LinearField(jnp.asarray(A_ROT))
    w = jnp.array([0.3, -1.2])
    n = 10

    def loss(y0):
        return jnp.dot(w, integrate(field, y0, solver="euler", steps=n).y1)

    y0 = jnp.asarray(Y0_ROT)
    g, fd = jax.jit(lambda x: (jax.grad(loss)(x), _central_fd(loss, x)))(y0)
    np.testing.assert_allclose(g, fd, rtol=1e-7)
    # Euler: y_N = (I + hA)^N y0, so the gradient of w·y_N is ((I + hA)^N)^T w
    M = np.linalg.matrix_power(np.eye(2) + A_ROT / n, n)
    np.testing.assert_allclose(g, M.T @ np.asarray(w), rtol=1e-12)


def test_euler_grad_wrt_field_parameters_matches_fd(x64, getkey):
    with jax.enable_x64(False):  # same float32 init as the other tests' fields, then cast
        field32 = MLPField(3, 8, key=getkey())
    field = _to_float64(field32)
    y0 = jnp.array([1.0, 0.5, -0.3])
    flat, unravel = ravel_pytree(field)
    assert flat.dtype == jnp.float64 and flat.size == 3 * 8 + 8 + 8 * 3 + 3

    def loss(f):
        return jnp.sum(jnp.sin(integrate(f, y0, solver="euler", steps=8).y1))

    @eqx.filter_jit
    def grad_and_fd(f):
        return eqx.filter_grad(loss)(f), _central_fd(lambda p: loss(unravel(p)), flat)

    g, fd = grad_and_fd(field)
    g_flat = ravel_pytree(g)[0]
    assert float(jnp.max(jnp.abs(g_flat))) > 1e-2  # not trivially zero
    np.testing.assert_allclose(g_flat, fd, rtol=1e-6, atol=1e-9)


def test_adaptive_grad_wrt_y0_matches_expm(x64):
    field = LinearField(jnp.asarray(A_ROT))
    w = jnp.array([0.3, -1.2])

    def loss(y0):
        tr = integrate(field, y0, solver="tsit5", rtol=1e-9, atol=1e-9)
        return jnp.dot(w, tr.y1)

    g = jax.jit(jax.grad(loss))(jnp.asarray(Y0_ROT))
    # d/dy0 of w·expm(A) y0 is expm(A)^T w
    np.testing.assert_allclose(g, scipy.linalg.expm(A_ROT).T @ np.asarray(w), atol=1e-7)


# ----------------------------------------------------------------------------- saveat


def test_saveat_steps_returns_every_step():
    A = jnp.asarray(A_ROT, jnp.float32)
    y0 = jnp.asarray(Y0_ROT, jnp.float32)
    n, t0, t1 = 6, 0.5, 2.0
    tr = jintegrate(LinearField(A), y0, t0=t0, t1=t1, solver="euler", steps=n, saveat="steps")
    assert tr.ts.shape == (n + 1,)
    assert tr.ys.shape == (n + 1, 2)
    np.testing.assert_allclose(tr.ts, np.linspace(t0, t1, n + 1), rtol=1e-6)
    # row k is k explicit Euler steps
    h = (t1 - t0) / n
    y, expected = np.asarray(y0), []
    for _ in range(n + 1):
        expected.append(y)
        y = y + h * np.asarray(A) @ y
    np.testing.assert_allclose(tr.ys, np.array(expected), rtol=1e-5, atol=1e-6)
    assert int(tr.num_steps) == n and int(tr.nfe) == n


def test_saveat_array_of_times(x64):
    times = jnp.array([0.1, 0.35, 0.8, 1.3, 2.0])
    tr = jintegrate(
        LinearField(jnp.asarray(A_ROT)),
        jnp.asarray(Y0_ROT),
        t1=2.0,
        solver="tsit5",
        rtol=1e-9,
        atol=1e-9,
        saveat=times,
    )
    np.testing.assert_array_equal(tr.ts, times)
    assert tr.ys.shape == (5, 2)
    ref = np.stack([scipy.linalg.expm(float(t) * A_ROT) @ Y0_ROT for t in times])
    # off-grid times are dense-output interpolants: accurate to about the tolerance
    np.testing.assert_allclose(tr.ys, ref, atol=1e-7)


# ------------------------------------------------------------------ Hamiltonian fields


def _oscillator_energy(q, p):
    return 0.5 * jnp.sum(p**2, axis=-1) + 0.5 * jnp.sum(q**2, axis=-1)


def _rk4_step_matrix(M: np.ndarray, h: float) -> np.ndarray:
    """One RK4 step on the linear system x' = M x is x ↦ R(hM) x, R(z) = Σ_{k≤4} z^k / k!."""
    Z = h * M
    Z2 = Z @ Z
    return np.eye(len(M)) + Z + Z2 / 2 + Z2 @ Z / 6 + Z2 @ Z2 / 24


def _oscillator_matrix(gamma: float) -> np.ndarray:
    """(q, p)' for H = ½|p|² + ½|q|² with damping γ, q, p in R²."""
    return np.block([[np.zeros((2, 2)), np.eye(2)], [-np.eye(2), -gamma * np.eye(2)]])


Y0_OSC = (np.array([1.0, 0.0]), np.array([0.0, 2.0]))


def _rk4_oscillator(gamma, n, T):
    field = HamiltonianField(lambda q, p: 0.5 * jnp.sum(p**2) + 0.5 * jnp.sum(q**2), gamma)
    y0 = tuple(jnp.asarray(x) for x in Y0_OSC)
    tr = jintegrate(field, y0, t1=T, solver="rk4", steps=n, saveat="steps")
    assert tr.result == RESULTS.successful
    # the discrete solution, exactly: x_k = R(hM)^k x_0
    S = _rk4_step_matrix(_oscillator_matrix(gamma), T / n)
    x, xs = np.concatenate(Y0_OSC), []
    for _ in range(n + 1):
        xs.append(x)
        x = S @ x
    np.testing.assert_allclose(
        np.concatenate([tr.ys[0], tr.ys[1]], axis=1), np.array(xs), rtol=1e-10, atol=1e-12
    )
    return tr


def test_hamiltonian_oscillator_conserves_energy_with_rk4(x64):
    n, T = 100, 10.0
    h = T / n
    tr = _rk4_oscillator(0.0, n, T)
    E = np.asarray(_oscillator_energy(*tr.ys))
    E0 = E[0]
    # RK4 multiplies the energy by |R(ih)|² = 1 - h⁶/72 + O(h⁸) per step: drift ≈ 1.4e-6
    assert np.max(np.abs(E / E0 - 1)) < 2 * n * h**6 / 72
    z = 1j * h
    R2 = abs(1 + z + z**2 / 2 + z**3 / 6 + z**4 / 24) ** 2
    np.testing.assert_allclose(E, E0 * R2 ** np.arange(n + 1), rtol=1e-12)
    # the flow is the rotation q(t) = q0 cos t + p0 sin t; RK4's phase error per step is
    # h⁵/120, so after n steps the error is about |p0| n h⁵/120 = 1.7e-5
    np.testing.assert_allclose(tr.y1[0], [np.cos(T), 2 * np.sin(T)], atol=2 * 2 * n * h**5 / 120)


def test_damped_hamiltonian_energy_decreases_monotonically(x64):
    gamma, n, T = 0.3, 100, 10.0
    tr = _rk4_oscillator(gamma, n, T)
    E = np.asarray(_oscillator_energy(*tr.ys))
    assert np.all(np.diff(E) < 0)
    assert E[-1] < 0.1 * E[0]
    # q'' + γ q' + q = 0 is linear: the flow is expm(T M), matched to RK4 accuracy
    ref = scipy.linalg.expm(T * _oscillator_matrix(gamma)) @ np.concatenate(Y0_OSC)
    np.testing.assert_allclose(np.concatenate(tr.y1), ref, atol=1e-5)


# --------------------------------------------------------------------- gradient fields


def _potential(theta):
    return 0.5 * jnp.sum(theta["w"] ** 2 * jnp.array([1.0, 3.0, 0.5])) + 0.25 * (
        theta["b"] ** 4 + theta["b"] ** 2
    )


def test_euler_on_gradient_field_is_gradient_descent():
    eta, k = 0.1, 5
    theta0 = {"w": jnp.array([1.0, -2.0, 0.5]), "b": jnp.array(1.5)}
    tr = jintegrate(
        GradientField(_potential), theta0, t1=eta * k, solver="euler", steps=k, saveat="steps"
    )

    @jax.jit
    def gd_step(theta):  # plain gradient descent, written out
        return jtu.tree_map(lambda a, g: a - eta * g, theta, jax.grad(_potential)(theta))

    theta = theta0
    for i in range(k + 1):
        row = jtu.tree_map(lambda y, i=i: np.asarray(y)[i], tr.ys)
        assert tree_allclose(row, theta, rtol=1e-5, atol=1e-6), i
        theta = gd_step(theta)


def test_gradient_field_with_args_is_gradient_descent():
    eta, k = 0.2, 4
    target = jnp.array([2.0, -1.0])
    pot = lambda th, tgt: jnp.sum((th - tgt) ** 2)
    tr = jintegrate(
        GradientField(pot, takes_args=True),
        jnp.zeros(2),
        t1=eta * k,
        solver="euler",
        steps=k,
        args=target,
    )
    # theta <- theta - eta * 2 (theta - target): the gap shrinks by (1 - 2 eta) per step
    expected = target - (1 - 2 * eta) ** k * target
    np.testing.assert_allclose(tr.y1, expected, rtol=1e-5)


@pytest.mark.parametrize("solver", ["euler", "heun", "rk4", "tsit5"])
@pytest.mark.parametrize("saveat", ["t1", "steps"])
def test_fixed_step_scan_path_equals_diffeqsolve(getkey, solver, saveat):
    """Default fixed-step explicit solves run the diffrax solver's steps in a lax.scan;
    adjoint='direct' forces diffrax.diffeqsolve. Same trajectory, same gradient, same
    step and NFE counts."""
    field = MLPField(3, 8, key=getkey(), time=True)
    y0 = jax.random.normal(getkey(), (4, 3))

    def run(f, adjoint):
        return integrate(f, y0, t1=0.7, solver=solver, steps=6, saveat=saveat, adjoint=adjoint)

    fast, ref = eqx.filter_jit(run)(field, None), eqx.filter_jit(run)(field, "direct")
    np.testing.assert_allclose(fast.ts, ref.ts, rtol=1e-6)
    np.testing.assert_allclose(fast.ys, ref.ys, rtol=1e-5, atol=1e-6)
    assert int(fast.num_steps) == int(ref.num_steps) == 6
    assert int(fast.nfe) == int(ref.nfe) and int(fast.status) == int(ref.status)
    assert fast.result == RESULTS.successful

    def loss(f, adjoint):
        return jnp.sum(run(f, adjoint).y1 ** 2)

    g_fast = eqx.filter_jit(eqx.filter_grad(loss))(field, None)
    g_ref = eqx.filter_jit(eqx.filter_grad(loss))(field, "direct")
    assert tree_allclose(g_fast, g_ref, rtol=1e-4, atol=1e-6)


def test_backsolve_adjoint_gradient_matches_checkpoint(steps=20):
    """The continuous (backsolve) adjoint gives the discretise-then-optimise gradient with
    fixed steps (a constant step, not a StepTo grid, which diffrax cannot reverse); the
    adaptive backsolve is checked in test_node against our explicit adjoint."""
    A = jnp.array([[-1.0, 0.5], [0.0, -2.0]])

    def loss(a, adjoint):
        kw = {"steps": steps} if steps else {"rtol": 1e-7, "atol": 1e-7}
        tr = integrate(
            lambda t, y, a: a @ y,
            jnp.ones(2),
            t1=1.0,
            solver="tsit5",
            args=a,
            adjoint=adjoint,
            **kw,
        )
        return jnp.sum(tr.y1**2)

    g_ck = jax.grad(loss)(A, "checkpoint")
    g_bs = jax.grad(loss)(A, "backsolve")
    assert jnp.allclose(g_bs, g_ck, rtol=1e-4, atol=1e-6), (g_bs, g_ck)
    # and both are the true gradient of ‖e^{A} 1‖² (finite differences in float32 at 1e-2)
    E = jnp.eye(4).reshape(4, 2, 2)
    fd = jnp.stack(
        [(loss(A + 1e-2 * e, "checkpoint") - loss(A - 1e-2 * e, "checkpoint")) / 2e-2 for e in E]
    )
    assert jnp.allclose(g_ck.ravel(), fd, rtol=2e-3, atol=1e-4)
