"""DEQ = Banach in production: contractive cells converge at ``Lip^k``; others need help.

A DEQ layer's forward pass is the fixed point ``z* = f(z*, x)`` of a cell
``f(z, x) = tanh(W z + U x + b)``. Banach's theorem says: if ``Lip_z(f) ≤ c < 1`` then
Picard iteration ``z_{k+1} = f(z_k, x)`` converges from every start and
``‖z_k − z*‖ ≤ c^k ‖z_0 − z*‖``. Spectral normalisation enforces it: ``W`` is rescaled
to ``‖W‖₂ = c`` (exact ``σ_max`` from an SVD, float64) and ``|tanh'| ≤ 1``, so
``Lip_z(f) ≤ c``. Three measurements:

1. **Banach rate.** For ``c ∈ C_VALUES`` and ``CELLS`` random cells per ``c`` (vmapped),
   Picard from a random start; ``z*`` from :func:`terrain_jax.fixed_point` (Anderson,
   relative residual ``≤ 1e-13``). We check ``‖z_k − z*‖ ≤ c^k ‖z_0 − z*‖`` at every
   ``k`` where the bound is above the round-off floor ``FLOOR``, and report the worst
   ratio ``‖z_k − z*‖ / (c^k ‖z_0 − z*‖)``, the fraction of cells satisfying it, the
   measured asymptotic rate (against ``c`` and the local rate ``ρ(J_f(z*))``), and
   whether ``fixed_point(solver="picard")`` converges within ``⌈log(1e-3 · tol)/log c⌉``
   steps.
2. **Without the constraint.** Unnormalised cells (``W = g G/√n``, ``G`` standard Gaussian,
   spectral radius ≈ ``g > 1``) and linear maps ``f(z) = A z + b`` with ``ρ(A) > 1``
   (``I − A`` invertible): the fraction of cells where Picard, Anderson and Broyden
   converge (same ``tol``, ``max_steps``), Picard's failure mode (divergence to ``∞`` for
   the linear maps; a short cycle or a bounded non-periodic orbit for the ``tanh`` cells,
   which cannot diverge), and for ``tanh`` cells whether the fixed point Anderson finds is
   repelling for Picard (``ρ(J_f(z*)) > 1``). Linear fixed points are checked against a
   dense solve of ``(I − A) z = b``.
3. **Cobweb** of ``h ↦ tanh(0.8 h + 0.5)``: the iterates from a few starts, ``h*``, and the
   measured linear rate against ``|f'(h*)| = 0.8 (1 − h*²)``.

Everything runs in float64 so the ``c^k`` check reaches ``1e-9`` before round-off.
"""

import functools
import math

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

from terrain_jax import fixed_point
from terrain_jax.fixed_point import asymptotic_rate, iterate
from terrain_jax.plotting import bars, curves, decorate, figure, legend_handles

from ._common import claim

NAME = "deq_banach"
TITLE = "DEQ = Banach in production: Picard at rate Lip^k, Anderson/Broyden beyond"

FULL = dict(
    cells=1000,
    cs=(0.5, 0.8, 0.9, 0.95, 0.99),
    cells_free=500,
    gains=(1.5, 2.0, 3.0),
    linear_gains=(1.5, 3.0),
)
QUICK = dict(cells=100, cs=(0.5, 0.99), cells_free=64, gains=(), linear_gains=(1.5,))
N, D = 32, 8  # state and input width of the contractive cells
N_FREE = 16  # state width of the unconstrained cells and linear maps
K = 300  # Picard steps recorded for the Banach check
FLOOR = 1e-9  # bound values below this are round-off territory, not checked
SLACK = 1e-12  # absolute slack of the check (float64 round-off of ‖z_k − z*‖)
TOL_STAR = 1e-13  # relative residual of the reference z*
TOL = 1e-8  # relative residual for the convergence census
MAX_STEPS = 400
SOLVERS = {
    "picard": dict(solver="picard"),
    "anderson": dict(solver="anderson", memory=N_FREE),
    "broyden": dict(solver="broyden", memory=2 * N_FREE),
}
COBWEB_STARTS = (-2.5, -0.6, 0.2, 2.5)
COBWEB_A, COBWEB_B = 0.8, 0.5

# criteria, fixed before the runs
CONVERGE_FRAC = 0.9  # "still converge": ≥ 90% of cells
PICARD_FAIL_FRAC = 0.5  # "Picard diverges": fails on ≥ 50% of the same cells
RATE_RTOL = 0.01  # cobweb: measured rate within 1% of |f'(h*)|


