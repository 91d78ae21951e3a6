"""How an ODE layer solves: one configuration shared by every block that integrates."""

import dataclasses
from collections.abc import Callable

import diffrax as dfx
import equinox as eqx
from jaxtyping import ArrayLike, Float, PyTree

from .._typing import ScalarLike, State
from ..ode import Trajectory, integrate


class ODESolve(eqx.Module):
    """Solver settings of an ODE layer, passed to :func:`terrain_jax.integrate` as they are.

    ``steps`` for fixed steps, or ``rtol``/``atol`` for adaptive ones (``dt0`` the first
    trial step, automatic when ``None``); ``solver`` and ``adjoint`` take the names
    ``integrate`` takes, or diffrax instances. :class:`ODEBlock` and :class:`CNF` hold one
    (their ``solver=``, ``steps=``, ... keywords build it); the augmented and RNODE blocks
    and the continuous adjoint reuse their block's.

        ode = ODESolve("tsit5", rtol=1e-3, atol=1e-3, adjoint="backsolve")
        traj = ode.integrate(field, y0, t0=0.0, t1=1.0)
    """

    solver: str | dfx.AbstractSolver = eqx.field(static=True, default="euler")
    steps: int | None = eqx.field(static=True, default=None)
    rtol: float | None = eqx.field(static=True, default=None)
    atol: float | None = eqx.field(static=True, default=None)
    adjoint: str | dfx.AbstractAdjoint | None = eqx.field(static=True, default=None)
    max_steps: int = eqx.field(static=True, default=4096)
    dt0: float | None = eqx.field(static=True, default=None)
    throw: bool = eqx.field(static=True, default=False)

    def __check_init__(self):
        if self.steps is None and self.rtol is None and self.atol is None:
            raise ValueError("An ODE solve needs `steps=N` (fixed) or `rtol`/`atol` (adaptive).")

    def replace(self, **changes: object) -> "ODESolve":
        """A copy with some settings changed (``ode.replace(adjoint="backsolve")``)."""
        return dataclasses.replace(self, **changes)

    def integrate(
        self,
        field: Callable[..., State],
        y0: State,
        *,
        t0: ScalarLike,
        t1: ScalarLike,
        saveat: str | Float[ArrayLike, " n"] | dfx.SaveAt | None = None,
        args: PyTree = None,
    ) -> Trajectory:
        """:func:`~terrain_jax.integrate` of ``field`` from ``y0`` with these settings."""
        return integrate(
            field,
            y0,
            t0=t0,
            t1=t1,
            solver=self.solver,
            steps=self.steps,
            rtol=self.rtol,
            atol=self.atol,
            saveat=saveat,
            args=args,
            adjoint=self.adjoint,
            max_steps=self.max_steps,
            dt0=self.dt0,
            throw=self.throw,
        )
