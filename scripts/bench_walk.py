"""Benchmark: many Adam walks on Rosenbrock in one compiled ``walk_many`` call.

10,000 starts (uniform in the terrain's plotting domain) × 500 steps of Adam (lr 0.01) on
the book's Rosenbrock (``b = 10``), float32. Ours: one compiled ``walk_many`` call, storing
the full path (``every=1``) or only the ends (``every=500``). Rows:

(1) against a Python loop over starts calling one jitted Adam step
    ``(x, opt_state) -> (x, opt_state)`` 500 times per start. 5M dispatches take too long,
    so the loop is timed on a subset of starts (``--step-subset``) and extrapolated
    linearly to all starts (said in the row name and the JSON). Goal: ≥ 100× faster.
(2) against a Python loop over starts calling a jitted whole single-start ``walk`` (one
    dispatch per start: the stronger reference). Cheap enough to time on all starts by
    default; ``--walk-subset n`` times ``n`` starts and extrapolates. Goal: report.
(3) against ``torch.optim.Adam`` on CPU, the same walks as one ``(starts, 2)`` parameter
    tensor with a summed loss (per-start gradients, elementwise Adam: the same walks),
    when ``import torch`` works; otherwise recorded as "torch not installed".

Compile time is reported apart from run time. Correctness: the batched final positions
against the per-start loops (subset) and torch (all starts), max abs difference.
Prints a table; writes ``results/bench_walk.json``.

    python scripts/bench_walk.py [--repeats 5] [--step-subset 20] [--walk-subset 10000]
                                 [--out results/bench_walk.json]
"""

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array

from terrain_jax.bench import Timing, bench_row, machine_info, time_calls, time_jitted
from terrain_jax.optim import get_style, walk, walk_many
from terrain_jax.terrains import get_terrain

STARTS, STEPS, LR, TERRAIN = 10_000, 500, 0.01, "rosenbrock"
GOAL = "speedup >= 100"


def _starts(terrain: Any, n: int) -> Array:
    """``n`` float32 starts uniform in the terrain's plotting domain (seed 0)."""
    (lo1, hi1), (lo2, hi2) = terrain.domain
    u = jax.random.uniform(jax.random.PRNGKey(0), (n, 2), jnp.float32)
    return jnp.array([lo1, lo2], jnp.float32) + u * jnp.array([hi1 - lo1, hi2 - lo2], jnp.float32)


def _adam_step(terrain: Any) -> tuple[Callable, optax.GradientTransformation]:
    """One Adam step ``(x, opt_state) -> (x, opt_state)``, the arithmetic of ``walk``."""
    tx = get_style("adam", learning_rate=LR)
    grad = jax.grad(terrain)

    def step(x, state):
        with jax.numpy_dtype_promotion("standard"):
            updates, state = tx.update(grad(x), state, x)
            return optax.apply_updates(x, updates), state

    return step, tx


def _extrapolated(compile_s: float, runs: list[float], subset: int) -> Timing:
    """A :class:`Timing` for all starts from loop timings on ``subset`` starts (linear)."""
    scale = STARTS / subset
    scaled = tuple(r * scale for r in runs)
    return Timing(compile_s, float(np.median(scaled)), scaled, None)


