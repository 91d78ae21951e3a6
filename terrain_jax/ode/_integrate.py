"""``integrate(field, y0, ...) -> Trajectory``: the one door to ``diffrax.diffeqsolve``.

Fixed steps when ``steps`` is given, adaptive steps when ``rtol``/``atol`` are. The
defaults are chosen for speed on the common case: a fixed-step solve keeps every step for
the backward pass (no recomputation), so its gradient costs what backprop through a
hand-written loop costs; an adaptive solve uses diffrax's binomial checkpointing.

Failure is never silent: a run that produced a non-finite state or hit ``max_steps``
says so in ``Trajectory.result`` (a :class:`RESULTS` item; its code is
``Trajectory.status``), and ``throw=True`` raises with that message.
"""

from typing import Literal

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float, Int, PyTree

from .._typing import Args, State, VectorField
from ._results import RESULTS, STATUS, as_result, result_code
from ._solvers import get_solver, has_error_estimate, implicit_root_finder, is_implicit
from ._tableau import nfe_per_step

SaveAtLike = Literal["t1", "steps"] | Float[ArrayLike, " n"] | dfx.SaveAt | None


class Trajectory(eqx.Module):
    """The result of :func:`integrate`.

    ``ys`` has a leading time axis matching ``ts``. ``num_steps`` counts steps taken
    (accepted and rejected); ``nfe`` counts vector-field evaluations of the Runge--Kutta
    stages (for implicit solvers the Newton iterations are not included, so it is a
    lower bound). ``status`` is the integer code of ``result``, a :class:`RESULTS` item
    (see :data:`STATUS`).
    """

    ts: Float[Array, " times"]
    ys: PyTree[Float[Array, "times ..."]]
    num_steps: Int[Array, ""]
    num_accepted: Int[Array, ""]
    nfe: Int[Array, ""]
    status: Int[Array, ""]

    @property
    def result(self) -> RESULTS:
        """How the solve ended, as a :class:`RESULTS` item (batched like ``status``)."""
        return as_result(self.status)

    @property
    def y1(self) -> PyTree:
        """The state at the last saved time (also on a ``vmap``-ed result)."""
        lead = jnp.ndim(self.ts) - 1  # batch axes added by vmap come before the time axis
        return jtu.tree_map(lambda y: y[(slice(None),) * lead + (-1,)], self.ys)

    @property
    def ok(self) -> Bool[Array, "*batch"]:
        """``True`` where the solve succeeded."""
        return self.result == RESULTS.successful

    def message(self) -> str:
        """Human-readable status (outside ``jit``; batched statuses list every failure)."""
        codes = np.unique(np.asarray(self.status))
        return "; ".join(STATUS[int(c)] for c in codes)

    def raise_if_failed(self) -> "Trajectory":
        """Raise ``RuntimeError`` with the status message if any solve failed."""
        if not bool(np.all(np.asarray(self.ok))):
            raise RuntimeError(f"integrate failed: {self.message()}")
        return self


def _check_finite_y0(y0: State) -> State:
    leaves = jtu.tree_leaves(y0)
    if not leaves:
        raise ValueError("y0 is an empty pytree; give the initial state as arrays.")
    concrete = all(not isinstance(x, jax.core.Tracer) for x in leaves)
    if concrete:
        for x in leaves:
            if not np.all(np.isfinite(np.asarray(x))):
                raise ValueError("y0 contains NaN or inf; integrate refuses non-finite input.")
        return y0
    bad = jnp.any(jnp.stack([~jnp.all(jnp.isfinite(x)) for x in leaves]))
    return eqx.error_if(y0, bad, "y0 contains NaN or inf; integrate refuses non-finite input.")


def _saveat(saveat: SaveAtLike, fixed: bool) -> dfx.SaveAt:
    if isinstance(saveat, dfx.SaveAt):
        return saveat
    if saveat is None or (isinstance(saveat, str) and saveat == "t1"):
        return dfx.SaveAt(t1=True)
    if isinstance(saveat, str) and saveat == "steps":
        if not fixed:
            raise ValueError("saveat='steps' needs fixed steps (`steps=`); pass times instead.")
        return dfx.SaveAt(t0=True, steps=True)
    if isinstance(saveat, str):
        raise ValueError(
            f"Unknown saveat {saveat!r}; valid: 't1', 'steps', an array of times, "
            "or a diffrax.SaveAt."
        )
    return dfx.SaveAt(ts=jnp.asarray(saveat))


