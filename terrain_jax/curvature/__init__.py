"""Loss curvature in the parameters (any pytree or ``eqx.Module``), matrix-free.

- operators on flat parameter vectors, each the exact mean over a dataset (a ``lax.scan``
  over full batches plus a ragged last one): :func:`hvp`, :func:`hessian_operator`,
  :func:`gauss_newton_operator`, :func:`fisher_operator` (true or empirical);
- their spectra, through :mod:`terrain_jax.linalg`: :func:`hessian_top_eigenvalues` (the
  top eigenpairs of any symmetric operator, :func:`terrain_jax.linalg.top_eigenpairs`),
  :func:`sharpness` (the top Hessian eigenpair, warm-startable), :func:`hutchinson_trace`
  and :func:`spectral_density`.
"""

from ..linalg import (
    EIGEN_METHODS,
    EIGEN_WHICH,
    HUTCHINSON_PROBES,
    Eigenpairs,
    SpectralDensity,
    hutchinson_trace,
    spectral_density,
    top_eigenpairs,
)
from ._operators import (
    FISHER_KINDS,
    CurvatureOperator,
    fisher_operator,
    gauss_newton_operator,
    hessian_operator,
    hvp,
)
from ._outliers import SpectralGap, spectral_gap
from ._sharpness import sharpness

hessian_top_eigenvalues = top_eigenpairs
"""The top eigenpairs of a curvature operator: :func:`terrain_jax.linalg.top_eigenpairs`."""
CURVATURE_METHODS = EIGEN_METHODS
"""Eigen-solvers for :func:`hessian_top_eigenvalues`: ``"lanczos"``, ``"power"``."""
TRACE_PROBES = HUTCHINSON_PROBES
"""Probe distributions for :func:`hutchinson_trace` (the library's one probe vocabulary)."""

__all__ = [
    "CURVATURE_METHODS",
    "EIGEN_WHICH",
    "FISHER_KINDS",
    "TRACE_PROBES",
    "CurvatureOperator",
    "Eigenpairs",
    "SpectralDensity",
    "SpectralGap",
    "fisher_operator",
    "gauss_newton_operator",
    "hessian_operator",
    "hessian_top_eigenvalues",
    "hutchinson_trace",
    "hvp",
    "sharpness",
    "spectral_density",
    "spectral_gap",
]
