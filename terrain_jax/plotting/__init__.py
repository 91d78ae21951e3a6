"""One style for every figure and the panels the experiments draw with.

Panels take an ``Axes`` first, draw one kind of picture and return the ``Axes``; their
extra keywords (``xlabel``, ``ylabel``, ``title``, ``legend``, any ``Axes`` property such
as ``yscale="log"``) go to :func:`decorate`:

- :func:`curves` (labelled lines), :func:`band` / :func:`quantile_band` (a curve with its
  interval), :func:`convergence` (log-log with fit windows and reference slopes),
  :func:`reference_slope`, :func:`depth_profile` (norms through depth, relative to the last);
- :func:`trajectories` (paths in a plane, with start / end markers);
- :func:`heatmap` (image or filled contours), :func:`limits` and :func:`shared_colorbar`
  (one colour scale for panels that compare);
- :func:`bars` (grouped bars of a metric per model, values printed);
- :func:`note` (a text block in a corner), :func:`integer_ticks`, :func:`legend_handles`,
  :func:`figure_legend` (one legend outside all panels).
"""

from ._axes import GUIDE, decorate, figure_legend, integer_ticks, legend_handles, note
from ._bars import bars
from ._lines import band, convergence, curves, depth_profile, quantile_band, reference_slope
from ._maps import heatmap, limits, shared_colorbar
from ._paths import trajectories
from ._style import COLORS, STYLE, figure, save_figure

__all__ = [
    "COLORS",
    "GUIDE",
    "STYLE",
    "band",
    "bars",
    "convergence",
    "curves",
    "decorate",
    "depth_profile",
    "figure",
    "figure_legend",
    "heatmap",
    "integer_ticks",
    "legend_handles",
    "limits",
    "note",
    "quantile_band",
    "reference_slope",
    "save_figure",
    "shared_colorbar",
    "trajectories",
]
