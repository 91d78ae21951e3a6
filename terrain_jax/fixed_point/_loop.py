"""The iteration every solver runs in: ``lax.while_loop`` (or a frozen ``lax.scan``)."""

from collections.abc import Callable

import jax.numpy as jnp
import jax.tree_util as jtu
from jax import lax
from jaxtyping import PyTree

from .._typing import Vector
from ._base import AbstractFixedPointSolver, FixedPointInfo, FixedPointResult, relative_residual


def run_solver(
    solver: AbstractFixedPointSolver,
    tol: float,
    max_steps: int,
    fn: Callable[[Vector, PyTree], Vector],
    z0: Vector,
    args: PyTree,
    *,
    unroll: bool = False,
) -> tuple[Vector, FixedPointInfo]:
    """Iterate ``solver`` on a flat state ``z0`` until it terminates or ``max_steps``.

    With ``unroll`` the loop is a ``lax.scan`` of ``max_steps`` steps whose steps after
    termination are frozen by ``where`` (reverse-differentiable); otherwise a
    ``lax.while_loop``.
    """

    def F(z):
        return fn(z, args).astype(z.dtype)

    fz0 = F(z0)
    res0 = relative_residual(z0, fz0)
    trace0 = jnp.full((max_steps,), jnp.nan, res0.dtype)
    state0 = (jnp.zeros((), jnp.int32), z0, fz0, res0, trace0, solver.init(F, z0, fz0, tol))

    def active(state):
        k, z, fz, res, _, s = state
        done, _ = solver.terminate(z, fz, res, tol, s)
        return (k < max_steps) & jnp.logical_not(done)

    def body(state):
        k, z, fz, _, trace, s = state
        z_new, s = solver.step(F, z, fz, s)
        fz_new = F(z_new)
        res_new = relative_residual(z_new, fz_new)
        return (k + 1, z_new, fz_new, res_new, trace.at[k].set(res_new), s)

    if unroll:

        def scan_body(state, _):
            act = active(state)
            new = body(state)
            return jtu.tree_map(lambda a, b: jnp.where(act, a, b), new, state), None

        state, _ = lax.scan(scan_body, state0, None, length=max_steps)
    else:
        state = lax.while_loop(active, body, state0)
    k, z, fz, res, trace, s = state
    done, result = solver.terminate(z, fz, res, tol, s)
    result = FixedPointResult.where(done, result, FixedPointResult.max_steps_reached)
    converged = (res <= tol) & jnp.isfinite(res)
    info = FixedPointInfo(steps=k, residual=res, trace=trace, converged=converged, result=result)
    return z, info
