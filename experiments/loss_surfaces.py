"""Skip connections and the loss terrain (Li et al. 2018), on MNIST-1D.

Li, Xu, Taylor, Studer & Goldstein 2018 ("Visualizing the loss landscape of neural nets")
plot the training loss on a random 2-D slice ``θ* + α δ + β η`` through a trained net,
the directions ``δ, η`` *filter-normalised* (each output filter/neuron of a direction
rescaled to the norm of the weight's), and find that without skip connections deep nets'
slices turn chaotic, while with skips they stay near-convex. They quantify it with maps of
``|λ_min / λ_max|`` of the Hessian.

Here: residual and plain nets (:class:`terrain_jax.nets.Classifier`: linear stem →
``N`` stacked untied MLP blocks ``W_2 relu(W_1 x + b_1) + b_2``, width = hidden = 32 →
linear readout) at ``N = 4`` and ``N = 16``. At each depth the two nets start from the
*same* arrays (:func:`~terrain_jax.nets.shared_blocks`, variance-preserving init) and
train with the same optimizer (AdamW, warm-up + cosine, weight decay 1e-4), minibatches and
steps; they differ only in the identity path: ``plain`` ``x ← f_k(x)``, ``resnet``
``x ← x + h f_k(x)`` with ``h = 1/√N`` (the normalisation-free scaling of
:mod:`experiments.lesion`; ``h = 1`` without batch norm doubles the state variance per
block). MLP rather than conv blocks: XLA:CPU runs the small 1-D convolutions about 10×
slower per FLOP, and four 51×51 full-data surfaces of the conv nets would not fit the budget
(a 16-block, 8-channel conv net cost ~150 s per surface here, the MLP net ~15 s).

For each of the four trained nets:

- two filter-normalised random slices (:func:`terrain_jax.landscape.random_directions`,
  per layer of the stacked blocks and per neuron, biases zeroed as Li et al. do; the same
  keys for both nets of a depth), each on a 51×51 grid over ``[-1, 1]²`` of the training
  loss on all 4,000 training samples (:func:`terrain_jax.landscape.surface_2d`, one
  compiled call per surface);
- the PCA plane of the training trajectory (41 checkpoints: the init and every 1/40 of
  training, :func:`terrain_jax.landscape.pca_directions`, final point at the origin) with
  its own 51×51 surface spanning the trajectory, the trajectory drawn on it and the axes
  labelled with explained variance;
- the non-convexity of each random slice (:func:`terrain_jax.landscape.nonconvexity`): at
  each interior grid point the 2×2 Hessian of the surface by central finite differences,
  its eigenvalues ``λ_min ≤ λ_max``, and ``ρ = max(0, -λ_min) / |λ_max|`` (Li et al.'s
  ``|λ_min/λ_max|``, zero where the slice is locally convex). Reported: the fraction of
  points with *significant* negative curvature (``λ_min < -max(0.01 |λ_max|, τ)``, ``τ``
  the round-off floor of a second difference when each loss value is good to ``1e-5``
  relative), the mean ``ρ``, both over the whole ``[-1, 1]²`` slice and over its centre
  ``[-0.5, 0.5]²``, and the number of interior local minima (points lower than all 8
  neighbours by more than ``1e-5 |L|``).

Verdict rule: a net's surface is *near-convex* if, averaged over its slices, at most
``NEAR_CONVEX_FRAC`` of the points have significant negative curvature and no slice has more
than one interior local minimum; *chaotic/non-convex* otherwise. (The 10% bar and the
≤ 1 minimum were fixed before the first full run; the round-off floors were corrected after
it, see ``NOISE_REL``.)
"""

import time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from terrain_jax import PlainNet, ResidualNet
from terrain_jax.data import mnist1d
from terrain_jax.landscape import nonconvexity, pca_directions, random_directions, surface_2d
from terrain_jax.nets import Classifier, shared_blocks
from terrain_jax.plotting import decorate, figure, heatmap, limits, shared_colorbar, trajectories
from terrain_jax.train import adamw_cosine, ce_loss, cross_entropy, fit

from ._common import claim

NAME = "loss_surfaces"
TITLE = "Skip connections and the loss terrain (Li et al. 2018) on MNIST-1D"

