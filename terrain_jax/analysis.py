"""Fits on stored results: log-log slopes, decay rates, steps to a tolerance, standard errors.

The experiments solve with JAX and then reduce what they stored to a few numbers. Those
reductions are the same few fits, so they live here, once:

- :func:`loglog_slope`: the exponent ``p`` of ``y ∝ x^p`` (an order of convergence, a
  growth exponent), the least-squares slope of ``ln y`` on ``ln x``;
- :func:`linear_fit`: slope and intercept of ``y`` on ``x`` (bytes per layer, steps per
  ``ln(1/ε)``);
- :func:`log_linear_rate`: the rate ``r`` of ``y ∝ e^{r x}`` (nepers per layer) with its
  R², over the finite entries above a floor;
- :func:`gradient_decay`: how a per-layer gradient-norm profile decays with depth (first/last
  ratio, rate per layer with its R², entries below the floor);
- :func:`steps_to_tolerance`: the first step from which a sequence stays below ``tol``;
- :func:`steps_agree`: two step counts (``inf``: never) agree within a few steps;
- :func:`first_where`: the first grid value at which a condition holds;
- :func:`runs`: the maximal runs of a condition along a grid (e.g. the step sizes at which
  a walk converges);
- :func:`mean_stderr`: a sample mean and its standard error.
- :func:`rank_correlation`: Spearman's rank correlation, ``0`` for a constant variable.

NumPy in, Python floats (or NumPy arrays) out: these run after the solve, on host arrays.
Each is the exact arithmetic the experiments used before (the same ``np.polyfit`` calls in
the same order), so moving an experiment onto them changes no stored number.
"""

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from jaxtyping import ArrayLike, Bool, Float, Real

__all__ = [
    "LinearFit",
    "Rate",
    "MeanStderr",
    "loglog_slope",
    "linear_fit",
    "log_linear_rate",
    "GradientDecay",
    "gradient_decay",
    "steps_to_tolerance",
    "steps_agree",
    "runs",
    "first_where",
    "mean_stderr",
    "rank_correlation",
]


class LinearFit(NamedTuple):
    """Least-squares line ``y ≈ slope · x + intercept``."""

    slope: float
    intercept: float


class Rate(NamedTuple):
    """``ln y ≈ rate · x + intercept`` over ``n_fit`` points, with its R² (NaN when unfitted)."""

    rate: float
    intercept: float
    r2: float
    n_fit: int


class GradientDecay(NamedTuple):
    """Decay of per-layer gradient norms ``‖∂L/∂x_k‖``, ``k = 0 … L`` (one entry per profile)."""

    ratio: np.ndarray
    """``‖∂L/∂x_0‖ / ‖∂L/∂x_L‖`` in the norms' dtype (NaN where the last norm is not > 0)."""
    rate: np.ndarray
    """Nepers per layer back-propagated through (:func:`log_linear_rate`; ``< 0``: shrinking)."""
    r2: np.ndarray
    """R² of that fit."""
    below_floor: np.ndarray
    """How many norms are at or below the floor (left out of the fit)."""


class MeanStderr(NamedTuple):
    """Sample mean and its standard error ``std(ddof=1) / √n``."""

    mean: float
    stderr: float


def _pair(x, y, where: str) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(x), np.asarray(y)
    if x.ndim != 1 or y.ndim != 1:
        raise ValueError(
            f"{where}: x and y must be 1-D, got shapes {x.shape} and {y.shape}; "
            "fit one curve per call (loop or index the rows)."
        )
    if x.size != y.size:
        raise ValueError(f"{where}: x has {x.size} points but y has {y.size}; pass one y per x.")
    return x, y


