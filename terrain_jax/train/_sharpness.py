"""Full-batch gradient descent with the sharpness tracked inside the scan (the edge-of-
stability measurement of Cohen et al. 2021): one compiled ``lax.scan`` for the whole run."""

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray, PyTree

from ..curvature import sharpness

__all__ = ["gd_with_sharpness"]


def gd_with_sharpness(
    loss_fn: Callable[..., Array],
    params: PyTree,
    data: tuple,
    lr: float | Float[ArrayLike, ""],
    steps_per_chunk: int | Array,
    num_chunks: int,
    key: PRNGKeyArray,
    *,
    num_iters: int = 20,
    v0: Float[Array, " n"] | None = None,
    return_params: bool = False,
) -> dict[str, Array]:
    """``num_chunks`` chunks of ``steps_per_chunk`` full-batch GD steps
    ``θ ← θ − lr ∇L(θ)`` on ``L = loss_fn(θ, *data)``, the sharpness ``λ_max`` measured
    before every chunk and once more at the end.

    Each measurement is :func:`terrain_jax.curvature.sharpness` (``num_iters`` Lanczos
    steps) warm-started from the previous top eigenvector (the first from ``v0``, by
    default a Gaussian vector drawn from ``key``), so a few steps suffice. ``params`` is a
    pytree of arrays (e.g. a flat vector: partition an ``eqx.Module`` first). Traceable,
    not jitted: wrap it in ``jax.jit`` (``steps_per_chunk`` may be traced, so one compile
    serves every chunk length and learning rate).

    Returns ``num_chunks + 1`` measurements at steps ``0, k, …, num_chunks·k``:
    ``"sharpness"``, its Lanczos ``"residual"`` and the ``"loss"`` (and ``"params"`` with
    ``return_params``); and ``num_chunks`` per-chunk summaries of the ``k`` steps that
    follow a measurement: ``"up_steps"`` (steps whose loss exceeds the previous step's,
    the non-monotone signature of the edge of stability), ``"loss_min"``, ``"loss_max"``.
    """
    if v0 is None:
        key, k_start = jax.random.split(key)
        flat = ravel_pytree(params)[0]
        v0 = jax.random.normal(k_start, flat.shape, flat.dtype)

    def measure_then_walk(carry, key_c):
        p, v, prev = carry
        e = sharpness(loss_fn, p, data, key_c, num_iters=num_iters, v0=v)

        def step(_, c):
            p, prev, ups, lo, hi = c
            value, g = jax.value_and_grad(loss_fn)(p, *data)
            ups = ups + (value > prev).astype(jnp.int32)
            p = jax.tree.map(lambda a, b: a - lr * b, p, g)
            return p, value, ups, jnp.minimum(lo, value), jnp.maximum(hi, value)

        init = (p, prev, jnp.zeros((), jnp.int32), jnp.asarray(jnp.inf), -jnp.inf)
        p_next, prev, ups, lo, hi = jax.lax.fori_loop(0, steps_per_chunk, step, init)
        out = {
            "sharpness": e.values[0],  # all at this chunk's first step …
            "residual": e.residuals[0],
            "loss": loss_fn(p, *data),
            "up_steps": ups,  # … and over the k steps that follow it
            "loss_min": lo,
            "loss_max": hi,
        }
        if return_params:
            out["params"] = p
        return (p_next, e.vectors[0], prev), out

    carry = (params, v0, jnp.asarray(jnp.inf))
    # the last measurement's walk goes past the run and is dropped
    _, rec = jax.lax.scan(measure_then_walk, carry, jax.random.split(key, num_chunks + 1))
    for name in ("up_steps", "loss_min", "loss_max"):
        rec[name] = rec[name][:-1]
    return rec
