"""Solving ``dy/dt = f(t, y, args)``: the only door to ``diffrax.diffeqsolve``.

- :func:`integrate` ``-> Trajectory``, whose ``result`` is a :class:`RESULTS` item
  (success, ``max_steps`` reached, diverged, solver failed) with its message;
- the solver registry :data:`SOLVERS` (names -> diffrax solvers, :class:`RK4` ours) and
  what a solver is: :func:`get_solver`, :func:`solver_name`, :func:`is_implicit`,
  :func:`has_error_estimate`, :func:`implicit_root_finder`;
- Butcher tableaus and their cost: :func:`tableau` -> :class:`Tableau`,
  :func:`nfe_per_step`;
- linear stability on ``y' = λy``: :func:`stability_function`, :func:`region`,
  :func:`max_stable_step`, :func:`real_stability_interval`;
- convergence studies: :func:`final_states` (the final state after ``n`` fixed steps, for
  many ``n`` in one compiled call);
- run-time call counting: :func:`count_calls` -> (:class:`CountedField`,
  :class:`CallCounter`).
"""

from ._convergence import final_states
from ._counting import CallCounter, CountedField, count_calls
from ._integrate import Trajectory, integrate
from ._results import RESULTS, STATUS
from ._rk4 import RK4
from ._solvers import (
    SOLVERS,
    get_solver,
    has_error_estimate,
    implicit_root_finder,
    is_implicit,
    solver_name,
)
from ._stability import max_stable_step, real_stability_interval, region, stability_function
from ._tableau import Tableau, nfe_per_step, tableau

__all__ = [
    "RESULTS",
    "RK4",
    "SOLVERS",
    "STATUS",
    "CallCounter",
    "CountedField",
    "Tableau",
    "Trajectory",
    "count_calls",
    "final_states",
    "get_solver",
    "has_error_estimate",
    "implicit_root_finder",
    "integrate",
    "is_implicit",
    "max_stable_step",
    "nfe_per_step",
    "real_stability_interval",
    "region",
    "solver_name",
    "stability_function",
    "tableau",
]
