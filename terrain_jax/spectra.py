"""Jacobian spectra of maps and of depth nets; per-layer gradient norms; Lipschitz bounds.

The seed articles argue through the block Jacobian: a residual layer ``x + h f(x)`` has
Jacobian ``I + h J_f``, so its eigenvalues are those of ``h J_f`` shifted by one; a scaled
residual ``(1 − β) x + α f(x)`` has norm ``≤ 1 − β + α Lip(f)``, at most one when
``α ≤ β / Lip(f)``. This module makes those quantities computable:

- dense spectra of a map of one state (any shape, flattened): :func:`jacobian`,
  :func:`jacobian_eigenvalues`, :func:`jacobian_singular_values`, :func:`condition_number`;
- matrix-free spectra on ``JᵀJ`` from ``jvp``/``vjp`` only (``J`` never materialised):
  :func:`top_singular_value` (power iteration), :func:`jacobian_singular_values_lanczos`;
- the same for the depth families of :mod:`terrain_jax.nets`: :func:`layer_jacobian`,
  :func:`block_field_jacobian`, :func:`end_to_end_jacobian`;
- :func:`layer_gradient_norms`: ``‖∂L/∂θ_k‖`` and ``‖∂L/∂x_k‖`` for every layer from one
  backward sweep, a ``lax.scan`` over the stacked layers (compile time independent of
  depth);
- :func:`lipschitz_upper_bound` and :func:`lipschitz_lower_bound` of a block.

Every function here traces to ``jit``/``vmap``-able code: its loops are ``lax.fori_loop``
and ``lax.scan``, never a Python loop per iteration or per layer.
"""

from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Inexact, Int, PRNGKeyArray

from .fields import ConvField, LinearField, MLPField
from .nets import AbstractDepthNet, HighwayNet, PlainNet, ResidualNet, ScaledResidualNet

__all__ = [
    "ACTIVATION_LIPSCHITZ",
    "jacobian",
    "jacobian_eigenvalues",
    "jacobian_singular_values",
    "condition_number",
    "top_singular_value",
    "jacobian_singular_values_lanczos",
    "layer_jacobian",
    "block_field_jacobian",
    "end_to_end_jacobian",
    "layer_gradient_norms",
    "GRADIENT_NORM_METHODS",
    "lipschitz_upper_bound",
    "lipschitz_lower_bound",
]

# Lipschitz constant sup |σ'| of each activation in terrain_jax.fields._ACTIVATIONS,
# rounded up. gelu (tanh approximation, jax's default): max σ' = 1.12899 at x ≈ 1.41
# (exact erf form: 1.12890); silu: max σ' = 1.09984 at x ≈ 2.40; sigmoid: σ'(0) = 1/4.
# Measured on a grid of [-20, 20]; tests/test_spectra.py re-checks every entry.
ACTIVATION_LIPSCHITZ: dict[str, float] = {
    "tanh": 1.0,
    "relu": 1.0,
    "softplus": 1.0,
    "gelu": 1.13,
    "silu": 1.1,
    "sigmoid": 0.25,
    "identity": 1.0,
}

_Index = int | Int[Array, ""]


# --------------------------------------------------------------------------- dense


def _flat(fn: Callable[[Array], Array], x: Array) -> tuple[Callable[[Array], Array], Array]:
    """``fn`` as a map of flat vectors, and ``x`` flattened."""
    shape = x.shape
    return (lambda z: jnp.ravel(fn(z.reshape(shape)))), jnp.ravel(x)


def jacobian(fn: Callable[[Array], Array], x: Float[Array, "..."]) -> Float[Array, "m n"]:
    """Dense Jacobian of ``fn`` at one state ``x`` (any shape), as an ``(m, n)`` matrix.

    Input and output are flattened in C order; forward mode when ``m ≥ n``, reverse mode
    otherwise. For a batch, ``vmap`` over it.
    """
    flat, xf = _flat(fn, x)
    m = jax.eval_shape(flat, xf).size
    return (jax.jacfwd if m >= xf.size else jax.jacrev)(flat)(xf)