def loglog_slope(
    x: Real[ArrayLike, " n"],
    y: Real[ArrayLike, " n"],
    *,
    mask: Bool[ArrayLike, " n"] | None = None,
) -> float:
    """Least-squares slope of ``ln y`` on ``ln x`` over the points where ``mask`` is true.

    The exponent of a power law ``y = c·x^p``: e.g. a solver's order from its global error
    against the step size. NaN when fewer than two points are fitted. Every fitted ``x``
    and ``y`` must be positive and finite (a zero error is round-off, not a power law):
    leave such points out with ``mask`` rather than letting ``log`` turn them into ``-inf``.
    """
    x, y = _pair(x, y, "loglog_slope")
    if mask is not None:
        mask = np.asarray(mask)
        if mask.shape != x.shape or mask.dtype != bool:
            raise ValueError(
                f"loglog_slope: mask must be a boolean array of shape {x.shape}, got "
                f"{mask.dtype} of shape {mask.shape}."
            )
        x, y = x[mask], y[mask]
    for name, v in (("x", x), ("y", y)):
        bad = ~(np.isfinite(v) & (v > 0))
        if bad.any():
            raise ValueError(
                f"loglog_slope: {name} must be positive and finite to take its log, but "
                f"{int(bad.sum())} fitted value(s) are not (first: {v[bad][0]!r}); "
                "leave them out with mask=."
            )
    if x.size < 2:
        return float("nan")
    return float(np.polyfit(np.log(x), np.log(y), 1)[0])


def linear_fit(x: Real[ArrayLike, " n"], y: Real[ArrayLike, " n"]) -> LinearFit:
    """Least-squares line of ``y`` on ``x`` (``np.polyfit(x, y, 1)``).

    NaN slope and intercept when any point is not finite — e.g. an ``inf`` from
    :func:`steps_to_tolerance`, a run that never got there, which no line describes —
    or when there are fewer than two points.
    """
    x, y = _pair(x, y, "linear_fit")
    if x.size < 2 or not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        return LinearFit(float("nan"), float("nan"))
    slope, intercept = np.polyfit(x, y, 1)
    return LinearFit(float(slope), float(intercept))


def log_linear_rate(
    x: Real[ArrayLike, " n"], y: Real[ArrayLike, " n"], *, floor: float = 0.0
) -> Rate:
    """Least-squares slope of ``ln y`` against ``x``, with R², over finite ``y > floor``.

    The rate ``r`` of an exponential ``y = A·e^{r x}``: e.g. how fast a gradient norm
    shrinks (``r < 0``) per layer back-propagated through. Entries at or below ``floor``
    (round-off, an underflowed norm) or not finite are left out; with fewer than three
    left, ``rate``, ``intercept`` and ``r2`` are NaN (``n_fit`` still counts them). R² is
    1 when the fitted ``ln y`` are all equal.
    """
    x, y = _pair(x, y, "log_linear_rate")
    if not floor >= 0:
        raise ValueError(f"log_linear_rate: floor must be >= 0 (log needs y > 0), got {floor!r}.")
    ok = np.isfinite(y) & (y > floor)
    n_fit = int(ok.sum())
    if n_fit < 3:
        nan = float("nan")
        return Rate(nan, nan, nan, n_fit)
    ls = np.log(y[ok])
    a, b = np.polyfit(x[ok], ls, 1)
    res = ls - (a * x[ok] + b)
    tot = ls - ls.mean()
    r2 = 1.0 - float(res @ res) / float(tot @ tot) if float(tot @ tot) > 0 else 1.0
    return Rate(float(a), float(b), r2, n_fit)


def gradient_decay(norms: Real[ArrayLike, "*batch layers"], *, floor: float = 0.0) -> GradientDecay:
    """How per-layer gradient norms decay on their way back to the input.

    ``norms[..., k]`` is ``‖∂L/∂x_k‖`` for ``k = 0 … L`` (the ``state_grad_norms`` of
    :func:`~terrain_jax.nets.layer_gradient_norms`). Per profile: the first/last ratio, the
    :func:`log_linear_rate` of the norms against ``L − k``, the number of layers
    back-propagated through (over the finite norms above ``floor``), and the count at or
    below ``floor``. Each field has the shape ``batch`` of the leading axes.
    """
    s = np.asarray(norms)
    if s.ndim < 1 or s.shape[-1] < 2:
        raise ValueError(
            f"gradient_decay: norms need a last axis of at least 2 layers, got shape {s.shape}."
        )
    first, last = s[..., 0], s[..., -1]
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(last > 0, first / last, np.nan)
    n = np.arange(s.shape[-1], dtype=float)[::-1]
    fits = [log_linear_rate(n, p, floor=floor) for p in s.reshape(-1, s.shape[-1])]
    shape = s.shape[:-1]
    return GradientDecay(
        ratio,
        np.array([f.rate for f in fits]).reshape(shape),
        np.array([f.r2 for f in fits]).reshape(shape),
        np.asarray(np.sum(s <= floor, axis=-1)),
    )


