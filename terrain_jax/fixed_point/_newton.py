"""Jacobian-free Newton–Krylov, and the GMRES solve it (and its adjoint) runs on."""

from collections.abc import Callable
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
from jax import lax
from jaxtyping import Array, Bool, DTypeLike, Float

from .._typing import Vector
from ._base import (
    AbstractFixedPointSolver,
    FixedPointResult,
    relative_residual,
    residual_termination,
)


class NewtonState(NamedTuple):
    """The floor of the forcing term (from ``tol``, fixed for the solve)."""

    eta_min: Float[Array, ""]


class NewtonKrylov(AbstractFixedPointSolver):
    """Jacobian-free Newton–Krylov on ``g(z) = f(z) − z``.

    Each step solves ``(J_f − I) δ = −(f(z) − z)`` with lineax GMRES on the matrix-free
    operator ``v ↦ J_f v − v`` (``jax.linearize`` of ``f`` at ``z``, one jvp per Krylov
    vector; restart ``min(restart, n)``, at most ``restart_cycles`` restart cycles) to the
    relative tolerance ``η = clip(residual, eta_min, eta_max)`` (an Eisenstat–Walker-type
    forcing term, so convergence is quadratic near ``z*``; ``eta_min=None`` is
    ``max(tol/100, 100 ε)``), then ``z ← z + β δ`` (``β = damping``; a non-finite Krylov
    solution falls back to a Picard step). Converges wherever Newton does (``J_f − I``
    invertible near ``z*``), including expanding maps.
    """

    damping: float = eqx.field(default=1.0, static=True)
    eta_min: float | None = eqx.field(default=None, static=True)
    eta_max: float = eqx.field(default=0.1, static=True)
    restart: int = eqx.field(default=20, static=True)
    restart_cycles: int = eqx.field(default=10, static=True)

    def forcing_floor(self, tol: float, dtype: DTypeLike) -> float:
        """``eta_min``, or ``max(tol/100, 100 ε)`` of ``dtype`` when it is ``None``."""
        if self.eta_min is not None:
            return self.eta_min
        return max(tol / 100, 100 * float(jnp.finfo(dtype).eps))

    def init(
        self, fn: Callable[[Vector], Vector], z: Vector, fz: Vector, tol: float
    ) -> NewtonState:
        return NewtonState(jnp.asarray(self.forcing_floor(tol, z.dtype), z.dtype))

    def step(
        self, fn: Callable[[Vector], Vector], z: Vector, fz: Vector, state: NewtonState
    ) -> tuple[Vector, NewtonState]:
        g = fz - z
        _, jvp = jax.linearize(fn, z)
        op = lx.FunctionLinearOperator(lambda v: jvp(v) - v, jax.ShapeDtypeStruct(z.shape, z.dtype))
        eta = jnp.clip(relative_residual(z, fz), state.eta_min, self.eta_max)
        delta = gmres(op, -g, eta, restart=self.restart, restart_cycles=self.restart_cycles)
        # a failed Krylov solve (non-finite) falls back to a Picard step
        delta = jnp.where(jnp.all(jnp.isfinite(delta)), delta, g)
        return z + self.damping * delta, state

    def terminate(
        self, z: Vector, fz: Vector, residual: Float[Array, ""], tol: float, state: NewtonState
    ) -> tuple[Bool[Array, ""], FixedPointResult]:
        return residual_termination(residual, tol)


def gmres(
    operator: lx.AbstractLinearOperator,
    b: Vector,
    rtol: Float[Array, ""],
    *,
    restart: int,
    restart_cycles: int,
) -> Vector:
    """``A x = b`` by lineax GMRES to ``‖A x − b‖_∞ ≲ rtol ‖b‖_∞`` (no throw: best effort),
    restarting every ``min(restart, n)`` Krylov vectors, at most ``restart_cycles`` times."""
    rtol = lax.stop_gradient(rtol)
    atol = rtol * lax.stop_gradient(jnp.max(jnp.abs(b)))
    solver = lx.GMRES(
        rtol=rtol,
        atol=atol,
        restart=min(restart, b.size),
        max_steps=restart_cycles,
        stagnation_iters=2,
    )
    return lx.linear_solve(operator, b, solver, throw=False).value
