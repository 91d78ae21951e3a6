"""Information geometry of the probability simplex: divergences, metrics, projection.

The book (Vol. II, ch. 5) says KL is the Bregman divergence of negative entropy, that the
Fisher metric is KL's local quadratic form, and that mirror descent walks the simplex.
This module makes each statement computable:

- divergences: :func:`bregman` (of any convex ``F``, via ``jax.grad``), :func:`entropy`,
  :func:`neg_entropy`, :func:`kl` (categorical), :func:`kl_gaussian` (diagonal Gaussians),
  :func:`kl_monte_carlo` (any two densities, from samples);
- metrics: :func:`fisher_categorical` (softmax logits, ``diag(p) − ppᵀ``) and
  :func:`fisher_simplex` (simplex coordinates, ``diag(1/p)`` on the tangent space);
- :func:`project_simplex`: the Euclidean projection onto the simplex (Duchi et al. 2008);
  :func:`simplex_lattice`: a lattice of points of the open simplex;
- fitting one Gaussian to a 1-D density by either direction of KL:
  :func:`gaussian_kl_objectives` (forward ``KL(π‖q)`` is mass-covering, reverse ``KL(q‖π)``
  mode-seeking), e.g. to :func:`gaussian_mixture_logpdf`;
- :func:`gaussian_fit_logpdf`: the held-out log density of the maximum-likelihood Gaussian,
  the baseline a density model has to beat.

The walking styles of this geometry (mirror descent, projected GD, natural gradient) live
in :mod:`terrain_jax.optim`.

Probability vectors live on the last axis; leading axes are batch axes.
"""

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp
from jax.scipy.stats import norm
from jaxtyping import Array, ArrayLike, Float

__all__ = [
    "bregman",
    "entropy",
    "neg_entropy",
    "kl",
    "kl_gaussian",
    "kl_monte_carlo",
    "fisher_categorical",
    "fisher_simplex",
    "project_simplex",
    "simplex_lattice",
    "gaussian_mixture_logpdf",
    "gaussian_kl_objectives",
    "gaussian_fit_logpdf",
]


# ----------------------------------------------------------------------------- divergences


def bregman(
    F: Callable[[Array], Array],
) -> Callable[[Array, Array], Array]:
    """The Bregman divergence ``D_F(p, q) = F(p) − F(q) − ⟨∇F(q), p − q⟩`` of a convex ``F``.

    ``F`` maps one point (any shape) to a scalar; ``∇F`` is ``jax.grad(F)``. The result is
    nonnegative for convex ``F`` and zero at ``p = q``. ``bregman(neg_entropy)`` is the
    generalised KL ``Σ p log(p/q) − Σ p + Σ q``, which is :func:`kl` on the simplex.
    """
    grad_F = jax.grad(F)

    def divergence(p: Array, q: Array) -> Array:
        return F(p) - F(q) - jnp.vdot(grad_F(q), p - q)

    return divergence


def _xlogx(p: Array) -> Array:
    """``p log p`` with ``0 log 0 = 0``; gradient ``log p + 1`` where ``p > 0``."""
    positive = p > 0
    safe = jnp.where(positive, p, 1)
    return jnp.where(positive, safe * jnp.log(safe), 0)


def entropy(p: Float[Array, "... n"]) -> Float[Array, "..."]:
    """Shannon entropy ``H(p) = −Σ p log p`` (nats) over the last axis, with ``0 log 0 = 0``."""
    return -jnp.sum(_xlogx(p), axis=-1)


def neg_entropy(p: Float[Array, "... n"]) -> Float[Array, "..."]:
    """Negative entropy ``Σ p log p``: the convex potential whose Bregman divergence is KL."""
    return jnp.sum(_xlogx(p), axis=-1)


