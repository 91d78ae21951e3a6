"""Top eigenpairs of a symmetric operator (Hessian, GGN, Fisher), matrix-free, by
Lanczos or by power iteration."""

from collections.abc import Callable

from jax.typing import DTypeLike
from jaxtyping import Array, Float, PRNGKeyArray

from ._lanczos import lanczos_eigenpairs
from ._power import power_eigenpairs
from ._util import Eigenpairs, resolve_dtype

EIGEN_METHODS = ("lanczos", "power")


EIGEN_WHICH = ("LA", "LM")


def top_eigenpairs(
    matvec: Callable[[Array], Array],
    dim: int,
    k: int,
    key: PRNGKeyArray,
    *,
    method: str = "lanczos",
    num_iters: int | None = None,
    which: str | None = None,
    v0: Float[Array, " n"] | None = None,
    tol: float = 1e-5,
    dtype: DTypeLike | None = None,
) -> Eigenpairs:
    """Top ``k`` eigenpairs of a symmetric operator (Hessian, GGN, Fisher), matrix-free.

    - ``method="lanczos"``: ``num_iters`` (default 90, at most ``dim``) steps of Lanczos
      with full reorthogonalisation in one ``lax.fori_loop``, then the Ritz pairs of the
      tridiagonal ``T``; ``which="LA"`` (default) the largest algebraic, ``"LM"`` the
      largest in magnitude. Residuals come free (``β_m |s_mi|``, floored at
      ``ε max|θ|``, the round-off in the products). Our own loop rather
      than ``matfree.decomp.tridiag_sym``: matfree normalises round-off when the Krylov
      space closes (low-rank GGN/Fisher, small models), giving spurious Ritz values.
    - ``method="power"``: power iteration with deflation (as PyHessian), eigenpair by
      eigenpair in a ``lax.scan``, each a ``lax.while_loop`` of at most ``num_iters``
      (default 1000) products stopped when ``‖A v − λ v‖ ≤ tol·|λ|``; finds the largest
      in *magnitude* (``which="LM"`` only) and converges at rate ``|λ_{i+1}/λ_i|``.

    ``v0`` warm-starts the first vector (e.g. the previous step's top eigenvector while
    tracking sharpness during training). ``dtype`` defaults to ``matvec.dtype`` for a
    :class:`~terrain_jax.curvature.CurvatureOperator` (any callable with a ``dtype``),
    else jax's default float. Jit-compatible; wrap it in your ``jit``.
    """
    if method not in EIGEN_METHODS:
        raise ValueError(f"Unknown method {method!r}; valid methods: {', '.join(EIGEN_METHODS)}.")
    if not 1 <= k <= dim:
        raise ValueError(f"k must satisfy 1 <= k <= dim = {dim}; got k={k}.")
    which = ("LA" if method == "lanczos" else "LM") if which is None else which
    if which not in EIGEN_WHICH:
        raise ValueError(f"Unknown which={which!r}; valid: {', '.join(EIGEN_WHICH)}.")
    dtype = resolve_dtype(matvec, dtype)
    if method == "lanczos":
        num_iters = 90 if num_iters is None else num_iters
        return lanczos_eigenpairs(matvec, dim, k, key, num_iters, which, v0, dtype)
    if which != "LM":
        raise ValueError(
            "Power iteration finds the largest-magnitude eigenvalues only (which='LM'); "
            "use method='lanczos' for the largest algebraic ones."
        )
    num_iters = 1000 if num_iters is None else num_iters
    return power_eigenpairs(matvec, dim, k, key, num_iters, tol, v0, dtype)
