"""Lanczos with full reorthogonalisation and a restart on breakdown: Ritz pairs of a
symmetric operator, and the top singular values of a Jacobian on ``JᵀJ``."""

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from ._util import Eigenpairs, linearised_pair, safe_normalise, start_vector

_KAHAN = 0.5**0.5  # repeat Gram–Schmidt when a pass keeps less than this of the norm


def reorthogonalise(Q: Array, w: Array) -> tuple[Array, Array]:
    """``w`` minus its projection on the rows of ``Q`` (unfilled rows are zero), and its
    norm. Classical Gram–Schmidt, repeated while a pass cancels more than ``1 − 1/√2`` of
    the norm (Kahan–Parlett "twice is enough"), at most three passes: one pass (two
    sweeps over ``Q``) on a typical Lanczos step, more only near breakdown. The repeats
    are ``lax.cond``s, not a ``while_loop``, so Lanczos stays reverse-differentiable."""

    def one_pass(state):
        w, _, norm = state
        w = w - Q.T @ (Q @ w)
        return w, norm, jnp.linalg.norm(w)

    def again(state):
        _, before, after = state
        return after < _KAHAN * before

    state = one_pass((w, jnp.zeros((), w.dtype), jnp.linalg.norm(w)))
    for _ in range(2):
        state = jax.lax.cond(again(state), one_pass, lambda s: s, state)
    w, _, norm = state
    return w, norm


def lanczos(
    matvec: Callable[[Array], Array], v0: Array, m: int, key: PRNGKeyArray
) -> tuple[Array, Array, Array]:
    """``m`` Lanczos steps from ``v0``, fully reorthogonalised; returns ``(Q, α, β)``.

    ``Q`` ``(m, n)`` holds the orthonormal basis, ``α`` the diagonal of ``T`` and ``β``
    ``(m,)`` its off-diagonal followed by the final residual norm ``β_m``. Each step
    subtracts the three-term recurrence, then reorthogonalises against the whole basis
    (:func:`reorthogonalise`). On breakdown (``β_j ≤ 100 ε max‖A q‖``: the Krylov space
    is invariant) ``β_j = 0`` and the next vector is a fresh random one orthogonal to the
    basis, so ``T`` stays exact (block-diagonal) instead of carrying normalised
    round-off; restarts also find further copies of repeated eigenvalues.
    """
    n, dtype = v0.size, v0.dtype
    eps = jnp.finfo(dtype).eps
    Q = jnp.zeros((m, n), dtype).at[0].set(safe_normalise(v0, jnp.ones_like(v0) / n**0.5))
    # restart vectors: one random draw, rolled by the step (no RNG inside the loop body)
    fresh = jax.random.normal(key, (n,), dtype)

    def body(j, carry):
        Q, alphas, betas, scale = carry
        q = Q[j]
        w = matvec(q)
        scale = jnp.maximum(scale, jnp.linalg.norm(w))
        alpha = jnp.vdot(q, w)
        prev = jnp.maximum(j - 1, 0)
        w = w - alpha * q - jnp.where(j > 0, betas[prev], 0.0) * Q[prev]
        w, beta = reorthogonalise(Q, w)
        broke = beta <= 100.0 * eps * scale

        def restart(_):  # two Gram–Schmidt passes against the basis
            r = jnp.roll(fresh, j)
            r = r - Q.T @ (Q @ r)
            r = r - Q.T @ (Q @ r)
            return r, jnp.linalg.norm(r)

        w, norm = jax.lax.cond(broke, restart, lambda _: (w, beta), None)
        beta = jnp.where(broke, jnp.zeros((), dtype), beta)
        Q = Q.at[j + 1].set(w / jnp.where(norm > 0, norm, 1.0), mode="drop")
        return Q, alphas.at[j].set(alpha), betas.at[j].set(beta), scale

    init = (Q, jnp.zeros((m,), dtype), jnp.zeros((m,), dtype), jnp.zeros((), dtype))
    Q, alphas, betas, _ = jax.lax.fori_loop(0, m, body, init)
    return Q, alphas, betas


def tridiagonal(alphas: Array, betas: Array) -> Array:
    off = betas[:-1]
    return jnp.diag(alphas) + jnp.diag(off, 1) + jnp.diag(off, -1)


def order_eigenvalues(values: Array, which: str) -> Array:
    return jnp.argsort(-values if which == "LA" else -jnp.abs(values))


def lanczos_eigenpairs(matvec, dim, k, key, num_iters, which, v0, dtype):
    m = min(num_iters, dim)
    if m < k:
        raise ValueError(f"Lanczos needs num_iters >= k; got num_iters={num_iters}, k={k}.")
    k_start, k_restart = jax.random.split(key)
    Q, alphas, betas = lanczos(matvec, start_vector(k_start, v0, dim, dtype), m, k_restart)
    theta, S = jnp.linalg.eigh(tridiagonal(alphas, betas))
    idx = order_eigenvalues(theta, which)[:k]
    vectors = S[:, idx].T @ Q
    # |β_m s_m| underflows to 0 for a well-converged Ritz pair, but round-off in the
    # products bounds the true residual at about ε‖A‖: report no less than that.
    floor = jnp.finfo(theta.dtype).eps * jnp.max(jnp.abs(theta))
    residuals = jnp.maximum(jnp.abs(betas[-1] * S[-1, idx]), floor)
    return Eigenpairs(theta[idx], vectors, residuals, jnp.asarray(m))


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
    xf, jvp, vjp = linearised_pair(fn, x)
    n = xf.size
    if not 1 <= k <= n:
        raise ValueError(f"k must satisfy 1 <= k <= n = {n}; got k={k}.")
    m = min(n, max(2 * k, k + 20)) if num_matvecs is None else num_matvecs
    if not k <= m <= n:
        raise ValueError(f"num_matvecs must satisfy k={k} <= num_matvecs <= n={n}; got {m}.")
    k_start, k_restart = jax.random.split(key)
    v0 = jax.random.normal(k_start, (n,), xf.dtype)
    _, alphas, betas = lanczos(lambda v: vjp(jvp(v)), v0, m, k_restart)
    ritz = jnp.linalg.eigvalsh(tridiagonal(alphas, betas))[::-1][:k]
    return jnp.sqrt(jnp.maximum(ritz, 0.0))
