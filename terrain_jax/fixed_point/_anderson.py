"""Anderson acceleration (type II) over a window of recent iterates."""

from collections.abc import Callable
from typing import NamedTuple

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int

from .._typing import Vector
from ._base import AbstractFixedPointSolver, FixedPointResult, residual_termination


class AndersonState(NamedTuple):
    """The window: iterates ``z_i`` and residuals ``f(z_i) − z_i`` as rows (slot
    ``count % memory`` is written next), and the number of steps taken."""

    X: Float[Array, "m n"]
    G: Float[Array, "m n"]
    count: Int[Array, ""]


class Anderson(AbstractFixedPointSolver):
    """Anderson acceleration (type II) with a window of the last ``memory`` iterates.

    The mixing weights ``α`` minimise ``‖Σ α_i (f(z_i) − z_i)‖²`` subject to
    ``Σ α_i = 1``, with Tikhonov regularisation ``regularisation · max_i ‖f(z_i) − z_i‖²``;
    then ``z ← Σ α_i z_i + β Σ α_i (f(z_i) − z_i)`` (``β = damping``). Converges on maps
    where Picard diverges, e.g. linear ``f`` with spectral radius > 1 but ``I − A``
    invertible; with a window of 1 it is damped Picard.
    """

    memory: int = eqx.field(default=5, static=True)
    damping: float = eqx.field(default=1.0, static=True)
    regularisation: float = eqx.field(default=1e-4, static=True)

    def __check_init__(self):
        if self.memory < 1:
            raise ValueError(f"memory must be >= 1; got {self.memory}.")

    def init(
        self, fn: Callable[[Vector], Vector], z: Vector, fz: Vector, tol: float
    ) -> AndersonState:
        m, n = self.memory, z.size
        return AndersonState(
            jnp.zeros((m, n), z.dtype), jnp.zeros((m, n), z.dtype), jnp.zeros((), jnp.int32)
        )

    def step(
        self, fn: Callable[[Vector], Vector], z: Vector, fz: Vector, state: AndersonState
    ) -> tuple[Vector, AndersonState]:
        X, G, count = state
        m, dtype = self.memory, z.dtype
        # write slot `count % m` by a one-hot select: under vmap the slot differs per
        # sample, and a select is far cheaper than the scatter `.at[i].set` becomes
        slot = (jnp.arange(m, dtype=jnp.int32) == count % m)[:, None]
        X = jnp.where(slot, z[None], X)
        G = jnp.where(slot, (fz - z)[None], G)
        count = count + 1
        mask = (jnp.arange(m, dtype=jnp.int32) < count).astype(dtype)
        GG = (G @ G.T) * mask[:, None] * mask[None, :]
        # Normalise so the regulariser is relative: α is invariant to scaling GGᵀ.
        scale = jnp.maximum(jnp.max(jnp.diagonal(GG)), jnp.finfo(dtype).tiny)
        A = GG / scale + jnp.diag(self.regularisation * mask + (1 - mask))
        # min αᵀAα subject to Σα = 1 gives α = A⁻¹1 / (1ᵀA⁻¹1) over the used slots
        y = spd_solve_ones(A) * mask
        alpha = y / jnp.sum(y)
        z_new = alpha @ X + self.damping * (alpha @ G)
        return z_new, AndersonState(X, G, count)

    def terminate(
        self, z: Vector, fz: Vector, residual: Float[Array, ""], tol: float, state: AndersonState
    ) -> tuple[Bool[Array, ""], FixedPointResult]:
        return residual_termination(residual, tol)


def spd_solve_ones(A: Float[Array, "m m"]) -> Float[Array, " m"]:
    """``A⁻¹ 1`` for a small symmetric positive-definite ``A`` by Gaussian elimination
    without pivoting, unrolled over the (static) size: a few vector operations, which
    batch well under ``vmap`` where a LAPACK call per sample does not."""
    m = A.shape[0]
    b = jnp.ones((m,), A.dtype)
    for i in range(m):
        fac = (A[:, i] / A[i, i]).at[i].set(0)
        A = A - fac[:, None] * A[i][None, :]
        b = b - fac * b[i]
    return b / jnp.diagonal(A)