def _tanh_cell(z, a):
    W, U, b, x = a
    return jnp.tanh(W @ z + U @ x + b)


def _linear_map(z, a):
    A, b = a
    return A @ z + b


def _draw_cells(rng: np.random.Generator, cells: int, n: int, d: int, gain: float):
    W = rng.normal(size=(cells, n, n)) * gain / np.sqrt(n)
    U = rng.normal(size=(cells, n, d)) / np.sqrt(d)
    b = 0.5 * rng.normal(size=(cells, n))
    x = rng.normal(size=(cells, d))
    return W, U, b, x


def _sigma_max(W: np.ndarray) -> np.ndarray:
    return np.linalg.svd(W, compute_uv=False)[..., 0]


def _jacobian_radius(W: np.ndarray, z: np.ndarray) -> np.ndarray:
    """``ρ(diag(1 − z²) W)``: the local rate of Picard at a fixed point of a tanh cell."""
    J = (1 - z**2)[..., :, None] * W
    return np.abs(np.linalg.eigvals(J)).max(-1)


@jax.jit
def _picard_errors(a, z0, z_star):
    """``‖z_k − z*‖`` for ``k = 0 … K`` (one cell; vmapped below)."""
    return iterate(_tanh_cell, z0, a, K, observe=lambda z: jnp.linalg.norm(z - z_star))


_picard_errors_v = jax.jit(jax.vmap(_picard_errors))


# one solve per cell: z0 and the cell's arrays carry the cell axis
_solve_jit = jax.jit(
    functools.partial(fixed_point, batched=True, args_axes=0),
    static_argnames=("f", "tol", "max_steps", "solver", "memory"),
)


@jax.jit
def _picard_tail(a, z0):
    """The last 64 Picard iterates after ``MAX_STEPS`` steps (one tanh cell)."""
    return iterate(_tanh_cell, z0, a, MAX_STEPS)[-64:]


def _period(tail: np.ndarray) -> np.ndarray:
    """Smallest period ``p ≤ 32`` of the last iterates (``0``: no short period)."""
    last = tail[:, -1]
    scale = np.linalg.norm(last, axis=-1) + 1e-12
    out = np.zeros(tail.shape[0], int)
    for p in range(32, 0, -1):  # 32 small numpy comparisons, outside any hot path
        d = np.linalg.norm(tail[:, -1 - p] - last, axis=-1) / scale
        out = np.where(d < 1e-6, p, out)
    return out


# ----------------------------------------------------------------------------- parts


def _banach(rng: np.random.Generator, cfg: dict, metrics: dict, arrays: dict) -> dict:
    out = {}
    for c in cfg["cs"]:
        W, U, b, x = _draw_cells(rng, cfg["cells"], N, D, 1.0)
        W = W * (c / _sigma_max(W))[:, None, None]
        sig = _sigma_max(W)
        z0 = jnp.asarray(2.0 * rng.normal(size=(cfg["cells"], N)))
        a = tuple(jnp.asarray(v) for v in (W, U, b, x))
        z_star, info = _solve_jit(
            _tanh_cell,
            z0,
            a,
            tol=TOL_STAR,
            max_steps=200,
            solver="anderson",
            memory=10,
        )
        errs = np.asarray(_picard_errors_v(a, z0, z_star))
        ks = np.arange(K + 1)
        bound = c**ks * errs[:, :1]
        check = bound >= FLOOR
        check[:, 0] = False  # k = 0 is the identity e_0 = e_0
        ratio = np.where(check, (errs - SLACK) / bound, -np.inf)
        worst = ratio.max(-1)
        # asymptotic rate: geometric slope over the last decade above the floor
        rate = asymptotic_rate(errs, floor=FLOOR)
        rho = _jacobian_radius(W, np.asarray(z_star))
        max_steps = math.ceil(math.log(1e-3 * TOL) / math.log(c))
        _, pic = _solve_jit(_tanh_cell, z0, a, tol=TOL, max_steps=max_steps, solver="picard")
        key = f"c{c:g}"
        r = {
            "sigma_max_max_abs_err": float(np.abs(sig - c).max()),
            "z_star_converged_frac": float(np.mean(np.asarray(info.converged))),
            "bound_satisfied_frac": float(np.mean(worst <= 1.0)),
            "worst_ratio_to_bound": float(worst.max()),
            "median_ratio_to_bound": float(np.median(worst)),
            "rate_median": float(np.median(rate)),
            "rate_max": float(rate.max()),
            "local_rho_median": float(np.median(rho)),
            "rate_minus_local_rho_median_abs": float(np.median(np.abs(rate - rho))),
            "rate_minus_local_rho_max_abs": float(np.abs(rate - rho).max()),
            "picard_converged_frac": float(np.mean(np.asarray(pic.converged))),
            "picard_max_steps": max_steps,
            "picard_steps_median": float(np.median(np.asarray(pic.steps))),
            "picard_steps_max": int(np.asarray(pic.steps).max()),
            "checked_steps_median": float(np.median(check.sum(-1))),
        }
        out[c] = r
        for k_, v in r.items():
            metrics[f"banach_{key}_{k_}"] = v
        rel = errs / errs[:, :1]
        arrays[f"banach_{key}_rel_err_median"] = np.median(rel, 0)
        arrays[f"banach_{key}_rel_err_max"] = rel.max(0)
    return out


