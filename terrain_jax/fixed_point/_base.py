"""The solver protocol, the status enumeration and the diagnostics of a solve."""

import abc
from collections.abc import Callable
from typing import NamedTuple

import equinox as eqx
import jax.numpy as jnp
from jax import lax
from jaxtyping import Array, Bool, Float, Int, PyTree

from .._typing import Vector

RES_EPS = 1e-8
"""Added to ``‖z‖`` in the relative residual, so that ``z = 0`` is not a division by 0."""


class FixedPointResult(eqx.Enumeration):
    """How a fixed-point solve ended (``info.result``; compare with ``==``)."""

    successful = ""
    max_steps_reached = (
        "The fixed-point solver reached max_steps without the relative residual "
        "‖f(z) − z‖/(‖z‖ + 1e-8) falling to tol."
    )
    nonfinite = "The fixed-point iteration diverged: its residual is not finite (inf or nan)."


class FixedPointInfo(NamedTuple):
    """Diagnostics of a fixed-point solve (leading batch axis when ``batched=True``).

    - ``steps``: number of solver updates taken (``0`` if ``z0`` already met ``tol``);
    - ``residual``: final relative residual ``‖f(z) − z‖ / (‖z‖ + 1e-8)``;
    - ``trace``: residual after each update, length ``max_steps``, ``nan`` after
      termination;
    - ``converged``: ``residual ≤ tol`` (and finite);
    - ``result``: a :class:`FixedPointResult`, ``successful`` exactly when ``converged``,
      else ``max_steps_reached`` or ``nonfinite``; ``FixedPointResult[info.result]`` is
      its message.
    """

    steps: Int[Array, "*batch"]
    residual: Float[Array, "*batch"]
    trace: Float[Array, "*batch max_steps"]
    converged: Bool[Array, "*batch"]
    result: FixedPointResult


def relative_residual(z: Vector, fz: Vector) -> Float[Array, ""]:
    """``‖f(z) − z‖₂ / (‖z‖₂ + 1e-8)``, the residual every solver is stopped on (no
    gradient flows through it)."""
    z, fz = lax.stop_gradient(z), lax.stop_gradient(fz)
    return jnp.linalg.norm(fz - z) / (jnp.linalg.norm(z) + RES_EPS)


def residual_termination(
    residual: Float[Array, ""], tol: float
) -> tuple[Bool[Array, ""], FixedPointResult]:
    """Stop once ``residual ≤ tol`` (``successful``) or it is not finite (``nonfinite``)."""
    finite = jnp.isfinite(residual)
    done = jnp.logical_not((residual > tol) & finite)
    result = FixedPointResult.where(finite, FixedPointResult.successful, FixedPointResult.nonfinite)
    return done, result


class AbstractFixedPointSolver(eqx.Module):
    """A solver of ``z = F(z)`` on a flat state, iterated by :func:`fixed_point`.

    The protocol, on the flat map ``F: z ↦ f(z, args)``:

    - ``init(F, z0, F(z0), tol) -> state``: the solver's state before the first step;
    - ``step(F, z, F(z), state) -> (z_new, state)``: one update (``F(z)`` is already
      known; only solvers that linearise ``F`` call it);
    - ``terminate(z, F(z), residual, tol, state) -> (done, result)``: whether to stop at
      ``z``, and the :class:`FixedPointResult` if so (``residual`` is
      :func:`relative_residual`). Reaching ``max_steps`` first is ``max_steps_reached``.

    Settings are static fields (Python numbers), so a solver is hashable configuration,
    never traced.
    """

    @abc.abstractmethod
    def init(
        self, fn: Callable[[Vector], Vector], z: Vector, fz: Vector, tol: float
    ) -> PyTree[Array]:
        """The state before the first step."""

    @abc.abstractmethod
    def step(
        self, fn: Callable[[Vector], Vector], z: Vector, fz: Vector, state: PyTree[Array]
    ) -> tuple[Vector, PyTree[Array]]:
        """One update ``z → z_new`` given ``fz = fn(z)``."""

    @abc.abstractmethod
    def terminate(
        self,
        z: Vector,
        fz: Vector,
        residual: Float[Array, ""],
        tol: float,
        state: PyTree[Array],
    ) -> tuple[Bool[Array, ""], FixedPointResult]:
        """``(done, result)`` at ``z``."""
