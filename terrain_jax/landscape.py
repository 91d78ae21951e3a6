"""Loss landscapes: filter-normalised directions, 1-D/2-D surfaces, PCA trajectory planes.

A loss surface is the loss along a low-dimensional affine slice ``θ + Σ_k c_k d_k`` of
parameter space. This module builds the slice and evaluates it fast and faithfully:

- directions: :func:`random_direction` / :func:`random_directions` (Gaussian, with the
  filter normalisation of Li et al. 2018, optional Gram–Schmidt), :func:`pca_directions`
  (the top principal components of a training trajectory, final point at the origin) and
  :func:`direction_between` / :func:`interpolate` (the line between two solutions);
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

import functools
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import numpy as np
from jax.sharding import Mesh, PartitionSpec
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray, PyTree

from .data import _num_examples, _split_batches

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
]

NORMALISATIONS = ("filter", "layer", "none")
_IGNORE_1D = ("zero", "keep")
_EPS = 1e-10  # Li et al.'s guard in d_i · ‖w_i‖ / (‖d_i‖ + eps)


# ----------------------------------------------------------------------------- pytree helpers


def _dyn(params: PyTree) -> PyTree:
    return eqx.filter(params, eqx.is_inexact_array)


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
    stack_axes: int | Callable[[PyTree], Any] = 0,
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
    if not jtu.tree_leaves(_dyn(params)):
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
    stack_axes: int | Callable[[PyTree], Any] = 0,
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


def stack_checkpoints(checkpoints: Sequence[PyTree]) -> PyTree:
    """A list of same-shaped parameter pytrees → one pytree with a leading checkpoint axis
    (the input of :func:`pca_directions`); non-array leaves are taken from the first."""
    if len(checkpoints) == 0:
        raise ValueError("no checkpoints to stack.")
    dyn = [_dyn(c) for c in checkpoints]
    stacked = jtu.tree_map(lambda *xs: jnp.stack(xs), *dyn)
    return eqx.combine(stacked, eqx.filter(checkpoints[0], eqx.is_inexact_array, inverse=True))


def _flatten_rows(tree: PyTree, lead: int) -> Array:
    """Inexact leaves with ``lead`` leading axes → one ``(*lead_shape, P)`` matrix."""
    leaves = jtu.tree_leaves(_dyn(tree))
    if not leaves:
        raise ValueError("the checkpoints have no inexact array leaves.")
    dtype = functools.reduce(jnp.promote_types, [x.dtype for x in leaves])
    shape = leaves[0].shape[:lead]
    return jnp.concatenate([x.reshape(shape + (-1,)).astype(dtype) for x in leaves], axis=-1)


def _unflatten(vec: Array, template: PyTree) -> PyTree:
    """Inverse of :func:`_flatten_rows` for one row, shaped and typed like ``template``."""
    leaves, treedef = jtu.tree_flatten(_dyn(template))
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
        template = jtu.tree_map(lambda x: x[-1], _dyn(checkpoints))
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
    return jtu.tree_map(jnp.subtract, _dyn(params_b), _dyn(params_a))


def interpolate(
    params_a: PyTree, params_b: PyTree, alphas: float | Float[ArrayLike, "..."]
) -> PyTree:
    """``(1 − α) θ_a + α θ_b`` for each ``α`` (its shape leads every inexact leaf); other
    leaves are ``params_a``'s. A scalar ``α`` gives one unstacked pytree."""
    dyn_a, static = eqx.partition(params_a, eqx.is_inexact_array)
    dyn_b = _dyn(params_b)
    alphas = jnp.asarray(alphas)

    def mix(a: Array, b: Array) -> Array:
        al = alphas.astype(a.dtype).reshape(alphas.shape + (1,) * a.ndim)
        return a + al * (b - a)

    return eqx.combine(jtu.tree_map(mix, dyn_a, dyn_b), static)


# ----------------------------------------------------------------------------- surfaces