def kl(p: Float[Array, "... n"], q: Float[Array, "... n"]) -> Float[Array, "..."]:
    """Categorical ``KL(p‖q) = Σ p log(p/q)`` over the last axis.

    ``0 log(0/q) = 0`` for any ``q``; ``p > 0`` where ``q = 0`` gives ``+inf``. Computed as
    ``p log(p/q)`` term by term (not ``Σ p log p − Σ p log q``) to keep precision when
    ``p ≈ q``.
    """
    both = (p > 0) & (q > 0)
    ratio = jnp.where(both, p, 1) / jnp.where(both, q, 1)
    terms = jnp.where(both, p * jnp.log(ratio), 0)
    terms = jnp.where((p > 0) & (q <= 0), jnp.inf, terms)
    return jnp.sum(terms, axis=-1)


def kl_gaussian(
    mu1: float | Array, var1: float | Array, mu2: float | Array, var2: float | Array
) -> Array:
    """``KL(N(μ1, σ1²) ‖ N(μ2, σ2²))`` for 1-D or diagonal Gaussians (summed over entries).

    Per coordinate ``½ [log(σ2²/σ1²) + (σ1² + (μ1 − μ2)²)/σ2² − 1]``. Asymmetric: the
    divergence from a narrow to a wide Gaussian is smaller than the reverse.
    """
    mu1, var1, mu2, var2 = (jnp.asarray(a) for a in (mu1, var1, mu2, var2))
    terms = 0.5 * (jnp.log(var2 / var1) + (var1 + (mu1 - mu2) ** 2) / var2 - 1)
    return jnp.sum(terms)


def kl_monte_carlo(
    log_p: Callable[[Array], Array],
    log_q: Callable[[Array], Array],
    samples: Float[Array, "n ..."],
) -> tuple[Float[Array, ""], Float[Array, ""]]:
    """Monte Carlo ``KL(p‖q) = E_p[log p(x) − log q(x)]`` and its standard error.

    ``samples`` are ``n ≥ 2`` draws from ``p`` along the leading axis; ``log_p`` and
    ``log_q`` map one sample to its log density (normalised, or both off by the same
    constant) and are ``vmap``-ed over them. Returns the sample mean of the log ratio and
    ``std(ddof=1)/√n``, for when no closed form (:func:`kl_gaussian`, :func:`kl`) exists.
    """
    n = samples.shape[0]
    if n < 2:
        raise ValueError(f"kl_monte_carlo: needs at least 2 samples, got {n}.")
    r = jax.vmap(log_p)(samples) - jax.vmap(log_q)(samples)
    return jnp.mean(r), jnp.std(r, ddof=1) / jnp.sqrt(n)


# ----------------------------------------------------------------------------- metrics


def fisher_categorical(p: Float[Array, " n"]) -> Float[Array, "n n"]:
    """Fisher information of a categorical in softmax-logit coordinates: ``diag(p) − ppᵀ``.

    With ``p = softmax(θ)``, ``KL(softmax θ ‖ softmax(θ + δ)) = ½ δᵀ F δ + O(‖δ‖³)``; ``F``
    equals the Hessian of that KL in ``δ`` at ``0``. ``F`` is singular along ``1`` (adding a
    constant to the logits changes nothing), so invert it with a pseudo-inverse.
    """
    return jnp.diag(p) - jnp.outer(p, p)


def fisher_simplex(p: Float[Array, " n"]) -> Float[Array, "n n"]:
    """Fisher information of a categorical in simplex coordinates: ``diag(1/p)``.

    Valid on the tangent space ``{δ : Σ δ = 0}``: ``KL(p ‖ p + δ) = ½ δᵀ diag(1/p) δ + O(‖δ‖³)``
    (the χ² approximation ``½ Σ δ²/p``). Needs ``p > 0``.
    """
    return jnp.diag(1 / p)


# ----------------------------------------------------------------------------- projection


def _project_simplex_1d(v: Float[Array, " n"]) -> Float[Array, " n"]:
    n = v.shape[-1]
    u = jnp.sort(v)[::-1]
    css = jnp.cumsum(u)
    j = jnp.arange(1, n + 1, dtype=v.dtype)
    active = u - (css - 1) / j > 0
    rho = jnp.sum(active)  # the active condition holds exactly for j = 1..rho
    tau = (css[rho - 1] - 1) / rho.astype(v.dtype)
    return jnp.maximum(v - tau, 0)


