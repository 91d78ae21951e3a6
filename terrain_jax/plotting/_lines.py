"""Line panels: labelled curves, curves with an interval band, log-log convergence plots."""

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.axes import Axes

from .._typing import PlotData, ScalarLike
from ._axes import decorate

__all__ = ["curves", "band", "quantile_band", "reference_slope", "convergence", "depth_profile"]

Series = Mapping[str, PlotData | tuple[PlotData, PlotData]]
"""label -> y over the panel's shared x, or label -> (x, y) for a curve of its own."""
Style = dict | str | tuple | np.ndarray
"""``ax.plot`` keywords, or a colour (a name, or RGB(A) values as from a colormap)."""
Styles = Mapping[str, Style] | Sequence[Style]
"""One :data:`Style` per label, or a sequence of them in the order of the series."""


def _xy(x, value):
    if isinstance(value, tuple):
        x, value = value
    y = np.asarray(value, float)
    y = np.where(np.isfinite(y), y, np.nan)  # a diverged run (inf) leaves a gap, not a spike
    return (np.arange(y.shape[0]) if x is None else np.asarray(x)), y


def style_for(styles: Styles | None, label: str, i: int) -> dict:
    """The ``ax.plot`` keywords of series ``i`` (labelled ``label``) from ``styles``."""
    if styles is None:
        return {}
    kw = styles.get(label, {}) if isinstance(styles, Mapping) else styles[i]
    return dict(kw) if isinstance(kw, Mapping) else {"color": kw}


def curves(
    ax: Axes,
    x: PlotData | None,
    series: Series,
    fmt: str | None = None,
    *,
    styles: Styles | None = None,
    style: dict | None = None,
    floor: ScalarLike | None = None,
    dodge: ScalarLike = 0.0,
    **decorate_kw,
) -> Axes:
    """One line per entry of ``series``, drawn with ``fmt`` (as in ``ax.plot``), ``style``
    (keywords for every line) and ``styles[label]`` (keywords for one, overriding); labels
    starting with ``_`` stay out of the legend; ``x=None`` plots against the index.
    Non-finite values (``inf`` for a diverged run) break the line. With a ``floor`` (on a log
    axis), values that are exactly 0 (a norm that underflowed) leave the line and are drawn
    at ``floor`` as ▽ markers in the curve's colour and fill, shifted by ``dodge`` per series
    (a fraction of x on a log x axis, in x units otherwise) so that the markers of several
    curves stay apart. ``decorate_kw`` go to :func:`decorate` (``xscale="log"``,
    ``xlabel=...``, ``legend=...``).
    """
    logx = decorate_kw.get("xscale", ax.get_xscale()) == "log"
    for i, (label, value) in enumerate(series.items()):
        xs, ys = _xy(x, value)
        shown = ys if floor is None else np.where(ys > 0, ys, np.nan)
        args = (xs, shown) if fmt is None else (xs, shown, fmt)
        kw = {"label": label, **(style or {}), **style_for(styles, label, i)}
        (line,) = ax.plot(*args, **kw)
        if floor is not None and (ys == 0).any():
            shift = dodge * (i - (len(series) - 1) / 2)
            at = xs[ys == 0] * (1 + shift) if logx else xs[ys == 0] + shift
            face = kw.get("mfc", line.get_color())
            ax.plot(at, np.full(at.size, floor), "v", color=line.get_color(), ms=5, mfc=face)
    return decorate(ax, **decorate_kw)


def band(
    ax: Axes,
    x: PlotData,
    mid: PlotData,
    lo: PlotData,
    hi: PlotData,
    fmt: str = "-",
    *,
    color=None,
    label: str | None = None,
    alpha: ScalarLike = 0.2,
    **line_kw,
) -> Axes:
    """A curve ``mid`` over ``x`` with the interval ``[lo, hi]`` shaded in its colour.

    The band is what makes a measured curve a finding: quantiles over seeds or inputs,
    min–max over a window, mean ± standard error.
    """
    (line,) = ax.plot(x, mid, fmt, color=color, label=label, **line_kw)
    ax.fill_between(x, lo, hi, color=line.get_color(), alpha=alpha, lw=0)
    return ax


def quantile_band(
    ax: Axes,
    x: PlotData,
    samples: PlotData,
    fmt: str = "-",
    *,
    q: tuple[ScalarLike, ScalarLike] = (0.1, 0.9),
    axis: int = 0,
    **kw,
) -> Axes:
    """The median of ``samples`` along ``axis`` over ``x``, with the ``q`` quantiles shaded."""
    s = np.asarray(samples, float)
    lo, mid, hi = np.quantile(s, [q[0], 0.5, q[1]], axis=axis)
    return band(ax, x, mid, lo, hi, fmt, **kw)


