"""Solver names -> diffrax solvers, the RK4 tableau diffrax lacks, and Butcher tableaus.

``get_solver("rk4")`` returns a diffrax solver instance; ``tableau(solver)`` returns the
full Butcher tableau ``(A, b, c)`` of any Runge--Kutta solver we name (explicit or
implicit), which is what :mod:`terrain_jax.stability` needs.
"""

from collections.abc import Callable
from typing import ClassVar, NamedTuple

import diffrax as dfx
import jax.numpy as jnp
import numpy as np
import optimistix as optx

__all__ = [
    "has_error_estimate",
    "implicit_root_finder",
    "RK4",
    "SOLVERS",
    "Tableau",
    "get_solver",
    "solver_name",
    "tableau",
    "is_implicit",
]


_rk4_tableau = dfx.ButcherTableau(
    c=np.array([0.5, 0.5, 1.0]),
    b_sol=np.array([1 / 6, 1 / 3, 1 / 3, 1 / 6]),
    b_error=np.zeros(4),
    a_lower=(np.array([0.5]), np.array([0.0, 0.5]), np.array([0.0, 0.0, 1.0])),
)


class RK4(dfx.AbstractERK):
    """The classical fourth-order Runge--Kutta method.

    4th order explicit, 4 stages, no embedded error estimate (fixed steps only).
    Third-order Hermite interpolation for dense output.
    """

    tableau: ClassVar[dfx.ButcherTableau] = _rk4_tableau
    interpolation_cls: ClassVar[Callable[..., dfx.ThirdOrderHermitePolynomialInterpolation]] = (
        dfx.ThirdOrderHermitePolynomialInterpolation.from_k
    )

    def order(self, terms):
        return 4


def implicit_root_finder(dtype=None) -> optx.AbstractRootFinder:
    """The Newton solver for implicit stages when steps are fixed.

    diffrax otherwise borrows tolerances from an adaptive step-size controller, and its
    chord iterations, tuned for step rejection, fail on stiff problems at fixed steps.
    Newton converges quadratically, so stopping once an update is below the tolerance
    leaves a stage error near its square. In float32, tolerances below ~1e-2 never
    terminate on stiff problems (measured: Kvaerno5, λ = −1000, h = 0.1 fails at 3e-3),
    since the stage residual's round-off grows with ``|hλ|``; float64 uses 1e-8.
    """
    tol = 1e-8 if dtype is not None and jnp.dtype(dtype) == jnp.float64 else 1e-2
    return optx.Newton(rtol=tol, atol=tol)


def _implicit(cls: type) -> Callable[[], dfx.AbstractSolver]:
    return lambda: cls(root_finder=implicit_root_finder())


SOLVERS: dict[str, Callable[[], dfx.AbstractSolver]] = {
    "euler": dfx.Euler,
    "midpoint": dfx.Midpoint,
    "heun": dfx.Heun,
    "ralston": dfx.Ralston,
    "rk4": RK4,
    "bosh3": dfx.Bosh3,
    "tsit5": dfx.Tsit5,
    "dopri5": dfx.Dopri5,
    "dopri8": dfx.Dopri8,
    "implicit_euler": _implicit(dfx.ImplicitEuler),
    "kvaerno3": _implicit(dfx.Kvaerno3),
    "kvaerno5": _implicit(dfx.Kvaerno5),
}
"""Solver names accepted everywhere a ``solver=`` argument is taken."""

_ORDERS = {
    "euler": 1,
    "midpoint": 2,
    "heun": 2,
    "ralston": 2,
    "rk4": 4,
    "bosh3": 3,
    "tsit5": 5,
    "dopri5": 5,
    "dopri8": 8,
    "implicit_euler": 1,
    "kvaerno3": 3,
    "kvaerno5": 5,
}


def _unknown(name: object) -> ValueError:
    valid = ", ".join(SOLVERS)
    return ValueError(
        f"Unknown solver {name!r}; valid names are: {valid} (or pass a diffrax solver instance)."
    )


