"""Highway vs ResNet: closing the gate's identity path brings vanishing gradients back.

A highway layer ``x ← x + T(x) ⊙ (f(x) − x) = (1 − T) ⊙ x + T ⊙ f(x)`` (Srivastava et al.
2015) carries its input through a *gated* path: the carry Jacobian is ``diag(1 − T)``, not
``I``. As the transform gate ``T = sigmoid(W_g x + b)`` goes to 1 the carry closes and the
layer becomes the plain layer ``x ← f(x)``, whose gradients vanish with depth; a ResNet's
identity path ``x ← x + f(x)`` cannot close.

Here the gate bias ``b`` of a :class:`~terrain_jax.HighwayNet` is swept from −4 (gate
mostly open to carry, ``T ≈ 0.02``) to +8 (``T ≈ 1``) at depths 50, 100, 200 on MNIST-1D
signals (a fixed random linear stem ``40 → 64``, a linear readout ``64 → 10``, mean
cross-entropy over 512 training signals, at initialisation). The same blocks
``f_k(x) = W₂ tanh(W₁ x + b₁) + b₂`` (width 64, hidden 64, library default init) and the
same gate weights are used at every bias; the ResNet (``h = 1``) and the plain net are
built from the same blocks. Measured, with :func:`~terrain_jax.spectra.layer_gradient_norms`:
``‖∂L/∂x_0‖ / ‖∂L/∂x_L‖``, the per-layer rate (slope of ``ln ‖∂L/∂x_k‖`` against the
number of layers back-propagated through, over norms ``> 1e-15``: ``layer_gradient_norms``
squares float32 entries, so a norm below ~1e-17 reads exactly 0, "below the floor"), and
the mean gate value ``T̄`` over layers, signals and units on the forward trajectory.

Two models of the per-layer rate: the *carry model* ``ln(1 − T̄)`` (only the gated
identity path), and the *two-path model* ``½ ln((1 − T̄)² + T̄² e^{2 r_plain})``, the mean
squared stretch of ``(1 − T̄) I + T̄ J_f`` when ``J_f`` is a random map that shrinks a
vector by ``e^{r_plain}`` (``r_plain``: the plain net's measured rate) in an independent
direction; the gate's own derivative is ignored.

All biases of one depth run in one ``vmap`` (the bias is an array, not a static): one
compile per depth.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from terrain_jax import HighwayNet, PlainNet, ResidualNet
from terrain_jax.analysis import log_linear_rate
from terrain_jax.data import mnist1d
from terrain_jax.nets import Gate, layer_gradient_norms, make_blocks
from terrain_jax.plotting import COLORS, figure
from terrain_jax.train import cross_entropy

from ._common import claim

NAME = "highway_gate"
TITLE = "Highway vs ResNet: a closing gate brings vanishing gradients back"

WIDTH = 64
HIDDEN = 64
FEATURES = 40
CLASSES = 10
MNIST1D_SEED = 42
BATCH = 512
TINY = 1e-15
OK = 0.1  # "kept": ratio ≥ OK
GONE = 1e-6  # "vanished": ratio < GONE (or underflowed)


@eqx.filter_jit
def _setup(key, depth: int):
    kf, kg, ks, ko = jax.random.split(key, 4)
    fields = make_blocks("mlp", WIDTH, HIDDEN, depth, key=kf, activation="tanh")
    gates = eqx.filter_vmap(lambda k: Gate(WIDTH, key=k))(jax.random.split(kg, depth))
    stem = jax.random.normal(ks, (WIDTH, FEATURES)) / np.sqrt(FEATURES)
    lim = 1.0 / np.sqrt(WIDTH)
    out = jax.random.uniform(ko, (CLASSES, WIDTH), minval=-lim, maxval=lim)
    return fields, gates, stem, out


@eqx.filter_jit
def _measure(fields, gates, stem, out, biases, x, y):
    """State-gradient profiles and mean gate per bias; ResNet and plain references."""
    depth = gates.bias.shape[0]
    z0 = x @ stem.T

    def loss(z, yy):
        return cross_entropy(z @ out.T, yy)

    def highway(b):
        g = eqx.tree_at(lambda g: g.bias, gates, jnp.full_like(gates.bias, b))
        net = HighwayNet(WIDTH, HIDDEN, depth, key=jax.random.PRNGKey(0), blocks=(fields, g))
        prof = layer_gradient_norms(net, loss, z0, y)["state_grad_norms"]
        hs = net(z0, return_hidden=True)[1][:-1]
        t = jnp.mean(jax.vmap(lambda gk, h: gk(h))(g, hs))
        return prof, t

    hw, tbar = jax.vmap(highway)(biases)
    kw = dict(key=jax.random.PRNGKey(0), blocks=fields)
    res = layer_gradient_norms(ResidualNet(WIDTH, HIDDEN, depth, h=1.0, **kw), loss, z0, y)
    plain = layer_gradient_norms(PlainNet(WIDTH, HIDDEN, depth, **kw), loss, z0, y)
    return hw, tbar, res["state_grad_norms"], plain["state_grad_norms"]


def run(seed: int, quick: bool) -> dict:
    depths = [20] if quick else [50, 100, 200]
    biases = np.arange(-4.0, 9.0, 2.0 if quick else 1.0)
    data = mnist1d(seed=MNIST1D_SEED)
    x = jnp.asarray(data.x_train[:BATCH])
    y = jnp.asarray(data.y_train[:BATCH])
    key = jax.random.PRNGKey(seed)
    # nested nets: the depth-L net uses the first L blocks and gates of the deepest one
    fields, gates, stem, out = _setup(key, max(depths))
    sl = lambda t, L: jax.tree_util.tree_map(lambda a: a[:L], t)
    per_depth = {}
    for L in depths:
        hw, tbar, res, plain = _measure(
            sl(fields, L), sl(gates, L), stem, out, jnp.asarray(biases, jnp.float32), x, y
        )
        per_depth[L] = {
            "hw": np.asarray(hw),
            "tbar": np.asarray(tbar),
            "res": np.asarray(res),
            "plain": np.asarray(plain),
        }

    metrics = {
        "dataset": "mnist1d (seed 42), 512 training signals, linear stem 40→64 and readout",
        "width": WIDTH,
        "hidden": HIDDEN,
        "activation": "tanh",
        "depths": depths,
        "gate_biases": biases,
        "resnet_step_h": 1.0,
    }
    arrays = {}
    for L in depths:
        d = per_depth[L]
        hw = d["hw"]
        n = np.arange(hw.shape[-1], dtype=float)[::-1]  # layers back-propagated through, L − k
        # per-layer rates (nepers/layer) of the norms above TINY
        rate = {k: log_linear_rate(n, d[k], floor=TINY).rate for k in ("res", "plain")}
        rate_hw = [log_linear_rate(n, p, floor=TINY).rate for p in hw]
        metrics[f"L{L}_highway_mean_gate"] = d["tbar"]
        metrics[f"L{L}_highway_ratio_first_over_last"] = hw[:, 0] / hw[:, -1]
        metrics[f"L{L}_highway_rate_per_layer"] = rate_hw
        metrics[f"L{L}_highway_layers_below_floor"] = [int(np.sum(p <= TINY)) for p in hw]
        metrics[f"L{L}_carry_model_rate_ln_1_minus_T"] = np.log1p(-d["tbar"])
        t, rp = d["tbar"].astype(float), rate["plain"]
        metrics[f"L{L}_two_path_model_rate"] = 0.5 * np.log((1 - t) ** 2 + t**2 * np.exp(2 * rp))
        metrics[f"L{L}_resnet_ratio_first_over_last"] = float(d["res"][0] / d["res"][-1])
        metrics[f"L{L}_resnet_rate_per_layer"] = rate["res"]
        metrics[f"L{L}_plain_ratio_first_over_last"] = float(d["plain"][0] / d["plain"][-1])
        metrics[f"L{L}_plain_rate_per_layer"] = rate["plain"]
        metrics[f"L{L}_plain_layers_below_floor"] = int(np.sum(d["plain"] <= TINY))
        ratios = hw[:, 0] / hw[:, -1]
        gone = np.nonzero(ratios < 1e-3)[0]
        metrics[f"L{L}_first_bias_with_ratio_below_1e-3"] = (
            float(biases[gone[0]]) if gone.size else None
        )
        arrays[f"hw_L{L}"] = hw
        arrays[f"res_L{L}"] = d["res"]
        arrays[f"plain_L{L}"] = d["plain"]

    L = depths[-1]
    r_hw = np.asarray(metrics[f"L{L}_highway_ratio_first_over_last"])
    t = np.asarray(metrics[f"L{L}_highway_mean_gate"])
    closed_gone = r_hw[-1] < GONE
    res_ok = all(metrics[f"L{d}_resnet_ratio_first_over_last"] >= OK for d in depths)
    order = np.argsort(t)
    monotone = bool(np.all(np.diff(np.log(np.maximum(r_hw[order], 1e-45))) <= 1e-6))
    verdict = "supported" if (closed_gone and res_ok) else "refuted"
    if verdict == "supported" and not monotone:
        verdict = "nuanced"
    rates = np.asarray(metrics[f"L{L}_highway_rate_per_layer"])
    err_carry = np.abs(rates - np.asarray(metrics[f"L{L}_carry_model_rate_ln_1_minus_T"]))
    err_two = np.abs(rates - np.asarray(metrics[f"L{L}_two_path_model_rate"]))
    metrics[f"L{L}_carry_model_abs_error_median"] = float(np.nanmedian(err_carry))
    metrics[f"L{L}_two_path_model_abs_error_max"] = float(np.nanmax(err_two))
    res_txt = ", ".join(f"{metrics[f'L{d}_resnet_ratio_first_over_last']:.3g}" for d in depths)
    claims = [
        claim(
            "A highway gate that closes the identity path (T → 1) brings vanishing gradients "
            "back; the ResNet's identity path keeps them",
            "seed articles (highway vs residual); Srivastava et al. 2015; He et al. 2016",
            verdict,
            {
                "depth": L,
                "gate_bias": [float(biases[0]), float(biases[-1])],
                "mean_gate_T": [float(t[0]), float(t[-1])],
                "highway_ratio_first_over_last": [float(r_hw[0]), float(r_hw[-1])],
                "highway_rate_per_layer": [
                    metrics[f"L{L}_highway_rate_per_layer"][0],
                    metrics[f"L{L}_highway_rate_per_layer"][-1],
                ],
                "resnet_ratio_by_depth": {
                    str(d): metrics[f"L{d}_resnet_ratio_first_over_last"] for d in depths
                },
                "plain_rate_per_layer": metrics[f"L{L}_plain_rate_per_layer"],
                "ratio_monotone_in_T": monotone,
                "two_path_model_max_abs_error_on_rate": metrics[
                    f"L{L}_two_path_model_abs_error_max"
                ],
                "first_bias_with_ratio_below_1e-3": {
                    str(d): metrics[f"L{d}_first_bias_with_ratio_below_1e-3"] for d in depths
                },
            },
            f"closed gate (T ≈ 1): ratio < {GONE:g} (0 = below the float32 norm floor); "
            f"ResNet: ratio ≥ {OK:g} at every depth",
            "Vanishing does not wait for T → 1: the gated carry scales the gradient by about "
            "(1 − T̄) per layer, so at any T̄ > 0 it decays like (1 − T̄)^L (at the most open "
            f"gate, T̄ = {float(t[0]):.3f}, L = {L}: ratio {float(r_hw[0]):.3g}; at the "
            "library's default bias −1, T̄ ≈ 0.27, it is below 1e-3 from L = 50). The "
            "two-path model ½ln((1 − T̄)² + T̄²e^{2 r_plain}) predicts the measured per-layer "
            f"rate within {metrics[f'L{L}_two_path_model_abs_error_max']:.3g} at every bias "
            "(the carry-only model ln(1 − T̄) fails as T̄ → 1, where the plain branch takes "
            "over). The ResNet (h = 1) does not vanish but grows mildly with depth "
            f"({res_txt} at L = {', '.join(map(str, depths))}).",
        )
    ]
    return {"metrics": metrics, "claims": claims, "arrays": arrays}


def plot(result: dict, arrays: dict):
    m = result["metrics"]
    depths = m["depths"]
    b = np.asarray(m["gate_biases"], dtype=float)
    fig, axes = figure(1, 3, size=(4.3, 3.5))
    cmap = __import__("matplotlib").colormaps["plasma"]
    col = {L: cmap(0.15 + 0.65 * i / max(len(depths) - 1, 1)) for i, L in enumerate(depths)}
    floor = 1e-16  # ratios of exactly 0 (norm below the float32 floor) are drawn here
    ax = axes[0]
    for i, L in enumerate(depths):
        r = np.asarray(m[f"L{L}_highway_ratio_first_over_last"], dtype=float)
        ok = r > 0
        ax.semilogy(b[ok], r[ok], "o-", color=col[L], ms=4, label=f"highway, L = {L}")
        if (~ok).any():
            dx = 0.2 * (i - (len(depths) - 1) / 2)
            ax.semilogy(b[~ok] + dx, np.full((~ok).sum(), floor), "v", color=col[L], ms=5)
        ax.axhline(m[f"L{L}_resnet_ratio_first_over_last"], color=col[L], ls="--", lw=1)
    ax.plot([], [], "k--", lw=1, label="ResNet (h = 1), same blocks")
    ax.plot([], [], "kv", ms=5, label="below the float32 norm floor")
    ax.set_ylim(floor / 10, 1e4)
    ax.set_xlabel("gate bias b  (T = sigmoid(W_g x + b))")
    ax.set_ylabel("‖∂L/∂x_0‖ / ‖∂L/∂x_L‖")
    ax.set_title("first-layer gradient vs gate bias")
    ax.legend(fontsize=7, loc="center right")
    top = ax.secondary_xaxis("top")
    L = depths[-1]
    tb = np.asarray(m[f"L{L}_highway_mean_gate"])
    idx = np.arange(0, b.size, max(1, b.size // 5))
    top.set_xticks(b[idx])
    top.set_xticklabels([f"{v:.2f}" for v in tb[idx]], fontsize=7)
    top.set_xlabel(f"mean gate T̄ (L = {L})", fontsize=8)

    ax = axes[1]
    for L in depths:
        t = np.asarray(m[f"L{L}_highway_mean_gate"])
        ax.plot(t, m[f"L{L}_highway_rate_per_layer"], "o", color=col[L], ms=4, label=f"L = {L}")
    tt = np.linspace(0, min(0.999, float(np.max(tb))), 200)
    ax.plot(tt, np.log1p(-tt), "k-", lw=1, label="carry model ln(1 − T̄)")
    rp = m[f"L{depths[-1]}_plain_rate_per_layer"]
    two = 0.5 * np.log((1 - tt) ** 2 + tt**2 * np.exp(2 * rp))
    ax.plot(tt, two, "k--", lw=1.2, label="two-path model")
    ax.axhline(m[f"L{depths[-1]}_resnet_rate_per_layer"], color=COLORS["resnet"], ls="--",
               lw=1, label="ResNet")  # fmt: skip
    ax.axhline(m[f"L{depths[-1]}_plain_rate_per_layer"], color=COLORS["plain"], ls=":", lw=1.5,
               label="plain net")  # fmt: skip
    ax.set_xlabel("mean gate T̄")
    ax.set_ylabel("fitted d ln‖∂L/∂x_k‖ / d(L − k)")
    ax.set_ylim(-3, 0.2)
    ax.set_title("per-layer gradient rate vs gate")
    ax.legend(fontsize=7, loc="lower left")

    ax = axes[2]
    L = depths[-1]
    hw = arrays[f"hw_L{L}"]
    cm2 = __import__("matplotlib").colormaps["viridis"]
    for i in range(0, b.size, max(1, b.size // 6)):
        p = hw[i]
        r = p / p[-1]
        ax.semilogy(np.arange(r.size), np.where(r > 0, r, np.nan), color=cm2(i / (b.size - 1)),
                    lw=1.2, label=f"b = {b[i]:g} (T̄ = {tb[i]:.2f})")  # fmt: skip
    for name, style in [("res", "--"), ("plain", ":")]:
        p = arrays[f"{name}_L{L}"]
        r = p / p[-1]
        ax.semilogy(np.arange(r.size), np.where(r > 0, r, np.nan), style, color="k",
                    lw=1.3, label="ResNet" if name == "res" else "plain")  # fmt: skip
    ax.set_xlabel("layer k")
    ax.set_ylabel("‖∂L/∂x_k‖ / ‖∂L/∂x_L‖")
    ax.set_title(f"gradient through depth, L = {L}")
    ax.legend(fontsize=6.5, loc="lower left")
    fig.suptitle("Highway gate sweep at initialisation (MNIST-1D, width 64, tanh blocks)")
    fig.tight_layout()
    return fig
