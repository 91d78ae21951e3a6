"""Effective receptive field of a convolutional plain net vs a residual net.

For a 2-D convolutional net the *theoretical* receptive field of an output pixel grows
linearly with depth (two 3×3 convolutions per block: radius ``2L``). Luo et al. 2016
("Understanding the effective receptive field in deep CNNs") measure the *effective*
receptive field (ERF), the map ``|∂y_centre/∂x|`` averaged over inputs, and find it
Gaussian-like with a radius growing only like ``√L``. Veit et al. 2016 read a ResNet as an
ensemble of paths whose lengths are binomially distributed around ``L/2``: the ERF of a
residual net should then be dominated by short paths.

Here, at initialisation (He init, ReLU, same blocks for both nets, residual step ``h = 1``),
for depths ``L`` = 2 … 32 blocks, the ERF of the centre output (summed over channels) is
averaged over random Gaussian inputs. Its width is the root-mean-square distance from the
centre under the normalised ERF mass; the growth exponent is the log-log slope of width
against ``L``. Nothing is trained: this is the geometry the architectures start from.
"""

import equinox as eqx
import jax
import matplotlib.patches as mpatches
import numpy as np

from terrain_jax import PlainNet, ResidualNet
from terrain_jax.analysis import loglog_slope
from terrain_jax.nets import effective_receptive_field, receptive_field_mass, receptive_field_width
from terrain_jax.plotting import (
    COLORS,
    convergence,
    curves,
    decorate,
    figure,
    heatmap,
    integer_ticks,
    reference_slope,
    shared_colorbar,
)

from ._common import claim

NAME = "receptive_field"
TITLE = "Effective receptive field: plain vs residual conv nets"

CHANNELS = 16
KERNEL = 3