def get_solver(solver: str | dfx.AbstractSolver) -> dfx.AbstractSolver:
    """A diffrax solver from a name in :data:`SOLVERS`, or the instance passed through."""
    if isinstance(solver, dfx.AbstractSolver):
        return solver
    if isinstance(solver, str) and solver.lower() in SOLVERS:
        return SOLVERS[solver.lower()]()
    raise _unknown(solver)


def solver_name(solver: str | dfx.AbstractSolver) -> str | None:
    """The registry name of a solver (instance or name), or ``None`` if it has none."""
    if isinstance(solver, str):
        if solver.lower() not in SOLVERS:
            raise _unknown(solver)
        return solver.lower()
    for name, factory in SOLVERS.items():
        if type(solver) is type(factory()):
            return name
    return None


def is_implicit(solver: str | dfx.AbstractSolver) -> bool:
    """Whether the solver solves a nonlinear system per step."""
    s = get_solver(solver)
    tab = getattr(s, "tableau", None)
    if isinstance(s, dfx.ImplicitEuler):
        return True
    return bool(tab is not None and getattr(tab, "implicit", False))


def has_error_estimate(solver: str | dfx.AbstractSolver) -> bool:
    """Whether the solver carries an embedded error estimate (needed for adaptive steps)."""
    s = get_solver(solver)
    if isinstance(s, dfx.Euler | dfx.ImplicitEuler):
        return isinstance(s, dfx.ImplicitEuler)  # diffrax's implicit Euler estimates its error
    tab = getattr(s, "tableau", None)
    if isinstance(tab, dfx.ButcherTableau):
        return bool(np.any(tab.b_error != 0))
    return True


class Tableau(NamedTuple):
    """Full Butcher tableau: ``z_i = y + h Σ_j A_ij f(z_j)``, ``y⁺ = y + h Σ_i b_i f(z_i)``."""

    A: np.ndarray
    b: np.ndarray
    c: np.ndarray
    order: int | None


def tableau(solver: str | dfx.AbstractSolver) -> Tableau:
    """The Butcher tableau ``(A, b, c, order)`` of a Runge--Kutta solver.

    Works for every named solver and for any diffrax solver carrying a
    ``diffrax.ButcherTableau`` (explicit or diagonally implicit).
    """
    s = get_solver(solver)
    name = solver_name(s)
    order = _ORDERS.get(name) if name else None
    if isinstance(s, dfx.Euler):
        return Tableau(np.zeros((1, 1)), np.ones(1), np.zeros(1), 1)
    if isinstance(s, dfx.ImplicitEuler):
        return Tableau(np.ones((1, 1)), np.ones(1), np.ones(1), 1)
    tab = getattr(s, "tableau", None)
    if not isinstance(tab, dfx.ButcherTableau):
        raise ValueError(
            f"{type(s).__name__} has no single Butcher tableau; stability functions need a "
            f"Runge--Kutta solver such as one of: {', '.join(SOLVERS)}."
        )
    k = tab.num_stages
    A = np.zeros((k, k))
    for i, row in enumerate(tab.a_lower):
        A[i + 1, : i + 1] = row
    if tab.a_diagonal is not None:
        A[np.diag_indices(k)] = tab.a_diagonal
    c = np.concatenate([[tab.c1], tab.c])
    return Tableau(A, np.asarray(tab.b_sol, dtype=float), c, order)


def nfe_per_step(solver: str | dfx.AbstractSolver) -> tuple[int, int]:
    """``(first_step, later_steps)`` vector-field evaluations of an RK step.

    First-same-as-last methods reuse the last stage of a step as the first of the next.
    Implicit methods count one evaluation per stage; their Newton iterations are extra.
    """
    tab = tableau(solver)
    k = len(tab.b)
    fsal = bool(getattr(getattr(get_solver(solver), "tableau", None), "fsal", False))
    return (k, k - 1) if fsal else (k, k)
