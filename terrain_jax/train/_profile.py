"""What a compiled training step costs: temporary memory, compile time, time per call."""

import time
from collections.abc import Callable
from typing import NamedTuple

import jax
import numpy as np
from jaxtyping import PyTree

from ..bench import time_calls

__all__ = ["CompiledStep", "StepProfile", "compile_step", "compiled_memory", "profile_step"]


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