CONFIG = dict(
    width=32,
    hidden=32,
    depths=(4, 16),
    steps=3000,
    batch=128,
    lr=3e-3,
    ckpts=40,
    grid=51,
    slices=2,
)
QUICK = dict(
    width=8, hidden=8, depths=(2, 4), steps=60, batch=128, lr=3e-3, ckpts=6, grid=11, slices=1
)
WEIGHT_DECAY = 1e-4
NETS = ("resnet", "plain")
LABEL = {"resnet": "ResNet", "plain": "plain (no skips)"}
SURFACE_BATCH = 1000  # the 4,000 training samples in 4 batches per grid point (exact mean)
_MEANS = ("neg_frac", "neg_frac_centre", "mean_ratio", "mean_ratio_centre")
PCA_MARGIN = 0.25  # the PCA surface spans the trajectory plus this fraction on each side

# criteria (the 10% bar and the ≤ 1 minimum fixed before the first full run)
NEAR_CONVEX_FRAC = 0.10  # near-convex: ≤ 10% of the slice has significant negative curvature
REL_NEG = 0.01  # significant: λ_min < -max(REL_NEG |λ_max|, τ) ...
NOISE_REL = 1e-5  # ... τ = 4 NOISE_REL max|z| (3×3 stencil) / h², the round-off floor of a
# second difference when each loss value is good to NOISE_REL (float32: ~1e-7 per value, a
# 4,000-sample mean ~1e-6); a local minimum is lower than its 8 neighbours by > NOISE_REL |z|
# (The first full run scaled both floors by the slice's range z_max - z_min, which the
# exploding far corners set (up to 1.2e8 for the 16-block plain net): no net then had a
# minimum, not even at the trained point, and τ (2.4e5 for the deep plain slice) hid most of
# its negative curvature. Fixed after that run; its numbers (one slice, another key):
# negative-curvature fraction 0.000 / 0.020 / 0.015 / 0.099 for resnet4 / plain4 /
# resnet16 / plain16.)
CENTRE = 0.5  # the centre region |α|, |β| ≤ CENTRE


# ----------------------------------------------------------------------------- training


def _init_nets(key, depth: int, width: int, hidden: int, features: int, classes: int):
    """``{"resnet": ..., "plain": ...}`` classifiers sharing the same block, stem and readout
    arrays."""
    k_blocks, k_head = jax.random.split(key)
    blocks = shared_blocks("mlp", width, hidden, depth, key=k_blocks)
    nets = {
        "resnet": ResidualNet(
            width, hidden, depth, key=k_head, h=1.0 / np.sqrt(depth), blocks=blocks
        ),
        "plain": PlainNet(width, hidden, depth, key=k_head, blocks=blocks),
    }
    return {
        k: Classifier(v, features, width, classes, key=k_head, kind="mlp") for k, v in nets.items()
    }


def _train(model, cfg, k_fit, ds):
    """Train one net; returns the model, its flattened checkpoints (init first, final last),
    the unravel function, the history and the wall time."""
    steps = cfg["steps"]
    opt = adamw_cosine(cfg["lr"], steps, weight_decay=WEIGHT_DECAY)
    x, y = jnp.asarray(ds.x_train), jnp.asarray(ds.y_train)
    theta0, unravel = ravel_pytree(eqx.filter(model, eqx.is_inexact_array))

    x_te, y_te = jnp.asarray(ds.x_test), jnp.asarray(ds.y_test)

    def eval_fn(m):  # a checkpoint: the flattened parameters, full-set loss and accuracies
        theta = ravel_pytree(eqx.filter(m, eqx.is_inexact_array))[0]
        logits = m(x)
        return {
            "train_loss": cross_entropy(logits, y),
            "train_acc": jnp.mean((jnp.argmax(logits, -1) == y).astype(jnp.float32)),
            "test_acc": jnp.mean((jnp.argmax(m(x_te), -1) == y_te).astype(jnp.float32)),
            "theta": theta,
        }

    t0 = time.perf_counter()
    model, hist = fit(
        model,
        ce_loss,
        opt,
        x,
        y,
        steps=steps,
        batch_size=cfg["batch"],
        key=k_fit,
        eval_every=steps // cfg["ckpts"],
        eval_fn=eval_fn,
    )
    train_s = time.perf_counter() - t0
    thetas = np.concatenate([np.asarray(theta0)[None], hist["theta"]])
    return model, thetas, unravel, hist, train_s


