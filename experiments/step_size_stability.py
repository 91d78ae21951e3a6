"""Gradient descent is explicit Euler on ``−∇L``: stable only for ``0 < η < 2/λ``.

On ``L(θ) = λθ²/2`` one GD step is ``θ ← (1 − ηλ) θ``, so the walk converges iff
``|1 − ηλ| < 1``. We measure the threshold instead of assuming it: one compiled
:func:`terrain_jax.walk_many` call runs plain SGD over a fine grid of step sizes for
several curvatures ``λ`` and reports the largest ``η`` whose walk converged, against
``2/λ``.

The book's chapter-4 figure (``λ = 4``, ``η ∈ {0.1, 0.3, 0.5, 0.65}``) is regenerated from
the same library call. Its caption calls ``η = 0.5`` "near zero in one step"; but
``1 − ηλ = −1`` there, so ``θ_k = (−1)^k θ_0`` oscillates forever at full amplitude. The
claim gets its verdict from the measured ``|θ_k|``.
"""

import jax.numpy as jnp
import numpy as np

from terrain_jax import walk_many
from terrain_jax.analysis import runs
from terrain_jax.plotting import curves, decorate, figure

from ._common import claim

NAME = "step_size_stability"
TITLE = "Gradient descent on λθ²/2 converges iff 0 < η < 2/λ (and the ch04 figure)"

LAMBDAS = (1.0, 4.0, 10.0)
BOOK_LAMBDA = 4.0
BOOK_ETAS = (0.1, 0.3, 0.5, 0.65)
THETA0 = 1.0
_PALETTE = ("C0", "C1", "C2", "C3")
CONVERGED = 1e-3  # |θ_N| / |θ_0| below this after N steps counts as converged


def _loss(lam: float):
    return lambda th: 0.5 * lam * jnp.sum(th**2)


def run(seed: int, quick: bool) -> dict:
    steps = 200 if quick else 2000
    n_eta = 101 if quick else 4001
    metrics: dict = {"steps": steps, "eta_grid_points": n_eta, "converged_below": CONVERGED}
    arrays: dict = {}
    claims = []
    x0s = jnp.full((1, 1), THETA0)
    worst = 0.0
    for lam in LAMBDAS:
        etas = jnp.linspace(0.0, 3.0 / lam, n_eta)  # 0 … 1.5 × the predicted threshold
        path = walk_many(_loss(lam), "sgd", x0s, steps, hyper_grid={"learning_rate": etas})
        final = np.abs(np.asarray(path.positions[:, 0, -1, 0])) / THETA0
        conv = np.isfinite(final) & (final < CONVERGED)
        etas_np = np.asarray(etas)
        ok = runs(etas_np, conv)  # the converged stretches of the grid (one, in theory)
        eta_min, eta_max = (ok[0][0], ok[-1][1]) if ok else (float("nan"), float("nan"))
        # predicted: |1 − ηλ|^N < CONVERGED
        with np.errstate(over="ignore"):  # |1 − ηλ|^N overflows to inf past 2/λ: fine
            pred = np.abs(1 - etas_np * lam) ** steps < CONVERGED
        mismatch = int(np.sum(pred != conv))
        key = f"lambda{lam:g}"
        metrics[f"{key}_measured_eta_max"] = eta_max
        metrics[f"{key}_measured_eta_min"] = eta_min
        metrics[f"{key}_predicted_2_over_lambda"] = 2.0 / lam
        metrics[f"{key}_eta_max_times_lambda_over_2"] = eta_max * lam / 2.0
        metrics[f"{key}_grid_points_disagreeing_with_closed_form"] = mismatch
        # the closed form's upper edge after N steps: 1 − ηλ = −CONVERGED^(1/N)
        edge = (1.0 + CONVERGED ** (1.0 / steps)) / 2.0
        metrics[f"{key}_closed_form_edge_eta_lambda_over_2"] = edge
        worst = max(worst, abs(eta_max * lam / 2.0 - edge))
        arrays[f"{key}_etas"] = etas_np
        arrays[f"{key}_final_ratio"] = final
    # After N steps |1 − ηλ|^N < CONVERGED puts the measured edge a little below 2/λ
    # (by ≈ ln(1/CONVERGED)/N relative); the verdict asks that the grid agrees with that
    # closed form and that no η ≥ 2/λ converged.
    agree = all(metrics[f"lambda{lam:g}_grid_points_disagreeing_with_closed_form"] <= 2
                for lam in LAMBDAS)  # fmt: skip
    below = all(metrics[f"lambda{lam:g}_eta_max_times_lambda_over_2"] < 1.0 for lam in LAMBDAS)
    close = worst <= 2 * 1.5 / (n_eta - 1)  # two grid cells, in units of η λ / 2
    v = "supported" if (agree and below and close) else "refuted"
    claims.append(
        claim(
            "Gradient descent on L = λθ²/2 converges iff 0 < η < 2/λ (explicit Euler's "
            "stability interval). Supported if, for every λ, the converged grid points agree "
            "with |1 − ηλ|^N < 1e-3 (≤ 2 exceptions), none has η ≥ 2/λ, and the largest "
            "converged η is within two grid cells of that closed form's edge (which tends to "
            "2/λ as N grows)",
            "book Vol. I ch. 4; DESIGN thesis (GD = explicit Euler on −∇L)",
            v,
            {
                f"lambda{lam:g}": metrics[f"lambda{lam:g}_eta_max_times_lambda_over_2"]
                for lam in LAMBDAS
            }
            | {"worst_gap_to_closed_form_edge": worst},  # fmt: skip
            "η_max · λ / 2 = 1",
        )
    )

    # the book's ch04 figure
    book_steps = 12 if quick else 40
    path = walk_many(
        _loss(BOOK_LAMBDA), "sgd", x0s, book_steps,
        hyper_grid={"learning_rate": jnp.asarray(BOOK_ETAS)},
    )  # fmt: skip
    traj = np.asarray(path.positions[:, 0, :, 0])  # (etas, steps + 1)
    arrays["book_traj"] = traj
    arrays["book_losses"] = np.asarray(path.losses[:, 0])
    i05 = BOOK_ETAS.index(0.5)
    after1 = float(abs(traj[i05, 1]) / THETA0)
    last = float(abs(traj[i05, -1]) / THETA0)
    for eta, row in zip(BOOK_ETAS, traj, strict=True):
        metrics[f"book_eta{eta:g}_abs_theta_after_1"] = float(abs(row[1]))
        metrics[f"book_eta{eta:g}_abs_theta_final"] = float(abs(row[-1]))
        metrics[f"book_eta{eta:g}_multiplier_1_minus_eta_lambda"] = 1 - eta * BOOK_LAMBDA
    near_zero = after1 < 0.1 and last < 0.1
    claims.append(
        claim(
            "Ch04 figure caption: with λ = 4, the step η = 0.5 brings θ near zero in one step. "
            "Supported if |θ_1|/|θ_0| < 0.1 and it stays there; refuted otherwise",
            "book Vol. I ch. 4, figure caption",
            "supported" if near_zero else "refuted",
            {
                "abs_theta1_over_theta0": after1,
                f"abs_theta{book_steps}_over_theta0": last,
                "multiplier_1_minus_eta_lambda": 1 - 0.5 * BOOK_LAMBDA,
            },  # fmt: skip
            "|θ_1| ≈ 0",
            note="1 − ηλ = −1: θ_k = (−1)^k θ_0, an undamped oscillation between ±θ_0; η = "
            "0.25 = 1/λ is the step that lands on zero in one step.",
        )
    )
    return {"metrics": metrics, "claims": claims, "arrays": arrays}