def _free(rng: np.random.Generator, cfg: dict, metrics: dict, arrays: dict) -> dict:
    cells = cfg["cells_free"]
    out = {}
    families = [("tanh", g) for g in cfg["gains"]] + [("linear", g) for g in cfg["linear_gains"]]
    for fam, g in families:
        key = f"{fam}_g{g:g}"
        if fam == "tanh":
            W, U, b, x = _draw_cells(rng, cells, N_FREE, D, g)
            a = tuple(jnp.asarray(v) for v in (W, U, b, x))
            f, z0 = _tanh_cell, np.zeros((cells, N_FREE))
            rho = np.abs(np.linalg.eigvals(W)).max(-1)
        else:
            A = rng.normal(size=(cells, N_FREE, N_FREE)) * g / np.sqrt(N_FREE)
            bb = rng.normal(size=(cells, N_FREE))
            a = (jnp.asarray(A), jnp.asarray(bb))
            f, z0 = _linear_map, np.zeros((cells, N_FREE))
            rho = np.abs(np.linalg.eigvals(A)).max(-1)
            z_dense = np.linalg.solve(np.eye(N_FREE) - A, bb[..., None])[..., 0]
        r = {"radius_gt1_frac": float(np.mean(rho > 1)), "radius_median": float(np.median(rho))}
        zs = {}
        for s, kw in SOLVERS.items():
            z, info = _solve_jit(f, jnp.asarray(z0), a, tol=TOL, max_steps=MAX_STEPS, **kw)
            zs[s] = np.asarray(z)
            conv = np.asarray(info.converged)
            r[f"{s}_converged_frac"] = float(conv.mean())
            r[f"{s}_steps_median_converged"] = (
                float(np.median(np.asarray(info.steps)[conv])) if conv.any() else float("nan")
            )
            # after a solver stops its trace is nan: hold its final residual instead
            tr = np.asarray(info.trace)
            tr = np.where(np.isnan(tr), np.asarray(info.residual)[:, None], tr)
            arrays[f"free_{key}_{s}_trace_median"] = np.median(tr, 0)
            if fam == "linear":
                with np.errstate(over="ignore", invalid="ignore"):
                    err = np.linalg.norm(zs[s] - z_dense, axis=-1) / np.linalg.norm(
                        z_dense, axis=-1
                    )
                    blown = ~np.isfinite(err) | (np.linalg.norm(zs[s], axis=-1) > 1e6)
                r[f"{s}_matches_dense_solve_frac"] = float(np.mean(conv & (err < 1e-5)))
                if s == "picard":
                    r["picard_diverged_frac"] = float(np.mean(blown))
        if fam == "tanh":
            tail = np.asarray(jax.vmap(_picard_tail)(a, jnp.asarray(z0)))
            per = _period(tail)
            r["picard_cycle_frac"] = float(np.mean(per >= 2))
            r["picard_nonperiodic_frac"] = float(np.mean(per == 0))
            r["picard_period2_frac"] = float(np.mean(per == 2))
            # is Anderson's fixed point repelling for Picard?
            and_ok = np.linalg.norm(
                np.tanh(
                    np.einsum("cij,cj->ci", W, zs["anderson"]) + np.einsum("cij,cj->ci", U, x) + b
                )
                - zs["anderson"],
                axis=-1,
            ) <= 1e-6 * (np.linalg.norm(zs["anderson"], axis=-1) + 1e-8)
            lrho = _jacobian_radius(W, zs["anderson"])
            r["anderson_fixed_point_repelling_frac"] = float(np.mean(and_ok & (lrho > 1)))
        out[key] = r
        for k_, v in r.items():
            metrics[f"free_{key}_{k_}"] = v
    return out


