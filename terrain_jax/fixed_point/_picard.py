"""Damped Picard (Banach) iteration."""

from collections.abc import Callable

import equinox as eqx
from jaxtyping import Array, Bool, Float

from .._typing import Vector
from ._base import AbstractFixedPointSolver, FixedPointResult, residual_termination


class Picard(AbstractFixedPointSolver):
    """Damped Banach iteration ``z ← (1 − β) z + β f(z)`` (``β = damping``).

    Converges from every start at rate ``≤ |1 − β + β Lip(f)|^k`` when ``f`` contracts
    (``Lip(f) < 1``); near ``z*`` its rate is the spectral radius of
    ``(1 − β) I + β J_f(z*)``. Diverges or cycles on expanding maps.
    """

    damping: float = eqx.field(default=1.0, static=True)

    def init(self, fn: Callable[[Vector], Vector], z: Vector, fz: Vector, tol: float) -> tuple:
        return ()

    def step(
        self, fn: Callable[[Vector], Vector], z: Vector, fz: Vector, state: tuple
    ) -> tuple[Vector, tuple]:
        return z + self.damping * (fz - z), state

    def terminate(
        self, z: Vector, fz: Vector, residual: Float[Array, ""], tol: float, state: tuple
    ) -> tuple[Bool[Array, ""], FixedPointResult]:
        return residual_termination(residual, tol)
