"""A ResNet is an Euler solve: train a residual net in the plane, then re-solve its field.

A residual net of ``N`` blocks ``x ← x + h·f(x)`` with ``h = T/N`` is trained on two
moons. Its hidden states are then compared with

(b) ``integrate(field, solver="euler", steps=N)``: the same discretisation, so they should
    agree to float32 round-off (the identity of Haber & Ruthotto 2017, E 2017, Chen et
    al. 2018);
(c) the adaptive Tsit5 solution (``rtol=1e-6, atol=1e-8``) of the same field at the same
    times: the continuous flow the net would be "a discretisation of". How far the
    trained net sits from it is measured, not assumed.

Tied weights (one field ``f`` shared by all blocks) are used on purpose: the field is
then autonomous and smooth, so "the continuous flow of the net" is a well-defined ODE
that Tsit5 can solve to tolerance. With untied weights the field is piecewise constant in
time (:class:`terrain_jax.PiecewiseConstantField`), discontinuous at every block boundary,
so an adaptive solver would mostly be measuring how it resolves the jumps.

The readout is linear on the final 2-D state, so the flow itself must carry the two
classes to linearly separable positions.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, Float, PRNGKeyArray

from terrain_jax import ResidualNet, integrate
from terrain_jax.data import moons
from terrain_jax.plotting import COLORS, decorate, figure, figure_legend, legend_handles
from terrain_jax.train import accuracy, cross_entropy, fit

from ._common import claim

NAME = "resnet_euler"
TITLE = "A ResNet is an Euler solve"

DEPTH = 10  # N blocks = N Euler steps
T = 1.0
HIDDEN = 32
NOISE = 0.1
SUBSTEPS = 10  # dense Tsit5 output: SUBSTEPS saves per block, for plotting
N_PLOT = 30  # trajectories drawn
REL_THRESHOLD = 0.05  # "close to the continuous flow", fixed before looking at the data
AGREE_THRESHOLD = 0.99  # prediction agreement that makes a large deviation "nuanced"
ROUNDOFF_THRESHOLD = 1e-5  # float32 round-off over N steps of O(1) states


class MoonsResNet(eqx.Module):
    """Residual net in the plane (tied weights) followed by a linear readout."""

    net: ResidualNet
    w: Float[Array, "2 2"]
    b: Float[Array, " 2"]

    def __init__(self, *, key: PRNGKeyArray):
        k_net, k_out = jax.random.split(key)
        self.net = ResidualNet(2, HIDDEN, DEPTH, key=k_net, T=T, tied=True)
        lim = 1.0 / np.sqrt(2.0)
        self.w = jax.random.uniform(k_out, (2, 2), minval=-lim, maxval=lim)
        self.b = jnp.zeros((2,))

    def readout(self, z: Float[Array, "*batch 2"]) -> Float[Array, "*batch 2"]:
        return z @ self.w.T + self.b

    def __call__(self, x: Float[Array, "*batch 2"]) -> Float[Array, "*batch 2"]:
        return self.readout(self.net(x))


def _loss(model: MoonsResNet, xb: Array, yb: Array) -> Array:
    return cross_entropy(model(xb), yb)


@eqx.filter_jit
def _trajectories(model: MoonsResNet, x0: Float[Array, "n 2"]):
    """Net hidden states, Euler solve, dense Tsit5 solve of the net's field from ``x0``."""
    field = model.net.as_field()
    _, hidden = model.net(x0, return_hidden=True)  # (N+1, n, 2)
    euler = integrate(field, x0, t0=0.0, t1=T, solver="euler", steps=DEPTH, saveat="steps")
    ts = jnp.linspace(0.0, T, DEPTH * SUBSTEPS + 1)

    def tsit5(y0):
        return integrate(field, y0, t0=0.0, t1=T, solver="tsit5", rtol=1e-6, atol=1e-8, saveat=ts)

    # vmapped so that every point gets its own step-size control (a batched state would
    # share one RMS error norm across all points)
    sol = jax.vmap(tsit5)(x0)

    def rk4(y0):
        return integrate(field, y0, t0=0.0, t1=T, solver="rk4", steps=1000)

    ref = jax.vmap(rk4)(x0)
    return {
        "hidden": jnp.swapaxes(hidden, 0, 1),  # (n, N+1, 2)
        "euler": jnp.swapaxes(euler.ys, 0, 1),  # (n, N+1, 2)
        "euler_ok": euler.ok,
        "tsit5_dense": sol.ys,  # (n, N*SUBSTEPS+1, 2)
        "tsit5_ok": sol.ok,
        "tsit5_steps": sol.num_steps,
        "rk4_end": ref.ys[:, -1],
        "ts": ts,
    }