def _cobweb(metrics: dict, arrays: dict) -> dict:
    def f(h, _):
        return jnp.tanh(COBWEB_A * h + COBWEB_B)

    solve = jax.jit(lambda h0: fixed_point(f, h0, solver="anderson", tol=1e-15, max_steps=100))
    h_star = float(solve(jnp.zeros(()))[0])

    orbit = lambda h0: iterate(f, h0, None, 60)
    orbits = np.asarray(jax.jit(jax.vmap(orbit))(jnp.asarray(COBWEB_STARTS)))
    err = np.abs(orbits - h_star)
    ok = (err[:, :-1] > 1e-12) & (err[:, :-1] < 1e-3)
    ratios = err[:, 1:] / np.where(err[:, :-1] > 0, err[:, :-1], 1.0)
    rate = float(np.median(ratios[ok]))
    deriv = COBWEB_A * (1 - h_star**2)
    r = {
        "h_star": h_star,
        "residual": abs(math.tanh(COBWEB_A * h_star + COBWEB_B) - h_star),
        "rate_measured": rate,
        "rate_spread": float(ratios[ok].max() - ratios[ok].min()),
        "abs_fprime_h_star": deriv,
        "rate_rel_err": abs(rate - deriv) / deriv,
    }
    for k_, v in r.items():
        metrics[f"cobweb_{k_}"] = v
    arrays["cobweb_orbits"] = orbits
    arrays["cobweb_err"] = err
    return r


# ----------------------------------------------------------------------------- run


def run(seed: int, quick: bool) -> dict:
    cfg = QUICK if quick else FULL
    rng = np.random.default_rng(seed)
    metrics: dict = {
        "n_state": N,
        "n_input": D,
        "n_state_free": N_FREE,
        "cells_per_c": cfg["cells"],
        "cells_per_family": cfg["cells_free"],
        "picard_steps_recorded": K,
        "tol": TOL,
        "max_steps": MAX_STEPS,
        "anderson_memory": SOLVERS["anderson"]["memory"],
        "broyden_memory": SOLVERS["broyden"]["memory"],
    }
    arrays: dict = {"cs": np.asarray(cfg["cs"])}
    with jax.enable_x64(True):
        ban = _banach(rng, cfg, metrics, arrays)
        free = _free(rng, cfg, metrics, arrays)
        cob = _cobweb(metrics, arrays)
    metrics["free_families"] = list(free)
    return {"metrics": metrics, "claims": _claims(ban, free, cob, cfg), "arrays": arrays}


