"""Helpers shared by the linear-algebra routines: flat maps, safe normalisation, start
vectors, dtypes, and the :class:`Eigenpairs` they return."""

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import DTypeLike
from jaxtyping import Array, Float, Int, PRNGKeyArray


def flat_map(fn: Callable[[Array], Array], x: Array) -> tuple[Callable[[Array], Array], Array]:
    """``fn`` as a map of flat vectors, and ``x`` flattened."""
    shape = x.shape
    return (lambda z: jnp.ravel(fn(z.reshape(shape)))), jnp.ravel(x)


def linearised_pair(
    fn: Callable[[Array], Array], x: Array
) -> tuple[Array, Callable[[Array], Array], Callable[[Array], Array]]:
    """Flat ``x`` and the linear maps ``v ↦ J v`` and ``u ↦ Jᵀ u`` (one linearisation)."""
    flat, xf = flat_map(fn, x)
    _, jvp = jax.linearize(flat, xf)
    vjp = jax.linear_transpose(jvp, xf)
    return xf, jvp, lambda u: vjp(u)[0]


def safe_normalise(w: Array, fallback: Array) -> Array:
    n = jnp.linalg.norm(w)
    return jnp.where(n > 0, w / jnp.where(n > 0, n, 1.0), fallback)


def resolve_dtype(matvec: Callable[[Array], Array], dtype: DTypeLike | None) -> DTypeLike:
    if dtype is not None:
        return dtype
    # jax's default float (float64 under x64) for a plain callable
    return getattr(matvec, "dtype", jax.dtypes.canonicalize_dtype(jnp.float64))


def start_vector(key: PRNGKeyArray, v0: Array | None, dim: int, dtype: DTypeLike) -> Array:
    if v0 is None:
        return jax.random.normal(key, (dim,), dtype)
    if v0.shape != (dim,):
        raise ValueError(f"v0 must be a flat vector of shape ({dim},); got {v0.shape}.")
    return v0.astype(dtype)


class Eigenpairs(NamedTuple):
    """Approximate eigenpairs of a symmetric operator.

    - ``values`` ``(k,)``: eigenvalue estimates (Ritz values / Rayleigh quotients), in
      the order asked for (``which``);
    - ``vectors`` ``(k, n)``: unit eigenvector estimates, one per row;
    - ``residuals`` ``(k,)``: ``‖A v − λ v‖``. For a symmetric ``A`` some eigenvalue lies
      within ``residual`` of each ``λ`` (and within ``residual² / gap`` once separated);
    - ``num_matvecs``: operator applications spent (per eigenpair for power iteration).
    """

    values: Float[Array, " k"]
    vectors: Float[Array, "k n"]
    residuals: Float[Array, " k"]
    num_matvecs: Int[Array, "..."]
