"""Honest timing: compile apart from run, results blocked on, ratios against a reference.

``time_jitted(fn, *args)`` compiles ``fn`` ahead of time (so the compile time is its own
number), warms up, then reports the median of repeated runs, each ending in
``block_until_ready``. ``matmul_peak()`` measures this machine's float32 matmul rate, the
yardstick for FLOP-rate fractions.
"""

import os
import platform
import time
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "Timing",
    "time_jitted",
    "time_calls",
    "matmul_peak",
    "machine_info",
    "bench_row",
    "flops_of",
]


class Timing(NamedTuple):
    """Seconds: ``compile_s`` once, ``run_s`` median per call, ``runs`` all samples."""

    compile_s: float
    run_s: float
    runs: tuple[float, ...]
    flops: float | None


def flops_of(compiled: Any) -> float | None:
    """FLOPs XLA's cost analysis attributes to a compiled computation, if it reports them."""
    try:
        cost = compiled.cost_analysis()
    except Exception:  # backends without cost analysis
        return None
    if isinstance(cost, list | tuple):
        cost = cost[0] if cost else None
    if not cost or "flops" not in cost:
        return None
    return float(cost["flops"])


def time_jitted(
    fn: Any, *args: Any, repeats: int = 30, warmup: int = 3, min_time: float = 0.0
) -> Timing:
    """Compile ``jax.jit(fn)`` for ``args``, then time it (median of ``repeats`` calls).

    With ``min_time`` > 0, repeats continue until that many seconds have been spent, so
    fast functions get enough samples for a stable median.
    """
    t = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    compile_s = time.perf_counter() - t
    runs = _timed(lambda: compiled(*args), repeats, warmup, min_time)
    return Timing(compile_s, float(np.median(runs)), tuple(runs), flops_of(compiled))


def time_calls(run: Any, repeats: int) -> list[float]:
    """Wall seconds of each of ``repeats`` calls of ``run()`` (blocked on), after one warm-up.

    For references that are Python loops (of jitted steps, per-point evaluations, ...),
    which ``time_jitted`` cannot compile as one function.
    """
    return _timed(run, repeats, 1, 0.0)


def _timed(run: Any, repeats: int, warmup: int, min_time: float) -> list[float]:
    """Blocked wall times of ``run()`` after ``warmup`` calls: at least ``repeats`` of
    them, and more until ``min_time`` seconds have been spent."""
    for _ in range(warmup):
        jax.block_until_ready(run())
    runs: list[float] = []
    spent = 0.0
    while len(runs) < repeats or spent < min_time:
        t = time.perf_counter()
        jax.block_until_ready(run())
        runs.append(time.perf_counter() - t)
        spent += runs[-1]
    return runs


def matmul_peak(n: int = 2048, dtype: Any = jnp.float32, repeats: int = 10) -> float:
    """Measured FLOP/s of an ``n×n`` matmul on the default device."""
    k1, k2 = jax.random.split(jax.random.PRNGKey(0))
    a = jax.random.normal(k1, (n, n), dtype)
    b = jax.random.normal(k2, (n, n), dtype)
    timing = time_jitted(jnp.matmul, a, b, repeats=repeats)
    return 2.0 * n**3 / timing.run_s


def machine_info() -> dict[str, Any]:
    """What the numbers were measured on."""
    dev = jax.devices()[0]
    return {
        "platform": dev.platform,
        "device": getattr(dev, "device_kind", str(dev)),
        "device_count": jax.device_count(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "machine": platform.machine(),
    }


def bench_row(
    name: str, ours: Timing, reference_name: str, reference: Timing, goal: str, **extra: Any
) -> dict[str, Any]:
    """One row of a ``results/bench_*.json`` table; ``ratio = ours_s / reference_s``."""
    row = {
        "name": name,
        "ours_s": ours.run_s,
        "reference": reference_name,
        "reference_s": reference.run_s,
        "ratio": ours.run_s / reference.run_s,
        "goal": goal,
        "ours_compile_s": ours.compile_s,
        "reference_compile_s": reference.compile_s,
    }
    row.update(extra)
    return row