def _claims(ban: dict, free: dict, cob: dict, cfg: dict) -> list[dict]:
    out = []
    sat = min(r["bound_satisfied_frac"] for r in ban.values())
    conv = min(r["picard_converged_frac"] for r in ban.values())
    worst = max(r["worst_ratio_to_bound"] for r in ban.values())
    out.append(
        claim(
            "With Lip(f) < 1 enforced by spectral normalisation (‖W‖₂ = c, f = tanh(Wz + Ux "
            "+ b)), Picard always converges at the predicted linear rate: "
            "‖z_k − z*‖ ≤ c^k ‖z_0 − z*‖ for all k. Supported if every cell satisfies the bound "
            f"at every checked k (bound ≥ {FLOOR:g}) and fixed_point(picard) converges on every "
            "cell within ⌈log(1e-3·tol)/log c⌉ steps; refuted otherwise",
            "issue 4, experiment 2; Banach fixed-point theorem; Miyato et al. 2018 (spectral "
            "normalisation); Bai, Kolter & Koltun 2019 (DEQ)",
            "supported" if sat == 1.0 and conv == 1.0 else "refuted",
            {
                "cells_per_c": cfg["cells"],
                "cs": list(cfg["cs"]),
                "bound_satisfied_frac_min_over_c": sat,
                "worst_ratio_to_bound": worst,
                "picard_converged_frac_min_over_c": conv,
                "rate_median_by_c": [ban[c]["rate_median"] for c in cfg["cs"]],
                "rate_max_by_c": [ban[c]["rate_max"] for c in cfg["cs"]],
            },
            "bound satisfied by all cells; worst ratio ≤ 1; converged fraction 1",
            note=(
                "The bound is loose: the measured asymptotic rate equals the local spectral "
                "radius ρ(diag(1 − z*²) W) (median |rate − ρ| per c: "
                + ", ".join(f"{r['rate_minus_local_rho_median_abs']:.2g}" for r in ban.values())
                + "), "
                "typically well below c because tanh' < 1 and ρ(W) < ‖W‖₂."
            ),
        )
    )
    cases = []
    for key, r in free.items():
        pic_fail = 1 - r["picard_converged_frac"]
        helped = min(r["anderson_converged_frac"], r["broyden_converged_frac"])
        if pic_fail >= PICARD_FAIL_FRAC and helped >= CONVERGE_FRAC:
            cases.append(key)
    out.append(
        claim(
            "Without Lip(f) < 1, Picard can diverge (or cycle) where Anderson and Broyden still "
            "converge. Supported if, in at least one family of random cells, Picard fails on "
            f"≥ {PICARD_FAIL_FRAC:.0%} of cells while Anderson and Broyden each converge on "
            f"≥ {CONVERGE_FRAC:.0%} (same tol = {TOL:g}, max_steps = {MAX_STEPS})",
            "issue 4, experiment 2; Walker & Ni 2011 (Anderson); Broyden 1965",
            "supported" if cases else "refuted",
            {
                key: {s: r[f"{s}_converged_frac"] for s in SOLVERS}
                | {"spectral_radius_gt1_frac": r["radius_gt1_frac"]}
                for key, r in free.items()
            },
            f"Picard fails ≥ {PICARD_FAIL_FRAC}, Anderson and Broyden converge ≥ {CONVERGE_FRAC}",
            note=(
                f"Families meeting the criterion: {', '.join(cases) or 'none'}. "
                + "; ".join(
                    f"{k}: Picard diverged {r['picard_diverged_frac']:.2f}"
                    for k, r in free.items()
                    if "picard_diverged_frac" in r
                )
                + "; "
                + "; ".join(
                    f"{k}: Picard on a short cycle {r['picard_cycle_frac']:.2f}, "
                    f"non-periodic {r['picard_nonperiodic_frac']:.2f}, Anderson's z* repelling "
                    f"(ρ(J) > 1) {r['anderson_fixed_point_repelling_frac']:.2f}"
                    for k, r in free.items()
                    if "picard_cycle_frac" in r
                )
            ),
        )
    )
    out.append(
        claim(
            "Cobweb of h ↦ tanh(0.8h + 0.5): Picard converges to h* at the linear rate "
            f"|f'(h*)| = 0.8(1 − h*²). Supported if the measured rate is within "
            f"{RATE_RTOL:.0%} of |f'(h*)|",
            "issue 4, experiment 2; linear convergence of fixed-point iteration",
            "supported" if cob["rate_rel_err"] <= RATE_RTOL else "refuted",
            {
                "h_star": round(cob["h_star"], 6),
                "rate_measured": cob["rate_measured"],
                "abs_fprime_h_star": cob["abs_fprime_h_star"],
            },
            f"rate within {RATE_RTOL:.0%} of 0.8(1 − h*²)",
        )
    )
    return out


# ----------------------------------------------------------------------------- figure

_SOLVER_COLORS = {"picard": "#d62728", "anderson": "#1f77b4", "broyden": "#2ca02c"}