def run(seed: int, quick: bool) -> dict:
    n_train, n_test = (400, 400) if quick else (1000, 1000)
    steps = 600 if quick else 3000
    key = jax.random.PRNGKey(seed)
    k_tr, k_te, k_init, k_fit = jax.random.split(key, 4)
    x_tr, y_tr = moons(n_train, noise=NOISE, key=k_tr)
    x_te, y_te = moons(n_test, noise=NOISE, key=k_te)

    model = MoonsResNet(key=k_init)
    opt = optax.adam(optax.cosine_decay_schedule(1e-2, steps, alpha=0.05))
    model, hist = fit(model, _loss, opt, x_tr, y_tr, steps=steps, batch_size=128, key=k_fit)
    train_acc = accuracy(model, x_tr, y_tr)
    test_acc = accuracy(model, x_te, y_te)

    out = _trajectories(model, x_te)
    if not (bool(jnp.all(out["euler_ok"])) and bool(jnp.all(out["tsit5_ok"]))):
        raise RuntimeError("resnet_euler: an ODE solve of the trained field failed.")
    hidden = np.asarray(out["hidden"], dtype=np.float64)
    euler = np.asarray(out["euler"], dtype=np.float64)
    dense = np.asarray(out["tsit5_dense"], dtype=np.float64)
    tsit5 = dense[:, ::SUBSTEPS]  # at the block times t_k = k h

    # (a) vs (b): the identity
    euler_diff = float(np.max(np.abs(hidden - euler)))
    # (a) vs (c): the discretisation error of the net as an ODE solver
    dev = np.linalg.norm(hidden - tsit5, axis=-1)  # (n, N+1)
    tsit5_diff = float(np.max(np.abs(hidden - tsit5)))
    displacement = np.linalg.norm(tsit5[:, -1] - tsit5[:, 0], axis=-1)
    rel_dev = float(np.max(dev) / np.max(displacement))
    rel_end_median = float(np.median(dev[:, -1] / np.maximum(displacement, 1e-12)))
    rk4_check = float(np.max(np.abs(np.asarray(out["rk4_end"]) - dense[:, -1])))

    # does the continuous flow classify like the net?
    logits_net = np.asarray(model.readout(jnp.asarray(hidden[:, -1], dtype=jnp.float32)))
    logits_ode = np.asarray(model.readout(jnp.asarray(tsit5[:, -1], dtype=jnp.float32)))
    pred_net, pred_ode = logits_net.argmax(-1), logits_ode.argmax(-1)
    agree = float(np.mean(pred_net == pred_ode))
    ode_acc = float(np.mean(pred_ode == np.asarray(y_te)))

    identity_ok = euler_diff < ROUNDOFF_THRESHOLD
    if rel_dev < REL_THRESHOLD:
        flow_verdict = "supported"
    elif agree >= AGREE_THRESHOLD:
        flow_verdict = "nuanced"
    else:
        flow_verdict = "refuted"

    claims = [
        claim(
            "A residual block x + h f(x) is one explicit Euler step: the trained net's "
            f"hidden states equal the Euler solve (N={DEPTH}, h={T / DEPTH:g}) of its field "
            f"(max abs difference < {ROUNDOFF_THRESHOLD:g}, float32 round-off)",
            "DESIGN thesis; Haber & Ruthotto 2017; E 2017; Chen et al. 2018",
            "supported" if identity_ok else "refuted",
            {"max_abs_diff": euler_diff},
            f"< {ROUNDOFF_THRESHOLD:g}",
        ),
        claim(
            "The trained residual net follows the continuous flow of its own field: the "
            "worst distance between its hidden states and the Tsit5 solution at the block "
            f"times is < {REL_THRESHOLD:.0%} of the largest distance the flow moves a point "
            "(supported); above that, 'nuanced' if the net and the flow still classify "
            f">= {AGREE_THRESHOLD:.0%} of test points alike, else 'refuted'",
            "DESIGN thesis (depth is time); Chen et al. 2018 (ResNet as ODE discretisation)",
            flow_verdict,
            {
                "relative_max_deviation": rel_dev,
                "max_abs_diff": tsit5_diff,
                "median_relative_endpoint_deviation": rel_end_median,
                "prediction_agreement": agree,
            },
            f"relative deviation < {REL_THRESHOLD:g}",
            note="The net is trained as a discrete map; nothing in training asks it to be an "
            "accurate ODE solver of its field.",
        ),
    ]

    metrics = {
        "moons_resnet_train_acc": train_acc,
        "moons_resnet_test_acc": test_acc,
        "moons_resnet_final_train_loss": float(np.mean(hist["loss"][-20:])),
        "moons_ode_flow_test_acc": ode_acc,
        "net_vs_flow_prediction_agreement": agree,
        "net_vs_euler_max_abs_diff": euler_diff,
        "net_vs_tsit5_max_abs_diff": tsit5_diff,
        "net_vs_tsit5_relative_max_deviation": rel_dev,
        "net_vs_tsit5_median_relative_endpoint_deviation": rel_end_median,
        "max_flow_displacement": float(np.max(displacement)),
        "tsit5_vs_rk4_1000_steps_max_abs_diff": rk4_check,
        "tsit5_mean_steps": float(np.mean(np.asarray(out["tsit5_steps"]))),
        "depth": DEPTH,
        "T": T,
        "hidden": HIDDEN,
        "train_steps": steps,
        "n_train": n_train,
        "n_test": n_test,
    }

    y_te_np = np.asarray(y_te)
    pick = np.concatenate(
        [np.flatnonzero(y_te_np == c)[: N_PLOT // 2] for c in (0, 1)]
    )  # first points of each class in the (already shuffled) test set
    arrays = {
        "x_train": np.asarray(x_tr),
        "y_train": np.asarray(y_tr),
        "y_plot": y_te_np[pick],
        "hidden_plot": hidden[pick],
        "euler_plot": euler[pick],
        "tsit5_dense_plot": dense[pick],
        "final_test": hidden[:, -1],
        "final_tsit5": tsit5[:, -1],
        "y_test": y_te_np,
        "readout_w": np.asarray(model.w),
        "readout_b": np.asarray(model.b),
        "dev_tsit5_max_k": dev.max(axis=0),
        "dev_tsit5_median_k": np.median(dev, axis=0),
        "dev_euler_max_k": np.linalg.norm(hidden - euler, axis=-1).max(axis=0),
    }
    return {"metrics": metrics, "claims": claims, "arrays": arrays}


def plot(result: dict, arrays: dict):
    m = result["metrics"]
    cls = ("#1f77b4", "#ff7f0e")
    fig, axes = figure(1, 3, size=(4.2, 3.9))
    ax, xt, yt = axes[0], arrays["x_train"], arrays["y_train"]
    for c in (0, 1):
        ax.scatter(*xt[yt == c].T, s=4, color=cls[c], alpha=0.35, lw=0)
    for i in range(arrays["hidden_plot"].shape[0]):
        c = cls[int(arrays["y_plot"][i])]
        ax.plot(*arrays["tsit5_dense_plot"][i].T, color=COLORS["tsit5"], lw=1.0, alpha=0.9)
        ax.plot(*arrays["euler_plot"][i].T, color=COLORS["euler"], lw=0.8, ls="--")
        ax.plot(*arrays["hidden_plot"][i].T, "o", color=c, ms=2.6, mec="k", mew=0.3)
        ax.plot(*arrays["hidden_plot"][i, 0], "s", color=c, ms=3.5, mec="k", mew=0.5)
    title = f"{len(arrays['y_plot'])} test points through {m['depth']} blocks"
    decorate(ax, xlabel="$x_1$", ylabel="$x_2$", title=title)
    ax.set_aspect("equal", adjustable="datalim")

    ax, z, zc, y = axes[1], arrays["final_test"], arrays["final_tsit5"], arrays["y_test"]
    for c in (0, 1):
        ax.scatter(*z[y == c].T, s=5, color=cls[c], lw=0, alpha=0.6)
    ax.scatter(*zc.T, s=7, facecolors="none", edgecolors="k", lw=0.25, alpha=0.4)
    w, b = arrays["readout_w"], arrays["readout_b"]
    dw, db = w[0] - w[1], b[0] - b[1]
    lo, hi = np.min(np.concatenate([z, zc]), 0), np.max(np.concatenate([z, zc]), 0)
    lo, hi = lo - 0.05 * (hi - lo), hi + 0.05 * (hi - lo)
    if abs(dw[1]) > 1e-12:
        ax.plot([lo[0], hi[0]], [-(dw[0] * x + db) / dw[1] for x in (lo[0], hi[0])], "k-", lw=1)
    accs = m["moons_resnet_test_acc"], m["moons_ode_flow_test_acc"]
    title = "all test points at t = T: accuracy {:.3f} (net), {:.3f} (flow)".format(*accs)
    xlim, ylim = (lo[0], hi[0]), (lo[1], hi[1])
    decorate(ax, xlim=xlim, ylim=ylim, xlabel="$h_1(T)$", ylabel="$h_2(T)$", title=title)

    ax, floor = axes[2], 1e-9
    k = np.arange(len(arrays["dev_tsit5_max_k"]))
    decorate(ax, hlines=[floor])
    ax.text(k[-1], floor * 1.6, "exactly 0", ha="right", va="bottom", color="grey", fontsize=7)
    for key, fmt, ms in (("tsit5_max", "o-", 6), ("tsit5_median", "o:", 3), ("euler_max", "s-", 6)):
        c = COLORS[key.split("_")[0]]
        ax.semilogy(k, np.maximum(arrays[f"dev_{key}_k"], floor), fmt, color=c, ms=ms)
    rel = m["net_vs_tsit5_relative_max_deviation"]
    title = f"distance per block (max / largest displacement = {rel:.3g})"
    decorate(ax, xlabel="block k  (t = k h)", ylabel="distance in the plane", title=title)
    point = dict(ls="", mec="k", color="grey")
    keys = {
        "Tsit5 flow of the net's field": COLORS["tsit5"],
        f"Euler solve, {m['depth']} steps": dict(color=COLORS["euler"], ls="--"),
        "net hidden states": dict(point, marker="o", mew=0.3),
        "input point": dict(point, marker="s", mew=0.5),
        "class 0": dict(ls="", marker="o", color=cls[0]),
        "class 1": dict(ls="", marker="o", color=cls[1]),
        "Tsit5 end state": dict(ls="", marker="o", mfc="none", mec="k", mew=0.5),
        "linear readout boundary": dict(color="k", lw=1),
        "‖net − Tsit5‖ max (median ⋯)": dict(marker="o", color=COLORS["tsit5"]),
        "‖net − Euler solve‖ max": dict(marker="s", color=COLORS["euler"]),
    }
    fig.suptitle(
        f"{TITLE}: net = Euler to {m['net_vs_euler_max_abs_diff']:.1e}; "
        f"net vs continuous flow: up to {m['net_vs_tsit5_max_abs_diff']:.3g}"
    )
    figure_legend(fig, legend_handles(keys), ncol=5, space=0.1)
    return fig
