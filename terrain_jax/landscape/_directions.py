"""Directions of a loss slice: Gaussian and filter-normalised (Li et al. 2018), PCA planes of a
training trajectory, and the line between two solutions.

A direction is a pytree shaped like ``eqx.filter(params, eqx.is_inexact_array)`` (``None`` at
every non-parameter leaf), so it adds to the parameters leaf by leaf.
"""

import functools
from collections.abc import Callable, Sequence
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import numpy as np
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray, PyTree

from ._util import inexact_arrays

__all__ = [
    "NORMALISATIONS",
    "PCAPlane",
    "direction_between",
    "interpolate",
    "pca_directions",
    "random_direction",
    "random_directions",
    "stack_checkpoints",
]

NORMALISATIONS = ("filter", "layer", "none")
_IGNORE_1D = ("zero", "keep")
_EPS = 1e-10  # Li et al.'s guard in d_i · ‖w_i‖ / (‖d_i‖ + eps)


# ----------------------------------------------------------------------------- pytree helpers


def _tree_vdot(a: PyTree, b: PyTree) -> Array:
    """``⟨a, b⟩`` in the flattened parameter space (``None`` leaves contribute nothing)."""
    terms = [jnp.vdot(x, y) for x, y in zip(jtu.tree_leaves(a), jtu.tree_leaves(b), strict=True)]
    if not terms:
        raise ValueError("the direction has no inexact array leaves.")
    dtype = functools.reduce(jnp.promote_types, [t.dtype for t in terms])
    return jnp.sum(jnp.stack([t.astype(dtype) for t in terms]))


def _stack_axes_per_leaf(params: PyTree, stack_axes: int | Callable) -> list[int]:
    """One integer per leaf of ``params``: how many leading axes are a stack of layers."""
    if isinstance(stack_axes, int | np.integer) and stack_axes >= 0:
        return [int(stack_axes)] * len(jtu.tree_leaves(params))
    if not callable(stack_axes):
        raise ValueError(
            "`stack_axes` must be a nonnegative int or a function selecting the stacked "
            "sub-trees (as eqx.tree_at's `where`, e.g. lambda m: m.net.blocks); "
            f"got {stack_axes!r}."
        )
    zeros = jtu.tree_map(lambda _: 0, params)
    ones = lambda sub: jtu.tree_map(lambda _: 1, sub)
    return [int(n) for n in jtu.tree_leaves(eqx.tree_at(stack_axes, zeros, replace_fn=ones))]


# ----------------------------------------------------------------------------- directions


def _check_choice(value: str, valid: tuple[str, ...], name: str) -> None:
    if value not in valid:
        raise ValueError(f"Unknown {name} {value!r}; valid: {', '.join(valid)}.")


def _normalise(d: Array, w: Array, stack: int, normalisation: str, ignore_1d: str) -> Array:
    """Rescale one leaf ``d`` of a direction to the weight ``w`` (see random_direction)."""
    if stack > d.ndim:
        raise ValueError(f"stack_axes={stack} exceeds the rank of a leaf of shape {d.shape}.")
    if d.ndim - stack <= 1 or all(n == 1 for n in d.shape[stack + 1 :]):
        # biases, norm scales, scalars; also equinox's conv biases of shape (out, 1, ...)
        if ignore_1d == "zero":
            return jnp.zeros_like(d)
        if normalisation == "none":
            return d
        axes = tuple(range(stack, d.ndim))  # the vector as a whole
    elif normalisation == "filter":
        axes = tuple(range(stack + 1, d.ndim))  # each output filter / neuron
    elif normalisation == "layer":
        axes = tuple(range(stack, d.ndim))
    else:
        return d
    norm = lambda a: jnp.sqrt(jnp.sum(jnp.square(a), axis=axes, keepdims=True))
    return d * (norm(w) / (norm(d) + _EPS))