def jacobian_eigenvalues(
    fn: Callable[[Array], Array], x: Float[Array, "..."]
) -> Inexact[Array, " n"]:
    """Eigenvalues (complex) of the square Jacobian of ``fn`` at ``x``, largest modulus first.

    Uses ``jnp.linalg.eigvals`` (a nonsymmetric eigensolver: CPU and GPU, not TPU).
    """
    J = jacobian(fn, x)
    if J.shape[0] != J.shape[1]:
        raise ValueError(f"Eigenvalues need a square Jacobian; got shape {J.shape}.")
    ev = jnp.linalg.eigvals(J)
    return ev[jnp.argsort(-jnp.abs(ev))]


def jacobian_singular_values(
    fn: Callable[[Array], Array], x: Float[Array, "..."]
) -> Float[Array, " r"]:
    """Singular values of the Jacobian of ``fn`` at ``x``, descending (``min(m, n)`` of them)."""
    return jnp.linalg.svd(jacobian(fn, x), compute_uv=False)


def condition_number(fn: Callable[[Array], Array], x: Float[Array, "..."]) -> Float[Array, ""]:
    """``σ_max / σ_min`` of the Jacobian of ``fn`` at ``x`` (``inf`` when it is singular)."""
    s = jacobian_singular_values(fn, x)
    return s[0] / s[-1]


# --------------------------------------------------------------------- matrix-free


def _jvp_vjp(
    fn: Callable[[Array], Array], x: Array
) -> tuple[Array, Callable[[Array], Array], Callable[[Array], Array]]:
    """Flat ``x`` and the linear maps ``v ↦ J v`` and ``u ↦ Jᵀ u`` (one linearisation)."""
    flat, xf = _flat(fn, x)
    _, jvp = jax.linearize(flat, xf)
    vjp = jax.linear_transpose(jvp, xf)
    return xf, jvp, lambda u: vjp(u)[0]


def _safe_normalise(w: Array, fallback: Array) -> Array:
    n = jnp.linalg.norm(w)
    return jnp.where(n > 0, w / jnp.where(n > 0, n, 1.0), fallback)


def top_singular_value(
    fn: Callable[[Array], Array],
    x: Float[Array, "..."],
    *,
    key: PRNGKeyArray,
    iters: int = 100,
) -> Float[Array, ""]:
    """``‖J‖₂`` of ``fn`` at ``x`` by ``iters`` power iterations on ``JᵀJ`` (jvp/vjp only).

    One compiled ``lax.fori_loop``; ``J`` is never formed. The estimate ``‖J v‖`` with
    ``‖v‖ = 1`` approaches ``σ_max`` from below at rate ``(σ₂/σ₁)^(2·iters)``, so it is
    always a valid lower bound on ``‖J‖₂``.
    """
    xf, jvp, vjp = _jvp_vjp(fn, x)
    v0 = _safe_normalise(jax.random.normal(key, xf.shape, xf.dtype), xf)

    def body(_, v):
        return _safe_normalise(vjp(jvp(v)), v)

    v = jax.lax.fori_loop(0, iters, body, v0)
    return jnp.linalg.norm(jvp(v))


def _lanczos_tridiagonal(
    matvec: Callable[[Array], Array], n: int, m: int, dtype: Any, key: PRNGKeyArray
) -> Float[Array, "m m"]:
    """``m`` Lanczos steps on the symmetric ``matvec`` (size ``n``), fully reorthogonalised.

    On breakdown (an invariant subspace found: ``β_j ≈ 0``) the next vector is a fresh
    random one orthogonal to the basis and ``β_j = 0``, so the Ritz values stay exact.
    """
    eps = jnp.finfo(dtype).eps
    k0, kr = jax.random.split(key)
    v0 = jax.random.normal(k0, (n,), dtype)
    restarts = jax.random.normal(kr, (m, n), dtype)  # drawn once, outside the loop
    Q = jnp.zeros((m, n), dtype).at[0].set(v0 / jnp.linalg.norm(v0))

    def orth(Q, w):  # rows of Q not yet filled are zero; twice is enough (Kahan)
        w = w - Q.T @ (Q @ w)
        return w - Q.T @ (Q @ w)

    def body(j, carry):
        Q, alphas, betas, scale = carry
        q = Q[j]
        w = matvec(q)
        scale = jnp.maximum(scale, jnp.linalg.norm(w))
        alpha = jnp.vdot(q, w)
        w = orth(Q, w)
        beta = jnp.linalg.norm(w)
        broke = beta <= 100.0 * eps * scale
        r = orth(Q, restarts[j])
        w = jnp.where(broke, r, w)
        beta = jnp.where(broke, 0.0, beta)
        Q = Q.at[j + 1].set(_safe_normalise(w, w), mode="drop")
        return Q, alphas.at[j].set(alpha), betas.at[j].set(beta), scale

    init = (Q, jnp.zeros((m,), dtype), jnp.zeros((m,), dtype), jnp.zeros((), dtype))
    _, alphas, betas, _ = jax.lax.fori_loop(0, m, body, init)
    off = betas[:-1]
    return jnp.diag(alphas) + jnp.diag(off, 1) + jnp.diag(off, -1)


