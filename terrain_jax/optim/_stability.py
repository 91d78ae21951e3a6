"""Step-size stability of walking styles: linearised at a minimum, and measured.

Near a minimum with Hessian ``H`` a style's step is linear to first order, so whether it
converges is a spectral question:

- :func:`step_matrix` / :func:`linear_rate`: the matrix of one step of ``sgd``,
  ``momentum`` or ``nesterov`` (optax's conventions, state ``(θ, m)``) on the 1-D quadratic
  ``L = aθ²/2`` and its spectral radius ``ρ`` (``ρ < 1``: the walk contracts by ``ρ`` per
  step; ``a < 0``, a saddle's unstable direction: it escapes at rate ``ρ > 1``);
- :func:`linear_edge`: the largest stable learning rate ``2/λ_max`` of the linearised step
  (``sgd``: ``λ_max(H)``; heavy ball ``2(1 + β)/λ_max``; Nesterov ``2(1 + β)/((1 + 2β)
  λ_max)``; projected GD and mirror descent on the simplex: the tangent-space operators);
- :func:`stability_edge`: the largest learning rate at which a walk is *measured* to
  converge, by a geometric scan down and bisection on ``log η``, for a batch at once;
- :func:`quadratic_gd_losses`: plain GD on a diagonal quadratic in closed form, the
  reference a measured walk is checked against.
"""

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float

__all__ = ["step_matrix", "linear_rate", "linear_edge", "stability_edge", "quadratic_gd_losses"]

_LINEAR = ("sgd", "momentum", "nesterov")
_EDGES = ("sgd", "momentum", "nesterov", "projected_gd", "mirror_descent")


def step_matrix(
    style: str, curvature: float, learning_rate: float, momentum: float = 0.9
) -> Float[np.ndarray, "k k"]:
    """One step of ``style`` on ``L = aθ²/2`` (``a`` = ``curvature``, gradient ``aθ``) as a
    matrix on the state: ``[[1 − ηa]]`` for ``sgd``; on ``(θ, m)`` with optax's trace
    ``m' = aθ + βm`` for ``momentum`` (``θ' = θ − ηm'``) and ``nesterov``
    (``θ' = θ − η((1 + β)aθ + β²m)``)."""
    a, lr, beta = curvature, learning_rate, momentum
    if style == "sgd":
        mat = [[1.0 - lr * a]]
    elif style == "momentum":
        mat = [[1.0 - lr * a, -lr * beta], [a, beta]]
    elif style == "nesterov":
        mat = [[1.0 - lr * (1 + beta) * a, -lr * beta**2], [a, beta]]
    else:
        raise ValueError(f"no linear step matrix for {style!r}; valid: {', '.join(_LINEAR)}.")
    return np.asarray(mat)


def linear_rate(style: str, curvature: float, learning_rate: float, momentum: float = 0.9) -> float:
    """Spectral radius ``ρ`` of :func:`step_matrix`: the factor by which the walk's error
    shrinks (``ρ < 1``) or grows (``ρ > 1``) per step, asymptotically."""
    mat = step_matrix(style, curvature, learning_rate, momentum)
    if style == "sgd":
        return float(abs(mat[0, 0]))
    return float(np.max(np.abs(np.linalg.eigvals(mat))))


def linear_edge(
    style: str,
    hessian: Float[ArrayLike, "n n"],
    at: Float[ArrayLike, " n"] | None = None,
    *,
    momentum: float = 0.9,
) -> Float[Array, ""]:
    """The largest stable learning rate of ``style``'s step linearised at a minimum.

    ``hessian`` is the loss Hessian there. ``sgd``: ``2/λ_max(H)``; ``momentum`` /
    ``nesterov`` multiply it by ``1 + β`` / ``(1 + β)/(1 + 2β)``. On the simplex, at the
    minimiser ``at``: ``projected_gd`` steps ``(I − ηPHP)`` on the tangent plane
    (``P = I − 11ᵀ/n``), so ``2/λ_max(PHP)``; ``mirror_descent`` steps ``(I − ηHF)`` in
    logits (``F = diag p − ppᵀ``), so ``2/λ_max`` of the symmetric ``Q D^½ H D^½ Q``
    (``D = diag p``, ``Q = I − √p√pᵀ``). Traceable (``jit``, ``vmap``).
    """
    H = jnp.asarray(hessian)
    n = H.shape[-1]
    if style in _LINEAR:
        lam = jnp.linalg.eigvalsh(H)[-1]
        if style == "sgd":
            return 2.0 / lam
        scale = 1 + momentum if style == "momentum" else (1 + momentum) / (1 + 2 * momentum)
        return 2.0 * scale / lam
    if style not in _EDGES:
        raise ValueError(f"no linearised edge for {style!r}; valid: {', '.join(_EDGES)}.")
    if at is None:
        raise ValueError(f"{style} is linearised at a point of the simplex: pass `at`.")
    p = jnp.asarray(at)
    if style == "projected_gd":
        P = jnp.eye(n, dtype=p.dtype) - 1.0 / n
        lam = jnp.linalg.eigvalsh(P @ H @ P)[-1]
    else:
        s = jnp.sqrt(p)
        Q = jnp.eye(n, dtype=p.dtype) - jnp.outer(s, s)
        lam = jnp.linalg.eigvalsh(Q @ (s[:, None] * H * s[None, :]) @ Q)[-1]
    return 2.0 / lam