def random_direction(
    key: PRNGKeyArray,
    params: PyTree,
    *,
    normalisation: str = "filter",
    ignore_1d: str = "zero",
    stack_axes: int | Callable[[PyTree], PyTree] = 0,
) -> PyTree[Float[Array, "..."]]:
    """A Gaussian direction in the space of ``params``' inexact arrays, rescaled to them.

    - ``normalisation="filter"`` (Li et al. 2018): each output filter / neuron of a weight
      (a slice along its first axis: a ``Linear`` row of ``(out, in)``, a conv filter of
      ``(out, in, k...)``) becomes ``d_i · ‖w_i‖ / (‖d_i‖ + 1e-10)``, so the slice is
      insensitive to the scale invariance of the net;
    - ``"layer"``: the same with each whole weight as one block; ``"none"``: raw ``N(0, I)``.
    - ``ignore_1d``: parameters with one value per filter at most (biases, norm scales,
      equinox's conv biases of shape ``(out, 1, ...)``) are zeroed (``"zero"``, Li et al.'s
      default) or kept and rescaled as one vector (``"keep"``).
    - ``stack_axes``: leading axes that index a stack of layers, whose layers are normalised
      one by one: an int for every leaf, or a function selecting the stacked sub-trees (as
      ``eqx.tree_at``'s ``where``), each with one stack axis, e.g. ``lambda m: m.net.blocks``
      for the stacked blocks of :func:`terrain_jax.nets.make_blocks`.

    Returns a pytree shaped like ``eqx.filter(params, eqx.is_inexact_array)``.
    """
    _check_choice(normalisation, NORMALISATIONS, "normalisation")
    _check_choice(ignore_1d, _IGNORE_1D, "ignore_1d")
    stacks = _stack_axes_per_leaf(params, stack_axes)
    if not jtu.tree_leaves(inexact_arrays(params)):
        raise ValueError("`params` has no inexact array leaves to build a direction over.")
    return _random_direction(key, params, tuple(stacks), normalisation, ignore_1d)


@eqx.filter_jit
def _random_direction(
    key: PRNGKeyArray,
    params: PyTree,
    stacks: tuple[int, ...],
    normalisation: str,
    ignore_1d: str,
) -> PyTree:
    leaves, treedef = jtu.tree_flatten(params)
    arrays = [w for w in leaves if eqx.is_inexact_array(w)]
    dtype = functools.reduce(jnp.promote_types, [w.dtype for w in arrays])
    # one draw for all leaves: a single threefry call compiles much faster than one per leaf
    flat = jax.random.normal(key, (sum(w.size for w in arrays),), dtype)
    draws = iter(jnp.split(flat, np.cumsum([w.size for w in arrays])[:-1]))
    out = []
    for w, s in zip(leaves, stacks, strict=True):
        if not eqx.is_inexact_array(w):
            out.append(None)
            continue
        d = next(draws).reshape(w.shape).astype(w.dtype)
        out.append(_normalise(d, w, s, normalisation, ignore_1d))
    return jtu.tree_unflatten(treedef, out)


def random_directions(
    key: PRNGKeyArray,
    params: PyTree,
    n: int = 2,
    *,
    orthogonalise: bool = False,
    normalisation: str = "filter",
    ignore_1d: str = "zero",
    stack_axes: int | Callable[[PyTree], PyTree] = 0,
) -> tuple[PyTree[Float[Array, "..."]], ...]:
    """``n`` independent :func:`random_direction` s (same options), as a tuple.

    ``orthogonalise=True`` applies Gram–Schmidt in the flattened parameter space (each
    direction loses its components along the earlier ones) and rescales each result back
    to its norm before, so both axes of a plot keep the scale of the weights. In high
    dimension random directions are nearly orthogonal already (cosine ``~ 1/√P``), so the
    per-filter norms change by about that fraction.
    """
    if not isinstance(n, int | np.integer) or n < 1:
        raise ValueError(f"`n` must be a positive integer, got {n!r}.")
    kw = dict(normalisation=normalisation, ignore_1d=ignore_1d, stack_axes=stack_axes)
    dirs = [random_direction(k, params, **kw) for k in jax.random.split(key, int(n))]
    if not orthogonalise:
        return tuple(dirs)
    return _gram_schmidt(tuple(dirs))


