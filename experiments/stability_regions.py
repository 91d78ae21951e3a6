"""Stability regions ``|R(z)| ≤ 1`` of explicit and implicit Runge--Kutta methods.

``R`` comes from each solver's Butcher tableau (:func:`terrain_jax.stability_function`);
the tests tie those tableaus to the diffrax steps. On top of the regions:

- the real stability intervals (bisection by :func:`terrain_jax.real_stability_interval`,
  cross-checked by a 1-D scan of :func:`terrain_jax.region` along the negative axis);
- A-stability: the fraction of the grid's left half-plane that is stable, and the step
  bound on a seeded random left-half-plane spectrum;
- the imaginary-axis limit ``max_stable_step(solver, [i])``;
- gradient descent on ``L = θᵀHθ/2`` *is* explicit Euler on ``−∇L`` (run through
  :func:`terrain_jax.integrate` with a :class:`~terrain_jax.GradientField` and compared
  with a hand-written GD loop), stable only for ``η < 2/λ_max``.
"""

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from terrain_jax import (
    GradientField,
    integrate,
    max_stable_step,
    real_stability_interval,
    region,
    stability_function,
)
from terrain_jax.plotting import COLORS, bars, curves, decorate, figure, note

from ._common import claim

NAME = "stability_regions"
TITLE = "Stability regions |R(z)| ≤ 1 of explicit and implicit Runge–Kutta methods"

SOLVERS = {
    "euler": "explicit Euler (order 1)",
    "heun": "Heun (order 2)",
    "rk4": "RK4 (order 4)",
    "tsit5": "Tsit5 (order 5)",
    "implicit_euler": "implicit Euler (order 1)",
    "kvaerno5": "Kvaerno5 (order 5, implicit)",
}
IMPLICIT = ("implicit_euler", "kvaerno5")
RE, IM = (-6.0, 3.0), (-4.0, 4.0)
RK4_LITERATURE = 2.7853  # Hairer & Wanner, Solving ODEs II, §IV.2
GD_DIM, GD_STEPS = 8, 100
GD_LAMBDAS = (0.5, 2.0, 10.0)
GD_MARGIN = 0.05  # iterate GD at η = (1 ∓ margin)·2/λ_max


def _real_scan(solver: str) -> float:
    """Left end of the stable segment ``(a, 0)`` found by scanning ``region`` on the real
    axis: step 1e-3 down to −6, then log-spaced down to −1e6; ``-inf`` if all stable."""
    x = np.concatenate([np.linspace(0.0, 6.0, 6001)[1:], np.logspace(np.log10(6.0), 6.0, 400)])
    stable = np.asarray(region(solver, (-x).astype(np.complex128)))
    if stable.all():
        return float("-inf")
    first_bad = int(np.argmin(stable))
    return float(-x[first_bad - 1]) if first_bad > 0 else 0.0


def _gd_runs(hessians: np.ndarray, etas: np.ndarray, theta0: np.ndarray):
    """For each ``(H, η)``: GD as explicit Euler through ``integrate`` and as a plain loop."""

    def loss(theta, H):
        return 0.5 * theta @ H @ theta

    field = GradientField(loss, takes_args=True)

    def one(H, eta):
        via_integrate = integrate(
            field, theta0, t1=GD_STEPS * eta, steps=GD_STEPS, solver="euler", args=H
        ).y1
        by_hand = lax.fori_loop(0, GD_STEPS, lambda _, th: th - eta * (H @ th), theta0)
        return via_integrate, by_hand

    return jax.jit(jax.vmap(one))(hessians, etas)


