"""Scaled residual ``x ← (1 − β) x + α f(x)``: the ``α ≤ β / Lip(f)`` region, measured.

The layer's Jacobian is ``(1 − β) I + α J_f(x)``, whose norm is at most
``1 − β + α Lip(f)``: at most one when ``α ≤ β / Lip(f)``, so the layer is
non-expansive and a stack of such layers cannot amplify a gradient. This experiment

1. takes random MLP blocks ``f(x) = W₂ tanh(W₁ x + b₁) + b₂`` (width 32, hidden 64; one
   block per weight init: uniform, He, LeCun, orthogonal; biases ``N(0, 0.2²)`` so that
   ``J_f`` does not peak at ``x = 0`` for every block), computes
   ``Lip(f) ≤ ‖W₂‖₂‖W₁‖₂`` (:func:`~terrain_jax.fields.lipschitz_upper_bound`) and, on an
   ``(α, β)`` grid, the dense Jacobian of the layer of a
   :class:`~terrain_jax.ScaledResidualNet` (:func:`~terrain_jax.nets.layer_jacobian`,
   ``vmap``-ed over sampled inputs and blocks, ``α, β`` passed as arrays) and its exact
   spectral norm (SVD). Inputs are ``N(0, σ² I)`` with ``σ ∈ {0.1, 0.5, 1, 2}`` (equal
   shares). A violation is a sampled norm above ``1 + 1e-5`` (float32 round-off);
2. stacks 1,000 such blocks (uniform init) and measures the end-to-end gradient ratio
   ``‖∂L/∂x_0‖ / ‖∂L/∂x_L‖`` for a linear loss ``L = mean_b ⟨u_b, x_L⟩`` (so
   ``∂L/∂x_L`` is fixed) with :func:`~terrain_jax.nets.layer_gradient_norms`, at
   ``α = c · β / max_k Lip(f_k)`` for ``c`` from 0.1 (inside) to 1000 (far outside), all
   configurations in one ``vmap``;
3. measures the condition number of ``I + α J_f(x)`` against ``α``
   (:func:`~terrain_jax.linalg.condition_number`) for a few sampled ``x``, with the
   bound ``κ ≤ (1 + α Lip)/(1 − α Lip)`` that holds for ``α < 1/Lip``.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import numpy as np
from matplotlib.colors import TwoSlopeNorm

from terrain_jax import ScaledResidualNet
from terrain_jax.analysis import first_where, gradient_decay
from terrain_jax.fields import lipschitz_lower_bound, lipschitz_upper_bound
from terrain_jax.linalg import condition_number
from terrain_jax.nets import block_field_jacobian, layer_gradient_norms, layer_jacobian, make_blocks
from terrain_jax.plotting import decorate, depth_profile, figure, heatmap, quantile_band

from ._common import claim

NAME = "scaled_residual"
TITLE = "Scaled residual: the α ≤ β/Lip(f) region, gradients at depth 1,000, conditioning"

WIDTH = 32
HIDDEN = 64
INITS = ("uniform", "he", "lecun", "orthogonal")
BIAS_STD = 0.2
SCALES = (0.1, 0.5, 1.0, 2.0)  # input std of the sampled states, equal shares
TOL = 1e-5  # float32 round-off allowance on "norm ≤ 1"
E2E_BATCH = 32
EXPLODE = 1e3  # "explodes": ‖∂L/∂x_0‖/‖∂L/∂x_L‖ above this at depth L
VANISH = 1e-3  # "vanishes": below this
# rates fit only norms finite and above this: ``layer_gradient_norms`` squares float32
# entries, so its norms read 0 below ~1e-17 and ``inf`` above ~1e19
NORM_FLOOR = 1e-15


def _with_biases(blocks, key):
    """Replace every (zero) bias with ``N(0, BIAS_STD²)``."""
    keys = jax.random.split(key, len(blocks.biases))
    new = [
        BIAS_STD * jax.random.normal(k, b.shape) for k, b in zip(keys, blocks.biases, strict=True)
    ]
    return eqx.tree_at(lambda b: b.biases, blocks, new)


def _cat(trees):
    return jtu.tree_map(lambda *a: jnp.concatenate(a), *trees)


@eqx.filter_jit
def _setup(key, n_samples: int, depth: int):
    """Grid blocks (one per init), their sampled inputs, and the deep net's blocks."""
    kb, kbias, kx, kd, kdb = jax.random.split(key, 5)
    grid_blocks = _cat(
        [
            make_blocks("mlp", WIDTH, HIDDEN, 1, key=jax.random.fold_in(kb, i), init=init)
            for i, init in enumerate(INITS)
        ]
    )
    grid_blocks = _with_biases(grid_blocks, kbias)
    per = n_samples // len(SCALES)
    z = jax.random.normal(kx, (len(INITS), per * len(SCALES), WIDTH))
    scale = jnp.repeat(jnp.asarray(SCALES, jnp.float32), per)
    xs = z * scale[None, :, None]
    deep = _with_biases(make_blocks("mlp", WIDTH, HIDDEN, depth, key=kd, init="uniform"), kdb)
    return (
        grid_blocks,
        xs,
        lipschitz_upper_bound(grid_blocks),
        deep,
        lipschitz_upper_bound(deep),
    )


