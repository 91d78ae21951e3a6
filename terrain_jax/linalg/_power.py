"""Power iteration: the top singular value of a Jacobian (jvp/vjp only) and top
eigenpairs of a symmetric operator with deflation."""

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from ._util import Eigenpairs, linearised_pair, safe_normalise, start_vector


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
    xf, jvp, vjp = linearised_pair(fn, x)
    v0 = safe_normalise(jax.random.normal(key, xf.shape, xf.dtype), xf)

    def body(_, v):
        return safe_normalise(vjp(jvp(v)), v)

    v = jax.lax.fori_loop(0, iters, body, v0)
    return jnp.linalg.norm(jvp(v))


def power_eigenpairs(matvec, dim, k, key, num_iters, tol, v0, dtype):
    """Power iteration with deflation: eigenpair ``i`` iterates ``P A P`` with ``P`` the
    projector off the ``i`` pairs already found, until ``‖A v − λ v‖ ≤ tol |λ|``."""
    keys = jax.random.split(key, k)
    V0 = jnp.zeros((k, dim), dtype)

    def project(V, w):
        return w - V.T @ (V @ w)

    def one(V, inp):
        i, key_i = inp
        start = jax.random.normal(key_i, (dim,), dtype)
        if v0 is not None:
            start = jnp.where(i == 0, start_vector(key_i, v0, dim, dtype), start)
        v = safe_normalise(project(V, start), start)
        w = project(V, matvec(v))

        def residual(v, w):
            lam = jnp.vdot(v, w)
            return lam, jnp.linalg.norm(w - lam * v)

        def cond(state):
            v, w, it = state
            lam, res = residual(v, w)
            return (it < num_iters) & (res > tol * jnp.abs(lam))

        def body(state):
            v, w, it = state
            v = safe_normalise(project(V, w), v)
            return v, project(V, matvec(v)), it + 1

        v, w, it = jax.lax.while_loop(cond, body, (v, w, jnp.asarray(1)))
        lam, res = residual(v, w)
        return V.at[i].set(v), (lam, res, it)

    V, (values, residuals, iters) = jax.lax.scan(one, V0, (jnp.arange(k), keys))
    return Eigenpairs(values, V, residuals, iters)
