"""The spectral radius of a Jacobian by Arnoldi (Ritz values of the Krylov Hessenberg
matrix), matrix-free."""

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax import lax
from jax.flatten_util import ravel_pytree
from jaxtyping import Array, Float, PRNGKeyArray, PyTree


def spectral_radius(
    f: Callable[[PyTree, PyTree], PyTree],
    z: PyTree,
    args: PyTree = None,
    *,
    iters: int = 20,
    key: PRNGKeyArray | None = None,
) -> Float[Array, ""]:
    """Estimate of ``ρ(J_f(z)) = max |λ(∂f/∂z)|`` at ``z`` (one sample), matrix-free.

    ``k = min(iters, n)`` steps of Arnoldi (``jvp``s of ``f``, Gram–Schmidt done twice)
    build the Krylov Hessenberg matrix ``H_k``; the estimate is ``max |eig(H_k)|``, the
    largest Ritz value. Power iteration would return ``|λ_max|`` only for a real dominant
    eigenvalue and oscillates for a complex pair; Ritz values handle both, and at
    ``k = n`` they are the eigenvalues (up to round-off). ``key`` draws the start vector
    (default ``PRNGKey(0)``). ``jnp.linalg.eigvals`` of the small ``H_k`` runs on CPU.
    """
    if iters < 1:
        raise ValueError(f"iters must be >= 1; got {iters}.")
    zflat, unravel = ravel_pytree(z)
    n = zflat.size
    k = min(iters, n)
    dtype = zflat.dtype

    def flat_f(zz):
        return ravel_pytree(f(unravel(zz), args))[0].astype(dtype)

    _, mv = jax.linearize(flat_f, zflat)
    key = jax.random.PRNGKey(0) if key is None else key
    v0 = jax.random.normal(key, (n,), dtype)
    V = jnp.zeros((k + 1, n), dtype).at[0].set(v0 / jnp.linalg.norm(v0))
    H = jnp.zeros((k + 1, k), dtype)
    tiny = 1e3 * jnp.finfo(dtype).eps

    def body(j, carry):
        V, H = carry
        w = mv(V[j])
        scale = jnp.linalg.norm(w)
        mask = (jnp.arange(k + 1) <= j).astype(dtype)
        h = (V @ w) * mask
        w = w - h @ V
        h2 = (V @ w) * mask  # second Gram–Schmidt pass
        w = w - h2 @ V
        beta = jnp.linalg.norm(w)
        ok = beta > tiny * scale  # breakdown: the Krylov space is invariant, stop growing
        V = V.at[j + 1].set(jnp.where(ok, w / jnp.where(ok, beta, 1), 0))
        H = H.at[:, j].set((h + h2).at[j + 1].set(jnp.where(ok, beta, 0)))
        return V, H

    _, H = lax.fori_loop(0, k, body, (V, H))
    return jnp.max(jnp.abs(jnp.linalg.eigvals(H[:k, :k])))