def run(seed: int, quick: bool) -> dict:
    rng = np.random.default_rng(seed)
    n = 100 if quick else 400
    re = np.linspace(*RE, n)
    im = np.linspace(*IM, n)
    Z = re[None, :] + 1j * im[:, None]
    lhp = Z.real < -1e-9

    # a seeded left-half-plane spectrum: stiff, oscillatory and near-imaginary eigenvalues
    lhp_spectrum = -rng.uniform(1e-3, 1e3, 64) + 1j * rng.normal(0.0, 100.0, 64)

    metrics: dict = {"grid_points": int(Z.size), "grid_re": list(RE), "grid_im": list(IM)}
    arrays: dict = {"re": re, "im": im}
    for s in SOLVERS:
        absR = np.abs(np.asarray(stability_function(s, Z)))
        stable = np.asarray(region(s, Z))
        arrays[f"{s}_absR"] = np.minimum(absR, 2.0).astype(np.float16)
        arrays[f"{s}_stable"] = stable
        left, _ = real_stability_interval(s)
        metrics[f"{s}_real_interval"] = [left, 0.0]
        metrics[f"{s}_real_interval_scan"] = [_real_scan(s), 0.0]
        metrics[f"{s}_lhp_stable_fraction"] = float(stable[lhp].mean())
        metrics[f"{s}_grid_stable_fraction"] = float(stable.mean())
        metrics[f"{s}_imag_axis_limit"] = max_stable_step(s, np.array([1j]))
        metrics[f"{s}_max_step_random_lhp_spectrum"] = max_stable_step(s, lhp_spectrum)
    metrics["imag_axis_limit_note"] = (
        "max_stable_step(solver, [i]); exactly 0 for Euler and Heun (|R(iy)| > 1 for all "
        "y ≠ 0), which the library reports as ~1e-7 / ~5e-4 because of its 1e-14 tolerance"
    )

    # --- gradient descent = explicit Euler on −∇L -------------------------------------
    q, _ = np.linalg.qr(rng.normal(size=(GD_DIM, GD_DIM)))
    spd_eigs = np.sort(rng.uniform(0.1, 5.0, GD_DIM))
    spd = (q * spd_eigs) @ q.T
    cases = [(f"lambda_{lam:g}", lam * np.eye(GD_DIM), lam) for lam in GD_LAMBDAS]
    cases.append(("random_spd", spd, float(spd_eigs.max())))
    bounds = {}
    for key, H, lam_max in cases:
        eigs = np.linalg.eigvalsh(H)
        eta_max = max_stable_step("euler", -eigs)
        bounds[key] = eta_max
        metrics[f"gd_{key}_lambda_max"] = lam_max
        metrics[f"gd_{key}_eta_max"] = eta_max
        metrics[f"gd_{key}_eta_max_rel_err_vs_2_over_lambda"] = abs(eta_max * lam_max / 2 - 1)
    hs = [H for _, H, _ in cases for _ in (0, 1)]
    etas = [bounds[k] * f for k, _, _ in cases for f in (1 - GD_MARGIN, 1 + GD_MARGIN)]
    # sweep η·λ across the bound for the scalar-like case λ = 2 (drawn in the last panel)
    sweep = np.linspace(0.025, 2.475, 50)
    hs += [2.0 * np.eye(GD_DIM)] * sweep.size
    etas += list(sweep / 2.0)
    # η on a dyadic grid (multiples of 2⁻²⁰): integrate builds its step grid as
    # t1·k/steps, which misses t1 = steps·η by one ulp for most decimal η and then diffrax
    # refuses the grid (library bug, xfail in tests/test_stability.py).
    etas = np.round(np.asarray(etas) * 2.0**20) / 2.0**20
    theta0 = rng.normal(size=GD_DIM)
    # float64 so integrate and the hand loop can be compared to round-off
    with jax.enable_x64(True):
        via_int, by_hand = _gd_runs(jnp.asarray(np.stack(hs)), jnp.asarray(etas), theta0)
    via_int, by_hand = np.asarray(via_int), np.asarray(by_hand)
    ratio = np.linalg.norm(via_int, axis=1) / np.linalg.norm(theta0)
    scale = np.maximum(np.abs(by_hand).max(axis=1), 1e-300)
    metrics["gd_integrate_vs_loop_max_rel_diff"] = float(
        (np.abs(via_int - by_hand).max(axis=1) / scale).max()
    )
    gd_ok = True
    for i, (key, _, _) in enumerate(cases):
        below, above = ratio[2 * i], ratio[2 * i + 1]
        metrics[f"gd_{key}_norm_ratio_below_bound"] = below
        metrics[f"gd_{key}_norm_ratio_above_bound"] = above
        gd_ok &= bool(below < 1 < above)
        gd_ok &= metrics[f"gd_{key}_eta_max_rel_err_vs_2_over_lambda"] < 1e-6
    gd_ok &= metrics["gd_integrate_vs_loop_max_rel_diff"] < 1e-9
    arrays["gd_sweep_eta_lambda"] = 2.0 * etas[2 * len(cases) :]
    arrays["gd_sweep_norm_ratio"] = ratio[2 * len(cases) :]
    metrics["gd_steps"], metrics["gd_margin"] = GD_STEPS, GD_MARGIN

    # --- claims --------------------------------------------------------------------------
    claims = []
    e_left, e_scan = metrics["euler_real_interval"][0], metrics["euler_real_interval_scan"][0]
    claims.append(
        claim(
            "Explicit Euler is stable only where |1+hλ|<1: real interval (−2, 0)",
            "The Terrain of Learning (DESIGN thesis); standard numerical analysis",
            "supported" if abs(e_left + 2) < 1e-3 and abs(e_scan + 2) < 2e-3 else "refuted",
            {"interval": [e_left, 0.0], "interval_scan": [e_scan, 0.0]},
            {"interval": [-2.0, 0.0]},
            note="bisection on |R(−x)| = 1, cross-checked by a 1e-3 scan of region()",
        )
    )
    r_left, r_scan = metrics["rk4_real_interval"][0], metrics["rk4_real_interval_scan"][0]
    ok = abs(r_left + RK4_LITERATURE) < 1e-3 and abs(r_scan + RK4_LITERATURE) < 2e-3
    claims.append(
        claim(
            "RK4's real stability interval is about (−2.785, 0)",
            "Hairer & Wanner, Solving ODEs II, §IV.2 (2.7853)",
            "supported" if ok else "refuted",
            {"interval": [r_left, 0.0], "interval_scan": [r_scan, 0.0]},
            {"interval": [-RK4_LITERATURE, 0.0]},
        )
    )
    fr = {s: metrics[f"{s}_lhp_stable_fraction"] for s in SOLVERS}
    a_stable = all(
        fr[s] == 1.0
        and metrics[f"{s}_max_step_random_lhp_spectrum"] == float("inf")
        and metrics[f"{s}_real_interval_scan"][0] == float("-inf")
        for s in IMPLICIT
    )
    claims.append(
        claim(
            "Implicit methods (implicit Euler, Kvaerno5) are stable on the whole left "
            "half-plane (A-stable)",
            "The Terrain of Learning (DESIGN thesis); Hairer & Wanner, Solving ODEs II, §IV.3",
            "supported" if a_stable else "refuted",
            {
                "lhp_stable_fraction": {s: fr[s] for s in IMPLICIT},
                "max_step_random_lhp_spectrum": {
                    s: metrics[f"{s}_max_step_random_lhp_spectrum"] for s in IMPLICIT
                },
                "explicit_lhp_stable_fraction": {s: fr[s] for s in SOLVERS if s not in IMPLICIT},
            },
            {"lhp_stable_fraction": 1.0, "max_step_random_lhp_spectrum": "inf"},
            note=f"{Z.size} grid points on Re z ∈ {list(RE)}, Im z ∈ {list(IM)}; a seeded "
            "64-eigenvalue spectrum with Re λ ∈ [−1e3, −1e-3]; real-axis scan to −1e6",
        )
    )
    claims.append(
        claim(
            "Gradient descent on L = λθ²/2 is explicit Euler on −∇L, stable only for η < 2/λ",
            "The Terrain of Learning (DESIGN thesis); classical GD step-size bound",
            "supported" if gd_ok else "refuted",
            {
                "eta_max_times_lambda_over_2": {
                    k: metrics[f"gd_{k}_eta_max"] * metrics[f"gd_{k}_lambda_max"] / 2
                    for k, _, _ in cases
                },
                "norm_ratio_below": {
                    k: metrics[f"gd_{k}_norm_ratio_below_bound"] for k, _, _ in cases
                },
                "norm_ratio_above": {
                    k: metrics[f"gd_{k}_norm_ratio_above_bound"] for k, _, _ in cases
                },
                "integrate_vs_gd_loop_rel_diff": metrics["gd_integrate_vs_loop_max_rel_diff"],
            },
            {"eta_max_times_lambda_over_2": 1.0, "below": "< 1", "above": "> 1"},
            note=f"max_stable_step('euler', −eig(H)); GD run {GD_STEPS} steps at "
            f"η = (1 ∓ {GD_MARGIN})·η_max via integrate(GradientField, solver='euler') "
            "and a plain loop (float64)",
        )
    )
    return {"metrics": metrics, "claims": claims, "arrays": arrays}