def _timed_surface(model, dirs, gx, gy, x, y):
    t0 = time.perf_counter()
    z = surface_2d(ce_loss, model, dirs, gx, gy, data=(x, y), batch_size=SURFACE_BATCH)
    z = np.asarray(jax.block_until_ready(z), np.float64)
    return z, time.perf_counter() - t0


def run(seed: int, quick: bool) -> dict:
    cfg = QUICK if quick else CONFIG
    ds = mnist1d(seed=seed)
    x, y = jnp.asarray(ds.x_train), jnp.asarray(ds.y_train)
    n = cfg["grid"]
    g = np.linspace(-1.0, 1.0, n)
    metrics: dict = {
        "config": {**cfg, "weight_decay": WEIGHT_DECAY, "surface_batch": SURFACE_BATCH},
        "mnist1d_n_train": int(ds.x_train.shape[0]),
        "mnist1d_n_test": int(ds.x_test.shape[0]),
        "grid_points": n * n,
    }
    arrays: dict = {"grid": g}
    stats: dict = {}
    key = jax.random.PRNGKey(seed)
    for depth in cfg["depths"]:
        k_init, k_fit, k_dir = jax.random.split(jax.random.fold_in(key, depth), 3)
        shape = (cfg["width"], cfg["hidden"], ds.x_train.shape[1], ds.num_classes)
        inits = _init_nets(k_init, depth, *shape)
        for net_name in NETS:
            p = f"mnist1d_{net_name}{depth}"
            model, thetas, unravel, hist, train_s = _train(inits[net_name], cfg, k_fit, ds)
            metrics[f"{p}_params"] = int(thetas.shape[1])
            metrics[f"{p}_train_acc"] = float(hist["train_acc"][-1])
            metrics[f"{p}_test_acc"] = float(hist["test_acc"][-1])
            metrics[f"{p}_final_train_loss"] = float(hist["train_loss"][-1])
            # random filter-normalised slices (the same keys for both nets of a depth)
            per, surf_s = [], []
            for i, k in enumerate(jax.random.split(k_dir, cfg["slices"])):
                dirs = random_directions(k, model, stack_axes=lambda m: m.net.blocks)
                z, t = _timed_surface(model, dirs, g, g, x, y)
                per.append(
                    nonconvexity(z, g, g, rel_neg=REL_NEG, noise_rel=NOISE_REL, centre=CENTRE)
                )
                surf_s.append(t)
                arrays[f"{p}_z{i}"] = z
                arrays[f"{p}_rho{i}"] = per[-1].rho
            stats[p] = {k: float(np.mean([getattr(q, k) for q in per])) for k in _MEANS}
            stats[p]["local_minima"] = max(q.local_minima for q in per)
            for k in _MEANS:
                metrics[f"{p}_{k}"] = stats[p][k]
                metrics[f"{p}_{k}_per_slice"] = [getattr(q, k) for q in per]
            metrics[f"{p}_local_minima_max"] = stats[p]["local_minima"]
            metrics[f"{p}_local_minima_per_slice"] = [q.local_minima for q in per]
            metrics[f"{p}_local_minima_xy"] = [q.minima_xy[:10] for q in per]
            metrics[f"{p}_surface_loss_at_origin"] = float(z[n // 2, n // 2])
            zmax = [float(arrays[f"{p}_z{i}"].max()) for i in range(len(per))]
            metrics[f"{p}_surface_loss_max_per_slice"] = zmax
            # PCA plane of the trajectory (final point at the origin)
            plane = pca_directions(jax.vmap(unravel)(jnp.asarray(thetas, jnp.float32)))
            px, py = plane.grid(n, margin=PCA_MARGIN)
            zp, pca_s = _timed_surface(model, plane.directions, px, py, x, y)
            evr = np.asarray(plane.explained_variance_ratio, np.float64)
            metrics[f"{p}_pca_explained_variance"] = evr
            arrays[f"{p}_pca_z"] = zp
            arrays[f"{p}_pca_x"] = px
            arrays[f"{p}_pca_y"] = py
            arrays[f"{p}_pca_coords"] = np.asarray(plane.coords, np.float64)
            arrays[f"{p}_ckpt_train_loss"] = hist["train_loss"]
            arrays[f"{p}_ckpt_test_acc"] = hist["test_acc"]
            # wall-clock numbers vary run to run: only in the full run (quick runs are
            # compared byte for byte); first call of a net's shapes includes compilation
            if not quick:
                metrics[f"{p}_train_s"] = train_s
                metrics[f"{p}_random_surface_s"] = surf_s  # one per slice
                metrics[f"{p}_pca_surface_s"] = pca_s
    claims = _claims(stats, metrics, cfg)
    return {"metrics": metrics, "claims": claims, "arrays": arrays}


def _near_convex(s: dict) -> bool:
    return s["neg_frac"] <= NEAR_CONVEX_FRAC and s["local_minima"] <= 1


def _claims(stats: dict, metrics: dict, cfg: dict) -> list[dict]:
    lo, hi = depths = cfg["depths"]
    inner, slices = cfg["grid"] - 2, cfg["slices"]
    r_lo, r_hi = stats[f"mnist1d_resnet{lo}"], stats[f"mnist1d_resnet{hi}"]
    p_lo, p_hi = stats[f"mnist1d_plain{lo}"], stats[f"mnist1d_plain{hi}"]

    def nums(s):
        return {
            "neg_curvature_frac": s["neg_frac"],
            "neg_curvature_frac_centre": s["neg_frac_centre"],
            "mean_abs_lmin_over_lmax": s["mean_ratio"],
            "local_minima_max_over_slices": s["local_minima"],
        }

    nets = {f"{n}{d}": stats[f"mnist1d_{n}{d}"] for n in NETS for d in depths}
    measured = {
        **{k: nums(v) for k, v in nets.items()},
        "test_acc": {f"{n}{d}": metrics[f"mnist1d_{n}{d}_test_acc"] for d in depths for n in NETS},
    }
    rule = (
        f"near-convex = on average over {slices} filter-normalised random [-1, 1]² slice(s), "
        f"≤ {NEAR_CONVEX_FRAC:.0%} of the {inner}×{inner} interior grid points have significant "
        f"negative curvature (finite-difference Hessian λ_min < -max({REL_NEG}|λ_max|, τ), τ "
        "the round-off floor) and no slice has more than one interior local minimum"
    )
    if _near_convex(r_lo) and _near_convex(r_hi):
        v1 = "supported"
    elif r_hi["neg_frac"] < p_hi["neg_frac"] and r_hi["local_minima"] <= p_hi["local_minima"]:
        v1 = "nuanced"
    else:
        v1 = "refuted"
    out = [
        claim(
            f"MNIST-1D, MLP blocks: with skip connections the filter-normalised loss slice "
            f"stays near-convex as depth grows ({lo} → {hi} blocks). Supported if both "
            f"ResNets' slices are near-convex ({rule}); nuanced if the deep ResNet's is not "
            "but is less non-convex than the deep plain net's (lower fraction, no more "
            "minima); refuted otherwise",
            "Li et al. 2018 (Visualizing the loss landscape of neural nets)",
            v1,
            measured,
            f"resnet{lo} and resnet{hi}: neg. curvature fraction ≤ {NEAR_CONVEX_FRAC}, "
            "≤ 1 local minimum",
        )
    ]
    grows = p_hi["neg_frac"] > p_lo["neg_frac"] or p_hi["local_minima"] > p_lo["local_minima"]
    worse = p_hi["neg_frac"] > r_hi["neg_frac"] or p_hi["local_minima"] > r_hi["local_minima"]
    if not _near_convex(p_hi) and grows and worse:
        v2 = "supported"
    elif grows and worse:
        v2 = "nuanced"
    else:
        v2 = "refuted"
    basins = (
        f" No random slice of the {hi}-block plain net has a second interior local minimum: "
        "its non-convexity is negative curvature (folds and ridges around the basin), not "
        "several basins."
        if p_hi["local_minima"] <= 1
        else ""
    )
    out.append(
        claim(
            f"MNIST-1D, MLP blocks: without skips the deep ({hi}-block) net's loss slice turns "
            f"chaotic / non-convex. Supported if the {hi}-block plain net's slice is not "
            f"near-convex ({rule}) and is more non-convex (higher negative-curvature fraction "
            f"or more local minima) than both the {lo}-block plain net's and the {hi}-block "
            "ResNet's; nuanced if it is more non-convex than both but still near-convex; "
            "refuted otherwise",
            "Li et al. 2018 (Visualizing the loss landscape of neural nets)",
            v2,
            measured,
            f"plain{hi}: neg. curvature fraction > {NEAR_CONVEX_FRAC} or > 1 local minimum, "
            f"and above plain{lo} and resnet{hi}",
            note=(
                f"{slices} random filter-normalised slice(s) per net (biases zeroed in the "
                "directions, the same keys for both nets of a depth); "
                f"ResNets use h = 1/√N, no normalisation layers. Centre-region "
                f"(|α|, |β| ≤ {CENTRE}) fractions: "
                + ", ".join(f"{k}: {v['neg_frac_centre']:.3f}" for k, v in nets.items())
                + "."
                + basins
            ),
        )
    )
    return out


# ----------------------------------------------------------------------------- figure


def plot(result: dict, arrays: dict):
    m = result["metrics"]
    names = [(n, d) for d in m["config"]["depths"] for n in NETS]
    g = arrays["grid"]
    fig, axes = figure(3, len(names), size=(3.3, 3.0), layout="constrained")
    keys = [f"mnist1d_{n}{d}" for n, d in names]
    log = {p: np.log10(np.maximum(arrays[f"{p}_z0"], 1e-8)) for p in keys}
    lo, hi = limits(*log.values())  # one scale for every random slice: the nets compare
    for col, (net_name, d) in enumerate(names):
        p = f"mnist1d_{net_name}{d}"
        title = f"{LABEL[net_name]}, {d} blocks (test acc {m[f'{p}_test_acc']:.2f})"
        # row 0: random filter-normalised slice, the whole range: the far slopes show
        ax = axes[0, col]
        heatmap(ax, log[p], x=g, y=g, levels=29, vmin=lo, vmax=hi, outline=True, aspect="equal")
        mins = np.asarray(m[f"{p}_local_minima_xy"][0], float).reshape(-1, 2)
        ax.plot(mins[:, 0], mins[:, 1], "o", mfc="none", mec="#d62728", ms=6)
        ax.plot(0, 0, "w*", ms=8)
        decorate(ax, xlabel="α (direction δ)", ylabel="β (direction η)")
        ax.set_title(f"{title}\nrandom filter-normalised slice 1", fontsize=8.5)
        # row 1: PCA plane with the trajectory, its own 3 decades above the minimum
        ax, evr = axes[1, col], m[f"{p}_pca_explained_variance"]
        lzp = np.log10(np.maximum(arrays[f"{p}_pca_z"], 1e-8))
        levels = np.linspace(lzp.min(), min(lzp.max(), lzp.min() + 3.0), 30)
        xy = dict(x=arrays[f"{p}_pca_x"], y=arrays[f"{p}_pca_y"])
        heatmap(ax, lzp, **xy, levels=levels, extend="max", colorbar="log10 train loss")
        init = dict(marker="s", color="w", mec="k", ms=5, label="init")
        walk = dict(color="#d62728", ms=2.5, lw=1.0)
        trajectories(ax, [arrays[f"{p}_pca_coords"]], "-o", style=walk, start=init)
        ax.plot(0, 0, "w*", mec="k", ms=9, label="final")
        xlabel, ylabel = f"PC1 ({evr[0] * 100:.1f}% of variance)", f"PC2 ({evr[1] * 100:.1f}%)"
        decorate(ax, xlabel=xlabel, ylabel=ylabel, legend="best")
        ax.set_title("training trajectory on its PCA plane", fontsize=8.5)
        # row 2: non-convexity map
        ax, gi = axes[2, col], g[1:-1]
        heatmap(ax, arrays[f"{p}_rho0"], x=gi, y=gi, vmin=0.0, vmax=0.5, cmap="magma")
        decorate(ax, xlabel="α", ylabel="β")
        fr = ", ".join(f"{v * 100:.1f}" for v in m[f"{p}_neg_frac_per_slice"])
        nm = ", ".join(str(v) for v in m[f"{p}_local_minima_per_slice"])
        ax.set_title(
            f"slice 1: ρ = |λ_min/λ_max| where λ_min < 0\nneg. curvature: {fr} % "
            f"(per slice)\nlocal minima: {nm}",
            fontsize=8,
        )
    shared_colorbar(axes[0], label="log10 train loss", vmin=lo, vmax=hi)
    rho = dict(vmin=0.0, vmax=0.5, cmap="magma", extend="max")
    shared_colorbar(axes[2], label="ρ (clipped at 0.5)", **rho)
    fig.suptitle(
        f"{TITLE}\nMLP blocks, same init and training per depth; loss on all "
        f"{m['mnist1d_n_train']} training samples, {len(g)}×{len(g)} grids; red circles: "
        "interior local minima",
        fontsize=10,
    )
    return fig
