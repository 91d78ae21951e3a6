"""Curvature maps of a sampled 2-D loss surface: finite-difference Hessians, the
non-convexity map ``|λ_min / λ_max|`` of Li et al. 2018 and interior local minima.

The surface is a grid of numbers (``surface_2d``'s output), so everything here is numpy in
float64: second differences of float32 losses need the extra precision, and the round-off
floors below say how much of a second difference is noise.
"""

from typing import NamedTuple

import numpy as np
from jaxtyping import Bool, Float, Real

__all__ = ["Nonconvexity", "nonconvexity", "surface_hessian_eigs"]


def surface_hessian_eigs(
    z: Real[np.ndarray, "ny nx"], gx: Real[np.ndarray, " nx"], gy: Real[np.ndarray, " ny"]
) -> tuple[Float[np.ndarray, "ny-2 nx-2"], Float[np.ndarray, "ny-2 nx-2"]]:
    """``(λ_min, λ_max)`` of the 2×2 finite-difference Hessian at every interior point of
    ``z[j, i] = L(gx[i], gy[j])`` (uniform grids), each of shape ``(ny - 2, nx - 2)``.

    Central differences (``f_xx``, ``f_yy``, and the four-corner ``f_xy``), exact on
    quadratics; the eigenvalues in closed form, ``mid ± √(((f_xx − f_yy)/2)² + f_xy²)``.
    """
    z = np.asarray(z, np.float64)
    hx, hy = gx[1] - gx[0], gy[1] - gy[0]
    c = z[1:-1, 1:-1]
    fxx = (z[1:-1, 2:] - 2 * c + z[1:-1, :-2]) / hx**2
    fyy = (z[2:, 1:-1] - 2 * c + z[:-2, 1:-1]) / hy**2
    fxy = (z[2:, 2:] - z[2:, :-2] - z[:-2, 2:] + z[:-2, :-2]) / (4 * hx * hy)
    mid, rad = 0.5 * (fxx + fyy), np.sqrt(0.25 * (fxx - fyy) ** 2 + fxy**2)
    return mid - rad, mid + rad


class Nonconvexity(NamedTuple):
    """The non-convexity of a 2-D surface, found by :func:`nonconvexity`."""

    neg_frac: float
    """Fraction of interior points with significant negative curvature."""
    neg_frac_centre: float
    """The same over the centre region ``|x|, |y| ≤ centre``."""
    mean_ratio: float
    """Mean of ``ρ = max(0, −λ_min) / |λ_max|`` (clipped at 1) over the interior."""
    mean_ratio_centre: float
    """The same over the centre region."""
    local_minima: int
    """Interior points lower than all 8 neighbours by more than ``noise_rel |z|``."""
    minima_xy: list[list[float]]
    """Their ``[x, y]`` coordinates, in row-major grid order."""
    rho: Float[np.ndarray, "ny-2 nx-2"]
    """The ``ρ`` map, clipped at 1 (zero where the surface is locally convex)."""
    neg: Bool[np.ndarray, "ny-2 nx-2"]
    """Where the negative curvature is significant."""


def nonconvexity(
    z: Real[np.ndarray, "ny nx"],
    gx: Real[np.ndarray, " nx"],
    gy: Real[np.ndarray, " ny"],
    *,
    rel_neg: float = 0.01,
    noise_rel: float = 1e-5,
    centre: float = 0.5,
) -> Nonconvexity:
    """How non-convex a sampled surface ``z[j, i] = L(gx[i], gy[j])`` is (Li et al. 2018).

    At every interior point, the Hessian eigenvalues of :func:`surface_hessian_eigs` and
    ``ρ = max(0, −λ_min) / |λ_max|``, Li et al.'s ``|λ_min/λ_max|``. The negative curvature
    is *significant* where ``λ_min < −max(rel_neg |λ_max|, τ)``, ``τ = 4 noise_rel ·
    max|z| / h²`` the round-off floor of a second difference when each value of ``z`` is
    good to ``noise_rel`` relative (``max|z|`` over the point's 3×3 stencil: a floor scaled
    by the whole grid's range would let exploding far corners hide the centre's
    curvature). A local minimum is lower than its 8 neighbours by more than
    ``noise_rel |z|``. Both floors are relative, so the measure is invariant to the
    surface's scale.
    """
    lmin, lmax = surface_hessian_eigs(z, gx, gy)
    zz = np.asarray(z, np.float64)
    ny, nx = zz.shape
    hx, hy = gx[1] - gx[0], gy[1] - gy[0]
    zmax = np.max(
        [
            np.abs(zz[1 + j : ny - 1 + j, 1 + i : nx - 1 + i])
            for j in (-1, 0, 1)
            for i in (-1, 0, 1)
        ],
        axis=0,
    )
    tau = 4.0 * noise_rel * zmax / min(hx, hy) ** 2
    rho = np.maximum(0.0, -lmin) / np.maximum(np.abs(lmax), 1e-12)
    neg = lmin < -np.maximum(rel_neg * np.abs(lmax), tau)
    xx, yy = np.meshgrid(gx[1:-1], gy[1:-1])
    in_centre = (np.abs(xx) <= centre + 1e-9) & (np.abs(yy) <= centre + 1e-9)
    # interior local minima: lower than all 8 neighbours by more than the margin
    c = zz[1:-1, 1:-1]
    lower = np.ones_like(c, bool)
    for dj in (-1, 0, 1):
        for di in (-1, 0, 1):
            if dj or di:
                nb = zz[1 + dj : ny - 1 + dj, 1 + di : nx - 1 + di]
                lower &= nb - c > noise_rel * np.abs(c)
    mins = np.argwhere(lower)
    return Nonconvexity(
        neg_frac=float(np.mean(neg)),
        neg_frac_centre=float(np.mean(neg[in_centre])),
        mean_ratio=float(np.mean(np.minimum(rho, 1.0))),
        mean_ratio_centre=float(np.mean(np.minimum(rho[in_centre], 1.0))),
        local_minima=int(len(mins)),
        minima_xy=[[float(gx[1 + i]), float(gy[1 + j])] for j, i in mins],
        rho=np.minimum(rho, 1.0),
        neg=neg,
    )