def _torch_walks(x0s: np.ndarray, a: float, b: float, repeats: int) -> dict[str, Any]:
    """``torch.optim.Adam`` on the batch as one ``(starts, 2)`` tensor, summed loss."""
    import torch

    def run() -> Any:
        p = torch.nn.Parameter(torch.tensor(x0s, dtype=torch.float32))
        opt = torch.optim.Adam([p], lr=LR, betas=(0.9, 0.999), eps=1e-8)
        for _ in range(STEPS):
            opt.zero_grad(set_to_none=True)
            loss = ((a - p[:, 0]) ** 2 + b * (p[:, 1] - p[:, 0] ** 2) ** 2).sum()
            loss.backward()
            opt.step()
        return p.detach().numpy().copy()

    final = run()  # warm-up
    runs = []
    for _ in range(repeats):
        t = time.perf_counter()
        final = run()
        runs.append(time.perf_counter() - t)
    return {
        "timing": Timing(0.0, float(np.median(runs)), tuple(runs), None),
        "final": final,
        "version": torch.__version__,
        "threads": torch.get_num_threads(),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--step-subset", type=int, default=20, help="starts timed in row (1)")
    p.add_argument("--walk-subset", type=int, default=STARTS, help="starts timed in row (2)")
    p.add_argument("--out", type=Path, default=Path("results/bench_walk.json"))
    a = p.parse_args()

    terrain = get_terrain(TERRAIN)
    x0s = _starts(terrain, STARTS)
    hyper = {"learning_rate": LR}

    # ours: one compiled walk_many call, full path and ends only
    def ours(every: int) -> Callable[[Array], Any]:
        return lambda x0s: walk_many(terrain, "adam", x0s, STEPS, hyper=hyper, every=every)

    rep = dict(repeats=a.repeats, warmup=1, min_time=1.0)
    t_full = time_jitted(ours(1), x0s, **rep)
    t_ends = time_jitted(ours(STEPS), x0s, **rep)
    path_full = jax.jit(ours(1))(x0s)
    final = np.asarray(jax.jit(ours(STEPS))(x0s).final)
    assert final.dtype == np.float32, final.dtype
    full_vs_ends = float(np.max(np.abs(np.asarray(path_full.final) - final)))
    path_bytes = sum(int(x.nbytes) for x in jax.tree_util.tree_leaves(path_full))
    del path_full

    # (1) Python loop over starts, the same jitted Adam step 500 times per start
    step, tx = _adam_step(terrain)
    state0 = tx.init(x0s[0])
    t = time.perf_counter()
    jax.jit(step).lower(x0s[0], state0).compile()
    step_compile = time.perf_counter() - t
    step_jit = jax.jit(step)
    sub_step = x0s[: a.step_subset]

    def loop_steps() -> Array:
        ends = []
        for x in sub_step:
            state = tx.init(x)
            for _ in range(STEPS):
                x, state = step_jit(x, state)
            ends.append(x)
        return jnp.stack(ends)

    runs = time_calls(loop_steps, a.repeats)
    t_loop_step = _extrapolated(step_compile, runs, a.step_subset)
    diff_step = float(np.max(np.abs(np.asarray(loop_steps()) - final[: a.step_subset])))

    # (2) Python loop over starts, one jitted whole single-start walk per start
    sub_walk = x0s[: a.walk_subset]
    loop_walk_t: dict[int, Timing] = {}
    for every in (1, STEPS):
        one = jax.jit(lambda x0, every=every: walk(terrain, "adam", x0, STEPS, hyper=hyper,
                                                   every=every))  # fmt: skip
        t = time.perf_counter()
        one.lower(x0s[0]).compile()
        compile_s = time.perf_counter() - t

        def loop_walks(one=one) -> list:
            return [one(x) for x in sub_walk]

        runs = time_calls(loop_walks, a.repeats)
        loop_walk_t[every] = _extrapolated(compile_s, runs, a.walk_subset)
        if every == STEPS:
            ends = np.stack([np.asarray(pth.final) for pth in loop_walks()])
            diff_walk = float(np.max(np.abs(ends - final[: a.walk_subset])))

    step_ref = (f"py loop: jitted adam step x{STEPS}/start ({a.step_subset} starts timed, "
                f"x{STARTS / a.step_subset:g} extrapolated)")  # fmt: skip
    walk_ref = "py loop: jitted walk(every={})/start, " + (
        f"all {STARTS} starts timed" if a.walk_subset == STARTS else
        f"{a.walk_subset} starts timed, x{STARTS / a.walk_subset:g} extrapolated")  # fmt: skip
    extra_step = dict(extrapolated=True, timed_starts=a.step_subset,
                      timed_s_median=float(np.median(t_loop_step.runs)) * a.step_subset / STARTS,
                      reference_stores_path=False)  # fmt: skip
    extra_walk = dict(extrapolated=a.walk_subset != STARTS, timed_starts=a.walk_subset)
    rows: list[dict[str, Any]] = []
    for name, ours_t, every in (("walk_many_full_path", t_full, 1),
                                ("walk_many_ends_only", t_ends, STEPS)):  # fmt: skip
        rows.append(bench_row(name, ours_t, step_ref, t_loop_step, GOAL,
                              speedup=t_loop_step.run_s / ours_t.run_s, **extra_step))  # fmt: skip
        ref = loop_walk_t[every]
        rows.append(bench_row(name, ours_t, walk_ref.format(every), ref, "report",
                              speedup=ref.run_s / ours_t.run_s, **extra_walk,
                              timed_s_median=ref.run_s * a.walk_subset / STARTS))  # fmt: skip

    # (3) torch.optim.Adam on CPU, the whole batch as one tensor
    try:
        import torch  # noqa: F401

        has_torch = True
    except ImportError:
        has_torch = False
    torch_info: dict[str, Any]
    if has_torch:
        params = {k: float(v) for k, v in terrain.params.items()}
        tr = _torch_walks(np.array(x0s), params["a"], params["b"], a.repeats)
        diff_torch = float(np.max(np.abs(tr["final"] - final)))
        med_torch = float(np.median(np.abs(tr["final"] - final)))
        torch_info = {"status": "ran", "version": tr["version"], "threads": tr["threads"],
                      "max_abs_diff_final_vs_ours": diff_torch,
                      "median_abs_diff_final_vs_ours": med_torch}  # fmt: skip
        ref_name = f"torch.optim.Adam CPU, ({STARTS}, 2) tensor, summed loss (eager)"
        for name, ours_t in (("walk_many_full_path", t_full), ("walk_many_ends_only", t_ends)):
            rows.append(bench_row(name, ours_t, ref_name, tr["timing"], "report",
                                  speedup=tr["timing"].run_s / ours_t.run_s))  # fmt: skip
    else:
        torch_info = {"status": "torch not installed"}
        print("torch not installed: skipping the torch.optim.Adam row")

    correctness = {
        "max_abs_diff_final_vs_step_loop": diff_step,
        "step_loop_starts": a.step_subset,
        "max_abs_diff_final_vs_walk_loop": diff_walk,
        "walk_loop_starts": a.walk_subset,
        "max_abs_diff_final_full_path_vs_ends_only": full_vs_ends,
        "torch": torch_info,
    }
    dist = np.linalg.norm(final - np.asarray(terrain.minima[0]), axis=1)
    out = {
        "machine": machine_info(),
        "config": {"terrain": TERRAIN, "terrain_params": {k: float(v) for k, v in
                   terrain.params.items()}, "style": "adam", "learning_rate": LR,
                   "starts": STARTS, "steps": STEPS, "dtype": "float32",
                   "repeats": a.repeats, "full_path_bytes": path_bytes,
                   "extrapolation": "rows with extrapolated=true time their Python loop on "
                   "timed_starts starts (timed_s_median) and scale it linearly to all starts "
                   "(reference_s)",
                   "median_final_distance_to_minimum": float(np.median(dist))},
        "rows": rows,
        "correctness": correctness,
    }  # fmt: skip
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(out, indent=2) + "\n")

    b = float(terrain.params["b"])
    print(f"{STARTS} starts x {STEPS} steps of adam (lr {LR}) on {TERRAIN} (b={b:g}), float32; "
          f"full path {path_bytes / 2**20:.0f} MiB")  # fmt: skip
    print(f"{'name':22s} {'reference':74s} {'ours s':>8s} {'ref s':>9s} {'speedup':>8s} "
          f"{'compile s (ours/ref)':>20s}  goal")  # fmt: skip
    for r in rows:
        print(f"{r['name']:22s} {r['reference']:74s} {r['ours_s']:8.3f} {r['reference_s']:9.2f} "
              f"{r['speedup']:8.1f} {r['ours_compile_s']:9.2f}/{r['reference_compile_s']:<10.2f}"
              f"  {r['goal']}")  # fmt: skip
    print("correctness (max abs diff of final positions):")
    print(f"  vs jitted-step loop ({a.step_subset} starts): {diff_step:.3g}")
    print(f"  vs jitted-walk loop ({a.walk_subset} starts): {diff_walk:.3g}")
    print(f"  full path vs ends only (all starts): {full_vs_ends:.3g}")
    if has_torch:
        print(f"  vs torch.optim.Adam (all starts): {diff_torch:.3g} (median {med_torch:.3g})")
    else:
        print("  vs torch: torch not installed")
    print(f"median final distance to the minimum: {float(np.median(dist)):.3g}")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