def _adjoint(
    adjoint: str | dfx.AbstractAdjoint | None, fixed_steps: int | None
) -> dfx.AbstractAdjoint:
    if isinstance(adjoint, dfx.AbstractAdjoint):
        return adjoint
    if adjoint is None:
        adjoint = "checkpoint"
    if adjoint == "checkpoint":
        # Fixed steps: one checkpoint per step, i.e. store everything and never recompute.
        return dfx.RecursiveCheckpointAdjoint(checkpoints=fixed_steps)
    if adjoint == "recompute":
        return dfx.RecursiveCheckpointAdjoint()
    if adjoint == "backsolve":
        return dfx.BacksolveAdjoint()
    if adjoint == "direct":
        return dfx.DirectAdjoint()
    raise ValueError(
        f"Unknown adjoint {adjoint!r}; valid names are: checkpoint, recompute, backsolve, "
        "direct (or pass a diffrax adjoint instance)."
    )


def _scan_steps(
    field: VectorField,
    solver: dfx.AbstractSolver,
    y0: State,
    grid: Float[Array, " grid"],
    args: Args,
    save_all: bool,
) -> tuple[State, PyTree | None]:
    """Fixed steps of a diffrax solver's own ``step`` inside ``lax.scan``.

    The numbers are diffrax's; the loop is a plain scan, so reverse-mode keeps every step
    and costs what backprop through a hand-written residual loop costs (diffrax's
    checkpointed while-loop measured ~10-20% slower for the gradient).
    """
    term = dfx.ODETerm(field)
    state = solver.init(term, grid[0], grid[1], y0, args)

    def body(carry, t01):
        y, st = carry
        y, _, _, st, _ = solver.step(term, t01[0], t01[1], y, args, st, made_jump=False)
        return (y, st), (y if save_all else None)

    (y1, _), ys = jax.lax.scan(body, (y0, state), (grid[:-1], grid[1:]))
    return y1, ys