def reference_slope(
    ax: Axes,
    x: PlotData,
    slope: ScalarLike,
    *,
    through: tuple[ScalarLike, ScalarLike],
    label: str | None = None,
    **kw,
) -> Axes:
    """The power law ``y = y0 (x / x0)^slope`` through ``through = (x0, y0)``, over ``x``.

    A straight line of that slope on log-log axes: the order a convergence plot is read
    against (slope 1 through the diagonal point is the identity ``y = x``).
    """
    x = np.asarray(x, float)
    x0, y0 = through
    kw = {"color": "k", "ls": "--", "lw": 0.8, **kw}
    ax.plot(x, y0 * (x / x0) ** slope, label=label, **kw)
    return ax


def convergence(
    ax: Axes,
    x: PlotData | None,
    series: Series,
    *,
    styles: Styles | None = None,
    fit: Mapping[str, PlotData] | None = None,
    slopes: Mapping[str, ScalarLike] | None = None,
    through: tuple[ScalarLike, ScalarLike] | None = None,
    **decorate_kw,
) -> Axes:
    """Log-log panel of errors (or costs) against a step size (or a size), with slopes.

    Each series is drawn as markers on a line (``styles[label]``, default marker ``o``).
    Where ``fit[label]`` (a boolean mask over x) is given, the points inside the fit window
    are filled, those outside hollow on a faint line, and a dotted least-squares power law
    spans the window. ``slopes`` (label -> slope) adds reference lines through
    ``through`` (default: the first point of the first series).
    """
    ax.set(xscale="log", yscale="log")
    for i, (label, value) in enumerate(series.items()):
        xs, ys = _xy(x, value)
        kw = {"marker": "o", "ms": 4, "label": label, **style_for(styles, label, i)}
        if fit is None or label not in fit:
            ax.plot(xs, ys, **kw)
            continue
        mask = np.asarray(fit[label], bool)
        (line,) = ax.plot(xs[mask], ys[mask], **{**kw, "ls": "none"})
        c = line.get_color()
        ax.plot(xs, ys, color=c, lw=1, alpha=0.5)
        ax.plot(
            xs[~mask], ys[~mask], **{**kw, "ls": "none", "mfc": "none", "color": c, "label": None}
        )
        coef = np.polyfit(np.log(xs[mask]), np.log(ys[mask]), 1)
        ax.plot(xs[mask], np.exp(np.polyval(coef, np.log(xs[mask]))), color=c, ls=":", lw=2)
    if slopes:
        first = next(iter(series.values()))
        x0, y0 = _xy(x, first)
        through = through or (float(x0[0]), float(y0[0]))
        for (label, slope), ls in zip(slopes.items(), ("--", ":", "-."), strict=False):
            reference_slope(ax, _xy(x, first)[0], slope, through=through, label=label, ls=ls)
    return decorate(ax, **decorate_kw)


def depth_profile(
    ax: Axes,
    norms: Mapping[str, PlotData],
    *,
    back: bool = False,
    within: ScalarLike | None = None,
    styles: Styles | None = None,
    style: dict | None = None,
    **decorate_kw,
) -> Axes:
    """Norms through depth (gradients ``‖∂L/∂x_k‖``, one per layer ``k = 0..L``), each
    curve relative to its last layer's, on a log axis; zeros (norms that underflowed)
    leave a gap. ``back`` plots against the layers back-propagated through, ``L − k``
    (from 1, log-log); ``within`` shades the band ``[1/within, within]`` (a "bounded"
    gradient). Keywords as in :func:`curves`.
    """
    rel = {}
    for label, n in norms.items():
        n = np.asarray(n, float)
        r = n / n[-1]
        r = np.where(r > 0, r, np.nan)
        rel[label] = (np.arange(1, r.size), r[::-1][1:]) if back else (np.arange(r.size), r)
    if within is not None:
        ax.axhspan(1 / within, within, color="k", alpha=0.06, lw=0)
    scales = {"xscale": "log"} if back else {}
    ylabel = "‖∂L/∂x_k‖ / ‖∂L/∂x_L‖"
    xlabel = "layers back-propagated through (L − k)" if back else "layer k"
    kw = {"xlabel": xlabel, "ylabel": ylabel, **scales, **decorate_kw}
    return curves(ax, None, rel, styles=styles, style=style, yscale="log", **kw)
