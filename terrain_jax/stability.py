"""Linear stability of Runge--Kutta methods.

On the test equation ``y' = λy`` one step of a Runge--Kutta method multiplies ``y`` by
``R(z)``, ``z = hλ``, with ``R(z) = 1 + z bᵀ(I − zA)⁻¹1``. The method is stable where
``|R(z)| ≤ 1``. These functions take any solver :func:`terrain_jax.tableau` understands
(explicit or implicit), so "gradient descent is stable only for ``η < 2/λ_max``" is
``max_stable_step("euler", eigenvalues_of_hessian)``.
"""

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Complex, Float

from .solvers import Tableau, tableau

__all__ = ["stability_function", "region", "max_stable_step", "real_stability_interval"]


def _tab(solver) -> Tableau:
    return solver if isinstance(solver, Tableau) else tableau(solver)


def stability_function(solver, z: Complex[ArrayLike, "*shape"]) -> Complex[Array, "*shape"]:
    """``R(z) = 1 + z bᵀ(I − zA)⁻¹1`` evaluated elementwise on ``z``."""
    tab = _tab(solver)
    A = jnp.asarray(tab.A, dtype=jnp.complex64)
    b = jnp.asarray(tab.b, dtype=jnp.complex64)
    z = jnp.asarray(z, dtype=jnp.complex64)
    k = A.shape[0]
    flat = z.reshape(-1)
    M = jnp.eye(k, dtype=A.dtype)[None] - flat[:, None, None] * A[None]
    x = jnp.linalg.solve(M, jnp.ones((flat.shape[0], k, 1), dtype=A.dtype))[..., 0]
    R = 1.0 + flat * (x @ b)
    return R.reshape(z.shape)


def region(solver, grid: Complex[ArrayLike, "*shape"]) -> Bool[Array, "*shape"]:
    """Where on ``grid`` (complex ``z = hλ``) the method is stable, ``|R(z)| ≤ 1``."""
    return jnp.abs(stability_function(solver, grid)) <= 1.0 + 1e-6


_TOL = 1e-14  # float64 round-off; a ray tangent to |R| = 1 at 0 exits at |z| ~ 1e-7


def _abs_R_np(tab: Tableau, z: np.ndarray) -> np.ndarray:
    k = tab.A.shape[0]
    M = np.eye(k)[None] - z.reshape(-1)[:, None, None] * tab.A[None]
    x = np.linalg.solve(M, np.ones((z.size, k, 1)))[..., 0]
    return np.abs(1.0 + z.reshape(-1) * (x @ tab.b)).reshape(z.shape)


def max_stable_step(
    solver,
    eigenvalues: Complex[ArrayLike, " n"] | Float[ArrayLike, " n"],
    *,
    h_max: float = 1e6,
) -> float:
    """Largest ``h`` such that ``|R(hλ)| ≤ 1`` for every ``λ`` and every step in ``(0, h]``.

    Returns ``inf`` when the method is stable for all steps up to ``h_max / min|λ|``
    (A-stable methods on a left-half-plane spectrum), and ``0`` when no positive step is
    stable (e.g. explicit Euler on a purely imaginary eigenvalue). Eigenvalues equal to
    zero impose no limit.
    """
    tab = _tab(solver)
    lam = np.atleast_1d(np.asarray(eigenvalues, dtype=complex))
    lam = lam[np.abs(lam) > 0]
    if lam.size == 0:
        return float("inf")
    # Scan z = hλ along every ray at once on a log grid of |z|, then bisect each first exit.
    radii = np.logspace(-7, np.log10(h_max), 4000)
    unit = lam / np.abs(lam)
    bad = _abs_R_np(tab, radii[None, :] * unit[:, None]) > 1.0 + _TOL
    exits = bad.any(axis=1)
    if not exits.any():
        return float("inf")
    unit, mag, first = unit[exits], np.abs(lam)[exits], bad[exits].argmax(axis=1)
    if np.any(first == 0):
        return 0.0
    lo, hi = radii[first - 1], radii[first]
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        out = _abs_R_np(tab, mid * unit) > 1.0 + _TOL
        hi = np.where(out, mid, hi)
        lo = np.where(out, lo, mid)
    return float(np.min(lo / mag))


def real_stability_interval(solver) -> tuple[float, float]:
    """The stability interval ``(a, 0)`` of the method on the negative real axis."""
    h = max_stable_step(solver, np.array([-1.0]))
    return (-h, 0.0)
