"""What a compiled training step costs: temporary memory, compile time, time per call, and
the time per epoch of a training run made of exactly that step."""

import time
from collections.abc import Callable
from typing import NamedTuple

import equinox as eqx
import jax
import numpy as np
import optax
from jaxtyping import ArrayLike, PRNGKeyArray, PyTree, Shaped

from ..bench import time_calls
from ..data import batch_indices
from ._step import make_step

__all__ = [
    "CompiledStep",
    "StepProfile",
    "TimedFit",
    "compile_step",
    "compiled_memory",
    "profile_step",
    "fit_timed",
]


class CompiledStep(NamedTuple):
    """An ahead-of-time compiled step, its XLA temporary memory (bytes) and compile time
    (seconds)."""

    compiled: Callable
    temp_bytes: int
    compile_s: float


class StepProfile(NamedTuple):
    """Temporary memory of the compiled step (bytes), its compile time and the median time
    of one call (seconds)."""

    temp_bytes: int
    compile_s: float
    run_s: float


def compile_step(step: Callable, *args: PyTree) -> CompiledStep:
    """Compile ``step`` for ``args`` ahead of time (``jax.jit`` unless it is jitted already,
    as :func:`make_step`'s steps are) and read XLA's memory analysis of the result."""
    jitted = step if hasattr(step, "lower") else jax.jit(step)
    t0 = time.perf_counter()
    compiled = jitted.lower(*args).compile()
    compile_s = time.perf_counter() - t0
    temp_bytes = int(compiled.memory_analysis().temp_size_in_bytes)
    return CompiledStep(compiled, temp_bytes, compile_s)


def compiled_memory(step: Callable, *args: PyTree) -> int:
    """Temporary memory XLA allocates for the compiled ``step(*args)`` (bytes): the
    activations a training step keeps for its backward pass, among others."""
    return compile_step(step, *args).temp_bytes


def profile_step(step: Callable, *args: PyTree, repeats: int = 10) -> StepProfile:
    """Compile ``step(*args)`` and time ``repeats`` calls after one warm-up (each blocked
    on); the median call is ``run_s``."""
    c = compile_step(step, *args)
    runs = time_calls(lambda: c.compiled(*args), repeats)
    return StepProfile(c.temp_bytes, c.compile_s, float(np.median(runs)))


class TimedFit(NamedTuple):
    """A run of :func:`fit_timed`: the trained model, the loss (and ``aux``) of every step as
    host arrays (steps leading), the wall time of every epoch (seconds), and the
    :class:`CompiledStep` that ran."""

    model: PyTree
    loss: np.ndarray
    aux: PyTree
    epoch_s: np.ndarray
    step: CompiledStep


def fit_timed(
    model: PyTree,
    loss_fn: Callable,
    optimizer: optax.GradientTransformation,
    x: Shaped[ArrayLike, "n ..."],
    y: Shaped[ArrayLike, "n ..."],
    *,
    steps: int,
    batch_size: int,
    key: PRNGKeyArray,
    steps_per_epoch: int,
    step_inputs: tuple[PyTree, ...] = (),
    has_aux: bool = False,
) -> TimedFit:
    """Train like :func:`~terrain_jax.train.fit`, timing every epoch of the compiled step.

    :func:`fit` scans all steps in one program, which times nothing apart. Here one
    :func:`make_step` (``loss_fn(model, xb, yb, *inputs)``, ``(loss, aux)`` when
    ``has_aux``) is compiled ahead of time by :func:`compile_step` and called once per
    minibatch (the order of :func:`~terrain_jax.data.batch_indices` drawn from ``key``),
    blocking after every ``steps_per_epoch`` steps: each epoch's time is that of exactly the
    executable whose temporary memory is reported. ``step_inputs`` as in :func:`fit`. A
    non-finite loss raises.
    """
    x, y = np.asarray(x), np.asarray(y)
    n = x.shape[0]
    idx = np.asarray(batch_indices(n, min(int(batch_size), n), int(steps), key=key))
    params, static = eqx.partition(model, eqx.is_array)
    with jax.numpy_dtype_promotion("standard"):
        opt_state = optimizer.init(eqx.filter(model, eqx.is_inexact_array))
    step = make_step(loss_fn, optimizer, static, has_aux=has_aux)

    def inputs(j):
        return jax.tree.map(lambda a: a[j], tuple(step_inputs))

    compiled = compile_step(step, params, opt_state, x[idx[0]], y[idx[0]], *inputs(0))
    outs, epoch_s = [], []
    for start in range(0, int(steps), int(steps_per_epoch)):
        t0 = time.perf_counter()
        out = []
        for j in range(start, min(start + int(steps_per_epoch), int(steps))):
            params, opt_state, *rest = compiled.compiled(
                params, opt_state, x[idx[j]], y[idx[j]], *inputs(j)
            )
            out.append(rest)
        jax.block_until_ready((params, out))
        epoch_s.append(time.perf_counter() - t0)
        outs += jax.device_get(out)
    loss = np.asarray([o[0] for o in outs])
    if not np.all(np.isfinite(loss)):
        raise FloatingPointError(
            f"fit_timed: the loss became non-finite at step {int(np.argmin(np.isfinite(loss)))}."
        )
    aux = jax.tree.map(lambda *a: np.stack(a), *[o[1] for o in outs]) if has_aux else None
    return TimedFit(eqx.combine(params, static), loss, aux, np.asarray(epoch_s), compiled)