def _fmt_interval(left) -> str:
    left = float(left)
    return "(−∞, 0)" if left == float("-inf") else f"({left:.3f}, 0)".replace("-", "−")


def plot(result: dict, arrays: dict):
    m = result["metrics"]
    re, im = arrays["re"], arrays["im"]
    fig, axes = figure(2, 4, size=(3.2, 3.0))
    axes = axes.ravel()
    for ax, (s, label) in zip(axes, SOLVERS.items(), strict=False):
        c, stable, absR = COLORS[s], arrays[f"{s}_stable"], arrays[f"{s}_absR"]
        ax.contourf(re, im, stable.astype(float), levels=[0.5, 1.5], colors=[c], alpha=0.3)
        ax.contour(re, im, absR.astype(float), levels=[1.0], colors=[c], linewidths=1)
        left, imag = float(m[f"{s}_real_interval"][0]), float(m[f"{s}_imag_axis_limit"])
        ax.plot([max(left, re[0]), 0], [0, 0], color=c, lw=3, solid_capstyle="butt")
        imag_txt = "all" if imag == float("inf") else f"|Im z| ≤ {imag:.3f}"
        imag_txt = "none" if imag < 1e-3 else imag_txt
        text = (
            f"real interval {_fmt_interval(left)}\nimag. axis: {imag_txt}\n"
            f"left half-plane stable: {100 * m[f'{s}_lhp_stable_fraction']:.1f}%"
        )
        note(ax, text, loc="upper left")
        decorate(ax, xlim=(re[0], re[-1]), ylim=(im[0], im[-1]), title=label, aspect="equal")
        decorate(ax, xlabel="Re z = Re hλ", ylabel="Im z", hlines=[0], vlines=[0])
    arrow = {"arrowstyle": "->", "lw": 0.7}
    text = "GD on λθ²/2:\nz = −ηλ, stable\niff η < 2/λ"
    axes[0].annotate(text, (-2.0, 0.0), xytext=(-5.8, -3.7), fontsize=7, arrowprops=arrow)

    ax, x, k = axes[6], arrays["gd_sweep_eta_lambda"], m["gd_steps"]
    gd, bound = "GD = Euler on −∇L", rf"$|1-\eta\lambda|^{{{k}}}$"
    styles = {gd: dict(marker="o", ms=3, color=COLORS["euler"])}
    styles[bound] = dict(color=COLORS["exact"], lw=0.8, ls="--")
    ratio = {gd: arrays["gd_sweep_norm_ratio"], bound: np.abs(1 - x) ** k}
    curves(ax, x, ratio, styles=styles, yscale="log", ylim=(1e-30, 1e30))
    ax.set_title(f"GD on a quadratic, {k} steps")
    ax.text(1.95, 1e-27, "ηλ = 2", fontsize=7, rotation=90, ha="right", va="bottom")
    xlabel, ylabel = "η·λ  (L = λ|θ|²/2, λ = 2)", rf"$|\theta_{{{k}}}|\,/\,|\theta_0|$"
    decorate(ax, xlabel=xlabel, ylabel=ylabel, legend="upper left", hlines=[1.0], vlines=[2.0])

    names = [SOLVERS[s].split(" (")[0] for s in SOLVERS]
    fracs = {"": [m[f"{s}_lhp_stable_fraction"] for s in SOLVERS]}
    colors = {"": [COLORS[s] for s in SOLVERS]}
    bars(axes[7], names, fracs, colors=colors, fmt="{:.1%}", horizontal=True, fontsize=7)
    axes[7].invert_yaxis()
    axes[7].tick_params(axis="y", labelsize=7)
    decorate(axes[7], xlim=(0, 1.15), xlabel="fraction stable", title="left half-plane of the grid")
    return fig