def project_simplex(v: Float[Array, "... n"]) -> Float[Array, "... n"]:
    """Euclidean projection of ``v`` onto the simplex ``{p ≥ 0, Σ p = 1}`` along the last axis.

    Sort-based, ``O(n log n)`` (Duchi, Shalev-Shwartz, Singer, Chandra 2008): the answer is
    ``max(v − τ, 0)`` with the unique ``τ`` making it sum to one. Leading axes are batched;
    the function also composes with ``vmap``, ``jit`` and ``grad``.
    """
    return jnp.vectorize(_project_simplex_1d, signature="(n)->(n)")(v)


def simplex_lattice(m: int, n: int = 3) -> Float[np.ndarray, "points n"]:
    """The points ``k/m`` of the open simplex in ``n`` coordinates, ``k`` positive integers
    summing to ``m`` (``C(m − 1, n − 1)`` of them), in lexicographic order of ``k``; float64.
    A grid of targets or starts that stays off the boundary."""
    if n < 1 or m < n:
        raise ValueError(f"simplex_lattice needs m >= n >= 1 (positive parts), got m={m}, n={n}.")

    def parts(total: int, k: int):
        if k == 1:
            yield (total,)
            return
        for first in range(1, total - k + 2):
            for rest in parts(total - first, k - 1):
                yield (first, *rest)

    return np.asarray(list(parts(m, n)), dtype=np.float64) / m


# ----------------------------------------------------------------------------- Gaussian fits


def gaussian_mixture_logpdf(
    x: Float[ArrayLike, "*shape"], means: tuple[float, ...], std: float
) -> Float[Array, "*shape"]:
    """Log density of the equal-weight 1-D mixture ``(1/k) Σ N(means_i, std²)`` at ``x``."""
    comps = jnp.stack([norm.logpdf(x, m, std) for m in means])
    return logsumexp(comps, axis=0) - jnp.log(len(means))


def gaussian_kl_objectives(
    x: Float[Array, " grid"], log_target: Float[Array, " grid"]
) -> tuple[Callable[[Array], Array], Callable[[Array], Array]]:
    """Forward ``KL(π‖q_θ)`` and reverse ``KL(q_θ‖π)`` of a Gaussian ``q_θ = N(μ, σ²)``,
    ``θ = (μ, log σ)``, to a 1-D target ``π`` given by its log density on the uniform grid
    ``x``, by quadrature (``Σ · dx``).

    Minimising the forward one matches the target's mean and variance (mass-covering); the
    reverse one locks onto a mode (mode-seeking). The grid must cover both densities.
    """
    dx = float(x[1] - x[0])
    pi = jnp.exp(log_target)

    def forward(theta: Float[Array, " 2"]) -> Float[Array, ""]:
        return jnp.sum(pi * (log_target - norm.logpdf(x, theta[0], jnp.exp(theta[1])))) * dx

    def reverse(theta: Float[Array, " 2"]) -> Float[Array, ""]:
        lq = norm.logpdf(x, theta[0], jnp.exp(theta[1]))
        return jnp.sum(jnp.exp(lq) * (lq - log_target)) * dx

    return forward, reverse


def gaussian_fit_logpdf(
    x_train: Float[np.ndarray, "n d"], x_test: Float[np.ndarray, "m d"]
) -> Float[np.ndarray, " m"]:
    """Per-point log density at ``x_test`` of the maximum-likelihood Gaussian of ``x_train``
    (sample mean, biased covariance): the one-Gaussian baseline of a density model. NumPy,
    in the inputs' precision."""
    mu = x_train.mean(0)
    cov = np.cov(x_train.T, bias=True)
    r = x_test - mu
    sol = np.linalg.solve(cov, r.T).T
    _, logdet = np.linalg.slogdet(cov)
    d = x_train.shape[1]
    return -0.5 * np.sum(r * sol, axis=1) - 0.5 * logdet - 0.5 * d * math.log(2 * math.pi)