def _net(blocks, depth, alpha, beta):
    return ScaledResidualNet(WIDTH, HIDDEN, depth, blocks=blocks, alpha=alpha, beta=beta)


@eqx.filter_jit
def _grid_norms(blocks, xs, alphas, betas):
    """For every grid point ``(α_i, β_j)``, block ``k`` and sample ``s``: the spectral norm
    of the layer Jacobian ``(1 − β) I + α J_{f_k}(x_s)`` (``layer_jacobian`` + SVD).

    Returns the max over samples ``(A, B, K)``, the count of samples above ``1 + TOL``
    ``(A, B, K)``, and the largest deviation of ``layer_jacobian`` from the closed form
    ``(1 − β) I + α J_f`` (``block_field_jacobian``)."""
    K, S, _ = xs.shape
    ks = jnp.arange(K)
    net0 = _net(blocks, K, jnp.float32(1.0), jnp.float32(0.0))
    jf = jax.vmap(lambda k, xk: jax.vmap(lambda x: block_field_jacobian(net0, k, x))(xk))(ks, xs)

    def point(ab):
        a, b = ab
        net = _net(blocks, K, a, b)
        J = jax.vmap(lambda k, xk: jax.vmap(lambda x: layer_jacobian(net, k, x))(xk))(ks, xs)
        s = jnp.linalg.svd(J, compute_uv=False)[..., 0]  # (K, S)
        closed = (1.0 - b) * jnp.eye(WIDTH) + a * jf
        return jnp.max(s, axis=1), jnp.sum(s > 1.0 + TOL, axis=1), jnp.max(jnp.abs(J - closed))

    A, B = jnp.meshgrid(alphas, betas, indexing="ij")
    mx, cnt, dev = jax.lax.map(point, (A.ravel(), B.ravel()))
    shape = (alphas.size, betas.size, K)
    return mx.reshape(shape), cnt.reshape(shape), jnp.max(dev)


@eqx.filter_jit
def _field_norms(blocks, xs):
    """Sampled ``max_s ‖J_{f_k}(x_s)‖₂`` per block (:func:`lipschitz_lower_bound`)."""
    params, static = eqx.partition(blocks, eqx.is_array)
    return jax.vmap(
        lambda p, x: lipschitz_lower_bound(eqx.combine(p, static), x)
    )(params, xs)  # fmt: skip


@eqx.filter_jit
def _end_to_end(blocks, x, u, alphas, betas):
    """Per-layer state-gradient norms of ``L = mean_b ⟨u_b, x_L⟩`` for each ``(α, β)``."""
    depth = jtu.tree_leaves(blocks)[0].shape[0]

    def one(a, b):
        net = _net(blocks, depth, a, b)
        out = layer_gradient_norms(net, lambda z, uu: jnp.mean(jnp.sum(z * uu, -1)), x, u)
        hs = net(x, return_hidden=True)[1]
        return out["state_grad_norms"], jnp.sqrt(jnp.mean(jnp.sum(hs**2, -1), -1))

    return jax.vmap(one)(alphas, betas)


@eqx.filter_jit
def _conditioning(blocks, xs, alphas):
    """``κ(I + α J_{f_0}(x))`` for every ``α`` and sample, and ``‖J_{f_0}(x)‖₂``."""
    net0 = _net(blocks, xs.shape[0], jnp.float32(1.0), jnp.float32(0.0))

    def kappa(a, x):
        net = _net(blocks, xs.shape[0], a, jnp.float32(0.0))
        return condition_number(net.layer_map(0), x)

    cond = jax.vmap(lambda a: jax.vmap(lambda x: kappa(a, x))(xs[0]))(alphas)
    jn = jax.vmap(lambda x: jnp.linalg.norm(block_field_jacobian(net0, 0, x), 2))(xs[0])
    return cond, jn


