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

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax

from terrain_jax import ODEBlock, ResidualNet
from terrain_jax.analysis import linear_fit
from terrain_jax.fields import MLPField
from terrain_jax.nets import AdjointODENet, Classifier, DEQNet, ODENet
from terrain_jax.plotting import STYLE, figure
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
    import equinox as eqx

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
    lo, hi = int(depths[0]), int(depths[-1])
    out = []
    for fam, source in (
        ("resnet", "Chen et al. 2018, Table 1 (ResNet memory O(L))"),
        ("deq_unroll", "Bai et al. 2019 (backprop through the solver's iterations)"),
        ("ode_backprop", "Chen et al. 2018, Table 1 (RK-Net memory O(L̃))"),
    ):
        if fam not in s:
            continue
        e = s[fam]["loglog_exponent_top"]
        out.append(
            claim(
                f"{LABEL[fam]}: training memory grows O(depth). Supported if the log-log "
                f"exponent of temporary memory between the two largest depths is in "
                f"[{LINEAR_EXP[0]}, {LINEAR_EXP[1]}]",
                source,
                "supported" if LINEAR_EXP[0] <= e <= LINEAR_EXP[1] else "refuted",
                {
                    "loglog_exponent_top": e,
                    "bytes_per_layer": s[fam]["bytes_per_layer"],
                    f"ratio_L{hi}_over_L{lo}": s[fam]["ratio_max_min"],
                },
                f"exponent in {list(LINEAR_EXP)}",
            )
        )
    for fam, source in (
        ("deq_implicit", "Bai et al. 2019; issue 4 (≤ 1.1× from 10 to 100 steps)"),
        ("ode_backsolve", "Chen et al. 2018, Table 1 (ODE-Net memory O(1))"),
    ):
        if fam not in s:
            continue
        r = s[fam]["ratio_max_min"]
        out.append(
            claim(
                f"{LABEL[fam]}: training memory stays flat as L grows from {lo} to {hi}. "
                f"Supported if memory at L = {hi} is ≤ {FLAT_RATIO}× memory at L = {lo}",
                source,
                "supported" if r <= FLAT_RATIO else "refuted",
                {
                    f"ratio_L{hi}_over_L{lo}": r,
                    "bytes_per_layer": s[fam]["bytes_per_layer"],
                    "loglog_exponent_top": s[fam]["loglog_exponent_top"],
                },
                f"ratio <= {FLAT_RATIO}",
            )
        )
    return out


def plot(result: dict, arrays: dict):
    with plt.rc_context(STYLE):
        return _draw(result, arrays)


def _draw(result: dict, arrays: dict):
    m = result["metrics"]
    depths = np.asarray(arrays["depths"], float)
    fig, axes = figure(1, 2, size=(4.6, 3.6))
    ax = axes[0]
    names = [f for f in FAMILIES if f"{f}_temp_bytes" in arrays]
    for fam in names:
        mem = np.asarray(arrays[f"{fam}_temp_bytes"], float)
        e = m[f"{fam}_loglog_exponent_top"]
        ls = "-" if fam in FLAT or fam == "resnet" else "--"
        ax.loglog(depths, mem / 1e6, marker="o", ms=4, ls=ls, color=COLOR[fam],
                  label=f"{LABEL[fam]} (exp. {e:.2f})")  # fmt: skip
    ref = np.asarray(arrays["resnet_temp_bytes"], float)[-1] / 1e6 * depths / depths[-1]
    ax.loglog(depths, ref, color="k", lw=0.7, ls=":", label="slope 1 (O(depth))")
    ax.set_xlabel("depth L (blocks / solver steps / max fixed-point steps)")
    ax.set_ylabel("temporary memory of the train step (MB)")
    ax.set_title("memory vs depth (log-log)")
    ax.legend(fontsize=6.5, loc="upper left")
    ax = axes[1]
    bpl = [m[f"{f}_bytes_per_layer"] / 1e3 for f in names]
    bars = ax.barh(np.arange(len(names)), bpl, color=[COLOR[f] for f in names])
    for b, v in zip(bars, bpl, strict=True):
        ax.annotate(f"{v:.1f} kB", (max(v, 0), b.get_y() + b.get_height() / 2), va="center",
                    fontsize=7, xytext=(3, 0), textcoords="offset points")  # fmt: skip
    ticks = [LABEL[f].replace(", ", "\n", 1) for f in names]
    ax.set_yticks(np.arange(len(names)), ticks, fontsize=7)
    ax.set_xlabel("bytes per layer (least-squares slope), kB")
    ax.set_title("memory cost of one more layer")
    ax.margins(x=0.25)
    fig.suptitle(f"{TITLE} (width {m['width']}, batch {m['batch']})")
    fig.tight_layout()
    return fig