def plot(result: dict, arrays: dict):
    m = result["metrics"]
    fams = m["free_families"]
    fig, axes = figure(2, 2, size=(5.0, 3.8))

    ax, hs = axes[0, 0], np.linspace(-3, 3, 400)
    maps = {"f(h)": np.tanh(COBWEB_A * hs + COBWEB_B), "h": hs}
    curves(ax, hs, maps, styles={"f(h)": "k", "h": dict(color="grey", lw=0.8, ls="--")})
    colors = plt.get_cmap("viridis")(np.linspace(0, 0.85, len(COBWEB_STARTS)))
    for orb, col in zip(arrays["cobweb_orbits"], colors, strict=True):
        stairs = np.repeat(orb[:13], 2)  # (h0, h0), (h0, h1), (h1, h1), (h1, h2), ...
        ax.plot(stairs[:-1], stairs[1:], color=col, lw=0.9, label=f"h₀ = {orb[0]:g}")
    hs_ = m["cobweb_h_star"]
    ax.plot([hs_], [hs_], "o", color="#d62728", ms=6, zorder=5)
    title = f"Cobweb of tanh(0.8h + 0.5): h* = {hs_:.6f}\nmeasured rate "
    title += f"{m['cobweb_rate_measured']:.6f} vs |f'(h*)| = {m['cobweb_abs_fprime_h_star']:.6f}"
    decorate(ax, xlim=(-3, 3), ylim=(-1.1, 1.1), xlabel="h_k", ylabel="h_{k+1}", title=title)
    ax.legend(loc="lower right")

    ax, cs, ks = axes[0, 1], arrays["cs"], np.arange(K + 1)
    for c, col in zip(cs, plt.get_cmap("plasma")(np.linspace(0, 0.85, len(cs))), strict=True):
        bound = c**ks
        shown = bound >= 1e-12
        ax.semilogy(ks[shown], bound[shown], color=col, ls="--", lw=1.0)
        for stat, lw, alpha in (("max", 1.4, 1.0), ("median", 0.9, 0.6)):
            e = arrays[f"banach_c{c:g}_rel_err_{stat}"]
            ax.semilogy(ks[e > 1e-13], e[e > 1e-13], color=col, lw=lw, alpha=alpha)
        at = (ks[shown][-1] if shown.sum() < K else K, max(bound[shown][-1], 1.5e-12))
        ax.text(*at, f"c={c:g}", color=col, fontsize=7, va="bottom", ha="right")
    worst = max(m[f"banach_c{c:g}_worst_ratio_to_bound"] for c in cs)
    frac = min(m[f"banach_c{c:g}_bound_satisfied_frac"] for c in cs)
    title = f"Spectrally normalised cells ({m['cells_per_c']} per c): error vs c^k\n"
    title += f"bound holds for {frac:.1%} of cells, worst ‖e_k‖/(c^k‖e_0‖) = {worst:.3f}"
    decorate(ax, ylim=(1e-12, 2), xlabel="Picard step k", ylabel="‖z_k − z*‖ / ‖z_0 − z*‖")
    lines = {
        "c^k (Banach bound)": dict(color="k", ls="--", lw=1.0),
        "max over cells": dict(color="k", lw=1.4),
        "median over cells": dict(color="k", lw=0.9, alpha=0.6),
    }
    ax.legend(handles=legend_handles(lines), loc="center right")
    ax.set_title(title)

    ax = axes[1, 0]
    labels = [f.replace("tanh_g", "tanh cell\ng = ") for f in fams]
    labels = [f.replace("linear_g", "Az + b\ng = ") for f in labels]
    converged = {s: [m[f"free_{f}_{s}_converged_frac"] for f in fams] for s in SOLVERS}
    how = {f: [k for k in ("diverged", "cycle") if f"free_{f}_picard_{k}_frac" in m] for f in fams}
    picard = "free_{}_picard_{}_frac"
    failed = [f"{h[0]}\n{m[picard.format(f, h[0])]:.0%}" if h else "" for f, h in how.items()]
    kw = dict(fmt=None, text={"picard": failed}, rotation=90, fontsize=6)  # how picard failed
    bars(ax, labels, converged, colors=_SOLVER_COLORS, width=0.78, ylim=(0, 1.2), **kw)
    ax.tick_params(axis="x", labelsize=7)
    ax.set_yticks(np.linspace(0, 1, 6))
    title = "No Lipschitz constraint: tanh(Wz + Ux + b) and Az + b, W, A = g·G/√n\n"
    title += f"(n = {m['n_state_free']}, {m['cells_per_family']} cells each, tol {m['tol']:g}, "
    title += f"max_steps {m['max_steps']})"
    decorate(ax, ylabel="fraction of cells converged", title=title)
    ax.legend(loc="upper center", fontsize=7, ncol=3)

    ax, styles = axes[1, 1], ["-", "--", ":", "-.", (0, (1, 3))]
    for f, ls in zip(fams, styles, strict=False):
        for s in SOLVERS:
            tr = arrays[f"free_{f}_{s}_trace_median"]
            ax.semilogy(np.arange(1, len(tr) + 1), tr, color=_SOLVER_COLORS[s], ls=ls, lw=1.0)
    title = "Residual per step from info.trace (median over cells;\n"
    title += "a stopped solve holds its final residual)"
    ylabel = "median relative residual ‖f(z)−z‖/‖z‖ (info.trace)"
    decorate(ax, ylim=(1e-10, 1e2), xlabel="solver step k", ylabel=ylabel, hlines=[m["tol"]])
    ax.set_title(title)
    keys = {s: _SOLVER_COLORS[s] for s in SOLVERS}
    keys |= {f: dict(color="k", ls=ls) for f, ls in zip(fams, styles, strict=False)}
    ax.legend(handles=legend_handles(keys), fontsize=6, loc="center right", ncol=2)
    fig.suptitle(TITLE)
    return fig