def run(seed: int, quick: bool) -> dict:
    n_samples = 16 if quick else 128
    alphas = np.logspace(-3, 1, 7 if quick else 25)
    betas = np.linspace(0.25, 1.0, 4) if quick else np.linspace(1 / 12, 1.0, 12)
    depth = 60 if quick else 1000
    e2e_betas = (0.01, 0.1, 0.5)
    e2e_c = np.logspace(-1, 3, 5 if quick else 9)
    cond_alphas = np.logspace(-3, 2, 21 if quick else 61)
    n_cond = 4 if quick else 8

    key = jax.random.PRNGKey(seed)
    k_setup, k_x, k_u = jax.random.split(key, 3)
    blocks, xs, lip_up, deep, deep_lip = _setup(k_setup, n_samples, depth)
    f32 = lambda a: jnp.asarray(a, jnp.float32)

    # 1. the (α, β) grid
    mx, cnt, dev = _grid_norms(blocks, xs, f32(alphas), f32(betas))
    mx, cnt, lip_up = np.asarray(mx), np.asarray(cnt), np.asarray(lip_up)
    lip_lo = np.asarray(_field_norms(blocks, xs))
    inside = alphas[:, None, None] <= betas[None, :, None] / lip_up[None, None, :]  # (A, B, K)
    viol_in = int(cnt[inside].sum())
    viol_out = int(cnt[~inside].sum())
    checked_in = int(inside.sum()) * n_samples
    # tightness: for each (β, block), smallest grid α with a violation, over β / Lip_upper
    bad = cnt > 0
    gaps = (alphas[np.argmax(bad, axis=0)] * lip_up / betas[:, None])[bad.any(axis=0)]
    # 2. depth-1000 gradients
    deep_lip_max = float(np.max(np.asarray(deep_lip)))
    B, C = np.meshgrid(np.asarray(e2e_betas), e2e_c, indexing="ij")
    e2e_alpha = (C * B / deep_lip_max).ravel()
    x0 = jax.random.normal(k_x, (E2E_BATCH, WIDTH))
    u = jax.random.normal(k_u, (E2E_BATCH, WIDTH))
    prof, xnorm = _end_to_end(deep, x0, u, f32(e2e_alpha), f32(B.ravel()))
    prof, xnorm = np.asarray(prof), np.asarray(xnorm)
    # first/last ratio and fitted d ln‖∂L/∂x_k‖ / d(L − k), per (β, c)
    ratio, rates = gradient_decay(prof, floor=NORM_FLOOR)[:2]
    max_ratio = np.max(prof / prof[:, -1:], axis=1)
    # per β: smallest c whose fitted per-layer rate is positive
    first_growth = [first_where(r > 0, e2e_c) for r in rates.reshape(B.shape)]
    # 3. conditioning of I + α J_f
    cond, jn = _conditioning(blocks, xs[:, :n_cond], f32(cond_alphas))
    cond, jn = np.asarray(cond), np.asarray(jn)
    a_lip = cond_alphas * lip_up[0]
    bound = np.where(a_lip < 1, (1 + a_lip) / np.maximum(1 - a_lip, 1e-30), np.inf)
    below = a_lip < 1
    cond_viol = int(np.sum(cond[below] > bound[below, None] * (1 + 1e-3)))

    metrics = {
        "width": WIDTH,
        "hidden": HIDDEN,
        "activation": "tanh",
        "block_inits": list(INITS),
        "bias_std": BIAS_STD,
        "samples_per_block": n_samples,
        "sample_scales": list(SCALES),
        "alphas": alphas,
        "betas": betas,
        "lipschitz_upper": lip_up,
        "lipschitz_lower_sampled": lip_lo,
        "upper_over_lower": lip_up / lip_lo,
        "grid_points_inside": int(inside.sum()),
        "jacobians_checked_inside": checked_in,
        "violations_inside": viol_in,
        "violations_outside": viol_out,
        "jacobians_checked_outside": int((~inside).sum()) * n_samples,
        "layer_jacobian_vs_closed_form_max_abs_diff": float(dev),
        "first_violation_alpha_over_bound_min": float(min(gaps)) if gaps.size else None,
        "first_violation_alpha_over_bound_median": float(np.median(gaps)) if gaps.size else None,
        "e2e_depth": depth,
        "e2e_block_lipschitz_upper_max": deep_lip_max,
        "e2e_betas": list(e2e_betas),
        "e2e_c": e2e_c,
        "e2e_ratio_first_over_last": ratio.reshape(B.shape),
        "e2e_max_ratio_over_layers": max_ratio.reshape(B.shape),
        "e2e_rate_per_layer": rates.reshape(B.shape),
        "e2e_final_state_rms": xnorm[:, -1].reshape(B.shape),
        "e2e_first_c_with_growth": first_growth,
        "cond_alphas": cond_alphas,
        "cond_block_lipschitz_upper": float(lip_up[0]),
        "cond_field_jacobian_norms": jn,
        "cond_bound_violations": cond_viol,
        "cond_points_below_1_over_lip": int(below.sum()) * n_cond,
    }
    claims = _claims(metrics, B, C, ratio, max_ratio)
    arrays = {
        "grid_max_norm": mx,
        "grid_violations": cnt,
        "e2e_profiles": prof,
        "e2e_state_rms": xnorm,
        "cond": cond,
    }
    return {"metrics": metrics, "claims": claims, "arrays": arrays}


