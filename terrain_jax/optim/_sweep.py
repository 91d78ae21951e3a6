"""Sweeps: one style over a grid of one hyper-parameter, and the grid point that does best.

"Which learning rate suits this style" is a :func:`walk_many` over a grid followed by a
reduction over the starts and an arg-min; :func:`sweep` runs the walks (one compiled call)
and :class:`Sweep` finds grid points: the style's default (:meth:`Sweep.index`) and the
best by a score with a tie-break (:meth:`Sweep.best`).
"""

from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np
from jaxtyping import ArrayLike, Float, PyTree, Real

from .._typing import Params, Scalar
from ._styles import Hyper, Style, default_hyper
from ._walk import Path, walk_many

__all__ = ["Sweep", "sweep"]


class Sweep(NamedTuple):
    """Walks of ``style`` with hyper-parameter ``name`` set to each of ``values``.

    ``path`` is the :class:`Path` of :func:`walk_many`, leading axes ``(grid, starts)``.
    """

    style: Style
    name: str
    values: Float[np.ndarray, " grid"]
    path: Path

    def index(self, value: float | None = None, *, rtol: float = 1e-5) -> int:
        """Grid index of ``value`` (default: the style's own default for :attr:`name`): the
        nearest grid point on a log scale, which must equal ``value`` within ``rtol``."""
        if value is None:
            defaults = default_hyper(self.style)
            if self.name not in defaults:
                raise ValueError(
                    f"Style {self.style!r} has no default {self.name!r}; pass the value."
                )
            value = float(defaults[self.name])
        i = int(np.argmin(np.abs(np.log(self.values) - np.log(value))))
        if not np.isclose(self.values[i], value, rtol=rtol):
            raise ValueError(
                f"{self.name} = {value} is not on the grid {self.values}; use a grid that holds it."
            )
        return i

    def best(
        self, score: Real[ArrayLike, " grid"], tiebreak: Real[ArrayLike, " grid"] | None = None
    ) -> int:
        """Grid index minimising ``score`` (one number per grid point, e.g. a median over
        the starts); equal scores (e.g. all ``inf``) are broken by the smaller ``tiebreak``
        (NaN counts as ``inf``), then by the first index. NaN scores rank last."""
        score = np.asarray(score)
        if score.shape != self.values.shape:
            raise ValueError(
                f"score must have one entry per grid point, shape {self.values.shape}; got "
                f"{score.shape} (reduce over the starts first)."
            )
        if tiebreak is None:
            return int(np.lexsort((score,))[0])
        return int(np.lexsort((np.nan_to_num(np.asarray(tiebreak), nan=np.inf), score))[0])


def sweep(
    loss: Callable[[Params], Scalar],
    style: Style,
    x0s: PyTree[Float[ArrayLike, "starts ..."]],
    steps: int,
    values: Float[ArrayLike, " grid"] | Sequence[float],
    *,
    name: str = "learning_rate",
    hyper: dict[str, Hyper] | None = None,
    every: int = 1,
) -> Sweep:
    """Walk every start of ``x0s`` ``steps`` steps of ``style`` at each of ``values`` of the
    hyper-parameter ``name`` (one :func:`walk_many` call; ``hyper`` fixes the others,
    ``every`` as there). The values go to the walks as given (their dtype is kept)."""
    grid = jnp.asarray(values)
    path = walk_many(loss, style, x0s, steps, hyper_grid={name: grid}, hyper=hyper, every=every)
    return Sweep(style, name, np.asarray(grid), path)