def jacobian_singular_values_lanczos(
    fn: Callable[[Array], Array],
    x: Float[Array, "..."],
    k: int,
    *,
    key: PRNGKeyArray,
    num_matvecs: int | None = None,
) -> Float[Array, " k"]:
    """Top ``k`` singular values of the Jacobian of ``fn`` at ``x``, descending, matrix-free.

    Lanczos on ``JᵀJ`` (each matvec one ``jvp`` and one ``vjp`` of a single linearisation)
    with ``num_matvecs`` steps (default ``min(n, max(2k, k + 20))``), then the square roots
    of the top ``k`` Ritz values. Our own compiled Lanczos (``lax.fori_loop``) with full
    reorthogonalisation, not ``matfree.decomp.tridiag_sym`` (0.6.3): matfree has no
    breakdown guard, so when the Krylov space closes early it normalises round-off noise
    (``J = I`` of a zero-initialised residual block: Ritz values off by ~1e-3 in float32)
    or divides by zero (``J = 0``: NaN). Here a breakdown restarts from a fresh random
    vector orthogonal to the basis, with ``β_j = 0``. With ``num_matvecs = n`` the result is
    exact up to round-off; ``JᵀJ`` squares the spectrum, so small singular values carry an
    absolute error of about ``√(eps)·σ_max`` — use it for the top of the spectrum.
    """
    xf, jvp, vjp = _jvp_vjp(fn, x)
    n = xf.size
    if not 1 <= k <= n:
        raise ValueError(f"k must satisfy 1 <= k <= n = {n}; got k={k}.")
    m = min(n, max(2 * k, k + 20)) if num_matvecs is None else num_matvecs
    if not k <= m <= n:
        raise ValueError(f"num_matvecs must satisfy k={k} <= num_matvecs <= n={n}; got {m}.")
    T = _lanczos_tridiagonal(lambda v: vjp(jvp(v)), n, m, xf.dtype, key)
    ritz = jnp.linalg.eigvalsh(T)[::-1][:k]
    return jnp.sqrt(jnp.maximum(ritz, 0.0))


# ----------------------------------------------------------------------- depth nets


def layer_jacobian(net: AbstractDepthNet, k: _Index, x: Float[Array, "..."]) -> Float[Array, "n n"]:
    """Dense Jacobian of layer ``k``'s map ``x_k ↦ x_{k+1}`` at one state ``x`` (unbatched).

    For a :class:`ResidualNet` this is ``I + h J_{f_k}``; for a :class:`ScaledResidualNet`
    ``(1 − β) I + α J_{f_k}``; for a :class:`HighwayNet` it includes the gate's derivative.
    """
    return jacobian(net.layer_map(k), x)


