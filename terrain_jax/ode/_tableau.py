"""Full Butcher tableaus ``(A, b, c, order)`` of Runge--Kutta solvers, explicit or
implicit, and the field evaluations per step they imply."""

from typing import NamedTuple

import diffrax as dfx
import numpy as np
from jaxtyping import Float

from ._solvers import SOLVERS, get_solver, solver_name


class Tableau(NamedTuple):
    """Full Butcher tableau: ``z_i = y + h Σ_j A_ij f(z_j)``, ``y⁺ = y + h Σ_i b_i f(z_i)``."""

    A: Float[np.ndarray, "stages stages"]
    b: Float[np.ndarray, " stages"]
    c: Float[np.ndarray, " stages"]
    order: int | None


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


def tableau(solver: str | dfx.AbstractSolver) -> Tableau:
    """The Butcher tableau ``(A, b, c, order)`` of a Runge--Kutta solver.

    Works for every named solver and for any diffrax solver carrying a
    ``diffrax.ButcherTableau`` (explicit or diagonally implicit); ``order`` is ``None``
    for a solver outside :data:`SOLVERS`.
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
