"""Diagnostics of depth nets: layer and end-to-end Jacobians, per-layer gradient norms
from one backward sweep, lesion masks (Veit et al. 2016) and effective receptive fields
(Luo et al. 2016).

The seed articles argue through the block Jacobian: a residual layer ``x + h f(x)`` has
Jacobian ``I + h J_f``, so its eigenvalues are those of ``h J_f`` shifted by one; a scaled
residual ``(1 − β) x + α f(x)`` has norm ``≤ 1 − β + α Lip(f)``. Every loop here is a
``lax.scan`` over the stacked layers: compile time does not grow with depth.
"""

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float, PyTree

from .._typing import Index
from ..linalg import jacobian
from ._depth import AbstractDepthNet, HighwayNet, PlainNet, ResidualNet, ScaledResidualNet

GRADIENT_NORM_METHODS = ("sweep", "taps")


# ---------------------------------------------------------------------------- Jacobians


def layer_jacobian(net: AbstractDepthNet, k: Index, x: Float[Array, "..."]) -> Float[Array, "n n"]:
    """Dense Jacobian of layer ``k``'s map ``x_k ↦ x_{k+1}`` at one state ``x`` (unbatched).

    For a :class:`ResidualNet` this is ``I + h J_{f_k}``; for a :class:`ScaledResidualNet`
    ``(1 − β) I + α J_{f_k}``; for a :class:`HighwayNet` it includes the gate's derivative.
    """
    return jacobian(net.layer_map(k), x)


def block_field_jacobian(
    net: AbstractDepthNet, k: Index, x: Float[Array, "..."]
) -> Float[Array, "n n"]:
    """Dense Jacobian ``J_f`` of block ``k``'s field ``f_k`` (the residual branch) at ``x``.

    Defined for :class:`ResidualNet`, :class:`ScaledResidualNet` and :class:`PlainNet`,
    whose block is a field called as ``f_k(t_k, x)``. A :class:`HighwayNet` block is a
    (field, gate) pair with no single residual branch: use :func:`layer_jacobian`.
    """
    if isinstance(net, HighwayNet):
        raise ValueError(
            "block_field_jacobian is undefined for HighwayNet: its block is a (field, gate) "
            "pair with no single residual branch; use layer_jacobian(net, k, x) for the "
            "Jacobian of the whole highway layer."
        )
    if not isinstance(net, ResidualNet | ScaledResidualNet | PlainNet):
        raise ValueError(
            "block_field_jacobian supports ResidualNet, ScaledResidualNet and PlainNet; got "
            f"{type(net).__name__}. Use layer_jacobian(net, k, x) instead."
        )
    blk = net.block(k)
    t = net.layer_time(jnp.asarray(k, dtype=x.dtype))
    return jacobian(lambda z: blk(t, z, None), x)


def end_to_end_jacobian(net: AbstractDepthNet, x: Float[Array, "..."]) -> Float[Array, "n n"]:
    """Dense Jacobian of the whole net ``x_0 ↦ x_L`` at one state ``x`` (unbatched)."""
    return jacobian(lambda z: net(z), x)


# ---------------------------------------------------------------- gradient norms vs depth


def layer_gradient_norms(
    net: AbstractDepthNet,
    loss_fn: Callable[[Array, PyTree], Array],
    x: Float[Array, "..."],
    y: PyTree,
    *,
    method: str = "sweep",
) -> dict[str, Array]:
    """Per-layer gradient norms of ``L = loss_fn(net(x), y)`` from one backward pass.

    Returns a dict with

    - ``loss``: ``L``;
    - ``state_grad_norms`` ``(depth + 1,)``: ``‖∂L/∂x_k‖`` for ``k = 0 … depth``, the
      Frobenius norm over the whole state (over the batch too, when ``x`` is a batch);
    - ``param_grad_norms`` ``(depth,)``: ``‖∂L/∂θ_k‖`` of block ``k``'s parameters (for a
      :class:`HighwayNet`, field and gate together), every leaf in quadrature. Absent for
      tied nets (``net.tied``): their one shared block's gradient sums all layers'
      contributions and has no per-layer split; the state norms are still per layer.

    Both methods run ``lax.scan`` over the stacked layers, so compile time does not grow
    with depth:

    - ``sweep`` (default): the forward scan keeps the states ``x_k``
      (``net(x, return_hidden=True)``), then one reverse ``lax.scan`` pulls ``∂L/∂x_{k+1}``
      back through each layer's VJP, emitting ``‖∂L/∂θ_k‖`` and ``‖∂L/∂x_k‖`` as it goes.
      Each layer's forward is recomputed inside its VJP (one extra forward), the stacked
      parameter gradient is never stored (memory: the states only), and on CPU it measured
      2-3× faster than ``taps`` at depth 1,000 (``scripts/bench_depth.py``).
    - ``taps``: one ``jax.value_and_grad`` through ``net(x, taps=0)``: ``∂L/∂x_{k+1}`` is
      the gradient w.r.t. the zero tap added after layer ``k``, ``∂L/∂x_0`` the gradient
      w.r.t. ``x``, and the parameter gradient comes out stacked like the blocks.

    Not jitted here: wrap it (``eqx.filter_jit``, or ``jax.jit`` with ``loss_fn`` closed
    over).
    """
    if method == "sweep":
        return _gradient_norms_sweep(net, loss_fn, x, y)
    if method == "taps":
        return _gradient_norms_taps(net, loss_fn, x, y)
    raise ValueError(
        f"Unknown method {method!r}; valid names are: {', '.join(GRADIENT_NORM_METHODS)}."
    )