def steps_to_tolerance(
    values: Real[ArrayLike, "*shape"], tol: float, *, axis: int = -1
) -> Float[np.ndarray, "*batch"]:
    """First index along ``axis`` from which ``values`` stay finite and strictly below ``tol``.

    "Steps to converge" of a run that may overshoot: a loss that dips under ``tol`` and
    comes back up has not converged yet. ``inf`` (the result is float64) where the run
    never settles, i.e. where the last value is not below ``tol``; a NaN or ``inf`` value
    counts as not below. ``axis`` is removed; every other axis is kept.
    """
    v = np.moveaxis(np.asarray(values), axis, -1)
    if v.shape[-1] == 0:
        raise ValueError("steps_to_tolerance: the sequence axis is empty; pass at least one step.")
    above = ~(np.isfinite(v) & (v < tol))
    n = v.shape[-1]
    last = n - 1 - np.argmax(above[..., ::-1], axis=-1)  # last index still above
    step = np.where(above.any(axis=-1), last + 1, 0).astype(float)
    return np.where(step > n - 1, np.inf, step)


def steps_agree(
    a: Real[ArrayLike, "*shape"], b: Real[ArrayLike, "*shape"], within: float = 1.0
) -> Bool[np.ndarray, "*shape"]:
    """Where two step counts agree: both ``inf`` (never got there), or both finite and at
    most ``within`` steps apart, e.g. a measured :func:`steps_to_tolerance` against a
    closed form. Elementwise, with broadcasting."""
    a, b = np.asarray(a), np.asarray(b)
    fa, fb = np.isfinite(a), np.isfinite(b)
    with np.errstate(invalid="ignore"):  # inf − inf where neither got there
        near = np.abs(np.where(fa & fb, a - b, 0.0)) <= within
    return (fa == fb) & near


def runs(x: Real[ArrayLike, " n"], mask: Bool[ArrayLike, " n"]) -> list[list[float]]:
    """The maximal runs of consecutive ``True`` in ``mask`` along the grid ``x``, as
    ``[first x, last x]`` pairs in grid order (``[]`` when ``mask`` is all ``False``)."""
    x, mask = _pair(x, mask, "runs")
    out, start = [], None
    for i, m in enumerate(mask):
        if m and start is None:
            start = i
        if start is not None and (not m or i == len(mask) - 1):
            end = i if m else i - 1
            out.append([float(x[start]), float(x[end])])
            start = None
    return out


def first_where(
    mask: Bool[ArrayLike, " n"], x: Real[ArrayLike, " n"] | None = None
) -> float | int | None:
    """The first ``x`` (a Python float; without ``x``, the index) at which ``mask`` is
    true, e.g. the smallest swept step size at which a walk diverges; ``None`` if it never
    is."""
    mask = np.asarray(mask)
    if mask.ndim != 1 or mask.dtype != bool:
        raise ValueError(
            f"first_where: mask must be a 1-D boolean array, got {mask.dtype}{list(mask.shape)}."
        )
    hit = np.flatnonzero(mask)
    if x is None:
        return int(hit[0]) if hit.size else None
    x = _pair(x, mask, "first_where")[0]
    return float(x[hit[0]]) if hit.size else None


def mean_stderr(samples: Real[ArrayLike, " n"]) -> MeanStderr:
    """Mean of ``samples`` and its standard error ``std(ddof=1) / √n`` (``n ≥ 2``)."""
    s = np.asarray(samples)
    if s.ndim != 1 or s.size < 2:
        raise ValueError(
            f"mean_stderr: needs a 1-D array of at least 2 samples, got shape {s.shape}."
        )
    return MeanStderr(float(np.mean(s)), float(np.std(s, ddof=1) / np.sqrt(s.size)))


def rank_correlation(
    a: Sequence[float] | Real[ArrayLike, " n"], b: Sequence[float] | Real[ArrayLike, " n"]
) -> float:
    """Spearman's rank correlation of ``a`` and ``b`` (``scipy.stats.spearmanr``), ``0``
    when either is constant: a constant variable has no rank association (scipy would
    return NaN)."""
    if np.ptp(np.asarray(a)) == 0 or np.ptp(np.asarray(b)) == 0:
        return 0.0
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic)