@eqx.filter_jit
def _gram_schmidt(dirs: tuple[PyTree, ...]) -> tuple[PyTree, ...]:
    """Modified Gram–Schmidt in the flattened space, each result rescaled to its old norm."""
    out: list[PyTree] = []
    units: list[PyTree] = []  # orthonormal basis of the directions so far
    for d in dirs:
        norm0 = jnp.sqrt(_tree_vdot(d, d))
        for e in units:
            d = _axpy(-_tree_vdot(d, e), e, d)
        unit = _scale(d, 1.0 / (jnp.sqrt(_tree_vdot(d, d)) + _EPS))
        units.append(unit)
        out.append(_scale(unit, norm0))
    return tuple(out)


def _scale(tree: PyTree, s: Array | float) -> PyTree:
    return jtu.tree_map(lambda x: x * jnp.asarray(s).astype(x.dtype), tree)


def _axpy(a: Array, x: PyTree, y: PyTree) -> PyTree:
    return jtu.tree_map(lambda u, v: a.astype(u.dtype) * u + v, x, y)


# ----------------------------------------------------------------------------- PCA planes


class PCAPlane(NamedTuple):
    """Principal directions of a training trajectory, final point at the origin.

    ``directions``: unit vectors (flattened space), pytrees like one checkpoint's inexact
    arrays; ``explained_variance_ratio[j]``: the fraction of the trajectory's variance along
    direction ``j`` (label the axes with it); ``coords[k, j] = ⟨θ_k − θ_final, d_j⟩``, the
    trajectory in the plane.
    """

    directions: tuple[PyTree[Float[Array, "..."]], ...]
    explained_variance_ratio: Float[Array, " components"]
    coords: Float[Array, "checkpoints components"]

    def grid(self, num: int, margin: float = 0.25) -> tuple[np.ndarray, np.ndarray]:
        """Axes ``(gx, gy)`` (float64, ``num`` points each) of a grid over the plane that
        spans the trajectory's ``coords`` plus ``margin`` of their extent on every side:
        the grid to evaluate :func:`surface_2d` on and draw the trajectory over."""
        coords = np.asarray(self.coords, np.float64)
        lo, hi = coords.min(axis=0), coords.max(axis=0)
        pad = margin * (hi - lo)
        return tuple(np.linspace(lo[j] - pad[j], hi[j] + pad[j], num) for j in (0, 1))


def stack_checkpoints(checkpoints: Sequence[PyTree]) -> PyTree:
    """A list of same-shaped parameter pytrees → one pytree with a leading checkpoint axis
    (the input of :func:`pca_directions`); non-array leaves are taken from the first."""
    if len(checkpoints) == 0:
        raise ValueError("no checkpoints to stack.")
    dyn = [inexact_arrays(c) for c in checkpoints]
    stacked = jtu.tree_map(lambda *xs: jnp.stack(xs), *dyn)
    return eqx.combine(stacked, eqx.filter(checkpoints[0], eqx.is_inexact_array, inverse=True))


def _flatten_rows(tree: PyTree, lead: int) -> Array:
    """Inexact leaves with ``lead`` leading axes → one ``(*lead_shape, P)`` matrix."""
    leaves = jtu.tree_leaves(inexact_arrays(tree))
    if not leaves:
        raise ValueError("the checkpoints have no inexact array leaves.")
    dtype = functools.reduce(jnp.promote_types, [x.dtype for x in leaves])
    shape = leaves[0].shape[:lead]
    return jnp.concatenate([x.reshape(shape + (-1,)).astype(dtype) for x in leaves], axis=-1)


def _unflatten(vec: Array, template: PyTree) -> PyTree:
    """Inverse of :func:`_flatten_rows` for one row, shaped and typed like ``template``."""
    leaves, treedef = jtu.tree_flatten(inexact_arrays(template))
    sizes = np.cumsum([x.size for x in leaves])[:-1]
    parts = jnp.split(vec, sizes)
    out = [p.reshape(x.shape).astype(x.dtype) for p, x in zip(parts, leaves, strict=True)]
    return jtu.tree_unflatten(treedef, out)