def stable_norm(a: Array) -> Float[Array, ""]:
    """Euclidean norm without overflow or underflow of the squares: float32 gradients of
    deep plain nets reach 1e-30 and 1e30, far past where ``Σ g²`` stays representable."""
    m = jnp.max(jnp.abs(a))
    safe = jnp.where((m > 0) & jnp.isfinite(m), m, 1.0)
    scaled = m * jnp.sqrt(jnp.sum(jnp.square(a / safe)))
    # an overflowed (inf) entry gives inf and a NaN gives NaN, as the plain norm would
    # (XLA's max-reduction may skip NaNs, so they are looked for explicitly)
    finite = jnp.where(jnp.isfinite(m), jnp.where(m > 0, scaled, 0.0), jnp.inf)
    return jnp.where(jnp.any(jnp.isnan(a)), jnp.nan, finite)


def _tree_norm(tree: PyTree) -> Array:
    return stable_norm(jnp.stack([stable_norm(g) for g in jax.tree_util.tree_leaves(tree)]))


def _gradient_norms_sweep(
    net: AbstractDepthNet, loss_fn: Callable[[Array, PyTree], Array], x: Array, y: PyTree
) -> dict[str, Array]:
    x_last, hs = net(x, return_hidden=True)
    loss, g_last = jax.value_and_grad(lambda o: loss_fn(o, y))(x_last)
    # the same split the net's own scan uses: array leaves are sliced per layer
    params, static = eqx.partition(net.blocks, eqx.is_array)
    ks = jnp.arange(net.depth, dtype=x.dtype)

    def body(g, inp):
        k, p, xk = inp
        t = net.layer_time(k)
        if net.tied:
            _, vjp = jax.vjp(lambda z: net.layer_update(net.blocks, t, z), xk)
            (gz,) = vjp(g)
            return gz, (stable_norm(gz), jnp.zeros((), x.dtype))
        diff, nondiff = eqx.partition(p, eqx.is_inexact_array)

        def layer(d, z):
            return net.layer_update(eqx.combine(d, nondiff, static), t, z)

        _, vjp = jax.vjp(layer, diff, xk)
        gp, gz = vjp(g)
        return gz, (stable_norm(gz), _tree_norm(gp))

    xs = (ks, None if net.tied else params, hs[:-1])
    _, (state_norms, param_norms) = jax.lax.scan(body, g_last, xs, reverse=True)
    out = {
        "loss": loss,
        "state_grad_norms": jnp.concatenate([state_norms, stable_norm(g_last)[None]]),
    }
    if not net.tied:
        out["param_grad_norms"] = param_norms
    return out


def _gradient_norms_taps(
    net: AbstractDepthNet, loss_fn: Callable[[Array, PyTree], Array], x: Array, y: PyTree
) -> dict[str, Array]:
    taps = jnp.zeros((net.depth, *x.shape), x.dtype)
    params, static = eqx.partition(net, eqx.is_inexact_array)
    argnums = (1, 2) if net.tied else (0, 1, 2)

    def total(params, x, taps):
        return loss_fn(eqx.combine(params, static)(x, taps=taps), y)

    loss, grads = jax.value_and_grad(total, argnums=argnums)(params, x, taps)
    g_x, g_taps = grads[-2:]
    out = {
        "loss": loss,
        "state_grad_norms": jnp.concatenate([stable_norm(g_x)[None], per_layer_norms(g_taps)]),
    }
    if not net.tied:
        sq = [
            jnp.sum(jnp.square(g).reshape(net.depth, -1), axis=1)
            for g in jax.tree_util.tree_leaves(grads[0].blocks)
        ]
        out["param_grad_norms"] = jnp.sqrt(sum(sq))
    return out


