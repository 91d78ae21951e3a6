"""Basins of attraction of the walking styles on the double well and the book's ch03 field.

From every point of a 400 × 400 grid of starts over a terrain's domain, each walking style
walks ``steps`` steps (one :func:`terrain_jax.attractors.basin_map` call per style; the three
plain-GD step sizes share one call through ``hyper_grid``) and the start is labelled by the
minimum it ends within ``RADIUS`` of, else "not converged", or "diverged" if the walk blew
up. The same walk runs on to ``2 · steps`` (``every=steps`` keeps start, middle and end), so
the fraction of labels that change when the steps are doubled is measured, not assumed.

Double well ``(θ1² − 1)² + θ2²``: gradient flow's boundary is exactly ``θ1 = 0``, so each
style's map is scored by the fraction of starts whose attractor differs from ``sign(θ1)``.
The terrain is separable and every style here acts coordinate-wise, so every map must be a
union of vertical stripes (checked); that also makes a learning-rate sweep along one row of
starts exact. GD's ``θ1`` update is the 1-D map ``θ1 ← θ1(1 + 4η − 4ηθ1²)``: it keeps the
sign of ``θ1`` on ``|θ1| ≤ 2`` iff ``η < 1/12``, and the map iterated in float64 predicts
every GD start's fate (checked).

ch03 field ``θ1² + 2θ2² + 1.5 sin(1.8θ1) cos(1.8θ2)``: Newton from a dense grid of starts
finds one critical point, a minimum at ``(−0.6115, 0)``, so every map is one basin.
"""

import jax
import jax.numpy as jnp
import matplotlib.colors as mcolors
import numpy as np

from terrain_jax.attractors import basin_map, critical_points, nearest_minimum, start_grid
from terrain_jax.plotting import decorate, figure, figure_legend, heatmap, legend_handles
from terrain_jax.terrains import get_terrain

from ._common import claim

NAME = "basins"
TITLE = "Basins of attraction of 9 walking styles (+ GD at 3 steps) on the double well and ch03"

TERRAIN_NAMES = ("double_well", "ch03_field")
# (config name, style, learning rate); other hyper-parameters at the library defaults
# (momentum/nesterov β = 0.9, adam b1 = 0.9, b2 = 0.999, adamw weight decay 1e-4, lion
# b1 = 0.9, b2 = 0.99). Rates: the library default where a walk crosses the domain and
# settles within the steps; momentum/nesterov 0.01 (their default 0.1 is unstable at the
# double well's edge, curvature 44), lion 0.01 (its default 1e-3 moves ≤ 1 in 1000 steps).
CONFIGS = (
    ("sgd_lr0.01", "sgd", 0.01),
    ("sgd_lr0.1", "sgd", 0.1),
    ("sgd_lr0.2", "sgd", 0.2),
    ("momentum", "momentum", 0.01),
    ("nesterov", "nesterov", 0.01),
    ("adagrad", "adagrad", 0.1),
    ("rmsprop", "rmsprop", 0.01),
    ("adam", "adam", 0.01),
    ("adamw", "adamw", 0.01),
    ("lion", "lion", 0.01),
    ("signsgd", "signsgd", 0.01),
)
MOMENTUM_TYPE = ("momentum", "nesterov", "adam")
QUICK_STYLES = ("sgd", *MOMENTUM_TYPE)  # --quick: fewer compiles (one per style and terrain)
RADIUS = 0.05  # a start "reaches" a minimum if it ends within this distance of it
BLOWUP = 1e3  # ‖θ‖ beyond this (or non-finite) counts as diverged
SWEEP_LRS = tuple(float(x) for x in np.geomspace(1e-3, 0.3, 16))
_MIN_COLORS = {"double_well": ("#1f77b4", "#ff7f0e"), "ch03_field": ("#2ca02c",)}
_UNCONVERGED, _DIVERGED = "#d9d9d9", "#222222"


def _basin_map(loss, style, starts, minima, steps, learning_rates):
    """Attractor labels (``m``: not converged, ``m + 1``: diverged) of ``starts`` after
    ``steps`` and ``2 · steps`` steps of ``style``, one compiled call for all learning
    rates: arrays ``(lrs, starts)`` each."""
    grid = {"learning_rate": jnp.asarray(learning_rates)}
    return basin_map(loss, style, starts, minima, steps, radius=RADIUS, blowup=BLOWUP,
                     hyper_grid=grid)  # fmt: skip