def stability_edge(
    converges: Callable[..., Bool[Array, ""]],
    *args: Array,
    hi: float,
    coarse: int,
    iters: int,
    factor: float = 4.0,
) -> tuple[Float[Array, " batch"], Bool[Array, " batch"]]:
    """Largest learning rate at which ``converges(eta, *args_i)`` holds, per batch element.

    ``args`` share a leading batch axis; ``converges`` (for one element, e.g. a
    :func:`terrain_jax.walk` and a test on its end) is ``vmap``-ed over them. Per element,
    a scan down from ``hi`` in factors of ``factor`` (``coarse`` probes at most) finds the
    first converging ``η``; bisection on ``log η`` then refines the edge within
    ``[η, factor · η]`` for the rest of the ``coarse + iters`` probes, so no probe sits far
    below the edge, where a slow mode may not have decayed yet. Returns the edge and whether
    it was bracketed: ``NaN`` and ``False`` where nothing converged or ``hi`` itself did.
    One ``lax.fori_loop`` of batched probes: wrap the call in ``jax.jit``.
    """
    probe = jax.vmap(converges)
    step = np.log(factor)

    def body(i, c):
        a, b, found, top_ok = c  # a: current log η (bisection: [a, b] brackets the edge)
        ok = probe(jnp.exp(jnp.where(found, 0.5 * (a + b), a)), *args)
        top_ok = top_ok | ((i == 0) & ok)
        mid = 0.5 * (a + b)
        a_new = jnp.where(found, jnp.where(ok, mid, a), jnp.where(ok, a, a - step))
        b_new = jnp.where(found, jnp.where(ok, b, mid), a + step)
        return a_new, b_new, found | ok, top_ok

    n = jax.tree_util.tree_leaves(args)[0].shape[0]
    a0 = jnp.full(n, np.log(hi), jnp.result_type(float))
    init = (a0, a0 + step, jnp.zeros(n, bool), jnp.zeros(n, bool))
    a, _, found, top_ok = jax.lax.fori_loop(0, coarse + iters, body, init)
    good = found & ~top_ok  # the top of the scan must not converge
    return jnp.where(good, jnp.exp(a), jnp.nan), good


def quadratic_gd_losses(
    curvatures: Float[ArrayLike, " dim"] | Sequence[float],
    x0s: Float[ArrayLike, "starts dim"],
    learning_rates: Float[ArrayLike, " grid"],
    steps: int,
) -> Float[np.ndarray, "grid starts steps_plus_1"]:
    """Exact losses of plain GD on ``L = ½ Σ_i λ_i θ_i²`` at every step, learning rate and
    start: ``θ_i (1 − ηλ_i)^k``, so ``L_k = ½ Σ_i λ_i θ_{0,i}² (1 − ηλ_i)^{2k}`` (float64,
    NumPy; overflow past ``2/λ`` gives ``inf``). The layout of :func:`walk_many`'s
    ``losses`` over a learning-rate grid."""
    lam = np.asarray(curvatures, dtype=np.float64)
    x0 = np.asarray(x0s, dtype=np.float64)
    lrs = np.asarray(learning_rates, dtype=np.float64)
    if x0.ndim != 2 or lam.shape != x0.shape[1:]:
        raise ValueError(
            f"x0s must be (starts, dim) with one curvature per coordinate; got x0s {x0.shape} "
            f"and curvatures {lam.shape}."
        )
    k = np.arange(steps + 1)
    total = None
    with np.errstate(over="ignore", invalid="ignore"):
        for i, li in enumerate(lam):  # Σ_i in coordinate order
            r = (1 - lrs * li)[:, None, None] ** (2 * k)
            term = li * x0[None, :, i : i + 1] ** 2 * r
            total = term if total is None else total + term
        return 0.5 * total
