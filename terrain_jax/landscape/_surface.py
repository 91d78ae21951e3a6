"""Loss surfaces: the loss at many points of an affine slice ``θ + Σ_k c_k d_k``, in one
compiled call per host thread.

Grid points run in a ``lax.map`` over chunks (``vmap`` within a chunk), a dataset is averaged
exactly over minibatches, points shard across devices with ``jax.shard_map``, and on CPU they
split into one concurrent call per core.
"""

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import numpy as np
from jax.sharding import Mesh, PartitionSpec
from jaxtyping import Array, ArrayLike, Float, PyTree

from ..data import num_examples, split_batches
from ._util import inexact_arrays

try:
    from jax.extend.core import get_opaque_trace_state
except ImportError:  # no public view of the trace state: never split into threads
    get_opaque_trace_state = None

__all__ = ["surface", "surface_1d", "surface_2d"]


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
            full, rest, n, bs, n_rest = split_batches(data, batch_size)

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


def _thread_view() -> tuple[object, dict[str, object]]:
    """This thread's JAX trace and configuration, as JAX's public API shows them."""
    return get_opaque_trace_state(), jax.config.values


def _threads_see_the_caller() -> bool:
    """Whether a new thread would run in the caller's JAX context.

    JAX keeps the trace state and the context-manager configuration (``jax.enable_x64``,
    ``jax.default_matmul_precision``, ...) per thread, and a new thread starts at the top level
    with the global configuration. So this holds when the caller is not being traced (by
    ``jit``, ``vmap``, ``grad``, ...: ``loss_fn`` may close over tracers, which must not reach
    another thread) and sets no per-thread configuration, which a worker would not inherit
    (it would compute in float32 instead of float64, say).
    """
    if get_opaque_trace_state is None:
        return False
    here = _thread_view()
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(_thread_view).result() == here


def _streams(threads: int | None, devices: tuple) -> int:
    """How many concurrent calls :func:`surface` makes (see its ``threads``)."""
    if threads is not None and (not isinstance(threads, int | np.integer) or threads < 1):
        raise ValueError(f"`threads` must be a positive integer or None, got {threads!r}.")
    if threads is None:
        threads = max(1, _host_cores() // len(devices)) if devices[0].platform == "cpu" else 1
    if threads == 1 or not _threads_see_the_caller():
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
      (``None``): 1 on CPU, 64 on accelerators: a full-data evaluation is compute-bound on
      CPU, and XLA:CPU runs the batched dots of a vmapped chunk slower than plain ones.
    - ``devices``: the points are sharded across these (``jax.shard_map`` over a 1-axis
      ``Mesh``, points padded to a multiple of the device count; params and data
      replicated). Default: all of ``jax.devices()``, i.e. automatic when several exist;
      pass ``jax.devices()[:1]`` for one. On CPU,
      ``XLA_FLAGS=--xla_force_host_platform_device_count=N`` (set before jax is imported)
      makes N devices, one per core, and the points shard over them.
    - ``threads``: the points are split into this many equal parts, each one compiled
      call (the same executable), dispatched concurrently from a pool of host threads:
      XLA:CPU runs concurrent calls on separate cores, while one call spreads the small
      dots of a per-point loss over the cores poorly. Default (``None``): on CPU the cores
      this process may use divided by the number of devices, elsewhere 1. It is one call
      when ``surface`` is traced (inside ``jit``, ``vmap``, ``grad``, ...) and inside a
      per-thread configuration context (``with jax.enable_x64(True):``, ...), which
      threads would not inherit; ``jax.config.update`` applies to all threads.

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
        num_examples(data)
        data = jtu.tree_map(jnp.asarray, data)
    dyn, static = eqx.partition(params, eqx.is_inexact_array)
    directions = [inexact_arrays(d) for d in directions]
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