def block_field_jacobian(
    net: AbstractDepthNet, k: _Index, x: Float[Array, "..."]
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
    t = net._time(jnp.asarray(k, dtype=x.dtype))
    return jacobian(lambda z: blk(t, z, None), x)


def end_to_end_jacobian(net: AbstractDepthNet, x: Float[Array, "..."]) -> Float[Array, "n n"]:
    """Dense Jacobian of the whole net ``x_0 ↦ x_L`` at one state ``x`` (unbatched)."""
    return jacobian(lambda z: net(z), x)


GRADIENT_NORM_METHODS = ("sweep", "taps")


def layer_gradient_norms(
    net: AbstractDepthNet,
    loss_fn: Callable[[Array, Any], Array],
    x: Float[Array, "..."],
    y: Any,
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


def _norm(a: Array) -> Array:
    """Euclidean norm without overflow or underflow of the squares: float32 gradients of
    deep plain nets reach 1e-30 and 1e30, far past where ``Σ g²`` stays representable."""
    m = jnp.max(jnp.abs(a))
    safe = jnp.where((m > 0) & jnp.isfinite(m), m, 1.0)
    scaled = m * jnp.sqrt(jnp.sum(jnp.square(a / safe)))
    # an overflowed (inf) entry gives inf and a NaN gives NaN, as the plain norm would
    # (XLA's max-reduction may skip NaNs, so they are looked for explicitly)
    finite = jnp.where(jnp.isfinite(m), jnp.where(m > 0, scaled, 0.0), jnp.inf)
    return jnp.where(jnp.any(jnp.isnan(a)), jnp.nan, finite)


def _tree_norm(tree: Any) -> Array:
    return _norm(jnp.stack([_norm(g) for g in jax.tree_util.tree_leaves(tree)]))


def _gradient_norms_sweep(net, loss_fn, x, y):
    x_last, hs = net(x, return_hidden=True)
    loss, g_last = jax.value_and_grad(lambda o: loss_fn(o, y))(x_last)
    # the same split the net's own scan uses: array leaves are sliced per layer
    params, static = eqx.partition(net.blocks, eqx.is_array)
    ks = jnp.arange(net.depth, dtype=x.dtype)

    def body(g, inp):
        k, p, xk = inp
        t = net._time(k)
        if net.tied:
            _, vjp = jax.vjp(lambda z: net._update(net.blocks, t, z), xk)
            (gz,) = vjp(g)
            return gz, (_norm(gz), jnp.zeros((), x.dtype))
        diff, nondiff = eqx.partition(p, eqx.is_inexact_array)

        def layer(d, z):
            return net._update(eqx.combine(d, nondiff, static), t, z)

        _, vjp = jax.vjp(layer, diff, xk)
        gp, gz = vjp(g)
        return gz, (_norm(gz), _tree_norm(gp))

    xs = (ks, None if net.tied else params, hs[:-1])
    _, (state_norms, param_norms) = jax.lax.scan(body, g_last, xs, reverse=True)
    out = {
        "loss": loss,
        "state_grad_norms": jnp.concatenate([state_norms, _norm(g_last)[None]]),
    }
    if not net.tied:
        out["param_grad_norms"] = param_norms
    return out


def _gradient_norms_taps(net, loss_fn, x, y):
    taps = jnp.zeros((net.depth, *x.shape), x.dtype)
    params, static = eqx.partition(net, eqx.is_inexact_array)
    argnums = (1, 2) if net.tied else (0, 1, 2)

    def total(params, x, taps):
        return loss_fn(eqx.combine(params, static)(x, taps=taps), y)

    loss, grads = jax.value_and_grad(total, argnums=argnums)(params, x, taps)
    g_x, g_taps = grads[-2:]
    out = {
        "loss": loss,
        "state_grad_norms": jnp.concatenate([_norm(g_x)[None], _per_layer_norms(g_taps)]),
    }
    if not net.tied:
        sq = [
            jnp.sum(jnp.square(g).reshape(net.depth, -1), axis=1)
            for g in jax.tree_util.tree_leaves(grads[0].blocks)
        ]
        out["param_grad_norms"] = jnp.sqrt(sum(sq))
    return out


def _per_layer_norms(g: Array) -> Array:
    return jax.vmap(_norm)(g.reshape(g.shape[0], -1))


# ------------------------------------------------------------------------ Lipschitz


def _activation_lipschitz(name: str) -> float:
    if name not in ACTIVATION_LIPSCHITZ:
        valid = ", ".join(sorted(ACTIVATION_LIPSCHITZ))
        raise ValueError(
            f"No Lipschitz constant for activation {name!r}; known activations: {valid}."
        )
    return ACTIVATION_LIPSCHITZ[name]


def _spectral_norm_2d(w: Array) -> Array:
    """Largest singular value over the last two axes (batched over leading ones)."""
    return jnp.linalg.svd(w, compute_uv=False)[..., 0]


def _conv_operator_norm(
    kernel: Array, in_shape: tuple[int, ...], dims: int, key: PRNGKeyArray, iters: int
) -> Array:
    """Operator norm of the 'SAME' convolution with ``kernel`` on inputs ``in_shape``."""
    spec = ("NCH", "OIH", "NCH") if dims == 1 else ("NCHW", "OIHW", "NCHW")

    def norm_one(w):
        def conv(z):
            return jax.lax.conv_general_dilated(
                z[None], w, (1,) * dims, "SAME", dimension_numbers=spec
            )[0]

        return top_singular_value(conv, jnp.zeros(in_shape, w.dtype), key=key, iters=iters)

    batch = kernel.shape[: kernel.ndim - dims - 2]
    flat = kernel.reshape((-1,) + kernel.shape[len(batch) :])
    return jax.vmap(norm_one)(flat).reshape(batch)


def lipschitz_upper_bound(
    field: MLPField | ConvField | LinearField,
    *,
    input_shape: tuple[int, ...] | None = None,
    key: PRNGKeyArray | None = None,
    iters: int = 200,
) -> Float[Array, "*blocks"]:
    """Upper bound on ``Lip(f)`` of a block in its state: ``Π ‖W_i‖₂ · Lip(σ)^(#σ)``.

    - :class:`MLPField`: exact spectral norms (SVD) of the weights, times the activation's
      constant (:data:`ACTIVATION_LIPSCHITZ`; unknown activations are refused) once per
      hidden layer. With ``time=True`` only the state columns of the first weight count.
    - :class:`ConvField`: the operator norm of each 'SAME' convolution on inputs of
      ``input_shape = (channels, *space)`` (required), by ``iters`` power iterations on the
      convolution (``key``, default ``PRNGKey(0)``). Power iteration approaches each norm
      from below, so this bound is as tight as the iteration has converged.
    - :class:`LinearField`: ``‖A‖₂``.

    Stacked blocks (leading axes on every weight, e.g. ``net.blocks``) give one bound per
    block.
    """
    if isinstance(field, LinearField):
        return _spectral_norm_2d(field.A)
    if isinstance(field, MLPField):
        c = _activation_lipschitz(field.activation)
        ws = list(field.weights)
        if field.time:
            width = ws[-1].shape[-2]
            ws[0] = ws[0][..., :width]
        bound = c ** (len(ws) - 1)
        for w in ws:
            bound = bound * _spectral_norm_2d(w)
        return bound
    if isinstance(field, ConvField):
        if input_shape is None:
            raise ValueError(
                "lipschitz_upper_bound of a ConvField needs input_shape=(channels, *space): "
                "a convolution's operator norm depends on the input size."
            )
        if len(input_shape) != field.dims + 1:
            raise ValueError(
                f"input_shape must be (channels, *space) with {field.dims} spatial axes; "
                f"got {input_shape}."
            )
        c = _activation_lipschitz(field.activation)
        key = jax.random.PRNGKey(0) if key is None else key
        k1, k2 = jax.random.split(key)
        space = tuple(input_shape[1:])
        w1, w2 = field.kernels
        hidden = w1.shape[-field.dims - 2]
        n1 = _conv_operator_norm(w1, tuple(input_shape), field.dims, k1, iters)
        n2 = _conv_operator_norm(w2, (hidden, *space), field.dims, k2, iters)
        return c * n1 * n2
    raise TypeError(
        "lipschitz_upper_bound supports MLPField, ConvField and LinearField; got "
        f"{type(field).__name__}."
    )


def lipschitz_lower_bound(
    field: Callable[..., Array],
    xs: Float[Array, "samples ..."],
    *,
    t: float = 0.0,
    key: PRNGKeyArray | None = None,
    iters: int = 100,
) -> Float[Array, ""]:
    """Lower bound on ``Lip(f)``: ``max_i ‖J_f(x_i)‖₂`` over the samples ``xs`` (vmapped).

    ``xs`` stacks unbatched states along its first axis; ``f`` is called as
    ``field(t, x, None)``. Dense SVD of each ``J_f(x_i)`` by default; with a ``key``, the
    matrix-free :func:`top_singular_value` (``iters`` power iterations), which never
    overestimates ``‖J_f(x_i)‖₂`` and so still gives a lower bound.
    """

    def f(z):
        return field(t, z, None)

    if key is None:
        norms = jax.vmap(lambda x: jacobian_singular_values(f, x)[0])(xs)
    else:
        keys = jax.random.split(key, xs.shape[0])
        norms = jax.vmap(lambda x, k: top_singular_value(f, x, key=k, iters=iters))(xs, keys)
    return jnp.max(norms)
