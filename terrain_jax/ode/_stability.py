"""Linear stability of Runge--Kutta methods.

On the test equation ``y' = λy`` one step of a Runge--Kutta method multiplies ``y`` by
``R(z)``, ``z = hλ``, with ``R(z) = 1 + z bᵀ(I − zA)⁻¹1``. The method is stable where
``|R(z)| ≤ 1``. These functions take any solver :func:`terrain_jax.tableau` understands
(explicit or implicit), so "gradient descent is stable only for ``η < 2/λ_max``" is
``max_stable_step("euler", eigenvalues_of_hessian)``.
"""

from typing import TypeAlias

import diffrax as dfx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Complex, Float

from ._tableau import Tableau, tableau

SolverLike: TypeAlias = str | dfx.AbstractSolver | Tableau
"""A solver name, a diffrax Runge--Kutta solver, or a :class:`Tableau`."""


def _tab(solver: SolverLike) -> Tableau:
    return solver if isinstance(solver, Tableau) else tableau(solver)


def _lower_triangular(A: np.ndarray) -> bool:
    return bool(np.all(np.triu(A, 1) == 0))


def _stages(A, z, xp):
    """Solve ``(I − zA) x = 1`` per ``z``: forward substitution for (diagonally) implicit
    and explicit tableaus — no pivoting, so no spurious singularity at large ``|z|`` — and
    a dense solve for fully implicit ones."""
    k = A.shape[0]
    if _lower_triangular(np.asarray(A)):
        xs = []
        for i in range(k):
            acc = 1.0 + z * sum((float(A[i, j]) * xs[j] for j in range(i)), xp.zeros_like(z))
            xs.append(acc / (1.0 - z * float(A[i, i])))
        return xp.stack(xs, axis=-1)
    M = xp.eye(k, dtype=z.dtype) - z[..., None, None] * xp.asarray(A, dtype=z.dtype)
    return xp.linalg.solve(M, xp.ones(z.shape + (k, 1), dtype=z.dtype))[..., 0]


def stability_function(
    solver: SolverLike, z: Complex[ArrayLike, "*shape"]
) -> Complex[Array, "*shape"]:
    """``R(z) = 1 + z bᵀ(I − zA)⁻¹1`` evaluated elementwise on ``z``.

    Computed in complex128 when ``jax_enable_x64`` is on, else complex64.
    """
    tab = _tab(solver)
    cdtype = jnp.result_type(complex)
    z = jnp.asarray(z, dtype=cdtype)
    x = _stages(np.asarray(tab.A), z, jnp)
    return 1.0 + z * (x @ jnp.asarray(tab.b, dtype=cdtype))


def region(solver: SolverLike, grid: Complex[ArrayLike, "*shape"]) -> Bool[Array, "*shape"]:
    """Where on ``grid`` (complex ``z = hλ``) the method is stable, ``|R(z)| ≤ 1``."""
    return jnp.abs(stability_function(solver, grid)) <= 1.0 + 1e-6


def _R_np(tab: Tableau, z: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return 1.0 + z * (_stages(tab.A, z.astype(complex), np) @ tab.b)


_SERIES_R = 1e-2  # below this |z|, judge |R| through its power series (no cancellation)
_SERIES_TERMS = 24


def _growth(tab: Tableau, r: np.ndarray, u: np.ndarray) -> np.ndarray:
    """``|R(r u)|² − 1`` for radii ``r`` (last axis) along unit directions ``u``.

    Near the origin the direct value is lost to cancellation against 1 (a ray tangent to
    the boundary, like explicit Euler on the imaginary axis, has ``|R|² − 1 = r²``), so
    there it is summed from the series ``R(z) = Σ_k bᵀA^{k−1}1 z^k``, whose ``|·|² − 1``
    has no constant term.
    """
    m = _SERIES_TERMS
    c = np.ones(m + 1)
    v = np.ones(len(tab.b))
    for k in range(1, m + 1):
        c[k] = tab.b @ v
        v = tab.A @ v
    # g_n(u) = Σ_{j+k=n} c_j c_k u^j conj(u)^k, for n = 1 … m
    powers = u[:, None] ** np.arange(m + 1)  # (rays, m+1)
    cu = c * powers
    g = np.zeros((u.size, m + 1))
    for j in range(m + 1):
        for k in range(m + 1 - j):
            g[:, j + k] += np.real(cu[:, j] * np.conj(cu[:, k]))
    g[:, 0] = 0.0
    # exact cancellations (order conditions) leave float64 dust; it must not decide the sign
    g[np.abs(g) < _COEF_DUST] = 0.0
    series = np.einsum("rn,rkn->rk", g, r[..., None] ** np.arange(m + 1))
    direct = np.abs(_R_np(tab, r * u[:, None])) ** 2 - 1.0
    # the series is exact up to its dust: any positive value is growth
    return np.where(
        r < _SERIES_R, np.where(series > 0, np.inf, series), np.nan_to_num(direct, nan=np.inf)
    )


_TOL = 1e-13  # direct evaluation: float64 round-off in |R|² − 1 away from the origin
_COEF_DUST = 1e-11


def max_stable_step(
    solver: SolverLike,
    eigenvalues: Complex[ArrayLike, " n"] | Float[ArrayLike, " n"] | list,
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
    radii = np.logspace(-6, np.log10(h_max), 3000)
    unit = lam / np.abs(lam)
    bad = _growth(tab, np.broadcast_to(radii, (unit.size, radii.size)), unit) > _TOL
    exits = bad.any(axis=1)
    if not exits.any():
        return float("inf")
    unit, mag, first = unit[exits], np.abs(lam)[exits], bad[exits].argmax(axis=1)
    if np.any(first == 0):
        return 0.0
    lo, hi = radii[first - 1], radii[first]
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        out = np.diagonal(_growth(tab, np.broadcast_to(mid, (unit.size, unit.size)), unit)) > _TOL
        hi = np.where(out, mid, hi)
        lo = np.where(out, lo, mid)
    return float(np.min(lo / mag))


def real_stability_interval(solver: SolverLike) -> tuple[float, float]:
    """The stability interval ``(a, 0)`` of the method on the negative real axis."""
    h = max_stable_step(solver, np.array([-1.0]))
    return (-h, 0.0)
