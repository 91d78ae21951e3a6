"""Bar panel: one metric per model (or solver, or style), grouped, each bar labelled."""

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.axes import Axes

from .._typing import ScalarLike
from ._axes import decorate

__all__ = ["bars"]


def bars(
    ax: Axes,
    groups: Sequence[str],
    values: Mapping[str, Sequence[ScalarLike | None]],
    *,
    colors: Mapping[str, str | Sequence[str]] | None = None,
    fmt: str | None = "{:.3g}",
    text: Mapping[str, Sequence[str]] | None = None,
    horizontal: bool = False,
    width: ScalarLike = 0.8,
    rotation: ScalarLike = 0.0,
    fontsize: ScalarLike = 6.5,
    **decorate_kw,
) -> Axes:
    """Grouped bars: for each group (a dataset, a metric) one bar per series (a model).

    ``values[series][i]`` is the bar of ``groups[i]``; ``None`` or NaN leaves a gap (a
    metric the run did not measure). Each finite bar carries its value formatted with
    ``fmt`` (``None``: no labels), or the strings ``text[series]`` (one per group: how a
    run failed, say). ``colors[series]`` is one colour or one per group.
    Series labels go to the legend (a single series labelled ``""`` stays out of it).
    """
    pos = np.arange(len(groups), dtype=float)
    step = width / max(len(values), 1)
    for j, (label, vals) in enumerate(values.items()):
        v = np.array([np.nan if a is None else a for a in vals], float)
        at = pos + (j - (len(values) - 1) / 2) * step
        color = (colors or {}).get(label)
        draw = ax.barh if horizontal else ax.bar
        container = draw(at, np.nan_to_num(v), step, color=color, label=label or None)
        if text is not None and label in text:
            shown = list(text[label])
        elif fmt is not None:
            shown = [fmt.format(a) if np.isfinite(a) else "" for a in v]
        else:
            continue
        ax.bar_label(container, shown, padding=2, fontsize=fontsize, rotation=rotation)
    (ax.set_yticks if horizontal else ax.set_xticks)(pos, list(groups))
    ax.margins(**({"x": 0.2} if horizontal else {"y": 0.2}))
    return decorate(ax, **decorate_kw)
