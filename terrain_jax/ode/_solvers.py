"""Solver names -> diffrax solvers: the registry every ``solver=`` argument reads, and what
each solver is (implicit, adaptive)."""

from collections.abc import Callable

import diffrax as dfx
import jax.numpy as jnp
import numpy as np
import optimistix as optx
from jaxtyping import DTypeLike

from ._rk4 import RK4


def implicit_root_finder(dtype: DTypeLike | None = None) -> optx.AbstractRootFinder:
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


def unknown_solver(name: object) -> ValueError:
    """The error for a solver name not in :data:`SOLVERS`, listing the valid ones."""
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
    raise unknown_solver(solver)


def solver_name(solver: str | dfx.AbstractSolver) -> str | None:
    """The registry name of a solver (instance or name), or ``None`` if it has none."""
    if isinstance(solver, str):
        if solver.lower() not in SOLVERS:
            raise unknown_solver(solver)
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