def integrate(
    field: VectorField,
    y0: PyTree[Float[ArrayLike, "..."]],
    *,
    t0: float | Array = 0.0,
    t1: float | Array = 1.0,
    solver: str | dfx.AbstractSolver = "euler",
    steps: int | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    saveat: SaveAtLike = None,
    args: Args = None,
    adjoint: str | dfx.AbstractAdjoint | None = None,
    max_steps: int = 4096,
    dt0: float | None = None,
    throw: bool = False,
) -> Trajectory:
    """Solve ``dy/dt = field(t, y, args)`` from ``y0`` at ``t0`` to ``t1``.

    - ``field``: any callable ``f(t, y, args)``; ``y0``: any pytree of arrays.
    - ``solver``: a name from :data:`terrain_jax.SOLVERS` or a diffrax solver instance.
    - ``steps``: fixed number of equal steps. Otherwise ``rtol``/``atol`` select adaptive
      stepping (PID controller; ``dt0`` is the first trial step, chosen automatically if
      omitted).
    - ``saveat``: ``"t1"`` (default), ``"steps"`` (``t0`` and every step, fixed steps
      only), an array of times, or a ``diffrax.SaveAt``.
    - ``adjoint``: ``"checkpoint"`` (default: store every fixed step / binomial
      checkpoints when adaptive), ``"recompute"``, ``"backsolve"``, ``"direct"``, or a
      diffrax adjoint.
    - ``throw``: raise on failure instead of only reporting it in ``result``.

    Works under ``jit``, ``vmap`` and ``grad``.
    """
    fixed = steps is not None
    adaptive = rtol is not None or atol is not None
    if fixed and adaptive:
        raise ValueError("Give either `steps` (fixed steps) or `rtol`/`atol` (adaptive), not both.")
    if not fixed and not adaptive:
        raise ValueError("Give `steps=N` for fixed steps or `rtol=`/`atol=` for adaptive stepping.")
    if fixed and (not isinstance(steps, int | np.integer) or steps < 1):
        raise ValueError(f"`steps` must be a positive integer, got {steps!r}.")
    dfx_solver = get_solver(solver)
    y0 = _check_finite_y0(jtu.tree_map(jnp.asarray, y0))
    t0 = jnp.asarray(t0, dtype=float)
    t1 = jnp.asarray(t1, dtype=float)

    if fixed:
        grid = t0 + (t1 - t0) * jnp.arange(steps + 1, dtype=t0.dtype) / steps
        # pin the end exactly: round-off in the grid must not miss t1
        controller = dfx.StepTo(ts=grid.at[-1].set(t1))
        dt0_ = None
        max_steps_ = int(steps)
        if adjoint == "backsolve" or isinstance(adjoint, dfx.BacksolveAdjoint):
            # the backward solve cannot reverse a StepTo grid: use the same constant step
            # (diffrax clips the last step to t1; round-off may add one tiny step)
            controller = dfx.ConstantStepSize()
            dt0_ = (t1 - t0) / steps
            max_steps_ = int(steps) + 1
        if is_implicit(dfx_solver) and isinstance(solver, str):
            dtype = jnp.result_type(*jtu.tree_leaves(y0))
            dfx_solver = type(dfx_solver)(root_finder=implicit_root_finder(dtype))
    else:
        if not has_error_estimate(dfx_solver):
            raise ValueError(
                f"{type(dfx_solver).__name__} has no error estimate, so it cannot adapt its "
                "step: give `steps=N`, or choose an adaptive solver (bosh3, tsit5, dopri5, "
                "dopri8, heun, midpoint, ralston, kvaerno3, kvaerno5, implicit_euler)."
            )
        controller = dfx.PIDController(
            rtol=1e-3 if rtol is None else rtol, atol=1e-6 if atol is None else atol
        )
        if is_implicit(dfx_solver) and isinstance(solver, str):
            # let the Newton iterations use the controller's tolerances
            dfx_solver = type(dfx_solver)()
        dt0_ = dt0
        max_steps_ = max_steps

    fast = (
        fixed
        and not is_implicit(dfx_solver)
        and adjoint in (None, "checkpoint")
        and (saveat is None or (isinstance(saveat, str) and saveat in ("t1", "steps")))
    )
    if fast:
        grid = controller.ts
        save_all = saveat == "steps"
        y1, hist = _scan_steps(field, dfx_solver, y0, grid, args, save_all)
        if save_all:
            ts = grid
            ys = jtu.tree_map(lambda a, b: jnp.concatenate([a[None], b]), y0, hist)
        else:
            ts = grid[-1:]
            ys = jtu.tree_map(lambda a: a[None], y1)
        n = jnp.asarray(steps)
        first, later = _nfe_per_step_or_none(dfx_solver)
        finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(a)) for a in jtu.tree_leaves(ys)]))
        result = RESULTS.where(finite, RESULTS.successful, RESULTS.diverged)
        if throw:
            ys = _raise_if(ys, result, RESULTS.diverged)
        return Trajectory(
            ts=ts,
            ys=ys,
            num_steps=n,
            num_accepted=n,
            nfe=first + later * (n - 1),
            status=result_code(result),
        )

    sol = dfx.diffeqsolve(
        dfx.ODETerm(field),
        dfx_solver,
        t0,
        t1,
        dt0_,
        y0,
        args=args,
        saveat=_saveat(saveat, fixed),
        stepsize_controller=controller,
        adjoint=_adjoint(adjoint, max_steps_ if fixed else None),
        max_steps=max_steps_,
        throw=False,
    )
    num_steps = jnp.asarray(sol.stats["num_steps"])
    num_accepted = jnp.asarray(sol.stats["num_accepted_steps"])
    first, later = _nfe_per_step_or_none(dfx_solver)
    # a rejected step of a first-same-as-last method must re-evaluate its first stage
    extra = (num_steps - num_accepted) * (first - later)
    nfe = jnp.where(num_steps > 0, first + later * (num_steps - 1) + extra, 0)

    # Rows of `ys` past an early stop are padded with inf by diffrax: only judge real rows.
    real = jnp.isfinite(sol.ts)
    finite = jnp.all(
        jnp.stack(
            [
                jnp.all(jnp.isfinite(y) | ~real.reshape(real.shape + (1,) * (y.ndim - 1)))
                for y in jtu.tree_leaves(sol.ys)
            ]
        )
    )
    result = RESULTS.where(
        sol.result == dfx.RESULTS.successful,
        RESULTS.where(finite, RESULTS.successful, RESULTS.diverged),
        RESULTS.where(
            sol.result == dfx.RESULTS.max_steps_reached,
            RESULTS.max_steps_reached,
            RESULTS.solver_failed,
        ),
    )
    ys = sol.ys
    if throw:
        for failure in (RESULTS.max_steps_reached, RESULTS.diverged, RESULTS.solver_failed):
            ys = _raise_if(ys, result, failure)
    return Trajectory(
        ts=sol.ts,
        ys=ys,
        num_steps=num_steps,
        num_accepted=num_accepted,
        nfe=nfe,
        status=result_code(result),
    )


def _raise_if(ys: PyTree, result: RESULTS, failure: RESULTS) -> PyTree:
    """``ys``, raising at run time with ``failure``'s message when ``result`` is it."""
    return eqx.error_if(ys, result == failure, "integrate: " + RESULTS[failure])


def _nfe_per_step_or_none(solver: dfx.AbstractSolver) -> tuple[int, int]:
    try:
        return nfe_per_step(solver)
    except ValueError:
        return (0, 0)
