"""Path panel: trajectories in a plane (walks on a terrain, hidden states, PCA projections)."""

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.axes import Axes

from .._typing import PlotData
from ._axes import decorate
from ._lines import Styles, style_for

__all__ = ["trajectories"]


def trajectories(
    ax: Axes,
    paths: Mapping[str, PlotData] | Sequence[PlotData],
    fmt: str | None = None,
    *,
    styles: Styles | None = None,
    style: dict | None = None,
    start: dict | None = None,
    end: dict | None = None,
    **decorate_kw,
) -> Axes:
    """Each path, an ``(n, 2)`` array of points, as a line in the plane (``fmt``, ``style``,
    ``styles`` as in :func:`curves`; a sequence of paths is unlabelled). ``start`` / ``end``
    are marker keywords for the first / last point, drawn in the path's colour.
    """
    items = paths.items() if isinstance(paths, Mapping) else (("_", p) for p in paths)
    for i, (label, p) in enumerate(items):
        p = np.asarray(p)
        args = (p[:, 0], p[:, 1]) if fmt is None else (p[:, 0], p[:, 1], fmt)
        (line,) = ax.plot(*args, **{"label": label, **(style or {}), **style_for(styles, label, i)})
        for at, kw in ((0, start), (-1, end)):
            if kw is not None:
                ax.plot(p[at, 0], p[at, 1], **{"color": line.get_color(), "ls": "", **kw})
    return decorate(ax, **decorate_kw)
