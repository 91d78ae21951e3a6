"""Depth as time: residual nets with ``N`` blocks and ``h = T/N`` converge as ``N`` grows.

Residual nets ``x ← x + h f(t_k, x)``, ``h = T/N``, ``T = 4``, ``N = 4, 8, 16, 32, 64``, are
trained on sklearn digits with the same seed, data order and budget. Claims checked:
(a) the learned hidden-state trajectories converge (the distance between the nets with
``N`` and ``2N`` blocks, at their common times ``t_k = k T/N``, shrinks), and (b) test
accuracy plateaus.

**Consistent initialisation.** The block field is *one* time-dependent MLP field
``f(t, x)`` (``MLPField(time=True)``) shared by every block (``ResidualNet(tied=True)``),
built from the same key for every ``N``. So all nets have the *same* parameters at
init, whatever ``N``; they differ only in the Euler grid the field is sampled on. Training
then sees the loss of the same continuous-time model ``dx/dt = f(t, x)`` discretised with
``N`` Euler steps; as ``h → 0`` the loss and its gradient converge, so (if training is not
chaotic) the trained parameters, hence the trajectories, should too — Sander, Ablin &
Peyré 2022 ("Do residual neural networks discretize neural ODEs?") show this needs a
smooth-in-depth initialisation. Untied blocks initialised independently per ``N`` have no
common continuous-time limit to converge to; they are trained too, as the control that
says whether consistent initialisation matters. A second control trains the ``N = 64``
tied net from a different init seed: the distance between two equally good solutions,
the scale against which "converged" is judged.

A third comparison separates training from discretisation: the trained ``N = 64`` field
re-run with ``N`` Euler steps (no retraining) gives the pure Euler error of one fixed field.

**Why digits.** The flow acts on a feature vector, so MLP fields are the natural block;
on digits an MLP-field ResNet clears the 95% bar, whereas MNIST-1D needs convolutional
blocks to clear its bar (MLPs reach ~68%), which cost ~10× more per step on this CPU and
would not fit ten trainings into the time budget.

Distances: ``D(N) = RMS_{inputs, k} ‖x_N(t_k) − x_2N(t_k)‖ / RMS_{inputs, k} ‖x_2N(t_k)‖``
over the whole test set and the ``N + 1`` common times (the stem output is ``x(0)``, and is
trained too, so ``k = 0`` is included).
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

from terrain_jax import ResidualNet
from terrain_jax.data import digits
from terrain_jax.fields import MLPField
from terrain_jax.nets import Classifier
from terrain_jax.plotting import (
    COLORS,
    convergence,
    curves,
    decorate,
    figure,
    integer_ticks,
    legend_handles,
    reference_slope,
    trajectories,
)
from terrain_jax.train import adamw_cosine, ce_loss, fit

from ._common import claim

NAME = "depth_as_time"
TITLE = "Depth as time: residual nets with h = T/N converge as N grows"

T = 4.0
FULL = dict(Ns=(4, 8, 16, 32, 64), width=32, hidden=64, steps=1500, batch=128, lr=3e-3)
QUICK = dict(Ns=(2, 4, 8), width=8, hidden=16, steps=60, batch=64, lr=3e-3)
WEIGHT_DECAY = 1e-4
ACTIVATION = "tanh"  # smooth field: Euler's first-order error analysis applies
N_PLOT_PER_CLASS = 1

# criteria, fixed before the runs
CONVERGE_FACTOR = 0.25  # D(N_max/2, N_max) <= 0.25 · D(N_min, 2 N_min), and D decreasing
PLATEAU_SPREAD = 0.015  # test accuracy over the three largest N within 1.5 points


def _model(N: int, cfg: dict, key, *, tied: bool, features: int, classes: int) -> Classifier:
    k_field, k_head = jax.random.split(key)
    w, hid = cfg["width"], cfg["hidden"]
    if tied:
        field = MLPField(w, hid, key=k_field, time=True, activation=ACTIVATION)
        net = ResidualNet(w, hid, N, key=k_field, T=T, tied=True, blocks=field)
    else:
        net = ResidualNet(w, hid, N, key=k_field, T=T, activation=ACTIVATION)
    return Classifier(net, features, w, classes, key=k_head, kind="mlp")


@eqx.filter_jit
def _forward(model: Classifier, x: jax.Array):
    hs = model.hidden(x)
    return hs, model.head(hs[-1])


def _evaluate(model: Classifier, x, y) -> tuple[np.ndarray, float]:
    hs, logits = _forward(model, x)
    acc = float(jnp.mean((jnp.argmax(logits, -1) == y).astype(jnp.float32)))
    return np.asarray(hs, np.float64), acc


def _distance(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """``(D, D_disp)``: RMS distance of ``a`` (net N) and ``b`` (net 2N, subsampled to the
    common times), over the RMS state norm of ``b`` and over its RMS displacement from
    ``x(0)``."""
    d = np.sqrt(np.mean(np.sum((a - b) ** 2, -1)))
    scale = np.sqrt(np.mean(np.sum(b**2, -1)))
    disp = np.sqrt(np.mean(np.sum((b - b[:1]) ** 2, -1)))
    return float(d / scale), float(d / disp)


def _pair_distances(hs: dict[int, np.ndarray], Ns) -> np.ndarray:
    """``(D, D_disp)`` of each net ``N`` against ``2N``, ``(2, len(Ns) − 1)``."""
    return np.array([_distance(hs[n], hs[2 * n][::2]) for n in Ns[:-1]]).T


def run(seed: int, quick: bool) -> dict:
    cfg = QUICK if quick else FULL
    Ns = tuple(cfg["Ns"])
    ds = digits(seed=seed)
    x_te, y_te = jnp.asarray(ds.x_test), jnp.asarray(ds.y_test)
    key = jax.random.PRNGKey(seed)
    k_init, k_fit, k_other = jax.random.split(key, 3)
    opt = adamw_cosine(cfg["lr"], cfg["steps"], weight_decay=WEIGHT_DECAY)
    feat, ncls = ds.x_train.shape[1], ds.num_classes

    def train(N, tied, k):
        model = _model(N, cfg, k, tied=tied, features=feat, classes=ncls)
        model, hist = fit(
            model,
            ce_loss,
            opt,
            ds.x_train,
            ds.y_train,
            steps=cfg["steps"],
            batch_size=cfg["batch"],
            key=k_fit,
        )
        hs, acc = _evaluate(model, x_te, y_te)
        return model, hs, acc, float(np.mean(hist["loss"][-50:]))

    families = ("tied",) if quick else ("tied", "untied")
    hs, acc, loss, models = {}, {}, {}, {}
    for fam in families:
        hs[fam], acc[fam], loss[fam] = {}, {}, {}
        for N in Ns:
            m, h, a, lo = train(N, fam == "tied", k_init)
            hs[fam][N], acc[fam][N], loss[fam][N] = h, a, lo
            if fam == "tied":
                models[N] = m
    # control: the largest tied net from another init seed (same data order and budget)
    _, hs_seed, acc_seed, _ = train(Ns[-1], True, k_other)
    # the trained largest field, re-discretised with N steps (no retraining)
    big = models[Ns[-1]]
    hs_fixed, acc_fixed = {}, {}
    for N in Ns:
        net = ResidualNet(cfg["width"], cfg["hidden"], N, T=T, tied=True, blocks=big.net.blocks)
        hs_fixed[N], acc_fixed[N] = _evaluate(eqx.tree_at(lambda m: m.net, big, net), x_te, y_te)

    D, D_disp = {}, {}
    for fam in families:
        D[fam], D_disp[fam] = _pair_distances(hs[fam], Ns)
    D["fixed_field"], D_disp["fixed_field"] = _pair_distances(hs_fixed, Ns)
    seed_dist, seed_dist_disp = _distance(hs_seed, hs["tied"][Ns[-1]])
    # each tied net against the largest one, at the smaller net's times
    to_big = np.array([_distance(hs["tied"][N], hs["tied"][Ns[-1]][:: Ns[-1] // N])[0] for N in Ns])
    rates = np.log2(D["tied"][:-1] / D["tied"][1:])
    rates_untied = np.log2(D["untied"][:-1] / D["untied"][1:]) if "untied" in D else None

    metrics: dict = {
        "dataset": "digits",
        "T": T,
        "Ns": list(Ns),
        "width": cfg["width"],
        "hidden": cfg["hidden"],
        "train_steps": cfg["steps"],
        "batch_size": cfg["batch"],
        "init": "tied time-dependent MLP field, identical parameters for every N",
        "n_test": int(ds.x_test.shape[0]),
    }
    for fam in families:
        for N in Ns:
            metrics[f"digits_{fam}_resnet_N{N}_test_acc"] = acc[fam][N]
            metrics[f"digits_{fam}_resnet_N{N}_final_train_loss"] = loss[fam][N]
        metrics[f"{fam}_distance_N_vs_2N"] = D[fam]
        metrics[f"{fam}_distance_N_vs_2N_over_displacement"] = D_disp[fam]
    for N in Ns:
        metrics[f"digits_fixed_field_N{N}_test_acc"] = acc_fixed[N]
    metrics["fixed_field_distance_N_vs_2N"] = D["fixed_field"]
    metrics["tied_distance_to_largest_N"] = to_big
    metrics["tied_distance_observed_order"] = rates
    if rates_untied is not None:
        metrics["untied_distance_observed_order"] = rates_untied
    metrics["seed_control_distance"] = seed_dist
    metrics["seed_control_distance_over_displacement"] = seed_dist_disp
    metrics[f"digits_tied_resnet_N{Ns[-1]}_other_seed_test_acc"] = acc_seed

    claims = _claims(Ns, D, acc, seed_dist, rates, quick)

    # PCA plane of the largest tied net's trajectories (a few test inputs, all times)
    y_np = np.asarray(ds.y_test)
    pick = np.concatenate([np.flatnonzero(y_np == c)[:N_PLOT_PER_CLASS] for c in range(ncls)])
    ref = hs["tied"][Ns[-1]][:, pick].reshape(-1, cfg["width"])
    mean = ref.mean(0)
    _, _, vt = np.linalg.svd(ref - mean, full_matrices=False)
    vt = vt[:2] * np.sign(vt[:2, :1] + 1e-30)  # fix the SVD's sign ambiguity
    arrays: dict = {"y_plot": y_np[pick], "Ns": np.array(Ns)}
    for N in Ns:
        arrays[f"pca_tied_N{N}"] = (hs["tied"][N][:, pick] - mean) @ vt.T
    for key_, v in D.items():
        arrays[f"D_{key_}"] = v
    for fam in families:
        arrays[f"acc_{fam}"] = np.array([acc[fam][N] for N in Ns])
    arrays["acc_fixed_field"] = np.array([acc_fixed[N] for N in Ns])
    arrays["tied_to_largest"] = to_big
    return {"metrics": metrics, "claims": claims, "arrays": arrays}


def _claims(Ns, D, acc, seed_dist, rates, quick) -> list[dict]:
    d = D["tied"]
    decreasing = bool(np.all(np.diff(d) < 0))
    if decreasing and d[-1] <= CONVERGE_FACTOR * d[0]:
        v = "supported"
    elif d[-1] < d[0]:
        v = "nuanced"
    else:
        v = "refuted"
    pairs = [f"{n}/{2 * n}" for n in Ns[:-1]]
    out = [
        claim(
            f"As N grows with h = T/N (T = {T:g}), the learned hidden trajectories converge: "
            "the relative distance D(N) between the trained N- and 2N-block nets at their "
            f"common times decreases at every doubling and D({pairs[-1]}) ≤ "
            f"{CONVERGE_FACTOR} · D({pairs[0]}). Nets initialised consistently (one tied "
            "time-dependent field, identical parameters for every N)",
            "issue 3 exp. 7; Haber & Ruthotto 2017; Chen et al. 2018; Sander, Ablin & Peyré 2022",
            v,
            {
                "D_tied": dict(zip(pairs, [float(x) for x in d], strict=True)),
                "observed_order_log2_ratio": [float(r) for r in rates],
                "seed_control_distance": seed_dist,
            },
            f"decreasing, last/first <= {CONVERGE_FACTOR} (first-order Euler: ~2× per doubling)",
            note=(
                "seed_control_distance: the largest net trained from another init seed, "
                "the distance between two equally good solutions."
            ),
        )
    ]
    a = np.array([acc["tied"][N] for N in Ns])
    top = a[-3:]
    spread = float(top.max() - top.min())
    out.append(
        claim(
            f"Test accuracy plateaus as N grows (h = T/N): over the three largest N "
            f"({', '.join(str(n) for n in Ns[-3:])}) it varies by ≤ "
            f"{PLATEAU_SPREAD * 100:.1f} points",
            "issue 3 exp. 7; Chen et al. 2018",
            "supported" if spread <= PLATEAU_SPREAD else "refuted",
            {
                "test_acc_by_N": dict(zip([str(n) for n in Ns], a.tolist(), strict=True)),
                "spread_top3": spread,
            },
            f"spread <= {PLATEAU_SPREAD}",
            note=f"accuracy at the smallest N ({Ns[0]}) is {a[0]:.3f}: compare with the plateau "
            "to see whether there was anything to plateau from.",
        )
    )
    if "untied" in D:
        du = D["untied"]
        ratio = float(du[-1] / d[-1])
        v = "supported" if du[-1] > 3 * d[-1] and du[-1] >= 0.5 * du[0] else "refuted"
        if v == "refuted" and du[-1] > d[-1]:
            v = "nuanced"
        out.append(
            claim(
                "Trajectory convergence needs a consistent initialisation: untied blocks "
                "initialised independently for each N do not converge. Supported if their "
                "last-pair distance is > 3× the tied nets' and has not fallen below half "
                "their first-pair distance; nuanced if larger than the tied nets' but not by "
                "that much or still shrinking; refuted otherwise",
                "Sander, Ablin & Peyré 2022",
                v,
                {
                    "D_untied": dict(zip(pairs, [float(x) for x in du], strict=True)),
                    "D_tied": dict(zip(pairs, [float(x) for x in d], strict=True)),
                    "untied_over_tied_last_pair": ratio,
                    "untied_observed_order_log2_ratio": [
                        float(r) for r in np.log2(du[:-1] / du[1:])
                    ],
                },
                "untied last pair > 3× tied and >= half its first pair",
                note=(
                    "An observed order near 0.5 (distance ∝ √h) is what independent random "
                    "blocks give: h Σ_k f_k of i.i.d. fields averages out like a random walk, "
                    "not like a smooth Euler discretisation (order 1)."
                ),
            )
        )
    return out


# ----------------------------------------------------------------------------- figure


def plot(result: dict, arrays: dict):
    m = result["metrics"]
    Ns = np.asarray(arrays["Ns"])
    n, last = Ns[:-1], Ns[-1]
    fig, axes = figure(2, 2, size=(5.0, 3.6))
    tied = dict(marker="o", color=COLORS["resnet"])
    untied = dict(marker="s", color=COLORS["plain"])
    fixed = dict(marker="^", ls="--", color=COLORS["rk4"])
    grey = dict(color="grey", lw=0.8, ls="-.")

    fixed_b = f"N = {last} field, evaluated with N steps"
    ax, nets = (
        axes[0, 0],
        {  # key -> style, label in (a), label in (b)
            "tied": (tied, "tied field, consistent init (trained at each N)", "tied, trained at N"),
            "untied": (untied, "untied blocks, independent init per N", "untied, trained at N"),
            "fixed_field": (fixed, "largest net's field, re-run with N steps", fixed_b),
        },
    )
    nets = {k: v for k, v in nets.items() if f"D_{k}" in arrays}
    D = {lab: arrays[f"D_{k}"] for k, (_, lab, _) in nets.items()}
    convergence(ax, n, D, styles=[st for st, _, _ in nets.values()])
    seed = m["seed_control_distance"]
    ax.axhline(seed, color="k", ls=":", lw=1, label=f"two seeds, N = {last}")
    first = (n[0], arrays["D_tied"][0])
    reference_slope(ax, n, -1, through=first, label="slope −1 (first order)", **grey)
    integer_ticks(ax, n, labels=[f"{a}/{2 * a}" for a in n])
    lo = min(float(np.min(arrays["D_tied"])), float(np.min(arrays["D_fixed_field"])))
    ylim = (lo / 12, 3 * max(seed, float(np.max(arrays["D_tied"]))))
    decorate(ax, xlabel="N / 2N compared", ylabel="relative trajectory distance D(N)", ylim=ylim)
    decorate(ax, title="(a) distance between nets with N and 2N blocks", legend="lower left")

    ax = axes[0, 1]
    acc = {lab: arrays[f"acc_{k}"] for k, (_, _, lab) in nets.items() if f"acc_{k}" in arrays}
    styles = {lab: st for st, _, lab in nets.values()}
    curves(ax, Ns, acc, styles=styles, xscale="log", xlabel="blocks N  (h = T/N)")
    ax.axhline(0.95, color="#2ca02c", lw=0.8, ls="-.", label="quality bar 0.95")
    integer_ticks(ax, Ns)
    ylim = (min(0.9, float(np.min(arrays["acc_fixed_field"])) - 0.01), 1.0)
    decorate(ax, ylabel="test accuracy", title="(b) test accuracy vs N", ylim=ylim)
    ax.legend(loc="center right")

    ax = axes[1, 0]
    d_big = arrays["tied_to_largest"][:-1]
    first = (1.0 / n - 1.0 / last) / (1.0 / Ns[0] - 1.0 / last)
    lines = {"_tied": d_big, f"first order: ∝ 1/N − 1/{last}": d_big[0] * first}
    styles = {"_tied": tied, f"first order: ∝ 1/N − 1/{last}": grey}
    curves(ax, n, lines, styles=styles, xscale="log", yscale="log", xlabel="blocks N")
    integer_ticks(ax, n)
    title = f"(c) each trained tied net vs the N = {last} one (T = {m['T']:g})"
    decorate(ax, ylabel=f"relative distance to the N = {last} net", title=title, legend=True)

    ax, cmap, y = axes[1, 1], plt.get_cmap("tab10"), arrays["y_plot"]
    shown = [Ns[0], Ns[len(Ns) // 2], last]
    styles = {
        shown[0]: dict(ls="--", marker="o", ms=3, lw=0.9),
        shown[1]: dict(ls=":", marker=".", ms=2, lw=0.9),
        shown[2]: dict(ls="-", marker="", lw=1.4),
    }
    digit = [cmap(int(d) % 10) for d in y]
    for N in shown:  # one path per digit; x(T) starred on the finest net's
        end = dict(marker="*", ms=7, mec="k", mew=0.4) if N == last else None
        paths = arrays[f"pca_tied_N{N}"].transpose(1, 0, 2)
        trajectories(ax, list(paths), styles=digit, style=styles[N], end=end)
    for d, at in zip(y, arrays[f"pca_tied_N{last}"][-1], strict=True):
        ax.annotate(str(int(d)), at, fontsize=7, xytext=(3, 3), textcoords="offset points")
    keys = {f"N = {N}": dict(color="k", **styles[N]) for N in shown}
    keys["x(T)"] = dict(ls="", marker="*", color="grey", mec="k")
    ax.legend(handles=legend_handles(keys))
    title = f"(d) hidden trajectories of {len(y)} test digits (PCA of N = {last})"
    decorate(ax, xlabel="PC 1", ylabel="PC 2", title=title)
    fig.suptitle(
        f"{TITLE} (digits, T = {m['T']:g}); D({Ns[-2]}/{last}) = "
        f"{arrays['D_tied'][-1]:.3g} vs two seeds {m['seed_control_distance']:.3g}"
    )
    return fig
