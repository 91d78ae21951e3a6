"""Panels of ``terrain_jax.plotting``: each returns its axes with the expected artists."""

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.colors import TwoSlopeNorm

from terrain_jax.plotting import (
    GUIDE,
    STYLE,
    band,
    bars,
    convergence,
    curves,
    decorate,
    depth_profile,
    figure,
    figure_legend,
    heatmap,
    integer_ticks,
    legend_handles,
    limits,
    note,
    quantile_band,
    reference_slope,
    save_figure,
    shared_colorbar,
    trajectories,
)


@pytest.fixture
def ax():
    fig, ax = figure()
    yield ax
    plt.close(fig)


def test_curves_one_line_per_series_and_hidden_labels(ax):
    x = np.linspace(1, 10, 5)
    out = curves(ax, x, {"a": x, "_b": 2 * x, "c": (x[:3], x[:3] ** 2)}, "o",
                 styles={"a": "red", "c": {"ls": "--"}}, yscale="log", xlabel="x",
                 legend="upper left")  # fmt: skip
    assert out is ax
    assert len(ax.lines) == 3
    assert ax.lines[0].get_color() == "red" and ax.lines[2].get_linestyle() == "--"
    assert ax.get_yscale() == "log" and ax.get_xlabel() == "x"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["a", "c"]
    np.testing.assert_array_equal(ax.lines[2].get_xdata(), x[:3])


def test_curves_without_x_uses_the_index(ax):
    curves(ax, None, {"a": [3.0, 2.0, 1.0], "diverged": [1.0, np.inf, 2.0]})
    np.testing.assert_array_equal(ax.lines[0].get_xdata(), [0, 1, 2])
    np.testing.assert_array_equal(ax.lines[1].get_ydata(), [1.0, np.nan, 2.0])  # a gap


def test_curves_floor_marks_underflowed_values_apart(ax):
    x = np.array([1.0, 10.0, 100.0])
    series = {"a": [1.0, 0.0, 0.0], "b": [2.0, 1.0, 0.0]}
    curves(ax, x, series, floor=1e-16, dodge=0.1, xscale="log", yscale="log")
    a, a_floor, b, b_floor = ax.lines
    np.testing.assert_array_equal(a.get_ydata(), [1.0, np.nan, np.nan])  # zeros leave the line
    np.testing.assert_allclose(a_floor.get_xdata(), [10 * 0.95, 100 * 0.95])
    np.testing.assert_allclose(b_floor.get_xydata(), [[100 * 1.05, 1e-16]])
    assert a_floor.get_marker() == "v" and a_floor.get_color() == a.get_color()


def test_curves_styles_in_series_order(ax):
    curves(ax, [0, 1], {"a": [0, 1], "b": [1, 0]}, styles=["C3", {"ls": ":"}])
    assert ax.lines[0].get_color() == "C3" and ax.lines[1].get_linestyle() == ":"


def test_depth_profile_relative_to_last_layer_with_gaps(ax):
    depth_profile(ax, {"plain": [0.0, 1e-3, 1e-1, 2.0], "res": [2.0, 2.0, 2.0, 2.0]}, within=10)
    plain, res = ax.lines
    np.testing.assert_allclose(plain.get_ydata(), [np.nan, 5e-4, 5e-2, 1.0])  # 0: a gap
    np.testing.assert_array_equal(plain.get_xdata(), [0, 1, 2, 3])
    (span,) = ax.patches  # the shaded band within 10x
    np.testing.assert_allclose([span.get_y(), span.get_y() + span.get_height()], [0.1, 10])
    assert ax.get_yscale() == "log" and ax.get_ylabel() == "‖∂L/∂x_k‖ / ‖∂L/∂x_L‖"


def test_depth_profile_back_indexes_layers_back_propagated(ax):
    depth_profile(ax, {"a": [8.0, 4.0, 2.0, 1.0]}, back=True)
    (line,) = ax.lines
    np.testing.assert_array_equal(line.get_xdata(), [1, 2, 3])  # L − k, from 1
    np.testing.assert_allclose(line.get_ydata(), [2.0, 4.0, 8.0])
    assert ax.get_xscale() == "log"


