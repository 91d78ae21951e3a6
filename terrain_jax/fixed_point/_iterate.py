"""Plain Picard trajectories and the geometric rate of a residual or error trace."""

from collections.abc import Callable

import jax.numpy as jnp
import jax.tree_util as jtu
import numpy as np
from jax import lax
from jaxtyping import ArrayLike, Float, PyTree, Real

from .._typing import State


def iterate(
    f: Callable[[State, PyTree], State],
    z0: State,
    args: PyTree,
    steps: int,
    *,
    observe: Callable[[State], PyTree] | None = None,
) -> PyTree:
    """The Picard trajectory ``z_0, z_1 = f(z_0, args), …, z_steps`` as one ``lax.scan``.

    Returns every iterate, ``z0`` included: each leaf gains a leading axis of length
    ``steps + 1``. With ``observe`` it returns ``observe(z_k)`` instead, computed inside
    the scan, so that e.g. the error curve ``‖z_k − z*‖`` of a long orbit never stores
    the orbit. No damping, no stopping: the orbit itself (a cobweb, an error curve, the
    tail of a cycle).
    """
    obs = (lambda z: z) if observe is None else observe

    def step(z, _):
        z = f(z, args)
        return z, obs(z)

    _, ys = lax.scan(step, z0, None, length=steps)
    return jtu.tree_map(lambda a, b: jnp.concatenate([a[None], b]), obs(z0), ys)


def asymptotic_rate(
    residuals: Real[ArrayLike, "*batch k"], *, floor: float = 0.0, window: int = 8
) -> float | Float[np.ndarray, "*batch"]:
    """Geometric decay rate ``(e_hi / e_lo)^(1 / (hi − lo))`` of a trace over its tail.

    ``hi`` is the last index with ``e > floor`` (``nan`` entries, e.g. a
    :class:`FixedPointInfo` trace after termination, never count) and ``lo = max(0, hi −
    window)``: the exp of the log-linear slope over the last ``window`` steps above the
    round-off floor, which for Picard is the local rate ``ρ(J_f(z*))``; ``nan`` with fewer
    than two such steps. NumPy on host arrays (a reduction of stored traces): a float for
    one trace, an array of rates over the leading axes of a stack of traces.
    """
    e = np.asarray(residuals)
    ok = e > floor
    hi = np.max(np.where(ok, np.arange(e.shape[-1]), 0), axis=-1)
    lo = np.maximum(0, hi - window)
    e_hi = np.take_along_axis(e, hi[..., None], axis=-1)[..., 0]
    e_lo = np.take_along_axis(e, lo[..., None], axis=-1)[..., 0]
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = np.exp((np.log(e_hi) - np.log(e_lo)) / (hi - lo))
    rate = np.where(hi - lo < 2, np.nan, rate)
    return float(rate) if rate.ndim == 0 else rate
