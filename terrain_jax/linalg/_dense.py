"""Dense Jacobian spectra of a map of one state (any shape, flattened)."""

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Inexact

from ._util import flat_map


def jacobian(fn: Callable[[Array], Array], x: Float[Array, "..."]) -> Float[Array, "m n"]:
    """Dense Jacobian of ``fn`` at one state ``x`` (any shape), as an ``(m, n)`` matrix.

    Input and output are flattened in C order; forward mode when ``m ≥ n``, reverse mode
    otherwise. For a batch, ``vmap`` over it.
    """
    flat, xf = flat_map(fn, x)
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
