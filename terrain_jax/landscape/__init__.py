"""Loss landscapes: filter-normalised directions, 1-D/2-D surfaces, PCA trajectory planes.

A loss surface is the loss along a low-dimensional affine slice ``θ + Σ_k c_k d_k`` of
parameter space. This package builds the slice and evaluates it fast and faithfully:

- directions: :func:`random_direction` / :func:`random_directions` (Gaussian, with the
  filter normalisation of Li et al. 2018, optional Gram–Schmidt), :func:`pca_directions`
  (the top principal components of a training trajectory, final point at the origin) and
  :func:`direction_between` / :func:`interpolate` (the line between two solutions);
- curvature of a sampled 2-D surface: :func:`surface_hessian_eigs` (finite-difference
  Hessians) and :func:`nonconvexity` (Li et al.'s ``|λ_min/λ_max|`` map, the fraction of
  significant negative curvature, interior local minima);
- evaluation: :func:`surface` at any list of coordinates, :func:`surface_1d` on a line,
  :func:`surface_2d` on a grid. Grid points are evaluated in one compiled call: a
  ``lax.map`` over chunks of ``chunk_size`` points, ``vmap``-ed within a chunk (memory
  bounded by the chunk, not the grid; on CPU the default chunk is one point, which is
  fastest there), a full dataset averaged exactly over minibatches, and, when several
  devices exist, the points sharded across all of them (automatically) with
  ``jax.shard_map`` over a one-axis ``Mesh``. On CPU the points are also split into one
  concurrent call per core (XLA:CPU spreads one call's small dots over the cores poorly).

Parameters are any pytree, typically an ``eqx.Module``: only its inexact arrays
(``eqx.is_inexact_array``) move; a direction is a pytree shaped like
``eqx.filter(params, eqx.is_inexact_array)`` (``None`` at every other leaf).

A 51×51 filter-normalised surface over a training set, and a trajectory plane::

    dirs = random_directions(key, model, stack_axes=lambda m: m.net.blocks)
    z = surface_2d(loss, model, dirs, g, g, data=(x_train, y_train), batch_size=1024)
    plane = pca_directions(stack_checkpoints(saved_models))  # last one is the final point
    z = surface_2d(loss, saved_models[-1], plane.directions, gx, gy, data=(x, y))
    plt.contour(gx, gy, z); plt.plot(*plane.coords.T)  # axes: explained_variance_ratio

with ``loss(model, xb, yb) -> mean over the batch`` (the signature :func:`terrain_jax.fit`
takes).
"""

from ._curvature import Nonconvexity, nonconvexity, surface_hessian_eigs
from ._directions import (
    NORMALISATIONS,
    PCAPlane,
    direction_between,
    interpolate,
    pca_directions,
    random_direction,
    random_directions,
    stack_checkpoints,
)
from ._surface import surface, surface_1d, surface_2d

__all__ = [
    "NORMALISATIONS",
    "random_direction",
    "random_directions",
    "PCAPlane",
    "pca_directions",
    "stack_checkpoints",
    "direction_between",
    "interpolate",
    "surface",
    "surface_1d",
    "surface_2d",
    "Nonconvexity",
    "nonconvexity",
    "surface_hessian_eigs",
]
