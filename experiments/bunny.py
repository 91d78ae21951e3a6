"""The bunny problem: ``dB/dt = 0.5·B``, ``B0 = 100``, ``t ∈ [0, 2]``.

Euler with ``Δt = 1`` gives 150 then 225 against the exact ``100·e = 271.83`` (the book's
opening example). Heun and RK4 take the same two steps; then the global error at ``t = 2``
is measured against ``Δt`` from 1 down to ~1e-3 and its log-log slope is fitted, in float64
so RK4's fourth-order slope is not flattened by float32 round-off.

Every number comes from :func:`terrain_jax.integrate`. The ``Δt = 1`` runs are plain
fixed-step solves; the convergence sweep (:func:`terrain_jax.ode.final_states`) advances
one ``integrate`` step at a time inside ``lax.fori_loop`` and ``vmap``s over the step count,
so each solver compiles once instead of once per ``Δt``; at ``Δt = 1`` it matches the direct
solve bit for bit (recorded as a metric).
"""

import jax
import jax.numpy as jnp
import numpy as np

from terrain_jax import LinearField, integrate
from terrain_jax.analysis import loglog_slope
from terrain_jax.ode import final_states
from terrain_jax.plotting import COLORS, convergence, curves, decorate, figure, note

from ._common import claim

NAME = "bunny"
TITLE = "The bunny problem: Euler, Heun and RK4 on dB/dt = 0.5·B"

RATE, B0, T = 0.5, 100.0, 2.0
SOLVERS = {"euler": 1, "heun": 2, "rk4": 4}  # name -> textbook order of global error
LABELS = {"euler": "Euler", "heun": "Heun", "rk4": "RK4"}
FIT_MAX_DT = 0.25  # asymptotic regime: Δt = 1, 0.5 are too coarse for the leading term
FIT_MIN_REL_ERR = 1e-12  # ~10⁴ float64 eps: below this, round-off, not truncation
SLOPE_TOL = 0.2


def run(seed: int, quick: bool) -> dict:
    rng = np.random.default_rng(seed)
    # The seed draws extra starting populations: the problem is linear, so the Δt = 1
    # growth factors (1.5² for Euler) must not depend on B0.
    extra_b0 = rng.uniform(10.0, 1000.0, size=7)
    steps = 2 ** np.arange(1, 8 if quick else 12)  # Δt = 1 … 1/64 (quick) or 1/1024
    dts = T / steps

    metrics: dict = {}
    arrays: dict = {"dts": dts}
    with jax.enable_x64(True):  # float64, so RK4's slope is not flattened by round-off
        field = LinearField(jnp.array([[RATE]]))
        y0 = jnp.concatenate([jnp.array([B0]), jnp.asarray(extra_b0)])[:, None]
        for s in SOLVERS:
            traj = integrate(field, y0, t1=T, steps=2, solver=s, saveat="steps", throw=True)
            ys = np.asarray(traj.ys)[:, :, 0]  # (time, population)
            metrics[f"{s}_B1"] = float(ys[1, 0])
            metrics[f"{s}_B2"] = float(ys[2, 0])
            growth = ys[2] / ys[0]
            metrics[f"{s}_growth_factor_dt1"] = float(growth[0])
            metrics[f"{s}_growth_factor_spread_random_B0"] = float(growth.max() - growth.min())
            arrays[f"{s}_t_dt1"] = np.asarray(traj.ts)
            arrays[f"{s}_B_dt1"] = ys[:, 0]

            finals = np.asarray(final_states(field, jnp.array([B0]), steps, t1=T, solver=s))[:, 0]
            arrays[f"{s}_err"] = np.abs(finals - B0 * np.exp(RATE * T))
            metrics[f"{s}_stepwise_vs_direct_abs_diff_dt1"] = float(abs(finals[0] - ys[2, 0]))

    exact = B0 * np.exp(RATE * T)
    metrics["exact_B1"] = float(B0 * np.exp(RATE * 1.0))
    metrics["exact_B2"] = float(exact)
    for s in SOLVERS:
        metrics[f"{s}_rel_err_B2_dt1"] = (metrics[f"{s}_B2"] - exact) / exact
    t_dense = np.linspace(0.0, T, 201)
    arrays["exact_t"], arrays["exact_B"] = t_dense, B0 * np.exp(RATE * t_dense)

    metrics["dt_min"], metrics["dt_max"] = float(dts.min()), float(dts.max())
    metrics["fit_max_dt"], metrics["fit_min_rel_err"] = FIT_MAX_DT, FIT_MIN_REL_ERR
    claims = []
    e1, e2 = metrics["euler_B1"], metrics["euler_B2"]
    ok = abs(e1 - 150) < 1e-4 and abs(e2 - 225) < 1e-4 and abs(exact - 271.83) < 5e-3
    claims.append(
        claim(
            "Euler with Δt=1 gives 150 then 225 against the exact 271.83",
            "The Terrain of Learning, ch. 1 (bunny example); DESIGN reference numbers",
            "supported" if ok else "refuted",
            {"B1": e1, "B2": e2, "exact_B2": float(exact)},
            {"B1": 150, "B2": 225, "exact_B2": 271.83},
            note="tolerance 1e-4; Euler undershoots the exact value by "
            f"{-100 * metrics['euler_rel_err_B2_dt1']:.1f}% at t=2",
        )
    )
    for s, order in SOLVERS.items():
        mask = (dts <= FIT_MAX_DT + 1e-12) & (arrays[f"{s}_err"] > FIT_MIN_REL_ERR * exact)
        arrays[f"{s}_fit_mask"] = mask
        slope = loglog_slope(dts, arrays[f"{s}_err"], mask=mask)
        metrics[f"slope_{s}"] = slope
        metrics[f"slope_{s}_num_points"] = int(mask.sum())
        names = {1: "first", 2: "second", 4: "fourth"}
        claims.append(
            claim(
                f"{LABELS[s]}'s global error is {names[order]} order in Δt",
                "standard numerical analysis (Hairer, Nørsett & Wanner, Solving ODEs I, §II.3)",
                "supported" if abs(slope - order) <= SLOPE_TOL else "refuted",
                {"slope": slope, "num_points": int(mask.sum())},
                {"slope": order, "tolerance": SLOPE_TOL},
                note=f"log-log fit of |B(2) − 100e| over Δt ≤ {FIT_MAX_DT}, "
                f"errors above {FIT_MIN_REL_ERR:g}·100e (float64)",
            )
        )
    return {"metrics": metrics, "claims": claims, "arrays": arrays}