def _claims(m, B, C, ratio, max_ratio) -> list:
    out = []
    out.append(
        claim(
            "Where α ≤ β/Lip(f), the block spectral norm ‖(1−β)I + αJ_f(x)‖₂ never exceeds 1 "
            "on any sampled input",
            "seed articles (scaled residual (1−β)x + αf(x) is non-expansive)",
            "supported" if m["violations_inside"] == 0 else "refuted",
            {
                "violations_inside": m["violations_inside"],
                "jacobians_checked_inside": m["jacobians_checked_inside"],
                "violations_outside": m["violations_outside"],
                "jacobians_checked_outside": m["jacobians_checked_outside"],
                "first_violation_alpha_over_bound_min": m["first_violation_alpha_over_bound_min"],
                "first_violation_alpha_over_bound_median": m[
                    "first_violation_alpha_over_bound_median"
                ],
            },
            "0 violations inside (tolerance 1e-5); it is a sufficient condition, so violations "
            "outside start at α > β/Lip(f)",
            "Lip(f) is the product of weight spectral norms; the sampled max of ‖J_f‖ is "
            f"{[round(1 / float(v), 2) for v in m['upper_over_lower']]} of it per block, "
            "so the first violations appear only well past the bound.",
        )
    )
    inside = C.ravel() <= 1.0
    far = C.ravel() >= 10.0
    in_max = float(np.max(max_ratio[inside]))
    # a non-finite ratio is a float32 overflow of the gradient (inf, or inf·0 = nan in the
    # backward pass of a linear loss): counted as exploded
    explode = ~(ratio[far] <= EXPLODE)
    overflow = ~np.isfinite(ratio[far])
    vanish = ratio[far] < VANISH
    no_explode_inside = in_max <= 1.0 + 1e-3
    if no_explode_inside and explode.all():
        verdict = "supported"
    elif no_explode_inside:
        verdict = "nuanced"
    else:
        verdict = "refuted"
    out.append(
        claim(
            f"At depth {m['e2e_depth']} the end-to-end gradient does not explode where "
            "α ≤ β/Lip(f), and explodes where the bound is violated by a large factor (≥ 10×)",
            "seed articles (scaled residual)",
            verdict,
            {
                "inside_max_amplification_over_all_layers": in_max,
                "outside_c>=10": [
                    {
                        "beta": float(b),
                        "c=alpha*Lip/beta": float(c),
                        "ratio_first_over_last": float(r),
                    }
                    for b, c, r in zip(B.ravel()[far], C.ravel()[far], ratio[far], strict=True)
                ],
                "outside_exploding": int(explode.sum()),
                "outside_overflowing_float32": int(overflow.sum()),
                "outside_vanishing": int(vanish.sum()),
                "outside_total": int(far.sum()),
            },
            f"inside: ‖∂L/∂x_k‖ ≤ ‖∂L/∂x_L‖ at every layer; outside by ≥ 10×: ratio > {EXPLODE:g}",
            "α ≤ β/Lip(f) bounds the worst direction of every layer; a product of many "
            "independently oriented layer Jacobians grows at the *average* log-stretch per "
            "layer, which stays negative well outside the region: the fitted per-layer rate "
            "turns positive only at c ≈ "
            f"{[None if c is None else float(f'{c:.3g}') for c in m['e2e_first_c_with_growth']]} "
            f"(β = {m['e2e_betas']}); below that, violated points still vanish. Inside the "
            "region the gradient cannot grow but vanishes like (1−β)^L. A non-finite ratio "
            "(inf/nan) is a float32 overflow in the backward pass or in the norm (counted as "
            "exploded).",
        )
    )
    out.append(
        claim(
            "For α < 1/Lip(f) the residual Jacobian I + αJ_f is well conditioned: "
            "κ ≤ (1 + α Lip)/(1 − α Lip)",
            "seed articles (I + J_f shifts the spectrum by one); standard perturbation bound",
            "supported" if m["cond_bound_violations"] == 0 else "refuted",
            {
                "bound_violations": m["cond_bound_violations"],
                "points_checked": m["cond_points_below_1_over_lip"],
            },
            "0 violations",
        )
    )
    return out