def _layout(n_points: int, n_devices: int, chunk_size: int) -> tuple[int, int]:
    """``(chunks per device, chunk)`` with ``chunk ≤ chunk_size`` and the least padding."""
    per_device = -(-n_points // n_devices)
    chunks = -(-per_device // chunk_size)
    return chunks, -(-per_device // chunks)


def _surface(
    loss_fn: Callable[..., Array],
    dyn: PyTree,
    static: PyTree,
    dirs: PyTree,
    coords: Float[Array, "points k"],
    data: tuple | None,
    batch_size: int | None,
    chunk: int,
    devices: tuple,
) -> Float[Array, " points"]:
    """Traced body of :func:`surface`; ``coords`` is already padded to the layout."""
    static_arrays, static_rest = eqx.partition(static, eqx.is_array)

    def per_device(c, dyn, dirs, static_arrays, data):
        static = eqx.combine(static_arrays, static_rest)

        def loss_at(point_dyn: PyTree, batch: tuple | None) -> Array:
            model = eqx.combine(point_dyn, static)
            out = loss_fn(model) if batch is None else loss_fn(model, *batch)
            if jnp.shape(out) != ():
                raise ValueError(f"`loss_fn` must return a scalar, got shape {jnp.shape(out)}.")
            return out

        def shift(ck: Array) -> PyTree:
            move = lambda w, d: w + jnp.tensordot(ck.astype(d.dtype), d, axes=1)
            return jtu.tree_map(move, dyn, dirs)

        if data is not None:
            full, rest, n, bs, n_rest = _split_batches(data, batch_size)

        def chunk_losses(cc: Float[Array, "*chunk k"]) -> Float[Array, "*chunk"]:
            if cc.ndim == 1:  # a single point: unbatched dots
                models, on = shift(cc), loss_at
            else:
                models, on = jax.vmap(shift)(cc), jax.vmap(loss_at, in_axes=(0, None))
            if data is None:
                return on(models, None)
            per_batch = jax.lax.map(lambda b: on(models, b), full)  # (batches, chunk)
            total = bs * jnp.sum(per_batch, axis=0)
            if n_rest:  # ragged last batch: its own (smaller) call, weighted by its size
                total = total + n_rest * on(models, rest)
            return total / n

        if chunk == 1:  # one point per step, no vmap (fastest for big per-point work on CPU)
            return jax.lax.map(chunk_losses, c)
        out = jax.lax.map(chunk_losses, c.reshape(-1, chunk, c.shape[-1]))
        return out.reshape(-1)

    args = (coords, dyn, dirs, static_arrays, data)
    if len(devices) == 1:
        return per_device(*args)
    mesh = Mesh(np.asarray(devices), ("grid",))
    rep = PartitionSpec()
    specs = (PartitionSpec("grid"), rep, rep, rep, rep)
    return jax.shard_map(per_device, mesh=mesh, in_specs=specs, out_specs=PartitionSpec("grid"))(
        *args
    )


_surface_jit = eqx.filter_jit(_surface)


def _host_cores() -> int:
    """Cores this process may run on (the affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _traced() -> bool:
    """Whether a JAX transformation (``jit``, ``vmap``, ``grad``, ...) is tracing the caller.

    Checked on the trace state, not on the arguments: ``loss_fn`` may close over tracers,
    and a tracer must not reach another thread (JAX's trace state is per thread).
    """
    try:
        from jax._src.core import trace_state_clean
    except ImportError:  # the private helper moved: be safe, make one call
        return True
    return not trace_state_clean()


def _config_context() -> Any:
    """JAX's configuration as tracing sees it in this thread (``None`` if unreadable)."""
    try:
        from jax._src.config import trace_context
    except ImportError:
        return None
    return trace_context()


def _same_config_in_threads() -> bool:
    """Whether a new thread sees the caller's JAX configuration. Context managers such as
    ``jax.enable_x64`` or ``jax.default_matmul_precision`` set it per thread, so a worker
    would silently compute differently (float32 instead of float64, say)."""
    here = _config_context()
    if here is None:
        return False
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(_config_context).result() == here


def _streams(threads: int | None, devices: tuple) -> int:
    """How many concurrent calls :func:`surface` makes (see its ``threads``)."""
    if threads is not None and (not isinstance(threads, int | np.integer) or threads < 1):
        raise ValueError(f"`threads` must be a positive integer or None, got {threads!r}.")
    if threads is None:
        threads = max(1, _host_cores() // len(devices)) if devices[0].platform == "cpu" else 1
    if threads == 1 or _traced() or not _same_config_in_threads():
        return 1  # one call, in the caller's trace and configuration
    return int(threads)


def surface(
    loss_fn: Callable[..., Array],
    params: PyTree,
    directions: Sequence[PyTree],
    coords: Float[ArrayLike, "points k"],
    *,
    data: tuple | Array | None = None,
    batch_size: int | None = None,
    chunk_size: int | None = None,
    devices: Sequence[jax.Device] | None = None,
    threads: int | None = None,
) -> Float[Array, " points"]:
    """``loss_fn(params + Σ_k coords[p, k] · directions[k])`` for every point ``p``.

    - Without ``data``: ``loss_fn(model) -> scalar``. With ``data`` (a tuple of arrays
      sharing a leading axis ``n``, e.g. ``(x, y)``): ``loss_fn(model, *batch) -> scalar``,
      the per-example *mean* over the batch (the signature :func:`terrain_jax.fit` uses).
      The dataset is cut into batches of ``batch_size`` (default: all of it) and the exact
      full-data mean is returned: batch means weighted by batch sizes, the ragged last
      batch evaluated on its own.
    - Points run ``vmap``-ed in chunks of at most ``chunk_size`` inside one ``lax.map``,
      so memory is about ``threads × chunk_size × (parameters + one batch's
      activations)``. ``chunk_size=1`` maps point by point without ``vmap``. Default
      (``None``): 1 on CPU, 64 on accelerators. Why 1 on CPU: a full-data evaluation is
      compute-bound there and XLA:CPU runs the batched dots of a vmapped chunk slower than
      plain ones (digits, MLP 64-64-64-10, 51×51 grid, 2 cores: 0.71 s point by point vs
      0.93 s in chunks of 16); chunks helped only a tiny MLP (64-16-10: 0.21 s vs 0.26 s).
    - ``devices``: the points are sharded across these (``jax.shard_map`` over a 1-axis
      ``Mesh``, points padded to a multiple of the device count; params and data
      replicated). Default: all of ``jax.devices()``, i.e. automatic when several exist;
      pass ``jax.devices()[:1]`` for one.
    - ``threads``: the points are split into this many equal parts, each one compiled
      call (the same executable), dispatched concurrently from a pool of host threads.
      XLA:CPU runs concurrent calls on separate cores, while one call spreads the small
      dots of a per-point loss over the cores poorly (digits, MLP 64-64-64-10, 51×51
      grid, 2 cores: 0.62 s in one call, 0.31 s in two). Default (``None``): on CPU the
      cores this process may use divided by the number of devices, elsewhere 1. It is
      one call when ``surface`` is traced (called inside ``jit``, ``vmap``, ...) and
      inside a per-thread configuration context (``with jax.enable_x64(True):``, ...),
      which threads would not inherit; ``jax.config.update`` applies to all. JAX's
      own route to the same end: ``XLA_FLAGS=--xla_force_host_platform_device_count=N``
      (set before jax is imported) makes N CPU devices, and the points shard over them
      (0.32 s on 2 or 8 devices in the example above).

    Repeated calls with the same ``loss_fn`` and shapes do not recompile.
    """
    coords = jnp.asarray(coords)
    if coords.ndim != 2 or coords.shape[1] != len(directions) or coords.shape[0] == 0:
        raise ValueError(
            f"`coords` must have shape (points, {len(directions)}), points ≥ 1, for "
            f"{len(directions)} direction(s), got {coords.shape}."
        )
    if batch_size is not None and (not isinstance(batch_size, int | np.integer) or batch_size < 1):
        raise ValueError(f"`batch_size` must be a positive integer or None, got {batch_size!r}.")
    if data is not None:
        data = tuple(data) if isinstance(data, tuple | list) else (data,)
        _num_examples(data)
        data = jtu.tree_map(jnp.asarray, data)
    dyn, static = eqx.partition(params, eqx.is_inexact_array)
    directions = [_dyn(d) for d in directions]
    for d in directions:
        if jtu.tree_structure(d) != jtu.tree_structure(dyn):
            raise ValueError(
                "a direction's structure differs from the inexact arrays of `params`; build "
                "directions from the same params (random_direction, pca_directions)."
            )
    dirs = jtu.tree_map(lambda *ds: jnp.stack(ds), *directions)
    devices = tuple(jax.devices() if devices is None else devices)
    if chunk_size is None:
        chunk_size = 1 if devices[0].platform == "cpu" else 64
    if not isinstance(chunk_size, int | np.integer) or chunk_size < 1:
        raise ValueError(f"`chunk_size` must be a positive integer or None, got {chunk_size!r}.")
    n, k = coords.shape
    parts = min(_streams(threads, devices), n)
    chunks, chunk = _layout(-(-n // parts), len(devices), int(chunk_size))
    size = len(devices) * chunks * chunk  # points per part, padded
    padded = jnp.zeros((parts * size, k), coords.dtype).at[:n].set(coords)

    def run(c: Float[Array, "size k"]) -> Float[Array, " size"]:
        out = _surface_jit(loss_fn, dyn, static, dirs, c, data, batch_size, chunk, devices)
        return jax.block_until_ready(out) if parts > 1 else out

    if parts == 1:
        return run(padded)[:n]
    with ThreadPoolExecutor(parts) as pool:
        outs = list(pool.map(run, padded.reshape(parts, size, k)))
    return jnp.concatenate(outs)[:n]


def surface_1d(
    loss_fn: Callable[..., Array],
    params: PyTree,
    direction: PyTree,
    alphas: Float[ArrayLike, " n"],
    **kwargs: Any,
) -> Float[Array, " n"]:
    """``loss_fn(params + α · direction)`` for each ``α`` (keywords as in :func:`surface`).
    Along :func:`direction_between` ``(a, b)`` from ``a`` this is the interpolation plot."""
    alphas = jnp.asarray(alphas)
    return surface(loss_fn, params, (direction,), alphas.reshape(-1, 1), **kwargs)


def surface_2d(
    loss_fn: Callable[..., Array],
    params: PyTree,
    directions: Sequence[PyTree],
    grid_x: Float[ArrayLike, " nx"],
    grid_y: Float[ArrayLike, " ny"],
    **kwargs: Any,
) -> Float[Array, "ny nx"]:
    """``Z[j, i] = loss_fn(params + grid_x[i] · d_1 + grid_y[j] · d_2)`` on the whole grid.

    Rows are ``y``, columns ``x``, as ``plt.contour(grid_x, grid_y, Z)`` expects. Keywords
    (``data``, ``batch_size``, ``chunk_size``, ``devices``) as in :func:`surface`.
    """
    if len(directions) != 2:
        raise ValueError(f"surface_2d takes two directions, got {len(directions)}.")
    gx, gy = jnp.asarray(grid_x), jnp.asarray(grid_y)
    if gx.ndim != 1 or gy.ndim != 1:
        raise ValueError(f"grids must be 1-D, got shapes {gx.shape} and {gy.shape}.")
    dtype = jnp.promote_types(gx.dtype, gy.dtype)
    xx, yy = jnp.meshgrid(gx.astype(dtype), gy.astype(dtype))  # (ny, nx)
    coords = jnp.stack([xx.ravel(), yy.ravel()], axis=-1)
    return surface(loss_fn, params, directions, coords, **kwargs).reshape(gy.shape[0], gx.shape[0])