def run(seed: int, quick: bool) -> dict:
    depths = [2, 4, 8] if quick else [2, 4, 8, 16, 32]
    # odd; at L = 32 the theoretical radius (64) exceeds the image, but the ERF's RMS width
    # is ~10 px and its mass beyond 32 px is negligible
    size = 33 if quick else 65
    samples = 4 if quick else 8
    key = jax.random.PRNGKey(seed)
    erfs = {"plain": [], "residual": []}
    widths = {"plain": [], "residual": []}
    centre = {"plain": [], "residual": []}
    for depth in depths:
        kn, kx, key = jax.random.split(key, 3)
        common = dict(block="conv2d", activation="relu", init="he", kernel_size=KERNEL)
        nets = {
            "plain": PlainNet(CHANNELS, CHANNELS, depth, key=kn, **common),
            "residual": ResidualNet(CHANNELS, CHANNELS, depth, key=kn, h=1.0, **common),
        }
        for name, net in nets.items():
            # mean |∂ Σ_c y[c, centre] / ∂x| over random inputs, summed over input channels
            xs = jax.random.normal(kx, (samples, CHANNELS, size, size))
            e = np.asarray(effective_receptive_field(eqx.filter_jit(net), xs))
            erfs[name].append(e)
            widths[name].append(receptive_field_width(e))
            centre[name].append(receptive_field_mass(e, 2))
    L = np.array(depths, dtype=float)
    slope = {k: loglog_slope(L, np.asarray(widths[k])) for k in widths}
    theoretical = [2.0 * d * (KERNEL // 2) for d in depths]  # radius of the theoretical RF
    ratio_deepest = {k: widths[k][-1] / theoretical[-1] for k in widths}

    claims = [
        claim(
            "The effective receptive field grows like √depth (exponent ≈ 0.5, within ±0.15), "
            "far slower than the theoretical one (exponent 1)",
            "Luo et al. 2016",
            "supported"
            if all(abs(s - 0.5) <= 0.15 for s in slope.values())
            else ("nuanced" if any(abs(s - 0.5) <= 0.15 for s in slope.values()) else "refuted"),
            {"width_exponent": slope},
            {"width_exponent": 0.5},
        ),
        claim(
            "A residual net's ERF is concentrated on short paths: at the deepest net it is "
            "narrower than the plain net's (RMS width residual < plain)",
            "Veit et al. 2016 (ResNets as ensembles of shallow paths)",
            "supported" if widths["residual"][-1] < widths["plain"][-1] else "refuted",
            {
                "depth": depths[-1],
                "rms_width_residual": widths["residual"][-1],
                "rms_width_plain": widths["plain"][-1],
            },
            "rms_width_residual < rms_width_plain",
        ),
    ]
    metrics = {
        "depths": depths,
        "image_size": size,
        "channels": CHANNELS,
        "samples": samples,
        "rms_width_plain": widths["plain"],
        "rms_width_residual": widths["residual"],
        "theoretical_rf_radius": theoretical,
        "width_exponent_plain": slope["plain"],
        "width_exponent_residual": slope["residual"],
        "width_over_theoretical_radius_deepest": ratio_deepest,
        "centre_5x5_mass_fraction_plain": centre["plain"],
        "centre_5x5_mass_fraction_residual": centre["residual"],
    }
    arrays = {
        "erf_plain": np.stack(erfs["plain"]),
        "erf_residual": np.stack(erfs["residual"]),
    }
    return {"metrics": metrics, "claims": claims, "arrays": arrays}


def plot(result: dict, arrays: dict):
    m = result["metrics"]
    depths = m["depths"]
    show = [0, len(depths) // 2, len(depths) - 1]
    fig, axes = figure(2, len(show) + 1, size=(2.9, 2.7), layout="constrained")
    half = m["image_size"] // 2
    extent = (-half - 0.5, half + 0.5, -half - 0.5, half + 0.5)
    color = {"plain": COLORS["plain"], "residual": COLORS["resnet"]}
    scale = dict(vmin=-4, vmax=0, cmap="magma")
    for row, name in enumerate(["plain", "residual"]):
        for col, i in enumerate(show):
            ax, e, r = axes[row, col], arrays[f"erf_{name}"][i], m["theoretical_rf_radius"][i]
            title = f"{name}, L = {depths[i]}: RMS {m[f'rms_width_{name}'][i]:.1f}px"
            log_erf = np.log10(e / e.max() + 1e-12)
            heatmap(ax, log_erf, extent=extent, **scale, title=title, xticks=[], yticks=[])
            box = dict(fill=False, ec="w", ls="--", lw=0.8)
            ax.add_patch(mpatches.Rectangle((-r - 0.5, -r - 0.5), 2 * r + 1, 2 * r + 1, **box))
    bar = "log10 |∂y_centre/∂x| / max (dashed: theoretical RF)"
    shared_colorbar(axes[:, : len(show)], label=bar, **scale, shrink=0.6)

    ax = axes[0, -1]
    widths = {f"{n}: slope {m[f'width_exponent_{n}']:.2f}": m[f"rms_width_{n}"] for n in color}
    styles = dict(zip(widths, color.values(), strict=True))
    widths["theoretical radius (slope 1)"] = m["theoretical_rf_radius"]
    styles["theoretical radius (slope 1)"] = dict(color="k", ls="--", lw=1, marker="")
    convergence(ax, depths, widths, styles=styles, ylim=(2, 400), title="ERF width vs depth")
    sqrt_l = (depths[0], m["rms_width_residual"][0])
    reference_slope(ax, depths, 0.5, through=sqrt_l, label="√L", ls=":", lw=1)
    integer_ticks(ax, depths)
    integer_ticks(ax, [3, 10, 30, 100], axis="y")
    decorate(ax, xlabel="blocks L", ylabel="ERF RMS width (px)", legend="upper left")

    mass = {n: m[f"centre_5x5_mass_fraction_{n}"] for n in color}
    curves(axes[1, -1], depths, mass, "o-", styles=color, xscale="log", legend=True)
    integer_ticks(axes[1, -1], depths)
    title = "concentration at the centre"
    decorate(axes[1, -1], xlabel="blocks L", ylabel="ERF mass in central 5×5", title=title)
    fig.suptitle("Effective receptive field at initialisation (He init, ReLU, 16 channels)")
    return fig
