"""Edge of stability (Cohen et al. 2021): under full-batch GD the sharpness rises to ``2/η``.

Gradient descent is explicit Euler on ``−∇L``; on a quadratic it is stable only while the
top Hessian eigenvalue ``λ_max`` (the *sharpness*) stays below ``2/η``. Cohen et al.
observed that on neural nets full-batch GD first sharpens (``λ_max`` rises: progressive
sharpening) until it reaches about ``2/η``, then hovers there while the loss keeps
decreasing over long times, non-monotonically (the edge of stability, EoS).

Setup: a tanh MLP (40 → 32 → 32 → 32 → 10, 3,754 parameters) on 1,000 MNIST-1D training
signals, square loss ``½ mean_n ‖f(x_n) − onehot(y_n)‖²`` (Cohen's MSE setting, where
EoS is cleanest; with cross-entropy the sharpness also falls late as the margins grow).
Full-batch GD at ``η ∈ {1/2, 1/4, 1/8, 1/16}`` (``2/η = 4 … 32``), each run for the same
gradient-flow time ``η · steps`` (slower runs need proportionally more steps to sharpen).
One jitted ``lax.scan`` per run (compiled once for all ``η``,
:func:`terrain_jax.train.gd_with_sharpness`): chunks of ``k`` GD steps (a ``fori_loop``
counting up-steps of the loss), each preceded by :func:`terrain_jax.curvature.sharpness`
warm-started from the previous top eigenvector.
The tracked values are checked against a cold-started 90-step Lanczos at four checkpoints.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from terrain_jax.curvature import hessian_operator, hessian_top_eigenvalues
from terrain_jax.data import mnist1d
from terrain_jax.plotting import decorate, figure
from terrain_jax.train import gd_with_sharpness

from ._common import claim

NAME = "edge_of_stability"
TITLE = "Edge of stability: full-batch GD sharpens until λ_max ≈ 2/η, then hovers there"

ETAS = (0.5, 0.25, 0.125, 0.0625)
QUICK_ETAS = (0.5, 0.25)
WIDTH, DEPTH = 32, 3
CROSS = 0.9  # sharpness has "reached" 2/η once it is at least 0.9 · 2/η
BAND = (0.8, 1.2)  # "about 2/η"
VALIDATION_ITERS = 90
_PALETTE = ("C3", "C1", "C2", "C0")


def _config(quick: bool) -> dict:
    if quick:
        return {"samples": 300, "horizon": 100.0, "chunks": 50, "iters": 8, "etas": QUICK_ETAS}
    return {"samples": 1000, "horizon": 800.0, "chunks": 400, "iters": 12, "etas": ETAS}


def _trainer(loss, data: tuple, num_chunks: int, num_iters: int):
    """``train(flat, eta, k, key, checks)``: ``num_chunks`` chunks of ``k`` full-batch GD
    steps, the sharpness measured (warm-started) before each chunk and once at the end
    (:func:`terrain_jax.train.gd_with_sharpness`); then a cold-started
    ``VALIDATION_ITERS``-step Lanczos at the measurement indices ``checks``. One compile
    serves every ``η`` and ``k``."""

    def precise(p, key_p):
        op = hessian_operator(loss, p, data)
        e = hessian_top_eigenvalues(op, op.dim, 1, key_p, num_iters=VALIDATION_ITERS)
        return e.values[0], e.residuals[0]

    @jax.jit
    def train(flat, eta, k, key, checks):
        k_start, k_track, k_check = jax.random.split(key, 3)
        v0 = jax.random.normal(k_start, flat.shape, flat.dtype)
        kw = dict(num_iters=num_iters, v0=v0, return_params=True)
        rec = gd_with_sharpness(loss, flat, data, eta, k, num_chunks, k_track, **kw)
        ps = rec.pop("params")[checks]
        keys = jax.random.split(k_check, checks.shape[0])
        rec["precise"], rec["precise_residual"] = jax.lax.map(lambda a: precise(*a), (ps, keys))
        return rec

    return train


def _phase_metrics(eta: float, k: int, rec: dict) -> dict:
    """Crossing step, late-phase sharpness ratio and loss behaviour of one run."""
    s = np.asarray(rec["sharpness"])  # (chunks + 1,) at steps 0, k, 2k, …
    loss = np.asarray(rec["loss"])
    ups = np.asarray(rec["up_steps"])  # (chunks,) up-steps inside chunk i
    edge = 2.0 / eta
    chunks = ups.size
    hit = np.flatnonzero(s >= CROSS * edge)
    out = {
        "eta": eta,
        "two_over_eta": edge,
        "steps": chunks * k,
        "track_every": k,
        "initial_sharpness": float(s[0]),
        "max_sharpness_over_two_over_eta": float(s.max() / edge),
        "final_sharpness_over_two_over_eta": float(s[-1] / edge),
        "final_loss": float(loss[-1]),
        "up_step_fraction_whole_run": float(ups.sum() / (chunks * k)),
    }
    if hit.size == 0:
        out.update(first_cross_step="never", late_fraction_of_run=0.0)
        return out
    i = int(hit[0])
    late_s = s[i:] / edge
    late_loss = loss[i:]
    n10 = max(1, late_loss.size // 10)
    late_steps = (chunks - i) * k
    pre_steps = i * k
    out.update(
        first_cross_step=i * k,
        late_fraction_of_run=late_steps / (chunks * k),
        late_median_sharpness_over_two_over_eta=float(np.median(late_s)),
        late_fraction_sharpness_in_band=float(np.mean((late_s >= BAND[0]) & (late_s <= BAND[1]))),
        late_loss_start=float(late_loss[0]),
        late_loss_end=float(late_loss[-1]),
        late_loss_first10pct_mean=float(late_loss[:n10].mean()),
        late_loss_last10pct_mean=float(late_loss[-n10:].mean()),
        late_up_steps=int(ups[i:].sum()),
        late_up_step_fraction=float(ups[i:].sum() / max(late_steps, 1)),
        late_second_half_up_step_fraction=float(
            ups[i + (chunks - i) // 2 :].sum() / max((chunks - i - (chunks - i) // 2) * k, 1)
        ),
        pre_up_step_fraction=float(ups[:i].sum() / pre_steps) if pre_steps else "n/a",
    )
    return out


def run(seed: int, quick: bool) -> dict:
    cfg = _config(quick)
    data = mnist1d(seed=seed)
    x = jnp.asarray(data.x_train[: cfg["samples"]])
    y = jax.nn.one_hot(jnp.asarray(data.y_train[: cfg["samples"]]), data.num_classes)
    mlp = eqx.nn.MLP(x.shape[1], data.num_classes, WIDTH, DEPTH, activation=jnp.tanh,
                     key=jax.random.key(seed))  # fmt: skip
    flat0, unravel = ravel_pytree(eqx.filter(mlp, eqx.is_inexact_array))
    static = eqx.filter(mlp, eqx.is_inexact_array, inverse=True)

    def loss(flat, xb, yb):
        model = eqx.combine(unravel(flat), static)
        return 0.5 * jnp.mean(jnp.sum((jax.vmap(model)(xb) - yb) ** 2, axis=-1))

    train = _trainer(loss, (x, y), cfg["chunks"], cfg["iters"])
    chunks = cfg["chunks"]
    checks = np.array([chunks // 4, chunks // 2, 3 * chunks // 4, chunks])
    metrics: dict = {
        "mnist1d_mlp_params": int(flat0.size),
        "mnist1d_train_samples": int(x.shape[0]),
        "loss": "square (½ mean ‖f(x) − onehot(y)‖²)",
        "gradient_flow_time_eta_times_steps": cfg["horizon"],
        "tracking_lanczos_iters": cfg["iters"],
        "validation_lanczos_iters": VALIDATION_ITERS,
    }
    arrays: dict = {}
    per_eta = []
    worst_rel = 0.0
    keys = jax.random.split(jax.random.key(seed + 1), len(cfg["etas"]))
    for j, eta in enumerate(cfg["etas"]):
        k = int(round(cfg["horizon"] / eta)) // chunks
        rec = train(flat0, jnp.float32(eta), k, keys[j], jnp.asarray(checks))
        rec = {name: np.asarray(v) for name, v in rec.items()}
        m = _phase_metrics(eta, k, rec)
        ref = rec["precise"]
        tracked = rec["sharpness"][checks]
        rel = np.abs(tracked - ref) / np.abs(ref)
        m["validation_steps"] = (checks * k).tolist()
        m["validation_precise_sharpness"] = ref.tolist()
        m["validation_precise_residual_max"] = float(np.max(rec["precise_residual"]))
        m["validation_tracked_sharpness"] = tracked.tolist()
        m["validation_max_rel_error"] = float(rel.max())
        m["tracked_residual_max"] = float(rec["residual"].max())
        worst_rel = max(worst_rel, float(rel.max()))
        per_eta.append(m)
        tag = f"mnist1d_mlp_eta{eta:g}"
        metrics.update({f"{tag}_{name}": v for name, v in m.items() if name != "eta"})
        arrays[f"eta{eta:g}_step"] = np.arange(chunks + 1) * k
        for name in ("sharpness", "loss", "loss_min", "loss_max"):
            arrays[f"eta{eta:g}_{name}"] = rec[name]
        arrays[f"eta{eta:g}_validation_step"] = np.asarray(m["validation_steps"])
        arrays[f"eta{eta:g}_validation_sharpness"] = np.asarray(ref)
    metrics["validation_max_rel_error_all_runs"] = worst_rel
    return {"metrics": metrics, "claims": _claims(per_eta), "arrays": arrays}


def _at_edge(m: dict) -> bool:
    """Sharpened from below to 0.9·2/η and then hovered: median ratio in [0.9, 1.1], at
    least 80% of late measurements in [0.8, 1.2]·2/η, late phase ≥ 20% of the run."""
    if m["first_cross_step"] == "never":
        return False
    return (
        m["initial_sharpness"] < CROSS * m["two_over_eta"]
        and 0.9 <= m["late_median_sharpness_over_two_over_eta"] <= 1.1
        and m["late_fraction_sharpness_in_band"] >= 0.8
        and m["late_fraction_of_run"] >= 0.2
    )


def _verdict(flags: list[bool]) -> str:
    return "supported" if all(flags) else ("refuted" if not any(flags) else "nuanced")


def _claims(per_eta: list[dict]) -> list[dict]:
    edge = [_at_edge(m) for m in per_eta]
    sharp = claim(
        "Under full-batch GD the sharpness λ_max rises (progressive sharpening) until it "
        "reaches about 2/η, then hovers there (edge of stability). Per η: supported if "
        "λ_max starts below 0.9·2/η, crosses it, and afterwards (≥ 20% of the run) has "
        "median λ_max/(2/η) in [0.9, 1.1] with ≥ 80% of measurements in [0.8, 1.2]; "
        "supported if all η qualify, nuanced if some, refuted if none",
        "Cohen et al. 2021, Gradient descent on neural networks typically occurs at the "
        "edge of stability",
        _verdict(edge),
        {
            f"eta{m['eta']:g}": {
                "initial": m["initial_sharpness"],
                "max_ratio": m["max_sharpness_over_two_over_eta"],
                "first_cross_step": m["first_cross_step"],
                "late_median_ratio": m.get("late_median_sharpness_over_two_over_eta"),
                "late_fraction_in_band": m.get("late_fraction_sharpness_in_band"),
                "late_fraction_of_run": m["late_fraction_of_run"],
            }
            for m in per_eta
        },
        "λ_max/(2/η) ≈ 1 after the crossing",
    )
    eos = [m for m in per_eta if m["first_cross_step"] != "never"]
    flags = [
        m["late_loss_last10pct_mean"] < m["late_loss_first10pct_mean"]
        and m["late_up_step_fraction"] >= 0.01
        for m in eos
    ]
    loss = claim(
        "At the edge of stability the training loss keeps decreasing over long times while "
        "being non-monotone. Per η whose sharpness reached 0.9·2/η, over the steps after "
        "that (the late phase): supported if the mean loss over the last 10% of "
        "the late phase is below that over its first 10% and ≥ 1% of late steps increase "
        "the loss",
        "Cohen et al. 2021",
        _verdict(flags) if eos else "refuted",
        {
            f"eta{m['eta']:g}": {
                "late_loss_first10pct_mean": m["late_loss_first10pct_mean"],
                "late_loss_last10pct_mean": m["late_loss_last10pct_mean"],
                "late_up_step_fraction": m["late_up_step_fraction"],
                "late_second_half_up_step_fraction": m["late_second_half_up_step_fraction"],
                "pre_up_step_fraction": m["pre_up_step_fraction"],
            }
            for m in eos
        },
        "loss decreases overall, with up-steps",
        note="No η reached 0.9·2/η: nothing to test." if not eos else "",
    )
    return [sharp, loss]


def plot(result: dict, arrays: dict):
    m = result["metrics"]
    etas = [e for e in ETAS if f"eta{e:g}_step" in arrays]
    fig, axes = figure(2, len(etas), size=(3.3, 2.8), squeeze=False)
    for col, (eta, c) in enumerate(zip(etas, _PALETTE, strict=False)):
        key, tag = f"eta{eta:g}", f"mnist1d_mlp_eta{eta:g}"
        step, edge, cross = arrays[f"{key}_step"], 2.0 / eta, m[f"{tag}_first_cross_step"]
        ax, legend = axes[0, col], dict(fontsize=7, loc="lower right") if col == 0 else None
        ax.axhspan(BAND[0] * edge, BAND[1] * edge, color="gray", alpha=0.15, lw=0)
        ax.axhline(edge, color="k", ls="--", lw=0.9, label="2/η")
        ax.plot(step, arrays[f"{key}_sharpness"], color=c, lw=1.1, label="tracked λ_max")
        checks = arrays[f"{key}_validation_step"], arrays[f"{key}_validation_sharpness"]
        ax.plot(*checks, "kx", ms=6, label="Lanczos-90 check")
        crossed = [] if cross == "never" else [cross]
        if cross != "never":
            med = m[f"{tag}_late_median_sharpness_over_two_over_eta"]
            sub = f"cross at step {cross}, late median {med:.2f}·2/η"
        else:
            sub = "never reaches 0.9·2/η"
        ylabel = "sharpness λ_max" if col == 0 else None
        decorate(ax, ylim=(0, 1.45 * edge), ylabel=ylabel, legend=legend, vlines=crossed)
        ax.set_title(f"η = {eta:g} (2/η = {edge:g})\n{sub}", fontsize=8.5)
        ax.set_xlabel("GD step")

        ax, lo, hi = axes[1, col], arrays[f"{key}_loss_min"], arrays[f"{key}_loss_max"]
        ax.fill_between(step[1:], lo, hi, color=c, alpha=0.3, lw=0, label="min–max per chunk")
        ax.plot(step, arrays[f"{key}_loss"], color=c, lw=0.9, label="loss")
        if cross != "never":
            sub = f"after crossing: {100 * m[f'{tag}_late_up_step_fraction']:.0f}%"
        else:
            sub = f"whole run: {100 * m[f'{tag}_up_step_fraction_whole_run']:.0f}%"
        ylabel, legend = ("train loss (MSE)", dict(fontsize=7)) if col == 0 else (None, None)
        decorate(ax, yscale="log", xlabel="GD step", ylabel=ylabel, legend=legend, vlines=crossed)
        ax.set_title(f"{sub} of steps raise the loss", fontsize=8.5)
    fig.suptitle(
        f"Full-batch GD, tanh MLP ({m['mnist1d_mlp_params']} params) on "
        f"{m['mnist1d_train_samples']} MNIST-1D signals: sharpness λ_max against 2/η\n"
        "(grey band: 0.8–1.2 · 2/η; dotted: first step at 0.9 · 2/η)",
        fontsize=10,
    )
    return fig
