"""Outliers of a spectrum: how many eigenvalues stand above the largest relative gap."""

from typing import NamedTuple

import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, Int

__all__ = ["SpectralGap", "spectral_gap"]


class SpectralGap(NamedTuple):
    """The largest ratio gap of a spectrum, found by :func:`spectral_gap`."""

    count: Int[Array, ""]
    """``k*``: how many eigenvalues lie above the gap (``0`` when there is none)."""
    ratio: Float[Array, ""]
    """``λ_k*/λ_{k*+1}``, the size of the gap (``nan`` when fewer than two are positive)."""
    ratios: Float[Array, " m-1"]
    """``λ_k/λ_{k+1}`` for ``k = 1 … m−1`` of the sorted values; ``nan`` where ``λ_{k+1} ≤ 0``."""
    threshold: Float[Array, ""]
    """The gap's midpoint ``(λ_k* + λ_{k*+1})/2``, a cut between outliers and bulk (``nan``
    when ``count`` is ``0``), e.g. to count a density's mass above it."""


def spectral_gap(eigenvalues: Float[ArrayLike, " m"], *, min_ratio: float = 1.0) -> SpectralGap:
    """Count the outliers of a spectrum: ``k* = argmax_k λ_k/λ_{k+1}`` over its positive part.

    The eigenvalues (any order, e.g. the top ``m`` Lanczos values of a Hessian) are sorted
    descending; only positive ones take part, so a ratio is a relative gap. The outliers
    are the ``k*`` values above the largest such gap (the first one on ties), the rule
    behind "about C outliers for C classes" (Sagun et al. 2017; Ghorbani et al. 2019).

    ``min_ratio`` decides whether the largest gap separates anything: ``count`` is ``k*``
    when ``λ_k*/λ_{k*+1} ≥ min_ratio`` and ``0`` otherwise. The default ``1`` accepts the
    largest gap whatever its size (sorted ratios are ``≥ 1``), so a smooth bulk still
    reports a ``k*``; ask for, say, ``min_ratio=2`` to demand a factor of two. Fewer than
    two positive eigenvalues give ``0``. Jit-compatible.
    """
    values = jnp.asarray(eigenvalues)
    if values.ndim != 1 or values.shape[0] < 2:
        raise ValueError(
            f"spectral_gap: needs a 1-D array of at least 2 eigenvalues, got {values.shape}."
        )
    values = -jnp.sort(-values)  # descending, nan last
    upper, lower = values[:-1], values[1:]
    valid = (upper > 0) & (lower > 0)
    ratios = jnp.where(valid, upper / jnp.where(valid, lower, 1), jnp.nan)
    i = jnp.argmax(jnp.where(valid, ratios, -jnp.inf))
    any_valid = jnp.any(valid)
    ratio = jnp.where(any_valid, ratios[i], jnp.nan)
    separated = any_valid & (ratio >= min_ratio)
    count = jnp.where(separated, i + 1, 0)
    threshold = jnp.where(separated, 0.5 * (values[i] + values[i + 1]), jnp.nan)
    return SpectralGap(count, ratio, ratios, threshold)