def per_layer_norms(g: Float[Array, "layers ..."]) -> Float[Array, " layers"]:
    """:func:`stable_norm` of each slice ``g[k]`` along the leading axis."""
    return jax.vmap(stable_norm)(g.reshape(g.shape[0], -1))


# --------------------------------------------------------------- lesions, receptive fields


def lesion_masks(depth: int, kmax: int, draws: int, seed: int) -> Bool[np.ndarray, "rows depth"]:
    """Layer masks for ``net(x, mask=...)``, the lesion study of Veit et al. 2016.

    Rows: the intact net, each single block deleted (``depth`` rows), then ``draws``
    random ``k``-subsets deleted for each ``k = 1 … kmax``, in that order (subsets drawn
    without replacement by ``numpy.random.default_rng(seed)``).
    """
    rng = np.random.default_rng(seed)
    rows = [np.ones(depth, bool)]
    rows += list(~np.eye(depth, dtype=bool))
    for k in range(1, kmax + 1):
        for _ in range(draws):
            m = np.ones(depth, bool)
            m[rng.choice(depth, size=k, replace=False)] = False
            rows.append(m)
    return np.stack(rows)


def lesion_summary(
    accs: Float[np.ndarray, " rows"], depth: int, kmax: int, draws: int
) -> dict[str, float | np.ndarray]:
    """Summarise accuracies measured on the rows of :func:`lesion_masks` (same ``depth``,
    ``kmax``, ``draws``).

    Returns ``intact`` (row 0), ``single`` (``(depth,)``, block ``i`` deleted), its
    ``single_mean`` / ``single_worst`` and their drops from intact (``single_mean_drop``,
    ``single_worst_drop``), and ``k_mean`` / ``k_std`` (``(kmax + 1,)``: mean and standard
    deviation over the draws with ``k = 0 … kmax`` random blocks deleted; ``k = 0`` is the
    intact net, standard deviation ``0``).
    """
    accs = np.asarray(accs)
    if accs.shape != (1 + depth + kmax * draws,):
        raise ValueError(
            f"lesion_summary: expected {1 + depth + kmax * draws} accuracies (the rows of "
            f"lesion_masks({depth}, {kmax}, {draws}, seed)), got shape {accs.shape}."
        )
    intact = float(accs[0])
    single = accs[1 : 1 + depth]
    rand = accs[1 + depth :].reshape(kmax, draws)
    return {
        "intact": intact,
        "single": single,
        "single_mean": float(single.mean()),
        "single_worst": float(single.min()),
        "single_mean_drop": intact - float(single.mean()),
        "single_worst_drop": intact - float(single.min()),
        "k_mean": np.concatenate([[intact], rand.mean(axis=1)]),
        "k_std": np.concatenate([[0.0], rand.std(axis=1)]),
    }


def effective_receptive_field(
    net: Callable[[Array], Array], xs: Float[Array, "samples channels *space"]
) -> Float[Array, " *space"]:
    """Effective receptive field of the centre output (Luo et al. 2016).

    The mean over the inputs ``xs`` (one per row, channels first) of
    ``|∂ Σ_c y[c, centre] / ∂x|`` summed over input channels, ``y = net(x[None])[0]``
    a channels-first map of the same spatial shape and ``centre`` its middle position.
    """
    centre = tuple(n // 2 for n in xs.shape[2:])

    def total(x):
        return jnp.sum(net(x[None])[(0, slice(None), *centre)])

    grads = jax.vmap(jax.grad(total))(xs)
    return jnp.mean(jnp.sum(jnp.abs(grads), axis=1), axis=0)


def receptive_field_width(erf: Float[ArrayLike, " *space"]) -> float:
    """RMS distance from the centre position under ``erf`` normalised to unit mass (the
    width of an :func:`effective_receptive_field`, in pixels; Luo et al. 2016)."""
    erf = np.asarray(erf)
    centre = np.array([n // 2 for n in erf.shape]).reshape(-1, *([1] * erf.ndim))
    d2 = np.sum((np.indices(erf.shape) - centre) ** 2, axis=0)
    p = erf / erf.sum()
    return float(np.sqrt(np.sum(p * d2)))


def receptive_field_mass(erf: Float[ArrayLike, " *space"], radius: int) -> float:
    """Fraction of the mass of ``erf`` within ``radius`` positions (Chebyshev distance) of
    the centre, e.g. ``radius=2``: the central 5×5 window of a 2-D map."""
    erf = np.asarray(erf)
    win = erf[tuple(slice(n // 2 - radius, n // 2 + radius + 1) for n in erf.shape)]
    return float(win.sum() / erf.sum())
