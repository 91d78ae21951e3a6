"""Map panels: a 2-D field as an image or filled contours, one colour scale where they compare."""

from collections.abc import Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.cm import ScalarMappable
from matplotlib.colorbar import Colorbar
from matplotlib.colors import Colormap, Normalize

from .._typing import PlotData, ScalarLike
from ._axes import decorate

__all__ = ["heatmap", "limits", "shared_colorbar"]


def limits(*arrays: PlotData, symmetric: bool = False) -> tuple[float, float]:
    """``(min, max)`` over the finite values of all ``arrays``: one colour scale for panels
    that compare (``symmetric``: ``(-a, a)`` with ``a`` the largest magnitude)."""
    vals = np.concatenate([np.ravel(np.asarray(a, float)) for a in arrays])
    vals = vals[np.isfinite(vals)]
    lo, hi = (float(vals.min()), float(vals.max())) if vals.size else (0.0, 1.0)
    if symmetric:
        a = max(abs(lo), abs(hi))
        return -a, a
    return lo, hi


def heatmap(
    ax: Axes,
    z: PlotData,
    *,
    x: PlotData | None = None,
    y: PlotData | None = None,
    extent: Sequence[ScalarLike] | None = None,
    levels: int | PlotData | None = None,
    outline: bool = False,
    vmin: ScalarLike | None = None,
    vmax: ScalarLike | None = None,
    cmap: str | Colormap | None = None,
    norm: Normalize | None = None,
    colorbar: str | None = None,
    extend: str = "neither",
    interpolation: str = "nearest",
    **decorate_kw,
) -> Axes:
    """The field ``z[i, j]`` at ``(x[j], y[i])`` (matplotlib's rows-are-y convention).

    With ``levels`` (a count or the level values) filled contours over ``x, y``
    (``outline`` adds thin black contour lines); otherwise an image, over ``extent`` or
    the cell centres ``x, y``. ``vmin/vmax`` or ``norm`` fix the colour scale: pass the
    same ones to panels that compare (see :func:`limits`, :func:`shared_colorbar`).
    ``colorbar`` (its label) adds a colour bar to this panel; ``extend`` ("min", "max",
    "both") marks values beyond the scale as clipped. The grid is switched off.
    """
    z = np.asarray(z)
    scale = {"cmap": cmap, "norm": norm} if norm is not None else {"cmap": cmap}
    if norm is None:
        scale |= {"vmin": vmin, "vmax": vmax}
    if levels is not None:
        if norm is None and vmin is not None and vmax is not None and np.ndim(levels) == 0:
            levels = np.linspace(vmin, vmax, int(levels) + 1)
        mappable = ax.contourf(x, y, z, levels=levels, extend=extend, **scale)
        if outline:
            ax.contour(x, y, z, levels=mappable.levels, colors="k", linewidths=0.3)
    else:
        if extent is None and x is not None and y is not None:
            x, y = np.asarray(x, float), np.asarray(y, float)
            dx = (x[-1] - x[0]) / max(x.size - 1, 1) / 2 or 0.5
            dy = (y[-1] - y[0]) / max(y.size - 1, 1) / 2 or 0.5
            extent = (x[0] - dx, x[-1] + dx, y[0] - dy, y[-1] + dy)
        mappable = ax.imshow(z, origin="lower", extent=extent, interpolation=interpolation, **scale)
    if colorbar is not None:
        ax.figure.colorbar(mappable, ax=ax, shrink=0.85, label=colorbar, extend=extend)
    ax.grid(False)
    return decorate(ax, **decorate_kw)


def shared_colorbar(
    axes: Sequence[Axes] | np.ndarray,
    *,
    label: str,
    vmin: ScalarLike | None = None,
    vmax: ScalarLike | None = None,
    cmap: str | Colormap | None = None,
    norm: Normalize | None = None,
    **kw,
) -> Colorbar:
    """One colour bar for several panels drawn on the same scale (``vmin/vmax`` or ``norm``,
    as passed to each :func:`heatmap`), placed beside all of them."""
    axes = list(np.ravel(axes))
    norm = norm if norm is not None else Normalize(vmin, vmax)
    kw = {"shrink": 0.85, **kw}
    return axes[0].figure.colorbar(ScalarMappable(norm, cmap), ax=axes, label=label, **kw)
