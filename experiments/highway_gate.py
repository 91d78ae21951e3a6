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
built from the same blocks. Measured, with :func:`~terrain_jax.nets.layer_gradient_norms`:
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
from terrain_jax.analysis import first_where, gradient_decay
from terrain_jax.data import mnist1d
from terrain_jax.nets import layer_gradient_norms, make_blocks, make_gates
from terrain_jax.plotting import COLORS, curves, decorate, depth_profile, figure, legend_handles
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
    gates = make_gates(WIDTH, depth, key=kg)
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
        net = HighwayNet(WIDTH, HIDDEN, depth, blocks=(fields, g))
        prof = layer_gradient_norms(net, loss, z0, y)["state_grad_norms"]
        return prof, jnp.mean(net.gate_values(z0))

    hw, tbar = jax.vmap(highway)(biases)
    kw = dict(blocks=fields)
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
    b32 = jnp.asarray(biases, jnp.float32)
    per_depth = {}
    for L in depths:
        out_L = map(np.asarray, _measure(sl(fields, L), sl(gates, L), stem, out, b32, x, y))
        per_depth[L] = dict(zip(("hw", "tbar", "res", "plain"), out_L, strict=True))

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
        # first/last ratios, per-layer rates (nepers/layer back-propagated through, of the
        # norms above TINY) and layers at or below TINY
        dec, res, plain = (gradient_decay(d[k], floor=TINY) for k in ("hw", "res", "plain"))
        metrics[f"L{L}_highway_mean_gate"] = d["tbar"]
        metrics[f"L{L}_highway_ratio_first_over_last"] = dec.ratio
        metrics[f"L{L}_highway_rate_per_layer"] = dec.rate.tolist()
        metrics[f"L{L}_highway_layers_below_floor"] = dec.below_floor.tolist()
        metrics[f"L{L}_carry_model_rate_ln_1_minus_T"] = np.log1p(-d["tbar"])
        t, rp = d["tbar"].astype(float), float(plain.rate)
        metrics[f"L{L}_two_path_model_rate"] = 0.5 * np.log((1 - t) ** 2 + t**2 * np.exp(2 * rp))
        metrics[f"L{L}_resnet_ratio_first_over_last"] = float(res.ratio)
        metrics[f"L{L}_resnet_rate_per_layer"] = float(res.rate)
        metrics[f"L{L}_plain_ratio_first_over_last"] = float(plain.ratio)
        metrics[f"L{L}_plain_rate_per_layer"] = rp
        metrics[f"L{L}_plain_layers_below_floor"] = int(plain.below_floor)
        metrics[f"L{L}_first_bias_with_ratio_below_1e-3"] = first_where(dec.ratio < 1e-3, biases)
        arrays.update({f"{k}_L{L}": d[k] for k in ("hw", "res", "plain")})

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
    depths, b = m["depths"], np.asarray(m["gate_biases"], dtype=float)
    L = depths[-1]
    tb = np.asarray(m[f"L{L}_highway_mean_gate"])
    fig, axes = figure(1, 3, size=(4.3, 3.5))
    cmap = __import__("matplotlib").colormaps["plasma"]
    col = {L: cmap(0.15 + 0.65 * i / max(len(depths) - 1, 1)) for i, L in enumerate(depths)}
    floor = 1e-16  # ratios of exactly 0 (norm below the float32 floor) are drawn here
    ax = axes[0]
    ratios = {f"highway, L = {d}": m[f"L{d}_highway_ratio_first_over_last"] for d in depths}
    kw = dict(styles=list(col.values()), style=dict(ms=4), floor=floor, dodge=0.2, yscale="log")
    curves(ax, b, ratios, "o-", **kw)  # ratios of 0 (underflow) marked at the floor
    for d in depths:
        ax.axhline(m[f"L{d}_resnet_ratio_first_over_last"], color=col[d], ls="--", lw=1)
    keys = {"ResNet (h = 1), same blocks": dict(color="k", ls="--", lw=1)}
    keys["below the float32 norm floor"] = dict(color="k", ls="", marker="v", ms=5)
    handles = ax.get_legend_handles_labels()[0] + legend_handles(keys)
    xlabel, ylabel = "gate bias b  (T = sigmoid(W_g x + b))", "‖∂L/∂x_0‖ / ‖∂L/∂x_L‖"
    title = "first-layer gradient vs gate bias"
    decorate(ax, ylim=(floor / 10, 1e4), xlabel=xlabel, ylabel=ylabel, title=title)
    ax.legend(handles=handles, fontsize=7, loc="center right")
    top, idx = ax.secondary_xaxis("top"), np.arange(0, b.size, max(1, b.size // 5))
    top.set_xticks(b[idx], [f"{v:.2f}" for v in tb[idx]], fontsize=7)
    top.set_xlabel(f"mean gate T̄ (L = {L})", fontsize=8)

    ax = axes[1]
    rates = {d: (m[f"L{d}_highway_mean_gate"], m[f"L{d}_highway_rate_per_layer"]) for d in depths}
    rates = {f"L = {d}": r for d, r in rates.items()}
    curves(ax, None, rates, "o", styles=list(col.values()), style=dict(ms=4))
    tt = np.linspace(0, min(0.999, float(np.max(tb))), 200)
    rp, rr = m[f"L{L}_plain_rate_per_layer"], m[f"L{L}_resnet_rate_per_layer"]
    models = {"carry model ln(1 − T̄)": np.log1p(-tt)}
    models["two-path model"] = 0.5 * np.log((1 - tt) ** 2 + tt**2 * np.exp(2 * rp))
    styles = [dict(lw=1), dict(lw=1.2, ls="--")]
    curves(ax, tt, models, styles=styles, style=dict(color="k"), xlabel="mean gate T̄")
    ax.axhline(rr, color=COLORS["resnet"], ls="--", lw=1, label="ResNet")
    ax.axhline(rp, color=COLORS["plain"], ls=":", lw=1.5, label="plain net")
    ylabel, title = "fitted d ln‖∂L/∂x_k‖ / d(L − k)", "per-layer gradient rate vs gate"
    decorate(ax, ylabel=ylabel, title=title, ylim=(-3, 0.2), legend="lower left")

    ax, hw = axes[2], arrays[f"hw_L{L}"]
    cm2 = __import__("matplotlib").colormaps["viridis"]
    shown = range(0, b.size, max(1, b.size // 6))
    profiles = {f"b = {b[i]:g} (T̄ = {tb[i]:.2f})": hw[i] for i in shown}
    styles = {f"b = {b[i]:g} (T̄ = {tb[i]:.2f})": cm2(i / (b.size - 1)) for i in shown}
    profiles |= {"ResNet": arrays[f"res_L{L}"], "plain": arrays[f"plain_L{L}"]}
    styles |= {"ResNet": dict(color="k", ls="--", lw=1.3), "plain": dict(color="k", ls=":", lw=1.3)}
    title = f"gradient through depth, L = {L}"
    depth_profile(ax, profiles, styles=styles, style=dict(lw=1.2), title=title)
    ax.legend(fontsize=6.5, loc="lower left")
    fig.suptitle("Highway gate sweep at initialisation (MNIST-1D, width 64, tanh blocks)")
    return fig