def plot(result: dict, arrays: dict):
    m = result["metrics"]
    fig, axes = figure(1, 2, size=(5.2, 3.6))
    ax, ratios = axes[0], {}
    for lam in LAMBDAS:
        key = f"lambda{lam:g}"
        fin = arrays[f"{key}_final_ratio"]
        fin = np.clip(np.where(np.isfinite(fin), fin, 1e30), 1e-30, 1e30)
        label = f"λ = {lam:g}: η_max·λ/2 = {m[f'{key}_eta_max_times_lambda_over_2']:.4f}"
        ratios[label] = (arrays[f"{key}_etas"] * lam / 2, fin)
    curves(ax, None, ratios, styles=dict(zip(ratios, _PALETTE, strict=False)), style=dict(lw=1.2))
    ax.axvline(1.0, color="k", ls="--", lw=0.8, label="η = 2/λ")
    ylabel = f"|θ_N| / |θ_0| after N = {m['steps']} steps"
    title = "SGD on λθ²/2 over a fine η grid (one compiled call)"
    decorate(ax, yscale="log", xlabel="η · λ / 2", ylabel=ylabel, title=title, legend=True)
    decorate(ax, hlines=[CONVERGED])
    ax, traj = axes[1], arrays["book_traj"][:, :13]
    rows = {
        f"η = {e:g} (1 − ηλ = {1 - e * BOOK_LAMBDA:+.1f})": r
        for e, r in zip(BOOK_ETAS, traj, strict=False)
    }
    curves(ax, None, rows, "o-", styles=dict(zip(rows, _PALETTE, strict=False)), style=dict(ms=3))
    decorate(ax, ylim=(-2.5, 2.5), hlines=[0])  # η = 0.65 leaves the panel: |θ_k| = 1.6^k
    title = "Book ch04 figure, λ = 4: η = 0.5 oscillates, it does not land on 0"
    decorate(ax, xlabel="step k", ylabel="θ_k", title=title, legend=True)
    return fig
