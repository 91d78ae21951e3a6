"""Limited-memory Broyden's (good) method on ``g(z) = f(z) − z``."""

from collections.abc import Callable
from typing import NamedTuple

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int

from .._typing import Vector
from ._base import AbstractFixedPointSolver, FixedPointResult, residual_termination


class BroydenState(NamedTuple):
    """Rank-one updates ``H = −I + Σ_i u_i v_iᵀ`` (rows of ``U``, ``V``; unused rows are
    zero), the previous iterate and residual, the number of updates stored, and whether
    the previous ``(z, g)`` is a real iterate."""

    U: Float[Array, "m n"]
    V: Float[Array, "m n"]
    z_prev: Float[Array, " n"]
    g_prev: Float[Array, " n"]
    count: Int[Array, ""]
    has_prev: Bool[Array, ""]


class Broyden(AbstractFixedPointSolver):
    """Limited-memory Broyden's (good) method for the root of ``g(z) = f(z) − z``.

    The inverse-Jacobian approximation is ``H = −I + Σ_i u_i v_iᵀ`` over the last
    ``memory`` rank-one updates (circular buffer; the first step, ``H = −I``, is a Picard
    step); each step is ``z ← z − β H g(z)`` (``β = damping``) and the good-Broyden update
    ``H ← H + (s − H y) sᵀH / (sᵀ H y)`` (``s = Δz``, ``y = Δg``) is skipped when
    ``|sᵀ H y| ≤ skip · ‖s‖‖H y‖``. On linear maps it terminates in ≤ 2n steps (exact
    arithmetic, ``memory ≥ 2n``) whatever their spectral radius, so it also converges
    where Picard diverges.
    """

    memory: int = eqx.field(default=5, static=True)
    damping: float = eqx.field(default=1.0, static=True)
    skip: float = eqx.field(default=1e-10, static=True)

    def __check_init__(self):
        if self.memory < 1:
            raise ValueError(f"memory must be >= 1; got {self.memory}.")

    def init(
        self, fn: Callable[[Vector], Vector], z: Vector, fz: Vector, tol: float
    ) -> BroydenState:
        m, n = self.memory, z.size
        return BroydenState(
            jnp.zeros((m, n), z.dtype),
            jnp.zeros((m, n), z.dtype),
            z,
            fz - z,
            jnp.zeros((), jnp.int32),
            jnp.zeros((), jnp.bool_),
        )

    def step(
        self, fn: Callable[[Vector], Vector], z: Vector, fz: Vector, state: BroydenState
    ) -> tuple[Vector, BroydenState]:
        U, V, z_prev, g_prev, count, has_prev = state
        g = fz - z

        def H(x):  # H x = −x + Σ u_i (v_i · x); unused slots are zero rows
            return -x + U.T @ (V @ x)

        def HT(x):
            return -x + V.T @ (U @ x)

        s, y = z - z_prev, g - g_prev
        Hy = H(y)
        denom = jnp.vdot(s, Hy)
        ok = (
            has_prev
            & (jnp.abs(denom) > self.skip * jnp.linalg.norm(s) * jnp.linalg.norm(Hy))
            & jnp.isfinite(denom)
        )
        safe = jnp.where(ok, denom, 1)
        u = jnp.where(ok, (s - Hy) / safe, 0)
        v = jnp.where(ok, HT(s), 0)
        i = count % self.memory
        U = jnp.where(ok, U.at[i].set(u), U)
        V = jnp.where(ok, V.at[i].set(v), V)
        count = count + ok.astype(count.dtype)
        z_new = z - self.damping * (-g + U.T @ (V @ g))
        return z_new, BroydenState(U, V, z, g, count, jnp.ones((), jnp.bool_))

    def terminate(
        self, z: Vector, fz: Vector, residual: Float[Array, ""], tol: float, state: BroydenState
    ) -> tuple[Bool[Array, ""], FixedPointResult]:
        return residual_termination(residual, tol)