def plot(result: dict, arrays: dict):
    m = result["metrics"]
    fig, (ax, bx) = figure(1, 2, size=(4.6, 3.6))
    marker = {"euler": "o", "heun": "s", "rk4": "^"}
    exact, dt1 = r"exact $100\,e^{t/2}$", {s: f"{LABELS[s]}, Δt = 1" for s in SOLVERS}
    paths = {exact: (arrays["exact_t"], arrays["exact_B"])}
    paths |= {dt1[s]: (arrays[f"{s}_t_dt1"], arrays[f"{s}_B_dt1"]) for s in SOLVERS}
    styles = {exact: COLORS["exact"]}
    styles |= {dt1[s]: dict(ls="--", marker=marker[s], color=COLORS[s]) for s in SOLVERS}
    curves(ax, None, paths, styles=styles, xlabel="t", ylabel="population B", xticks=[0, 1, 2])
    decorate(ax, title="dB/dt = 0.5·B, B(0) = 100", legend="upper left")
    for t, key, offset in [(1.0, "euler_B1", (6, -12)), (2.0, "euler_B2", (-8, -16))]:
        at = dict(xytext=offset, textcoords="offset points", color=COLORS["euler"])
        ax.annotate(f"{m[key]:.0f}", (t, m[key]), **at)
    table = "        B(1)    B(2)\n" + "\n".join(
        f"{lab:5s} {m[k + '_B1']:6.2f}  {m[k + '_B2']:6.2f}"
        for lab, k in [("exact", "exact"), ("Euler", "euler"), ("Heun", "heun"), ("RK4", "rk4")]
    )
    note(ax, table, loc="lower right", family="monospace")

    label = {s: f"{LABELS[s]}: slope {m['slope_' + s]:.2f} (order {p})" for s, p in SOLVERS.items()}
    errors = {label[s]: arrays[f"{s}_err"] for s in SOLVERS}
    fit = {label[s]: arrays[f"{s}_fit_mask"] for s in SOLVERS}
    styles = [dict(color=COLORS[s], marker=marker[s], ms=6) for s in SOLVERS]
    title = "global error at t = 2 (float64)"
    convergence(bx, arrays["dts"], errors, styles=styles, fit=fit, ylim=(None, 1e9), title=title)
    window = f"dotted fit over filled points: Δt ≤ {m['fit_max_dt']:g}, above round-off"
    decorate(bx, xlabel="step size Δt", ylabel="|B(2) − 100·e|")
    bx.legend(loc="upper left", title=window, title_fontsize=7)
    return fig