def test_trajectories_lines_and_end_markers_in_their_colour(ax):
    paths = {"sgd": np.array([[0, 0], [1, 1], [2, 0]]), "adam": np.array([[0, 1], [1, 2]])}
    trajectories(ax, paths, styles={"sgd": "C1"}, end=dict(marker="o"), start=dict(marker="s"))
    assert len(ax.lines) == 2 * 3
    sgd, sgd_start, sgd_end = ax.lines[:3]
    assert sgd_end.get_color() == "C1" and sgd_end.get_marker() == "o"
    np.testing.assert_array_equal(sgd_end.get_xydata(), [[2, 0]])
    np.testing.assert_array_equal(sgd_start.get_xydata(), [[0, 0]])
    assert ax.get_legend_handles_labels()[1] == ["sgd", "adam"]
    trajectories(ax, [np.zeros((3, 2))])  # unlabelled
    assert ax.get_legend_handles_labels()[1] == ["sgd", "adam"]


def test_band_shades_the_interval_in_the_line_colour(ax):
    x = np.arange(4.0)
    band(ax, x, x, x - 1, x + 1, color="C3", label="mid")
    (line,) = ax.lines
    (poly,) = ax.collections
    assert line.get_label() == "mid"
    np.testing.assert_allclose(poly.get_facecolor()[0][:3], plt.matplotlib.colors.to_rgb("C3"))
    ys = poly.get_paths()[0].vertices[:, 1]
    assert ys.min() == -1 and ys.max() == 4


def test_quantile_band_is_median_and_quantiles(ax):
    s = np.arange(11.0)[:, None] * np.ones((1, 3))  # 11 samples of 3 points
    quantile_band(ax, np.arange(3), s, q=(0.1, 0.9))
    np.testing.assert_allclose(ax.lines[0].get_ydata(), [5, 5, 5])
    ys = ax.collections[0].get_paths()[0].vertices[:, 1]
    np.testing.assert_allclose([ys.min(), ys.max()], [1, 9])


def test_reference_slope_passes_through_the_point_with_the_slope(ax):
    x = np.array([1.0, 10.0, 100.0])
    reference_slope(ax, x, -2.0, through=(10.0, 3.0))
    y = ax.lines[0].get_ydata()
    np.testing.assert_allclose(y[1], 3.0)
    np.testing.assert_allclose(np.diff(np.log10(y)) / np.diff(np.log10(x)), -2.0)


def test_convergence_log_scales_fit_window_and_slopes(ax):
    h = 2.0 ** -np.arange(6)
    err = 3 * h**2
    mask = h < 0.3
    convergence(ax, h, {"Heun": err, "Euler": h}, fit={"Heun": mask},
                slopes={"slope 1": 1, "slope 2": 2}, legend=True)  # fmt: skip
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    # Heun: filled window, faint line, hollow rest, dotted fit; Euler: one line; 2 references
    assert len(ax.lines) == 4 + 1 + 2
    filled, faint, hollow, fitted = ax.lines[:4]
    assert filled.get_xdata().size == mask.sum() and hollow.get_mfc() == "none"
    assert fitted.get_linestyle() == ":"
    np.testing.assert_allclose(fitted.get_ydata(), err[mask], rtol=1e-12)
    ref = ax.lines[5]  # through the first point of the first series, slope 1
    np.testing.assert_allclose(ref.get_ydata(), err[0] * h / h[0])
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["Heun", "Euler", "slope 1", "slope 2"]


def test_heatmaps_that_compare_share_one_colour_scale():
    fig, axes = figure(1, 2)
    a, b = np.random.default_rng(0).normal(size=(2, 5, 6))
    lo, hi = limits(a, b)
    assert lo == min(a.min(), b.min()) and hi == max(a.max(), b.max())
    for ax, z in zip(axes, (a, b), strict=True):
        assert heatmap(ax, z, x=np.arange(6), y=np.arange(5), vmin=lo, vmax=hi) is ax
    cb = shared_colorbar(axes, label="z", vmin=lo, vmax=hi)
    assert [im.get_clim() for ax in axes for im in ax.images] == [(lo, hi), (lo, hi)]
    assert (cb.norm.vmin, cb.norm.vmax) == (lo, hi) and cb.ax.get_ylabel() == "z"
    assert not axes[0].xaxis._major_tick_kw.get("gridOn", False)
    # image extent: cell centres at the grid points
    assert axes[0].images[0].get_extent() == [-0.5, 5.5, -0.5, 4.5]
    plt.close(fig)


def test_heatmap_contours_levels_span_the_shared_limits(ax):
    z = np.outer(np.arange(4.0), np.ones(3))
    heatmap(ax, z, x=np.arange(3), y=np.arange(4), levels=6, vmin=-1, vmax=5, outline=True,
            colorbar="level")  # fmt: skip
    filled, lines = ax.collections[:2]
    np.testing.assert_allclose(filled.levels, np.linspace(-1, 5, 7))
    np.testing.assert_allclose(lines.levels, filled.levels)
    assert ax.figure.axes[-1].get_ylabel() == "level"  # the colour bar