def pca_directions(
    checkpoints: PyTree,
    final: PyTree | None = None,
    *,
    n_components: int = 2,
    center: bool = True,
) -> PCAPlane:
    """The plane a training trajectory moves in: top principal components of ``θ_k − θ_final``.

    ``checkpoints`` is one pytree whose inexact leaves carry a leading checkpoint axis
    (:func:`stack_checkpoints` builds it from a list). ``final`` defaults to the last
    checkpoint, which is then left out of the fit (its row is zero). ``center=True``
    subtracts the mean difference before the SVD, as Li et al.'s code (sklearn ``PCA``)
    does; ``False`` takes the SVD of the raw differences. One SVD of the
    ``(checkpoints × parameters)`` matrix, no loop; signs are fixed so each direction's
    largest-magnitude entry is positive. Coordinates are projections of the uncentred
    differences, so the final point sits at the origin. Centring costs one dimension: ``m``
    trajectory points give at most ``m − 1`` components with nonzero variance.
    """
    rows = _flatten_rows(checkpoints, 1)
    if final is None:
        template = jtu.tree_map(lambda x: x[-1], inexact_arrays(checkpoints))
        diffs = rows - rows[-1]
        fit_rows = diffs[:-1]
    else:
        template = final
        ref = _flatten_rows(final, 0)
        if ref.shape[-1] != rows.shape[-1]:
            raise ValueError(
                f"`final` has {ref.shape[-1]} parameters, a checkpoint {rows.shape[-1]}."
            )
        diffs = rows - ref
        fit_rows = diffs
    k = int(n_components)
    if k < 1 or k > min(fit_rows.shape):
        raise ValueError(
            f"`n_components` must be in [1, {min(fit_rows.shape)}] for {fit_rows.shape[0]} "
            f"trajectory points and {fit_rows.shape[1]} parameters, got {n_components!r}; "
            "save more checkpoints."
        )
    x = fit_rows - jnp.mean(fit_rows, axis=0) if center else fit_rows
    _, s, vt = jnp.linalg.svd(x, full_matrices=False)
    v = vt[:k]
    pivot = jnp.take_along_axis(v, jnp.argmax(jnp.abs(v), axis=1)[:, None], axis=1)
    v = v * jnp.sign(pivot)
    var = jnp.square(s)
    ratio = var[:k] / jnp.sum(var)
    return PCAPlane(
        directions=tuple(_unflatten(v[j], template) for j in range(k)),
        explained_variance_ratio=ratio,
        coords=diffs @ v.T,
    )


# ----------------------------------------------------------------------------- lines


def direction_between(params_a: PyTree, params_b: PyTree) -> PyTree[Float[Array, "..."]]:
    """``θ_b − θ_a`` over the inexact arrays: :func:`surface_1d` along it with ``alphas``
    in ``[0, 1]`` is the linear interpolation between two solutions."""
    return jtu.tree_map(jnp.subtract, inexact_arrays(params_b), inexact_arrays(params_a))


def interpolate(
    params_a: PyTree, params_b: PyTree, alphas: float | Float[ArrayLike, "..."]
) -> PyTree:
    """``(1 − α) θ_a + α θ_b`` for each ``α`` (its shape leads every inexact leaf); other
    leaves are ``params_a``'s. A scalar ``α`` gives one unstacked pytree."""
    dyn_a, static = eqx.partition(params_a, eqx.is_inexact_array)
    dyn_b = inexact_arrays(params_b)
    alphas = jnp.asarray(alphas)

    def mix(a: Array, b: Array) -> Array:
        al = alphas.astype(a.dtype).reshape(alphas.shape + (1,) * a.ndim)
        return a + al * (b - a)

    return eqx.combine(jtu.tree_map(mix, dyn_a, dyn_b), static)
