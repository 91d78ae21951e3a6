"""One matplotlib style for every figure, one colour per solver / model, atomic writing."""

import os
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

__all__ = ["STYLE", "COLORS", "figure", "save_figure"]

STYLE = {
    "figure.dpi": 110,
    "savefig.dpi": 150,
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.25,
    "legend.frameon": False,
    "legend.fontsize": 7,
    "lines.linewidth": 1.5,
    "image.cmap": "viridis",
}

COLORS = {
    "exact": "#222222",
    "euler": "#d62728",
    "heun": "#ff7f0e",
    "midpoint": "#bcbd22",
    "rk4": "#1f77b4",
    "tsit5": "#2ca02c",
    "implicit_euler": "#9467bd",
    "kvaerno5": "#8c564b",
    "resnet": "#d62728",
    "plain": "#7f7f7f",
}
"""One colour per solver / model family, shared by all figures."""


def figure(nrows: int = 1, ncols: int = 1, *, size: tuple[float, float] | None = None, **kw):
    """``plt.subplots`` under the project style; ``size`` is per panel in inches.

    The panels are laid out when the figure is drawn (``layout="tight"`` unless another
    layout is asked for, e.g. ``"constrained"`` for colour bars shared by several panels).
    """
    w, h = size or (4.0, 3.2)
    kw.setdefault("layout", "tight")
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(nrows, ncols, figsize=(w * ncols, h * nrows), **kw)
    return fig, axes


def save_figure(fig: Figure, path: str | os.PathLike) -> Path:
    """Write ``fig`` to ``path`` atomically (temp file + rename) and close it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=path.suffix)
    os.close(fd)
    try:
        with plt.rc_context(STYLE):
            fig.savefig(tmp, bbox_inches="tight")
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
        plt.close(fig)
    return path
