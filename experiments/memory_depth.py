"""Training memory vs depth: explicit ResNets grow O(depth), DEQs and adjoint ODEs stay flat.

The memory claim of implicit layers (Chen et al. 2018, Table 1: the ODE-Net's adjoint
trains in ``O(1)`` memory, backprop through ``L`` layers or solver steps in ``O(L)``; Bai
et al. 2019: a DEQ's implicit backward needs only the fixed point), measured on the thing
that pays for it: the temporary buffers XLA allocates for a compiled training step (loss,
gradient, SGD update), ``jax.jit(step).lower(...).compile().memory_analysis()
.temp_size_in_bytes``. Nothing is run; every number is a property of the compiled program.

Every model is a :class:`terrain_jax.nets.Classifier` (linear stem, depth net, linear
readout) on a batch of ``BATCH`` synthetic samples; the depth nets use MLP blocks
``W_2 tanh(W_1 x + b_1) + b_2`` of width ``WIDTH``. At each depth ``L``:

- ``resnet``: ``L`` untied residual blocks (backprop stores every block's activations);
- ``deq_implicit``: a DEQ ``z* = x + f(z*)`` with Anderson, ``max_steps = L``, implicit
  backward (:class:`terrain_jax.nets.DEQNet`);
- ``deq_unroll``: the same DEQ differentiated by backprop through its ``L`` unrolled
  iterations (the control);
- ``ode_backsolve``: a tied field, ``L`` fixed RK4 steps, continuous adjoint
  (:class:`terrain_jax.nets.AdjointODENet`, Chen et al.'s backward solve of state and
  adjoint, :func:`terrain_jax.node.adjoint_solve`; the same backward solve whose
  NFE ``chen_table`` reports);
- ``ode_backprop``: the same solve, backprop through the stored steps (the control:
  what RK-Net does).

Slopes: bytes per layer from a least-squares line through (``L``, bytes), and the log-log
exponent between the two largest depths (``≈ 1`` for linear growth, ``≈ 0`` for flat).
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from terrain_jax import ODEBlock, ResidualNet
from terrain_jax.analysis import linear_fit
from terrain_jax.fields import MLPField
from terrain_jax.nets import AdjointODENet, Classifier, DEQNet, ODENet
from terrain_jax.plotting import bars, convergence, decorate, figure, integer_ticks, reference_slope
from terrain_jax.train import ce_loss, compiled_memory, make_step

from ._common import claim

NAME = "memory_depth"
TITLE = "Training memory vs depth: explicit ResNet, DEQ and adjoint ODE"

FAMILIES = ("resnet", "deq_implicit", "deq_unroll", "ode_backsolve", "ode_backprop")
FLAT = ("deq_implicit", "ode_backsolve")
GROW = ("resnet", "deq_unroll", "ode_backprop")
LABEL = {
    "resnet": "ResNet, L untied blocks (backprop)",
    "deq_implicit": "DEQ, max_steps = L, implicit backward",
    "deq_unroll": "DEQ, L unrolled steps (backprop)",
    "ode_backsolve": "ODE-Net, L RK4 steps, backsolve adjoint",
    "ode_backprop": "ODE-Net, L RK4 steps, backprop (RK-Net)",
}
COLOR = {
    "resnet": "#d62728",
    "deq_implicit": "#9467bd",
    "deq_unroll": "#c5b0d5",
    "ode_backsolve": "#2ca02c",
    "ode_backprop": "#1f77b4",
}
SOURCE = {
    "resnet": "Chen et al. 2018, Table 1 (ResNet memory O(L))",
    "deq_unroll": "Bai et al. 2019 (backprop through the solver's iterations)",
    "ode_backprop": "Chen et al. 2018, Table 1 (RK-Net memory O(L̃))",
    "deq_implicit": "Bai et al. 2019; issue 4 (≤ 1.1× from 10 to 100 steps)",
    "ode_backsolve": "Chen et al. 2018, Table 1 (ODE-Net memory O(1))",
}

FULL = dict(depths=(4, 16, 64, 256), width=64, batch=128)
# quick: the two headline flat families and the ResNet only, at two depths
QUICK = dict(
    depths=(4, 16), width=8, batch=16, families=("resnet", "deq_implicit", "ode_backsolve")
)
FEATURES, CLASSES = 16, 10

# criteria, fixed before the runs
FLAT_RATIO = 1.1  # "flat": memory at the largest depth ≤ 1.1× memory at the smallest
LINEAR_EXP = (0.8, 1.2)  # "O(depth)": log-log exponent between the two largest depths


def _net(family: str, depth: int, width: int, key):
    if family == "resnet":
        return ResidualNet(width, width, depth, key=key, T=1.0, block="mlp")
    field = MLPField(width, width, key=key)
    if family.startswith("deq"):
        backward = "implicit" if family == "deq_implicit" else "unroll"
        # tol = 0: the solve may use every one of its max_steps
        return DEQNet(field, tol=0.0, max_steps=depth, backward=backward)
    block = ODEBlock(field, solver="rk4", steps=depth)
    return AdjointODENet(block) if family == "ode_backsolve" else ODENet(block)


def _temp_bytes(family: str, depth: int, cfg: dict, key) -> int:
    k_net, k_head, k_x = jax.random.split(key, 3)
    w = cfg["width"]
    model = Classifier(_net(family, depth, w, k_net), FEATURES, w, CLASSES, key=k_head)
    params, static = eqx.partition(model, eqx.is_array)
    opt = optax.sgd(1e-3)  # the optimizer's state is O(params), the same at every depth
    with jax.numpy_dtype_promotion("standard"):
        opt_state = opt.init(params)
    xb = jax.random.normal(k_x, (cfg["batch"], FEATURES))
    yb = jnp.zeros((cfg["batch"],), jnp.int32)
    return compiled_memory(make_step(ce_loss, opt, static), params, opt_state, xb, yb)


def _slopes(depths: np.ndarray, mem: np.ndarray) -> dict:
    bytes_per_layer = linear_fit(depths, mem).slope
    exponent = np.log(mem[-1] / mem[-2]) / np.log(depths[-1] / depths[-2])
    return {
        "bytes_per_layer": round(float(bytes_per_layer), 2) + 0.0,  # drop fit round-off
        "loglog_exponent_top": float(exponent),
        "ratio_max_min": float(mem[-1] / mem[0]),
    }


def run(seed: int, quick: bool) -> dict:
    cfg = QUICK if quick else FULL
    depths = np.asarray(cfg["depths"])
    key = jax.random.PRNGKey(seed)
    metrics: dict = {"depths": depths.tolist(), "width": cfg["width"], "batch": cfg["batch"]}
    arrays: dict = {"depths": depths}
    slopes = {}
    families = cfg.get("families", FAMILIES)
    metrics["families"] = list(families)
    for fam in families:
        mem = np.asarray([_temp_bytes(fam, int(d), cfg, key) for d in depths], np.float64)
        arrays[f"{fam}_temp_bytes"] = mem
        metrics[f"{fam}_temp_bytes"] = mem.astype(np.int64).tolist()
        slopes[fam] = _slopes(depths, mem)
        for k, v in slopes[fam].items():
            metrics[f"{fam}_{k}"] = v
    return {"metrics": metrics, "claims": _claims(depths, slopes), "arrays": arrays}


def _claims(depths, s) -> list[dict]:
    """One claim per measured family: O(depth) growth for GROW, flat memory for FLAT."""
    lo, hi = int(depths[0]), int(depths[-1])
    out = []
    for fam in (f for f in (*GROW, *FLAT) if f in s):
        e, r, bpl = (s[fam][k] for k in ("loglog_exponent_top", "ratio_max_min", "bytes_per_layer"))
        ratio = {f"ratio_L{hi}_over_L{lo}": r}
        if fam in GROW:
            text = (
                f"{LABEL[fam]}: training memory grows O(depth). Supported if the log-log "
                f"exponent of temporary memory between the two largest depths is in "
                f"[{LINEAR_EXP[0]}, {LINEAR_EXP[1]}]"
            )
            ok, expected = LINEAR_EXP[0] <= e <= LINEAR_EXP[1], f"exponent in {list(LINEAR_EXP)}"
            measured = {"loglog_exponent_top": e, "bytes_per_layer": bpl, **ratio}
        else:
            text = (
                f"{LABEL[fam]}: training memory stays flat as L grows from {lo} to {hi}. "
                f"Supported if memory at L = {hi} is ≤ {FLAT_RATIO}× memory at L = {lo}"
            )
            ok, expected = r <= FLAT_RATIO, f"ratio <= {FLAT_RATIO}"
            measured = {**ratio, "bytes_per_layer": bpl, "loglog_exponent_top": e}
        out.append(claim(text, SOURCE[fam], "supported" if ok else "refuted", measured, expected))
    return out


def plot(result: dict, arrays: dict):
    m = result["metrics"]
    depths = np.asarray(arrays["depths"], float)
    names = [f for f in FAMILIES if f"{f}_temp_bytes" in arrays]
    label = {f: f"{LABEL[f]} (exp. {m[f'{f}_loglog_exponent_top']:.2f})" for f in names}
    flat = {f: "-" if f in FLAT or f == "resnet" else "--" for f in names}
    fig, axes = figure(1, 2, size=(4.6, 3.6))
    mem = {label[f]: np.asarray(arrays[f"{f}_temp_bytes"], float) / 1e6 for f in names}
    styles = {label[f]: dict(color=COLOR[f], ls=flat[f]) for f in names}
    ref = (depths[-1], arrays["resnet_temp_bytes"][-1] / 1e6)  # through the ResNet's last point
    convergence(axes[0], depths, mem, styles=styles, title="memory vs depth (log-log)")
    reference_slope(axes[0], depths, 1, through=ref, label="slope 1 (O(depth))", ls=":", lw=0.7)
    xlabel = "depth L (blocks / solver steps / max fixed-point steps)"
    decorate(axes[0], xlabel=xlabel, ylabel="temporary memory of the train step (MB)")
    axes[0].legend(fontsize=6.5, loc="upper left")
    integer_ticks(axes[0], depths)
    ticks = [LABEL[f].replace(", ", "\n", 1) for f in names]
    per_layer = {"": [m[f"{f}_bytes_per_layer"] / 1e3 for f in names]}
    colors = {"": [COLOR[f] for f in names]}
    bars(axes[1], ticks, per_layer, colors=colors, fmt="{:.1f} kB", horizontal=True, fontsize=7)
    xlabel = "bytes per layer (least-squares slope), kB"
    decorate(axes[1], xlabel=xlabel, title="memory cost of one more layer")
    axes[1].tick_params(axis="y", labelsize=7)
    fig.suptitle(f"{TITLE} (width {m['width']}, batch {m['batch']})")
    return fig
