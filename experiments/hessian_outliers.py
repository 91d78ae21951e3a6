"""Hessian outliers: a bulk near zero plus about C isolated eigenvalues (C = classes).

Sagun et al. 2017, Papyan 2018/2019 and Ghorbani et al. 2019 ("An investigation into neural
net optimization via Hessian eigenvalue density") find the Hessian spectrum of a trained
classifier to be a bulk concentrated near zero plus a few outliers, about as many as
classes (``C``; some accounts ``C − 1``), and trace the outliers to the Gauss–Newton
(GGN) part ``G = Jᵀ H_out J``, whose top eigenspace is spanned by class-mean gradients.

Setting (fixed before the runs): sklearn digits (``C = 10``; 1,437 train / 360 test,
standardised), an ``eqx.nn.MLP`` 64 → 32 → 32 → 10 with ReLU (3,466 parameters), SGD
(lr 0.05, batch 64). The spectrum of the full-train loss is measured at a log grid of
checkpoints, steps ``0, 20, 200, 2000`` (init, ~1, ~9 and ~89 epochs): the top-30
eigenvalues of the Hessian and of the GGN by Lanczos (150 steps, full
reorthogonalisation), the SLQ density (10 probes × 90 steps), and the overlap of the two
top-``C`` eigenspaces, ``‖V_Hᵀ V_G‖_F² / C`` (1 = the same subspace).

Outlier count, stated in advance: ``k* = argmax_k λ_k / λ_{k+1}`` over ``k = 1 … 29`` of
the top-30 Lanczos eigenvalues (the largest relative gap), for the Hessian and the GGN.
As a cross-check the SLQ quadrature estimates the number of eigenvalues above the gap's
midpoint, ``N(t) = n · mean_probes Σ_{θ > t} w``. Validation at the trained checkpoints:
top-5 by Lanczos vs by power iteration with deflation, and Hutchinson's trace (300
Rademacher probes) vs SLQ's (``n`` times its first moment, per-probe standard error).
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, PRNGKeyArray

from terrain_jax.analysis import mean_stderr
from terrain_jax.curvature import (
    gauss_newton_operator,
    hessian_operator,
    hessian_top_eigenvalues,
    spectral_gap,
)
from terrain_jax.data import digits
from terrain_jax.linalg import hutchinson_trace, spectral_density
from terrain_jax.plotting import curves, decorate, figure
from terrain_jax.train import accuracy, cross_entropy, fit

from ._common import claim

NAME = "hessian_outliers"
TITLE = "Hessian outliers: bulk plus about C eigenvalues, and where they come from"

WIDTH, DEPTH = 32, 2
LR, BATCH = 0.05, 64
CHECKPOINTS = (0, 20, 200, 2000)
TRAINED = (200, 2000)  # the checkpoints the claims are judged on
POWER_K = 5


def _apply(model: eqx.nn.MLP, xb: Array) -> Array:
    return jax.vmap(model)(xb)


def _loss(model: eqx.nn.MLP, xb: Array, yb: Array) -> Array:
    return cross_entropy(_apply(model, xb), yb)


_train_loss = eqx.filter_jit(_loss)


@eqx.filter_jit
def _spectra(model: eqx.nn.MLP, x: Array, y: Array, key: PRNGKeyArray, sizes: tuple) -> dict:
    """Top-k of the Hessian and GGN (values and vectors), SLQ of the Hessian, Hutchinson."""
    top_k, iters, slq_iters, slq_probes, hutch = sizes
    k_h, k_g, k_s, k_t = jax.random.split(key, 4)
    H = hessian_operator(_loss, model, (x, y))
    G = gauss_newton_operator(_apply, cross_entropy, model, (x, y))
    h = hessian_top_eigenvalues(H, H.dim, top_k, k_h, num_iters=iters)
    g = hessian_top_eigenvalues(G, G.dim, top_k, k_g, num_iters=iters)
    sd = spectral_density(H, H.dim, k_s, num_iters=slq_iters, num_probes=slq_probes, grid=600)
    tr, tr_se = hutchinson_trace(H, H.dim, k_t, hutch)
    return {
        "h_values": h.values,
        "h_vectors": h.vectors,
        "h_residuals": h.residuals,
        "g_values": g.values,
        "g_vectors": g.vectors,
        "g_residuals": g.residuals,
        "grid": sd.grid,
        "density": sd.density,
        "nodes": sd.nodes,
        "weights": sd.weights,
        "trace": tr,
        "trace_se": tr_se,
    }


@eqx.filter_jit
def _power(model: eqx.nn.MLP, x: Array, y: Array, key: PRNGKeyArray, num_iters: int) -> tuple:
    H = hessian_operator(_loss, model, (x, y))
    p = hessian_top_eigenvalues(H, H.dim, POWER_K, key, method="power", num_iters=num_iters)
    return p.values, p.residuals, p.num_matvecs


def run(seed: int, quick: bool) -> dict:
    checkpoints = (0, 30) if quick else CHECKPOINTS
    trained = (30,) if quick else TRAINED
    # (top_k, Lanczos steps, SLQ steps, SLQ probes, Hutchinson probes)
    sizes = (12, 40, 20, 3, 16) if quick else (30, 150, 90, 10, 300)
    power_iters = 60 if quick else 1000
    data = digits(seed=seed)
    x, y = jnp.asarray(data.x_train), jnp.asarray(data.y_train)
    C = data.num_classes
    k_init, k_train, k_spec = jax.random.split(jax.random.PRNGKey(seed), 3)
    model = eqx.nn.MLP(64, C, WIDTH, DEPTH, activation=jax.nn.relu, key=k_init)
    dim = sum(a.size for a in jax.tree.leaves(eqx.filter(model, eqx.is_inexact_array)))
    optimizer = optax.sgd(LR)
    metrics: dict = {
        "model": f"MLP 64-{WIDTH}x{DEPTH}-10 relu",
        "num_params": int(dim),
        "classes": C,
        "optimizer": f"sgd lr {LR} batch {BATCH}",
        "checkpoints": list(checkpoints),
        "trained_checkpoints": list(trained),
        "top_k": sizes[0],
    }
    arrays: dict = {}
    done = 0
    for step in checkpoints:
        if step > done:
            model, _ = fit(
                model, _loss, optimizer, x, y, steps=step - done, batch_size=BATCH,
                key=jax.random.fold_in(k_train, step),
            )  # fmt: skip
            done = step
        s = {k: np.asarray(v) for k, v in _spectra(model, x, y, k_spec, sizes).items()}
        tag = f"step{step}"
        gap_h, gap_g = spectral_gap(s["h_values"]), spectral_gap(s["g_values"])
        kh, kg = int(gap_h.count), int(gap_g.count)
        # SLQ's estimate of how many eigenvalues lie above the Hessian gap's midpoint
        mid = float(gap_h.threshold)
        slq_count = dim * float(np.mean(np.sum(s["weights"] * (s["nodes"] > mid), axis=-1)))
        overlap = float(np.sum((s["h_vectors"][:C] @ s["g_vectors"][:C].T) ** 2) / C)
        rel = np.abs(s["h_values"][:C] - s["g_values"][:C]) / np.abs(s["h_values"][:C])
        per_probe = dim * np.sum(s["weights"] * s["nodes"], axis=-1)
        slq_trace, slq_se = mean_stderr(per_probe)
        out = {
            "train_loss": float(_train_loss(model, x, y)),
            "test_acc": accuracy(model, data.x_test, data.y_test, apply=_apply),
            "hessian_top": s["h_values"],
            "ggn_top": s["g_values"],
            "hessian_gap_count": kh,
            "hessian_gap_ratio": float(gap_h.ratio),
            "ggn_gap_count": kg,
            "ggn_gap_ratio": float(gap_g.ratio),
            "slq_count_above_gap": slq_count,
            "topC_subspace_overlap_hessian_ggn": overlap,
            "topC_max_rel_diff_hessian_ggn": float(np.max(rel)),
            "top_Cm1_max_rel_diff_hessian_ggn": float(np.max(rel[: C - 1])),
            "lanczos_max_residual_hessian": float(np.max(s["h_residuals"])),
            "lambda_min_slq_node": float(np.min(s["nodes"])),
            "slq_negative_mass": float(np.mean(np.sum(s["weights"] * (s["nodes"] < 0), -1))),
            "hutchinson_trace": float(s["trace"]),
            "hutchinson_trace_se": float(s["trace_se"]),
            "slq_trace": slq_trace,
            "slq_trace_se": slq_se,
            "trace_abs_diff_over_hutchinson_se": abs(float(s["trace"]) - slq_trace)
            / float(s["trace_se"]),
            "trace_abs_diff_over_combined_se": abs(float(s["trace"]) - slq_trace)
            / float(np.hypot(s["trace_se"], slq_se)),
        }
        if step in trained:
            pv, pres, pits = _power(model, x, y, jax.random.fold_in(k_spec, 1), power_iters)
            pv = np.asarray(pv)
            lz = s["h_values"][:POWER_K]
            out["power_top5"] = pv
            out["power_matvecs"] = np.asarray(pits)
            out["power_max_rel_residual"] = float(np.max(np.asarray(pres) / np.abs(pv)))
            out["lanczos_vs_power_top5_max_rel_diff"] = float(np.max(np.abs(pv - lz) / lz))
        metrics.update({f"digits_mlp_{tag}_{k}": v for k, v in out.items()})
        for k in ("grid", "density", "h_values", "g_values"):
            arrays[f"{k}_{tag}"] = s[k]

    claims = _claims(metrics, trained, C)
    return {"metrics": metrics, "claims": claims, "arrays": arrays}


def _claims(m: dict, trained: tuple, C: int) -> list:
    def by_step(name: str) -> dict:
        return {t: m[f"digits_mlp_step{t}_{name}"] for t in trained}

    hits = [abs(c - C) <= 1 for c in by_step("hessian_gap_count").values()]
    v1 = "supported" if all(hits) else "nuanced" if any(hits) else "refuted"
    overlaps = by_step("topC_subspace_overlap_hessian_ggn")
    diffs = by_step("topC_max_rel_diff_hessian_ggn")
    ok = [overlaps[t] >= 0.9 and diffs[t] <= 0.1 for t in trained]
    v2 = "supported" if all(ok) else "nuanced" if any(ok) else "refuted"
    return [
        claim(
            f"The trained classifier's Hessian has about C = {C} outliers separated from the "
            "bulk: the largest ratio gap λ_k/λ_{k+1} among the top-30 eigenvalues falls at "
            f"k ∈ {{C−1, C, C+1}} = {{{C - 1}, {C}, {C + 1}}} (supported if so at every "
            f"trained checkpoint, steps {list(trained)}; nuanced if at some; refuted if none)",
            "Ghorbani et al. 2019; Papyan 2018; Sagun et al. 2017",
            v1,
            {
                f"{name}_by_step": by_step(name)
                for name in (
                    "hessian_gap_count",
                    "hessian_gap_ratio",
                    "ggn_gap_count",
                    "slq_count_above_gap",
                    "train_loss",
                )
            },
            f"gap at k ∈ {{{C - 1}, {C}, {C + 1}}}",
            note="all checkpoints (step: Hessian / GGN gap count, ratio): "
            + "; ".join(
                f"{t}: {m[f'digits_mlp_step{t}_hessian_gap_count']} "
                f"({m[f'digits_mlp_step{t}_hessian_gap_ratio']:.3g}) / "
                f"{m[f'digits_mlp_step{t}_ggn_gap_count']} "
                f"({m[f'digits_mlp_step{t}_ggn_gap_ratio']:.3g})"
                for t in m["checkpoints"]
            ),
        ),
        claim(
            "The outliers come from the Gauss–Newton part: the top-C eigenspaces of the "
            "Hessian and of the GGN overlap (‖V_Hᵀ V_G‖_F²/C ≥ 0.9) and their top-C "
            "eigenvalues agree within 10% (supported if at every trained checkpoint)",
            "Papyan 2019; Sagun et al. 2017",
            v2,
            {"topC_overlap_by_step": overlaps, "topC_max_rel_diff_by_step": diffs},
            "overlap ≥ 0.9 and eigenvalue difference ≤ 10%",
            note="max relative difference over the top C−1 only: "
            + ", ".join(
                f"step {t}: {m[f'digits_mlp_step{t}_top_Cm1_max_rel_diff_hessian_ggn']:.3g}"
                for t in trained
            ),
        ),
    ]


_STEP_COLORS = ["#bbbbbb", "#9ecae1", "#3182bd", "#08306b"]


def plot(result: dict, arrays: dict):
    m = result["metrics"]
    C, steps = m["classes"], m["checkpoints"]
    color = dict(zip(steps, _STEP_COLORS[-len(steps) :], strict=True))
    fig, axes = figure(2, 2, size=(4.6, 3.5))
    dots = dict(marker="o", ms=3)

    ax = axes[0, 0]
    for t in steps:
        v, k = arrays[f"h_values_step{t}"], m[f"digits_mlp_step{t}_hessian_gap_count"]
        loss = m[f"digits_mlp_step{t}_train_loss"]
        label = f"step {t} (loss {loss:.3g}): gap after k={k}"
        ax.semilogy(np.arange(1, v.size + 1), v, color=color[t], label=label, **dots)
        ax.plot([k + 0.5], [np.sqrt(v[k - 1] * v[k])], "|", ms=14, mew=2, color=color[t])
    title = f"Top-{m['top_k']} Hessian eigenvalues (dotted: k = C = {C})"
    decorate(ax, xlabel="index k", ylabel="Hessian eigenvalue λ_k (Lanczos)", title=title)
    decorate(ax, vlines=[C + 0.5], legend=True)

    ratios = {t: np.asarray(spectral_gap(arrays[f"h_values_step{t}"]).ratios) for t in steps}
    ratios = {f"step {t}": (np.arange(1, r.size + 1), r) for t, r in ratios.items()}
    styles = {f"step {t}": color[t] for t in steps}
    curves(axes[0, 1], None, ratios, styles=styles, style=dots, xlabel="k", ylabel="λ_k / λ_{k+1}")
    decorate(axes[0, 1], title="Ratio gaps (dotted: k = C−1, C)", legend=True, vlines=(C - 1, C))

    ax = axes[1, 0]
    for t in m["trained_checkpoints"]:
        g, d, v = arrays[f"grid_step{t}"], arrays[f"density_step{t}"], arrays[f"h_values_step{t}"]
        ax.semilogy(g, np.maximum(d, 1e-9), color=color[t], label=f"SLQ, step {t}")
        ax.plot(v, np.full_like(v, 2e-6), "|", ms=10, color=color[t])
    xlabel = "Hessian eigenvalue λ  (ticks: top Lanczos eigenvalues)"
    title = "SLQ spectral density: bulk near 0, outliers"
    decorate(ax, ylim=(1e-6, None), xlabel=xlabel, ylabel="density", title=title, legend=True)

    ax = axes[1, 1]
    for t in [steps[0], *m["trained_checkpoints"]]:
        h, g = arrays[f"h_values_step{t}"], arrays[f"g_values_step{t}"]
        ov = m[f"digits_mlp_step{t}_topC_subspace_overlap_hessian_ggn"]
        label = f"Hessian, step {t}"
        ax.semilogy(np.arange(1, h.size + 1), h, "o", ms=4, color=color[t], label=label)
        label = f"GGN, step {t} (top-C overlap {ov:.2f})"
        ax.semilogy(np.arange(1, g.size + 1), g, "x", ms=5, color=color[t], label=label)
    title = "Hessian vs Gauss–Newton top eigenvalues"
    decorate(ax, xlabel="index k", ylabel="eigenvalue", title=title, legend=True, vlines=[C + 0.5])
    v = [c["verdict"] for c in result["claims"]]
    fig.suptitle(
        f"Digits, {m['model']} ({m['num_params']} params), {m['optimizer']}: "
        f"about C outliers? {v[0]}; from the GGN? {v[1]}"
    )
    return fig
