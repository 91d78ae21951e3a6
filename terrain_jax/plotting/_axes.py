"""Finishing touches shared by the panels: labels, notes, ticks, legends outside the axes."""

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.layout_engine import ConstrainedLayoutEngine
from matplotlib.legend import Legend
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from .._typing import PlotData, ScalarLike

__all__ = ["GUIDE", "decorate", "note", "integer_ticks", "legend_handles", "figure_legend"]

GUIDE = {"color": "0.35", "ls": ":", "lw": 0.8}
"""The style of unlabelled reference lines (zero, a tolerance, a threshold)."""

_LOC = {
    "upper right": (0.98, 0.97, "right", "top"),
    "upper left": (0.02, 0.97, "left", "top"),
    "lower right": (0.98, 0.03, "right", "bottom"),
    "lower left": (0.02, 0.03, "left", "bottom"),
    "center": (0.5, 0.5, "center", "center"),
}


def decorate(
    ax: Axes,
    *,
    xlabel: str | None = None,
    ylabel: str | None = None,
    title: str | None = None,
    legend: bool | str | dict | None = None,
    hlines: PlotData = (),
    vlines: PlotData = (),
    **props,
) -> Axes:
    """Label ``ax``, set any Axes property (``xscale="log"``, ``ylim=(0, 1)``), add a legend.

    ``hlines`` / ``vlines`` are unlabelled reference lines (a tolerance, zero, a threshold)
    drawn in the one guide style, :data:`GUIDE`. ``legend`` is ``None`` / ``False`` (none),
    ``True`` (matplotlib's best place), a location string, or a dict of ``ax.legend``
    keywords. Every panel passes its keywords through here.
    """
    for y in hlines:
        ax.axhline(y, **GUIDE)
    for x in vlines:
        ax.axvline(x, **GUIDE)
    text = {"xlabel": xlabel, "ylabel": ylabel, "title": title}
    ax.set(**{k: v for k, v in text.items() if v is not None}, **props)
    if legend is not None and legend is not False:
        kw = legend if isinstance(legend, dict) else {} if legend is True else {"loc": legend}
        ax.legend(**kw)
    return ax


def note(ax: Axes, text: str, *, loc: str = "upper right", box: bool = True, **kw) -> Axes:
    """A block of text (a small table, a verdict, a measured value) in a corner of ``ax``.

    ``loc`` is one of "upper right", "upper left", "lower right", "lower left", "center";
    ``box`` draws a white rounded frame so the text stays legible over data.
    """
    if loc not in _LOC:
        raise ValueError(f"Unknown loc {loc!r}; valid: {', '.join(_LOC)}.")
    x, y, ha, va = _LOC[loc]
    frame = {"facecolor": "white", "edgecolor": "0.8", "alpha": 0.9, "boxstyle": "round,pad=0.3"}
    kw = {"fontsize": 7, "bbox": frame if box else None, **kw}
    ax.text(x, y, text, transform=ax.transAxes, ha=ha, va=va, **kw)
    return ax


def integer_ticks(
    ax: Axes, values: PlotData, *, axis: str = "x", labels: Sequence[str] | None = None
) -> Axes:
    """Ticks exactly at ``values`` (depths, step counts), labelled plainly, no minor ticks.

    On log axes matplotlib would otherwise label only the decades.
    """
    labels = [f"{v:g}" for v in np.asarray(values, float)] if labels is None else labels
    ax.minorticks_off()
    (ax.set_xticks if axis == "x" else ax.set_yticks)(list(values), list(labels))
    return ax


def legend_handles(spec: Mapping[str, dict | str], *, patch: bool = False) -> list[Artist]:
    """Proxy artists for a legend: label -> ``Line2D`` keywords (a string: the colour).

    With ``patch=True`` each entry is a filled ``Patch`` (categories of a map, bar colours).
    """
    out = []
    for label, kw in spec.items():
        kw = {**({"color": kw} if isinstance(kw, str) else kw), "label": label}
        out.append(Patch(**kw) if patch else Line2D([], [], **kw))
    return out


def figure_legend(
    fig: Figure,
    handles: Sequence[Artist] | None = None,
    *,
    where: str = "below",
    ncol: int | None = None,
    space: ScalarLike = 0.06,
    **kw,
) -> Legend:
    """One legend for the whole figure, outside every panel, ``below`` or ``above`` them.

    Under a tight layout the panels leave ``space`` (a fraction of the figure height)
    free for it; a constrained layout makes room by itself. Without ``handles``, the
    labelled artists of every axes (each label once).
    """
    labels = None
    if handles is None:
        by_label = {}
        for ax in fig.axes:
            for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
                by_label.setdefault(lab, h)
        handles, labels = list(by_label.values()), list(by_label)
    if where not in ("below", "above"):
        raise ValueError(f"Unknown where {where!r}; valid: below, above.")
    below, ncol = where == "below", ncol or len(handles)
    if labels is not None:
        kw["labels"] = labels
    if isinstance(fig.get_layout_engine(), ConstrainedLayoutEngine):
        loc = "outside lower center" if below else "outside upper center"
        return fig.legend(handles=handles, loc=loc, ncol=ncol, **kw)
    fig.set_layout_engine("tight", rect=(0, space, 1, 1) if below else (0, 0, 1, 1 - space))
    anchor = (0.5, 0.0) if below else (0.5, 1.0 - space)
    return fig.legend(handles=handles, loc="lower center", ncol=ncol, bbox_to_anchor=anchor, **kw)