def _gd_1d_labels(theta1: np.ndarray, etas: tuple[float, ...], steps: int) -> np.ndarray:
    """Closed-form reference for GD on the double well: iterate ``θ1 ← θ1(1 + 4η − 4ηθ1²)``
    in float64 (θ2 decouples and converges for η < 1) and label by the well reached."""
    with jax.enable_x64(True):
        eta = jnp.asarray(etas, jnp.float64)[:, None]
        x0 = jnp.broadcast_to(jnp.asarray(theta1, jnp.float64), (len(etas), len(theta1)))

        def step(x, _):
            return x * (1.0 + 4.0 * eta - 4.0 * eta * x * x), None

        x, _ = jax.lax.scan(step, x0, None, length=steps)
        x = np.asarray(x)
    pts = np.stack([x, np.zeros_like(x)], -1)
    return nearest_minimum(pts, np.array([[-1.0, 0.0], [1.0, 0.0]]), RADIUS, blowup=BLOWUP)


def run(seed: int, quick: bool) -> dict:
    n = 60 if quick else 400
    steps = 1000  # every style settles (see *_frac_changed_when_steps_doubled)
    configs = [c for c in CONFIGS if not quick or c[1] in QUICK_STYLES]
    config_names = [c[0] for c in configs]
    styles = list(dict.fromkeys(c[1] for c in configs))
    sweep_styles = ["momentum"] if quick else styles
    sweep_lrs = SWEEP_LRS[::3] if quick else SWEEP_LRS
    metrics: dict = {
        "grid_points_per_axis": n,
        "steps": steps,
        "steps_check": 2 * steps,
        "radius": RADIUS,
        "configs": config_names,
        "learning_rates": {c: lr for c, _, lr in configs},
    }
    arrays: dict = {}
    claims = []
    for tname in TERRAIN_NAMES:
        terrain = get_terrain(tname)
        minima = np.asarray(terrain.minima, np.float64)
        a, b = (np.linspace(*d, n, dtype=np.float32) for d in terrain.domain)
        starts = start_grid(terrain.domain, n).astype(np.float32)  # (θ1, θ2) in C order
        arrays[f"{tname}_theta1"], arrays[f"{tname}_theta2"] = a, b
        arrays[f"{tname}_minima"] = minima
        metrics[f"{tname}_minima"] = minima.tolist()
        labels, changed = {}, {}
        for style in styles:
            cfgs = [c for c in configs if c[1] == style]
            lab, lab2 = _basin_map(terrain.value, style, starts, minima, steps,
                                   [lr for _, _, lr in cfgs])  # fmt: skip
            for i, (cname, _, _) in enumerate(cfgs):
                labels[cname] = lab[i].reshape(n, n)
                changed[cname] = float(np.mean(lab[i] != lab2[i]))
        m = len(minima)
        for cname in config_names:
            lab, key = labels[cname], f"{tname}_{cname}"
            for i in range(m):
                metrics[f"{key}_frac_min{i}"] = float(np.mean(lab == i))
            metrics[f"{key}_frac_unconverged"] = float(np.mean(lab == m))
            metrics[f"{key}_frac_diverged"] = float(np.mean(lab == m + 1))
            metrics[f"{key}_frac_changed_when_steps_doubled"] = changed[cname]
        metrics[f"{tname}_max_frac_changed_when_steps_doubled"] = max(changed.values())
        arrays[f"{tname}_labels"] = np.stack([labels[c] for c in config_names])

        if tname == "double_well":
            flow = nearest_minimum(np.stack([np.sign(a), np.zeros_like(a)], -1), minima, RADIUS,
                                   blowup=BLOWUP)  # fmt: skip
            for cname in config_names:
                lab, key = labels[cname], f"{tname}_{cname}"
                metrics[f"{key}_frac_differs_from_flow"] = float(np.mean(lab != flow[:, None]))
                other = (lab < m) & (lab != flow[:, None])
                metrics[f"{key}_frac_crossed_to_other_well"] = float(np.mean(other))
                row = lab[:, n // 2]
                metrics[f"{key}_boundaries_along_theta1"] = int(np.sum(row[1:] != row[:-1]))
                # θ2-dependent column: two different fates (minima / diverged) in it;
                # "not converged" is ignored since the radius test also involves θ2
                fates = np.where(lab == m, -1, lab)
                hi = fates.max(axis=1)
                lo = np.where(fates < 0, hi[:, None], fates).min(axis=1)
                varies = lo != hi
                metrics[f"{key}_theta2_dependent_columns"] = int(np.sum(varies))
            gd = [c for c in configs if c[1] == "sgd"]
            ref = _gd_1d_labels(a.astype(np.float64), tuple(lr for *_, lr in gd), steps)
            for (cname, _, _), r in zip(gd, ref, strict=True):
                bad = np.mean(labels[cname] != r[:, None])
                metrics[f"double_well_{cname}_frac_disagreeing_with_1d_map"] = float(bad)
            # learning-rate sweep along one row of starts (θ2 = 0): exact by separability
            line = np.stack([a, np.zeros_like(a)], -1)
            for style in sweep_styles:
                lab, _ = _basin_map(terrain.value, style, line, minima, steps, sweep_lrs)
                crossed = np.mean((lab < m) & (lab != flow), axis=1)
                metrics[f"double_well_sweep_{style}_frac_crossed"] = crossed.tolist()
                metrics[f"double_well_sweep_{style}_frac_unconverged_or_diverged"] = np.mean(
                    lab >= m, axis=1
                ).tolist()  # fmt: skip
                arrays[f"sweep_{style}_crossed"] = crossed
                arrays[f"sweep_{style}_failed"] = np.mean(lab >= m, axis=1)
                metrics["double_well_sweep_learning_rates"] = list(sweep_lrs)
            arrays["sweep_lrs"] = np.asarray(sweep_lrs)
        else:
            if quick:  # the terrain's own Newton search: 41² starts on [−3, 3]²
                mins, sads, maxs = terrain.minima, terrain.saddles, terrain.maxima
                grid_note = "41^2 on [-3, 3]^2"
            else:  # a denser search over a wider box than the domain
                box = ((-8.0, 8.0), (-8.0, 8.0))
                mins, sads, maxs = critical_points(terrain.fn, start_grid(box, 161), box)
                grid_note = "161^2 on [-8, 8]^2"
            mins = np.asarray(mins, np.float64)
            metrics["ch03_field_newton_start_grid"] = grid_note
            metrics["ch03_field_minima_found"] = len(mins)
            metrics["ch03_field_saddles_found"] = len(sads)
            metrics["ch03_field_maxima_found"] = len(maxs)
            metrics["ch03_field_minimum_location"] = mins.tolist()
            arrays["ch03_field_loss"] = np.asarray(
                jax.vmap(terrain.value)(jnp.asarray(starts))
            ).reshape(n, n)  # fmt: skip

    # ---- claims
    dw = "double_well"
    small = metrics[f"{dw}_sgd_lr0.01_frac_differs_from_flow"]
    claims.append(
        claim(
            "GD at small step (η = 0.01) reproduces gradient flow's basins on the double well: "
            "every start ends in the well of sign(θ1) (boundary θ1 = 0). Supported if no grid "
            "start differs",
            "issue 5 exp. 4; GD = explicit Euler on −∇L (book Vol. I ch. 3-4)",
            "supported" if small == 0.0 else "refuted",
            {
                "frac_differs_from_flow": small,
                "frac_unconverged": metrics[f"{dw}_sgd_lr0.01_frac_unconverged"],
            },  # fmt: skip
            "0 (the 1-D map keeps sign(θ1) on |θ1| ≤ 2 iff η < 1/12)",
        )
    )
    big = {c: metrics[f"{dw}_{c}_frac_differs_from_flow"] for c in ("sgd_lr0.1", "sgd_lr0.2")}
    gd_names = [c for c, st, _ in configs if st == "sgd"]
    dis = {c: metrics[f"{dw}_{c}_frac_disagreeing_with_1d_map"] for c in gd_names}
    ok = all(v > 0 for v in big.values()) and all(v <= 1.0 / n for v in dis.values())
    claims.append(
        claim(
            "Above η = 1/12 GD's basins on the double well leave θ1 = 0: starts with "
            "θ1² > 1 + 1/(4η) jump the saddle on the first step, and the 1-D map "
            "θ1 ← θ1(1 + 4η − 4ηθ1²) (float64) predicts every start's fate. Supported if "
            "η = 0.1 and 0.2 both differ from the flow and the map disagrees with the walks "
            "on at most one θ1-column (1/n of the grid) at every η",
            "derived (separability of the double well); issue 5 exp. 4",
            "supported" if ok else "refuted",
            {
                "frac_differs_from_flow": big,
                "frac_disagreeing_with_1d_map": dis,
                "sgd_lr0.2_frac_diverged": metrics[f"{dw}_sgd_lr0.2_frac_diverged"],
            },  # fmt: skip
            "differs > 0 for η > 1/12; map disagreement ≤ 1/n",
        )
    )
    cross = {s: metrics[f"{dw}_{s}_frac_crossed_to_other_well"] for s in MOMENTUM_TYPE}
    bnds = {s: metrics[f"{dw}_{s}_boundaries_along_theta1"] for s in MOMENTUM_TYPE}
    inter = [s for s in MOMENTUM_TYPE if cross[s] > 0 and bnds[s] > 1]
    v = "supported" if len(inter) == 3 else ("nuanced" if inter else "refuted")
    others = {c: metrics[f"{dw}_{c}_frac_crossed_to_other_well"]
              for c in config_names if c not in MOMENTUM_TYPE}  # fmt: skip
    claims.append(
        claim(
            "Momentum-type styles (momentum, nesterov, adam) carry starts across the double "
            "well's saddle into the other well, so their basins interleave. Supported if all "
            "three send some starts to the well opposite sign(θ1) and have > 1 basin boundary "
            "along θ1; nuanced if only some do",
            "issue 5 exp. 4 ('momentum is inertia', book Vol. I-II)",
            v,
            {
                "frac_crossed": cross,
                "boundaries_along_theta1": bnds,
                "frac_crossed_other_configs": others,
            },  # fmt: skip
            "crossed > 0 and > 1 boundary for each of the three",
            note="at the stated rates; the learning-rate sweep (figure, metrics "
            "double_well_sweep_*) shows where each style starts to cross.",
        )
    )
    dep = {c: metrics[f"{dw}_{c}_theta2_dependent_columns"] for c in config_names}
    claims.append(
        claim(
            "On the separable double well every coordinate-wise style's basin map depends on "
            "θ1 only (vertical stripes): the θ1 update never sees θ2. Supported if no θ1-column "
            "of any map changes label along θ2",
            "derived (separability); issue 5 exp. 4",
            "supported" if max(dep.values()) == 0 else "refuted",
            {"max_theta2_dependent_columns": max(dep.values()), "columns": n},
            "0",
        )
    )
    ch = "ch03_field"
    reach = {c: metrics[f"{ch}_{c}_frac_min0"] for c in config_names}
    one = metrics["ch03_field_minima_found"] == 1 and len(metrics[f"{ch}_minima"]) == 1
    claims.append(
        claim(
            "The book's ch03 field θ1² + 2θ2² + 1.5 sin(1.8θ1) cos(1.8θ2) has one minimum, so "
            "its basin map over [−3, 3]² is a single basin for every style (a picture of "
            "several basins would not match this formula). Supported if Newton finds exactly "
            "one minimum and every style sends ≥ 99% of the grid to it",
            "book Vol. I ch. 3 field (the book's figure text was not available to us)",
            "supported" if one and min(reach.values()) >= 0.99 else "refuted",
            {
                "minima_found": metrics["ch03_field_minima_found"],
                "saddles_found": metrics["ch03_field_saddles_found"],
                "maxima_found": metrics["ch03_field_maxima_found"],
                "minimum": metrics[f"{ch}_minima"][0],
                "min_frac_of_grid_reaching_it": min(reach.values()),
            },  # fmt: skip
            "1 minimum, ≥ 99% of starts reach it",
        )
    )
    return {"metrics": metrics, "claims": claims, "arrays": arrays}


def plot(result: dict, arrays: dict):
    m = result["metrics"]
    fig, axes = figure(4, 6, size=(2.35, 2.15))
    star = dict(ms=11, mfc="white", mec="k", mew=0.8)
    for t, tname in enumerate(TERRAIN_NAMES):
        colors = [*_MIN_COLORS[tname], _UNCONVERGED, _DIVERGED]
        mins, x, y = arrays[f"{tname}_minima"], arrays[f"{tname}_theta1"], arrays[f"{tname}_theta2"]
        scale = dict(cmap=mcolors.ListedColormap(colors), vmin=-0.5, vmax=len(colors) - 0.5)
        for i, cname in enumerate(m["configs"]):
            ax, key = axes[2 * t + i // 6, i % 6], f"{tname}_{cname}"
            if tname == "double_well":
                sub = f"≠ flow {100 * m[f'{key}_frac_differs_from_flow']:.1f}%"
                ax.axvline(0.0, color="k", ls="--", lw=0.7)
            else:
                sub = f"→ min {100 * m[f'{key}_frac_min0']:.1f}%"
            heatmap(ax, arrays[f"{tname}_labels"][i].T, extent=(x[0], x[-1], y[0], y[-1]), **scale)
            ax.plot(mins[:, 0], mins[:, 1], "*", **star)
            title = f"{cname.split('_')[0]} η={m['learning_rates'][cname]:g}: {sub}"
            ax.set_title(title, fontsize=8)
            ax.set_ylabel(f"{tname}\nθ2" if i % 6 == 0 else None)
        for i in range(len(m["configs"]), 11):  # left empty (the --quick run has fewer configs)
            axes[2 * t + i // 6, i % 6].set_axis_off()
    # double well: learning-rate sweep of the crossing fraction
    ax, lrs = axes[1, 5], arrays["sweep_lrs"]
    swept = [s for s in dict.fromkeys(c.split("_")[0] for c in m["configs"])
             if f"sweep_{s}_crossed" in arrays]  # fmt: skip
    for k, style in enumerate(swept):
        crossed = arrays[f"sweep_{style}_crossed"]
        ax.semilogx(lrs, crossed, "o-", ms=2.5, lw=1.0, color=f"C{k}", label=style)
    decorate(ax, xlabel="learning rate η", ylabel="fraction crossed to other well")
    ax.set_title("double well, row θ2 = 0: η sweep", fontsize=8)
    ax.legend(fontsize=6, ncol=3, loc="upper center", bbox_to_anchor=(0.45, -0.3))
    # ch03: the terrain and its single critical point
    ax, x, y = axes[3, 5], arrays["ch03_field_theta1"], arrays["ch03_field_theta2"]
    heatmap(ax, arrays["ch03_field_loss"].T, x=x, y=y, levels=25, colorbar="loss", aspect="equal")
    mins = arrays["ch03_field_minima"]
    ax.plot(mins[:, 0], mins[:, 1], "*", **star)
    ax.set_title(
        f"ch03 loss: {m['ch03_field_minima_found']} min, {m['ch03_field_saddles_found']} "
        f"saddles, {m['ch03_field_maxima_found']} max", fontsize=8,
    )  # fmt: skip
    for ax in axes.ravel():
        ax.tick_params(labelsize=7)
        ax.xaxis.label.set_fontsize(8)
        ax.yaxis.label.set_fontsize(8)
    keys = {
        "→ (−1, 0)": _MIN_COLORS["double_well"][0],
        "→ (+1, 0)": _MIN_COLORS["double_well"][1],
        "→ ch03 minimum (−0.61, 0)": _MIN_COLORS["ch03_field"][0],
        f"not within {m['radius']:g} of a minimum": _UNCONVERGED,
        "diverged": _DIVERGED,
    }
    fig.suptitle(
        f"Basins of attraction, {m['grid_points_per_axis']}² starts, {m['steps']} steps "
        f"(★ minima, dashed: gradient-flow boundary θ1 = 0; doubling steps changes ≤ "
        f"{100 * max(m['double_well_max_frac_changed_when_steps_doubled'], m['ch03_field_max_frac_changed_when_steps_doubled']):.2f}% of labels)",  # noqa: E501
        y=1.05, fontsize=10,
    )  # fmt: skip
    figure_legend(fig, legend_handles(keys, patch=True), where="above", space=0.0, fontsize=8)
    return fig