def plot(result: dict, arrays: dict):
    m = result["metrics"]
    alphas, betas = np.asarray(m["alphas"]), np.asarray(m["betas"])
    lip, lip_lo = m["lipschitz_upper"][0], m["lipschitz_lower_sampled"][0]
    fig, axes = figure(1, 3, size=(4.4, 3.7))
    ax, z, la = axes[0], np.log10(arrays["grid_max_norm"][:, :, 0]), np.log10(alphas)
    lim = 1.0  # colour saturates at 10× above / below 1
    bar = "log10 max spectral norm (clipped at ±1)"
    scale = dict(norm=TwoSlopeNorm(0.0, -lim, lim), cmap="RdBu_r", extend="both", aspect="auto")
    heatmap(ax, np.clip(z, -lim, lim), x=betas, y=la, colorbar=bar, **scale)
    xlim, ylim = ax.get_xlim(), ax.get_ylim()
    if alphas.size > 1 and betas.size > 1:
        ax.contour(betas, la, z, levels=[np.log10(1 + 1e-5)], colors="k", linewidths=1.2)
    bb = np.linspace(*xlim, 100)
    ax.plot(bb, np.log10(bb / lip), "w-", lw=2.2)
    edges = {"α = β / Lip(f) (upper bound)": (lip, "--")}
    edges["α = β / max‖J_f‖ (sampled)"] = (lip_lo, ":")
    for label, (L, ls) in edges.items():
        ax.plot(bb, np.log10(bb / L), ls=ls, color="k", lw=1.2, label=label)
    ax.plot([], [], "k-", lw=1.2, label="measured max norm = 1")
    title = f"block 0 (uniform init): max over {m['samples_per_block']} inputs\n"
    title += "of ‖(1−β)I + αJ_f(x)‖₂"
    decorate(ax, xlim=xlim, ylim=ylim, xlabel="β", ylabel="log10 α", title=title)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), fontsize=7, ncol=2)

    ax, prof, cs = axes[1], arrays["e2e_profiles"], np.asarray(m["e2e_c"])
    show_c = [i for i, c in enumerate(cs) if np.isclose(np.log10(c) % 1, 0) or c == cs[-1]]
    styles, cmap = ["-", "--", ":"], __import__("matplotlib").colormaps["viridis"]
    for bi, b in enumerate(m["e2e_betas"]):
        label = {ci: f"c = {cs[ci]:g}" if bi == 0 else f"_{ci}" for ci in show_c}
        norms = {label[ci]: prof[bi * len(cs) + ci] for ci in show_c}
        colors = [cmap(ci / max(len(cs) - 1, 1)) for ci in show_c]
        depth_profile(ax, norms, back=True, styles=colors, style=dict(ls=styles[bi % 3], lw=1.2))
        ax.plot([], [], styles[bi % 3], color="k", label=f"β = {b:g}")
    title = f"depth {m['e2e_depth']}, α = c·β/Lip (c ≤ 1 inside)"
    decorate(ax, title=title, legend=dict(ncol=2, loc="lower left"), hlines=[1])

    ax, ca, cond = axes[2], np.asarray(m["cond_alphas"]), arrays["cond"]
    label = "κ(I + αJ_f(x)), median (band: all inputs)"
    quantile_band(ax, ca, cond, q=(0.0, 1.0), axis=1, color="#1f77b4", lw=2, label=label)
    lipc = m["cond_block_lipschitz_upper"]
    a = ca[ca * lipc < 1]
    ax.loglog(a, (1 + a * lipc) / (1 - a * lipc), "k--", lw=1.2, label="(1 + αLip)/(1 − αLip)")
    ax.axvline(1 / lipc, color="k", lw=0.8, ls=":", label="α = 1/Lip(f)")
    jac = 1 / max(m["cond_field_jacobian_norms"])
    ax.axvline(jac, color="#d62728", lw=0.8, ls=":", label="α = 1/max‖J_f(x)‖")
    title = f"conditioning of I + αJ_f, {cond.shape[1]} inputs"
    decorate(ax, xlabel="α", ylabel="condition number", title=title, legend="upper left")
    fig.suptitle("Scaled residual (1−β)x + αf(x): non-expansive region, depth, conditioning")
    return fig
