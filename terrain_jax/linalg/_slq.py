"""Eigenvalue densities by stochastic Lanczos quadrature."""

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import DTypeLike
from jaxtyping import Array, Float, PRNGKeyArray

from ._lanczos import lanczos, tridiagonal
from ._util import resolve_dtype


class SpectralDensity(NamedTuple):
    """Stochastic Lanczos quadrature of a spectrum: a smoothed density and its quadrature.

    ``density`` on ``grid`` is ``mean_p Σ_l w_pl N(t; θ_pl, σ²)``: each probe ``p``
    contributes a Gauss quadrature rule with nodes ``θ_p`` (Ritz values) and weights
    ``w_p`` (squared first components of ``T_p``'s eigenvectors, summing to one).
    """

    grid: Float[Array, " g"]
    density: Float[Array, " g"]
    nodes: Float[Array, "probes m"]
    weights: Float[Array, "probes m"]
    sigma: Float[Array, ""]

    def moment(self, k: int) -> Float[Array, ""]:
        """Estimate of ``tr(A^k) / n`` (exact per probe for ``k ≤ 2m − 1``): so ``k = 1``
        gives the mean eigenvalue and ``k = 2`` gives ``‖A‖_F² / n``."""
        return jnp.mean(jnp.sum(self.weights * self.nodes**k, axis=-1))


def spectral_density(
    matvec: Callable[[Array], Array],
    dim: int,
    key: PRNGKeyArray,
    *,
    num_iters: int = 90,
    num_probes: int = 10,
    grid: Float[Array, " g"] | int = 1000,
    sigma: float | Array | None = None,
    probe_batch: int | None = None,
    dtype: DTypeLike | None = None,
) -> SpectralDensity:
    """Eigenvalue density of a symmetric operator by stochastic Lanczos quadrature.

    Each of ``num_probes`` uniformly random unit vectors ``q`` starts ``num_iters`` steps
    of fully reorthogonalised Lanczos (compiled, as in :func:`top_eigenpairs`);
    ``T``'s eigenvalues ``θ`` and squared first eigenvector components ``w`` form a Gauss
    quadrature of ``qᵀ f(A) q``, whose mean over probes estimates ``tr f(A) / n``
    (Ghorbani et al. 2019; Lin et al. 2016). The density is smoothed by a Gaussian of
    width ``sigma`` (default 1% of the node range) on ``grid`` (an array, or a number of
    points spanning the nodes ± 5σ). Probes run vmapped, or ``lax.map``-ped in chunks of
    ``probe_batch``. Moments: :meth:`SpectralDensity.moment`.
    """
    dtype = resolve_dtype(matvec, dtype)
    m = min(num_iters, dim)
    if m < 1 or num_probes < 1:
        raise ValueError(f"num_iters and num_probes must be >= 1; got {num_iters}, {num_probes}.")

    def one(key_p):
        k_start, k_restart = jax.random.split(key_p)
        _, alphas, betas = lanczos(matvec, jax.random.normal(k_start, (dim,), dtype), m, k_restart)
        theta, S = jnp.linalg.eigh(tridiagonal(alphas, betas))
        return theta, S[0] ** 2

    keys = jax.random.split(key, num_probes)
    if probe_batch is None:
        nodes, weights = jax.vmap(one)(keys)
    else:
        nodes, weights = jax.lax.map(one, keys, batch_size=probe_batch)
    lo, hi = jnp.min(nodes), jnp.max(nodes)
    span = jnp.maximum(hi - lo, jnp.finfo(dtype).eps * jnp.maximum(jnp.abs(hi), 1.0))
    sigma = 0.01 * span if sigma is None else jnp.asarray(sigma, dtype)
    if isinstance(grid, int):
        grid = jnp.linspace(lo - 5.0 * sigma, hi + 5.0 * sigma, grid, dtype=dtype)
    else:
        grid = jnp.asarray(grid, dtype)
    z = (grid[:, None, None] - nodes[None]) / sigma
    kernel = jnp.exp(-0.5 * z**2) / (sigma * (2.0 * jnp.pi) ** 0.5)
    density = jnp.sum(weights[None] * kernel, axis=-1).mean(axis=-1)
    return SpectralDensity(grid, density, nodes, weights, sigma)