def test_heatmap_norm_and_symmetric_limits(ax):
    lo, hi = limits([-3.0, 1.0, np.inf], symmetric=True)
    assert (lo, hi) == (-3.0, 3.0)
    heatmap(ax, np.ones((2, 2)), norm=TwoSlopeNorm(0.0, lo, hi), cmap="RdBu_r", aspect="auto")
    assert ax.images[0].get_clim() == (-3.0, 3.0) and ax.get_aspect() == "auto"


def test_bars_grouped_with_gaps_and_value_labels(ax):
    bars(ax, ["d1", "d2"], {"resnet": [1.0, 2.0], "deq": [3.0, None]},
         colors={"resnet": "red"}, fmt="{:.1f}", yscale="log", legend=True)  # fmt: skip
    assert len(ax.containers) == 2 and len(ax.patches) == 4
    assert [t.get_text() for t in ax.texts] == ["1.0", "2.0", "3.0", ""]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["d1", "d2"]
    assert ax.get_yscale() == "log"
    x0, x1 = (p.get_x() + p.get_width() / 2 for p in ax.containers[0])
    assert x0 < 0 and x1 < 1  # resnet left of each group centre


def test_bars_horizontal_single_series_colour_per_bar(ax):
    bars(ax, ["a", "b", "c"], {"": [0.2, 0.5, 0.9]}, colors={"": ["r", "g", "b"]},
         horizontal=True, fmt="{:.0%}")  # fmt: skip
    widths = [p.get_width() for p in ax.patches]
    np.testing.assert_allclose(widths, [0.2, 0.5, 0.9])
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a", "b", "c"]
    assert ax.get_legend_handles_labels()[1] == []


def test_bars_text_labels_one_series(ax):
    bars(ax, ["a", "b"], {"x": [0.0, 0.5], "y": [1.0, 1.0]}, fmt=None, text={"x": ["diverged", ""]})
    assert [t.get_text() for t in ax.texts] == ["diverged", ""]  # "y" carries no labels


def test_note_decorate_ticks_and_handles(ax):
    with pytest.raises(ValueError, match="valid"):
        note(ax, "x", loc="middle")
    note(ax, "verdict: supported", loc="lower left")
    (t,) = ax.texts
    assert t.get_text() == "verdict: supported" and t.get_position() == (0.02, 0.03)
    decorate(ax, title="t", ylim=(0, 2), legend=None, hlines=[1.0], vlines=[0.2, 0.4])
    assert ax.get_title() == "t" and ax.get_ylim() == (0, 2) and ax.get_legend() is None
    guides = ax.lines[-3:]
    assert [g.get_linestyle() for g in guides] == [GUIDE["ls"]] * 3
    assert guides[0].get_ydata()[0] == 1.0 and guides[2].get_xdata()[0] == 0.4
    ax.set_xscale("log")
    integer_ticks(ax, [2, 4, 8])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["2", "4", "8"]
    h = legend_handles({"ResNet": "red", "chance": {"color": "k", "ls": ":"}})
    assert [x.get_label() for x in h] == ["ResNet", "chance"] and h[1].get_linestyle() == ":"
    p = legend_handles({"basin": {"color": "b"}}, patch=True)
    assert type(p[0]).__name__ == "Patch"


def test_figure_legend_outside_collects_labels_once(tmp_path):
    fig, axes = figure(1, 2)
    for ax in axes:
        ax.plot([0, 1], label="a")
        ax.plot([1, 0], label="b")
    leg = figure_legend(fig, where="below", space=0.1)
    assert [t.get_text() for t in leg.get_texts()] == ["a", "b"]
    fig.canvas.draw()  # the tight layout runs at draw time
    assert all(ax.get_position().y0 > 0.1 for ax in axes)  # room left below the panels
    assert leg.get_window_extent().y1 / fig.bbox.height <= 0.1 + 1e-6
    with plt.rc_context(STYLE):
        path = save_figure(fig, tmp_path / "f.png")
    assert path.stat().st_size > 0


def test_figure_legend_above_a_constrained_layout():
    fig, axes = figure(1, 2, layout="constrained")
    axes[0].plot([0, 1], label="a")
    leg = figure_legend(fig, where="above")
    fig.canvas.draw()
    assert leg.get_window_extent().y0 >= max(ax.get_window_extent().y1 for ax in axes) - 1e-6
    plt.close(fig)
