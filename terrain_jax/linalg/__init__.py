"""Matrix-free and dense linear algebra of Jacobians and symmetric operators.

The seed articles argue through spectra: a residual layer's Jacobian is ``I + h J_f``; a DEQ
converges when ``ρ(J_f) < 1``; gradient descent is stable for ``η < 2/λ_max``. This package
computes them:

- dense spectra of a map of one state: :func:`jacobian`, :func:`jacobian_eigenvalues`,
  :func:`jacobian_singular_values`, :func:`condition_number`;
- matrix-free on ``JᵀJ`` from ``jvp``/``vjp`` only: :func:`top_singular_value` (power
  iteration), :func:`jacobian_singular_values_lanczos`, and :func:`spectral_radius`
  (Arnoldi);
- Krylov spectra of any symmetric operator ``v ↦ A v``: :func:`lanczos` (full
  reorthogonalisation, restart on breakdown), :func:`top_eigenpairs` (Lanczos or power
  iteration with deflation), :func:`spectral_density` (stochastic Lanczos quadrature);
- Hutchinson estimates: :func:`hutchinson_trace` and :func:`jacobian_frobenius`, probes
  from :func:`hutchinson_probes` (:data:`HUTCHINSON_PROBES`).

Every loop is a ``lax.fori_loop``/``lax.scan``/``lax.map``; everything is ``jit``/``vmap``-
able and reverse-differentiable except power iteration, whose stopping rule is a
``lax.while_loop``.
"""

from ._arnoldi import spectral_radius
from ._dense import condition_number, jacobian, jacobian_eigenvalues, jacobian_singular_values
from ._eigen import EIGEN_METHODS, EIGEN_WHICH, top_eigenpairs
from ._hutchinson import HUTCHINSON_PROBES, hutchinson_probes, hutchinson_trace, jacobian_frobenius
from ._lanczos import jacobian_singular_values_lanczos, lanczos, tridiagonal
from ._power import top_singular_value
from ._slq import SpectralDensity, spectral_density
from ._util import Eigenpairs

__all__ = [
    "EIGEN_METHODS",
    "EIGEN_WHICH",
    "HUTCHINSON_PROBES",
    "Eigenpairs",
    "SpectralDensity",
    "condition_number",
    "hutchinson_probes",
    "hutchinson_trace",
    "jacobian",
    "jacobian_eigenvalues",
    "jacobian_frobenius",
    "jacobian_singular_values",
    "jacobian_singular_values_lanczos",
    "lanczos",
    "spectral_density",
    "spectral_radius",
    "top_eigenpairs",
    "top_singular_value",
    "tridiagonal",
]
