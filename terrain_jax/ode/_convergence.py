"""Convergence studies of fixed-step solvers: the final state after ``n`` equal steps for
many ``n`` at once, compiled once per solver rather than once per step size."""

import jax
import jax.numpy as jnp
from jax import lax
from jaxtyping import Array, ArrayLike, Float, Int

from .._typing import Args, VectorField
from ._integrate import integrate

__all__ = ["final_states"]


def final_states(
    field: VectorField,
    y0: Float[ArrayLike, "*state"],
    steps: Int[ArrayLike, " m"],
    *,
    t0: float = 0.0,
    t1: float = 1.0,
    solver: str = "euler",
    args: Args = None,
) -> Float[Array, " m *state"]:
    """``y(t1)`` after ``n`` equal steps of ``solver`` from ``y(t0) = y0``, for every ``n``
    in ``steps`` (the raw material of an error-vs-``Δt`` convergence plot).

    Each solve advances one :func:`integrate` step at a time inside ``lax.fori_loop``, step
    ``k`` from ``t0 + k Δt`` to ``t0 + (k + 1) Δt``, and the step counts are ``vmap``-ed, so
    the whole sweep is one compiled call. It agrees with ``integrate(..., steps=n).y1`` to
    round-off; choose a dyadic ``Δt = (t1 − t0)/n`` so that every ``t0 + k Δt`` is exact.
    """

    def one(n):
        dt = (t1 - t0) / n.astype(float)

        def body(k, y):
            t = t0 + k.astype(float) * dt
            return integrate(field, y, t0=t, t1=t + dt, solver=solver, steps=1, args=args).y1

        return lax.fori_loop(0, n, body, jnp.asarray(y0))

    return jax.jit(jax.vmap(one))(jnp.asarray(steps))
