"""Benchmark: loss surfaces and Hessian spectra in one compiled call, against Python loops.

Models: MLP classifiers (``eqx.nn.MLP``, relu) on scikit-learn digits (1,437 training
examples, 64 features, 10 classes), trained briefly with Adam so the surfaces are those of
a classifier: ``small`` 64-16-10 (1,210 params; per-point work is tiny, so dispatch
overhead dominates a loop) and ``mid`` 64-64-64-10 (8,970 params). Rows:

(1) a 51×51 filter-normalised surface (``random_directions``, biases zeroed, grid
    ``[-1, 1]²``) over the full training set: ours (``surface_2d`` called from Python, for
    ``chunk_size`` 1, 8 and 64, and ``threads`` 1 — one compiled call — and the default,
    one concurrent call per core) against
    (a) a Python loop over grid points of one jitted full-data loss per point (shift of
        the weights inside the jit; one host sync per point), and
    (b) the reference tools' way (tomgoldstein/loss-landscape): a Python loop over grid
        points, a jitted weight shift per point, then a Python loop over minibatches of
        128 (device-resident, pre-split: kinder than a DataLoader) with a jitted per-batch
        loss and a host sync (``float``) per batch, batch losses weighted by batch size.
    The loops are timed on a subset of points (``--loop-a-points``, ``--loop-b-points``)
    and extrapolated linearly to 2,601 points (said in the row and the JSON). The issue's
    goal: ≥ 20×. Correctness: ours against each loop on the timed points, max abs diff.
(2) 90 Lanczos steps with full reorthogonalisation for the top-5 Hessian eigenvalues:
    ours (``hessian_operator`` + ``hessian_top_eigenvalues``, one compiled call) against
    a Python-loop Lanczos written here (jitted forward-over-reverse HVP, the update with
    two Gram–Schmidt sweeps against the whole basis jitted or eager, ``alpha``/``beta``
    pulled to the host each step as PyHessian does), from the same start vector. On the
    full training set and on a batch of 128. Reported: time ratio, max relative
    difference of the top-5 eigenvalues.
(3) the ``mid`` surface sharded across 8 virtual CPU devices equals one device's: a
    subprocess with ``XLA_FLAGS=--xla_force_host_platform_device_count=8`` computes it
    with all 8 devices and with ``devices=jax.devices()[:1]``; max abs difference and both
    times (8 virtual devices share this machine's cores, so no speedup is expected).

OpenBLAS (LAPACK behind ``jnp.linalg.eigh`` and numpy) is pinned to one thread unless
``OPENBLAS_NUM_THREADS`` is set (see the comment at the top). Compile time is reported
apart from run time. Prints a table; writes
``results/bench_landscape.json``.

    python scripts/bench_landscape.py [--repeats 3] [--loop-a-points 260]
                                      [--loop-b-points 60] [--out results/bench_landscape.json]
"""

import os

# LAPACK calls (jnp.linalg.eigh of Lanczos' 90×90 T, numpy's eigvalsh) run on scipy-openblas,
# whose threads thrash on a loaded 2-core machine (a 90×90 eigh measured ~100 ms there vs
# 0.5 ms on one thread). Pin it to one thread unless the caller set it; XLA's own kernels
# (dots, convolutions) do not use OpenBLAS. Must precede the numpy/jax imports.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import equinox as eqx  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import jax.tree_util as jtu  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from jax.flatten_util import ravel_pytree  # noqa: E402
from jaxtyping import Array  # noqa: E402

from terrain_jax.bench import Timing, bench_row, machine_info, time_calls, time_jitted  # noqa: E402
from terrain_jax.curvature import hessian_operator, hessian_top_eigenvalues
from terrain_jax.data import digits  # noqa: E402
from terrain_jax.landscape import random_directions, surface_2d  # noqa: E402
from terrain_jax.train import cross_entropy, fit  # noqa: E402

GRID, SPAN, REF_BATCH, LANCZOS_ITERS, TOP_K, SMALL_BATCH = 51, 1.0, 128, 90, 5, 128
CHUNKS = (1, 8, 64)
THREADS = (1, None)  # surface's `threads`: one call, and its default (one call per core)
MODELS = {"small": (16, 1), "mid": (64, 2)}  # name -> (width, hidden layers)
SHARD_MODEL, SHARD_DEVICES = "mid", 8
GOAL = "speedup >= 20 (issue)"


def loss(model: Any, xb: Array, yb: Array) -> Array:
    """Mean cross-entropy of the per-example MLP over a batch."""
    return cross_entropy(jax.vmap(model)(xb), yb)


def _skeleton(name: str) -> eqx.nn.MLP:
    width, depth = MODELS[name]
    return eqx.nn.MLP(64, 10, width, depth, key=jax.random.PRNGKey(0))


def _trained(name: str, x: Array, y: Array) -> tuple[eqx.nn.MLP, dict[str, float]]:
    """The model after 300 Adam steps (lr 3e-3, batch 128) on the training set."""
    model, _ = fit(
        _skeleton(name),
        loss,
        optax.adam(3e-3),
        x,
        y,
        steps=300,
        batch_size=128,
        key=jax.random.PRNGKey(1),
    )
    logits = jax.vmap(model)(x)
    info = {
        "params": int(ravel_pytree(eqx.filter(model, eqx.is_inexact_array))[0].size),
        "train_loss": float(cross_entropy(logits, y)),
        "train_acc": float(jnp.mean(jnp.argmax(logits, -1) == y)),
    }
    return model, info


def _grid_coords() -> tuple[np.ndarray, np.ndarray]:
    g = np.linspace(-SPAN, SPAN, GRID, dtype=np.float32)
    xx, yy = np.meshgrid(g, g)  # surface_2d's layout: rows y, columns x
    return g, np.stack([xx.ravel(), yy.ravel()], axis=-1)


def _extrapolated(compile_s: float, runs: list[float], scale: float) -> Timing:
    scaled = tuple(r * scale for r in runs)
    return Timing(compile_s, float(np.median(scaled)), scaled, None)


def _time_eager(run: Callable[[], Any], repeats: int) -> Timing:
    """Time ``run()`` called from Python (``surface`` splits its points over host threads
    only when it is not traced); the first call's excess over the median is compile."""
    t = time.perf_counter()
    jax.block_until_ready(run())
    first = time.perf_counter() - t
    runs = time_calls(run, repeats)
    run_s = float(np.median(runs))
    return Timing(max(first - run_s, 0.0), run_s, tuple(runs), None)


def _compile_s(fn: Any, *args: Any) -> float:
    t = time.perf_counter()
    fn.lower(*args).compile()
    return time.perf_counter() - t


# ----------------------------------------------------------------------------- (1) surfaces


def _ours_surface(static: Any, g: np.ndarray, **kw: Any) -> Callable:
    def run(dyn, dirs, x, y):
        return surface_2d(loss, eqx.combine(dyn, static), dirs, g, g, data=(x, y), **kw)

    return run


def _shift(dyn: Any, d1: Any, d2: Any, c: Array) -> Any:
    return jtu.tree_map(lambda w, a, b: w + c[0] * a + c[1] * b, dyn, d1, d2)


def bench_surfaces(name: str, model: Any, x: Array, y: Array, a: Any) -> tuple[list, dict]:
    dyn, static = eqx.partition(model, eqx.is_inexact_array)
    d1, d2 = random_directions(jax.random.PRNGKey(2), model)
    g, coords = _grid_coords()
    points = coords.shape[0]

    ours: dict[tuple[int, int], Timing] = {}
    for c in CHUNKS:
        for th in THREADS:
            ours[c, th] = _time_eager(
                lambda c=c, th=th: surface_2d(
                    loss, model, (d1, d2), g, g, data=(x, y), chunk_size=c, threads=th
                ),
                a.repeats,
            )
    z = np.asarray(surface_2d(loss, model, (d1, d2), g, g, data=(x, y))).ravel()

    # (a) one jitted full-data loss per point, host sync per point
    point_loss = jax.jit(
        lambda dyn, d1, d2, c, x, y: loss(eqx.combine(_shift(dyn, d1, d2, c), static), x, y)
    )
    comp_a = _compile_s(point_loss, dyn, d1, d2, coords[0], x, y)
    sub_a = coords[: a.loop_a_points]

    def loop_a() -> np.ndarray:
        return np.array([float(point_loss(dyn, d1, d2, c, x, y)) for c in sub_a])

    t_a = _extrapolated(comp_a, time_calls(loop_a, a.repeats), points / len(sub_a))
    diff_a = float(np.max(np.abs(loop_a() - z[: len(sub_a)])))

    # (b) loss-landscape's way: per point a shift, then minibatches with a sync per batch
    shift = jax.jit(_shift)
    batch_loss = jax.jit(lambda moved, xb, yb: loss(eqx.combine(moved, static), xb, yb))
    n = x.shape[0]
    batches = [(x[i : i + REF_BATCH], y[i : i + REF_BATCH]) for i in range(0, n, REF_BATCH)]
    moved0 = shift(dyn, d1, d2, coords[0])
    comp_b = _compile_s(shift, dyn, d1, d2, coords[0]) + sum(
        _compile_s(batch_loss, moved0, *b) for b in {b[0].shape[0]: b for b in batches}.values()
    )
    sub_b = coords[: a.loop_b_points]

    def loop_b() -> np.ndarray:
        out = []
        for c in sub_b:
            moved = shift(dyn, d1, d2, c)
            total = 0.0
            for xb, yb in batches:
                total += float(batch_loss(moved, xb, yb)) * xb.shape[0]
            out.append(total / n)
        return np.array(out)

    t_b = _extrapolated(comp_b, time_calls(loop_b, a.repeats), points / len(sub_b))
    diff_b = float(np.max(np.abs(loop_b() - z[: len(sub_b)])))

    ref_a = (
        f"(a) py loop: jitted full-data loss/point ({len(sub_a)} pts timed, "
        f"x{points / len(sub_a):.3g} extrap.)"
    )
    ref_b = (
        f"(b) py loop/point, minibatch {REF_BATCH} loop, sync/batch ({len(sub_b)} pts, "
        f"x{points / len(sub_b):.3g} extrap.)"
    )
    rows = []
    for (c, th), t in ours.items():
        for ref_name, ref_t, sub in ((ref_a, t_a, sub_a), (ref_b, t_b, sub_b)):
            rows.append(
                bench_row(
                    f"surface51_{name}_chunk{c}_threads{th or 'default'}",
                    t,
                    ref_name,
                    ref_t,
                    GOAL,
                    speedup=ref_t.run_s / t.run_s,
                    met=bool(ref_t.run_s / t.run_s >= 20),
                    model=name,
                    chunk_size=c,
                    threads=th or "default",
                    points=points,
                    ours_us_per_point=t.run_s / points * 1e6,
                    extrapolated=True,
                    timed_points=len(sub),
                    timed_s_median=ref_t.run_s * len(sub) / points,
                )
            )
    check = {
        "max_abs_diff_vs_loop_a": diff_a,
        "loop_a_points": len(sub_a),
        "max_abs_diff_vs_loop_b": diff_b,
        "loop_b_points": len(sub_b),
        "surface_min": float(z.min()),
        "surface_max": float(z.max()),
        "surface_centre": float(z[points // 2]),
    }
    return rows, check


# ----------------------------------------------------------------------------- (2) Lanczos


def _lanczos_update(Q: Array, j: Any, w: Array, beta_prev: Array) -> tuple:
    """One Lanczos step after ``w = H q_j``: three-term recurrence, two Gram–Schmidt sweeps
    against the whole basis (full reorthogonalisation), normalise into row ``j + 1``."""
    q = Q[j]
    alpha = jnp.vdot(q, w)
    w = w - alpha * q - jnp.where(j > 0, beta_prev, 0.0) * Q[jnp.maximum(j - 1, 0)]
    w = w - Q.T @ (Q @ w)
    w = w - Q.T @ (Q @ w)
    beta = jnp.linalg.norm(w)
    q_next = w / beta
    return Q.at[j + 1].set(q_next, mode="drop"), q_next, alpha, beta


def _loop_lanczos(hvp: Callable, update: Callable, v0: Array, m: int) -> np.ndarray:
    """Python-loop Lanczos: ``m`` HVPs, the update per step, ``alpha``/``beta`` to host."""
    q = v0 / jnp.linalg.norm(v0)
    Q = jnp.zeros((m, v0.size), v0.dtype).at[0].set(q)
    alphas, betas = [], []
    beta = jnp.zeros((), v0.dtype)
    for j in range(m):
        Q, q, alpha, beta = update(Q, j, hvp(q), beta)
        alphas.append(float(alpha))
        betas.append(float(beta))
    T = np.diag(alphas) + np.diag(betas[:-1], 1) + np.diag(betas[:-1], -1)
    return np.linalg.eigvalsh(T)[::-1][:TOP_K]


def bench_lanczos(name: str, model: Any, x: Array, y: Array, a: Any, label: str) -> tuple:
    dyn, static = eqx.partition(model, eqx.is_inexact_array)
    key = jax.random.PRNGKey(3)

    def ours_fn(dyn, x, y, key):
        op = hessian_operator(loss, eqx.combine(dyn, static), (x, y))
        return hessian_top_eigenvalues(op, op.dim, TOP_K, key, num_iters=LANCZOS_ITERS).values

    ours = time_jitted(ours_fn, dyn, x, y, key, repeats=a.repeats, warmup=1)
    ours_vals = np.asarray(jax.jit(ours_fn)(dyn, x, y, key))

    flat, unravel = ravel_pytree(dyn)
    # the start vector hessian_top_eigenvalues draws from `key`
    v0 = jax.random.normal(jax.random.split(key)[0], (flat.size,), flat.dtype)

    @jax.jit
    def hvp(flat, v, x, y):
        grad = jax.grad(lambda f: loss(eqx.combine(unravel(f), static), x, y))
        return jax.jvp(grad, (flat,), (v,))[1]

    update_jit = jax.jit(_lanczos_update)
    comp = _compile_s(hvp, flat, v0, x, y)
    Q0 = jnp.zeros((LANCZOS_ITERS, flat.size), flat.dtype)
    comp_up = _compile_s(update_jit, Q0, 0, v0, jnp.zeros((), flat.dtype))
    rows, vals = [], {}
    for kind, update, comp_s in (
        ("jitted", update_jit, comp + comp_up),
        ("eager", _lanczos_update, comp),
    ):
        run = lambda update=update: _loop_lanczos(
            lambda v: hvp(flat, v, x, y), update, v0, LANCZOS_ITERS
        )
        runs = time_calls(run, a.repeats)
        ref = Timing(comp_s, float(np.median(runs)), tuple(runs), None)
        vals[kind] = run()
        rel = float(np.max(np.abs(vals[kind] - ours_vals) / np.abs(ours_vals)))
        rows.append(
            bench_row(
                f"lanczos{LANCZOS_ITERS}_{name}_{label}",
                ours,
                f"py loop: jitted hvp + {kind} update, host sync/step",
                ref,
                "report",
                speedup=ref.run_s / ours.run_s,
                model=name,
                data=label,
                examples=int(x.shape[0]),
                top_k_ours=ours_vals.tolist(),
                top_k_reference=vals[kind].tolist(),
                max_rel_diff_top_k=rel,
            )
        )
    return rows


# ----------------------------------------------------------------------------- (3) sharding


def _shard_child(params_file: str, repeats: int) -> None:
    """Runs in a subprocess with 8 virtual CPU devices; prints one JSON line."""
    ds = digits(seed=0)
    x, y = jnp.asarray(ds.x_train), jnp.asarray(ds.y_train)
    model = eqx.tree_deserialise_leaves(params_file, _skeleton(SHARD_MODEL))
    dyn, static = eqx.partition(model, eqx.is_inexact_array)
    dirs = random_directions(jax.random.PRNGKey(2), model)
    g, _ = _grid_coords()
    out: dict[str, Any] = {"device_count": jax.device_count()}
    zs = {}
    for label, devs in (("all", jax.devices()), ("one", jax.devices()[:1])):
        fn = _ours_surface(static, g, devices=devs)
        t = time_jitted(fn, dyn, dirs, x, y, repeats=repeats, warmup=1)
        zs[label] = np.asarray(jax.jit(fn)(dyn, dirs, x, y))
        out[f"{label}_run_s"], out[f"{label}_compile_s"] = t.run_s, t.compile_s
        out[f"{label}_devices"] = len(devs)
    out["max_abs_diff"] = float(np.max(np.abs(zs["all"] - zs["one"])))
    out["max_rel_diff"] = float(np.max(np.abs(zs["all"] - zs["one"]) / np.abs(zs["one"])))
    print("SHARD_JSON " + json.dumps(out))


def bench_sharding(model: Any, repeats: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.eqx")
        eqx.tree_serialise_leaves(path, model)
        env = {
            **os.environ,
            "XLA_FLAGS": (
                os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_"
                f"device_count={SHARD_DEVICES}"
            ).strip(),
        }
        t = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, __file__, "--shard-child", path, "--repeats", str(repeats)],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        wall = time.perf_counter() - t
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("SHARD_JSON ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"sharding subprocess failed:\n{proc.stdout}\n{proc.stderr}")
    out = json.loads(lines[-1].removeprefix("SHARD_JSON "))
    out["subprocess_wall_s"] = wall
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--loop-a-points", type=int, default=260, help="points timed in loop (a)")
    p.add_argument("--loop-b-points", type=int, default=60, help="points timed in loop (b)")
    p.add_argument("--out", type=Path, default=Path("results/bench_landscape.json"))
    p.add_argument("--shard-child", default=None, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.shard_child is not None:
        _shard_child(a.shard_child, a.repeats)
        return
    t_start = time.perf_counter()

    ds = digits(seed=0)
    x, y = jnp.asarray(ds.x_train), jnp.asarray(ds.y_train)
    models, model_info = {}, {}
    for name in MODELS:
        models[name], model_info[name] = _trained(name, x, y)

    rows: list[dict[str, Any]] = []
    checks: dict[str, Any] = {}
    for name, model in models.items():
        r, checks[name] = bench_surfaces(name, model, x, y, a)
        rows += r
    lanczos_rows: list[dict[str, Any]] = []
    for name, model in models.items():
        lanczos_rows += bench_lanczos(name, model, x, y, a, "full")
        lanczos_rows += bench_lanczos(
            name, model, x[:SMALL_BATCH], y[:SMALL_BATCH], a, f"batch{SMALL_BATCH}"
        )
    shard = bench_sharding(models[SHARD_MODEL], a.repeats)
    total = time.perf_counter() - t_start

    out = {
        "machine": machine_info(),
        "config": {
            "dataset": "digits (sklearn), training split",
            "examples": int(x.shape[0]),
            "models": {
                k: {"mlp": f"64-{'-'.join([str(MODELS[k][0])] * MODELS[k][1])}-10 relu", **v}
                for k, v in model_info.items()
            },
            "grid": f"{GRID}x{GRID} on [-{SPAN}, {SPAN}]^2",
            "directions": "random_directions: filter-normalised, biases zeroed",
            "reference_batch": REF_BATCH,
            "chunk_sizes": list(CHUNKS),
            "threads": [th or "default" for th in THREADS],
            "lanczos_iters": LANCZOS_ITERS,
            "top_k": TOP_K,
            "repeats": a.repeats,
            "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS"),
            "extrapolation": "surface reference rows time their Python loop on "
            "timed_points points (timed_s_median) and scale it linearly to all 2601 "
            "points (reference_s)",
            "total_wall_s": total,
        },
        "rows": rows,
        "lanczos_rows": lanczos_rows,
        "surface_correctness": checks,
        "sharding": {"model": SHARD_MODEL, **shard},
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(out, indent=2) + "\n")

    print(
        f"digits train set ({x.shape[0]} examples); models: "
        + ", ".join(
            f"{k} {v['params']} params (train acc {v['train_acc']:.3f})"
            for k, v in model_info.items()
        )
    )
    print(f"(1) {GRID}x{GRID} filter-normalised surface over the full training set")
    head = f"{'name':38s} {'reference':78s} {'ours s':>7s} {'ref s':>7s} {'speedup':>8s}"
    print(f"{head} {'us/pt':>6s} {'compile s (ours/ref)':>20s}  goal")
    for r in rows:
        print(
            f"{r['name']:38s} {r['reference']:78s} {r['ours_s']:7.3f} {r['reference_s']:7.2f} "
            f"{r['speedup']:8.1f} {r['ours_us_per_point']:6.0f} {r['ours_compile_s']:9.2f}/"
            f"{r['reference_compile_s']:<10.2f}  {r['goal']}: {'met' if r['met'] else 'NOT met'}"
        )
    for k, c in checks.items():
        print(
            f"  {k}: max |ours - loop a| {c['max_abs_diff_vs_loop_a']:.2g} "
            f"({c['loop_a_points']} pts), max |ours - loop b| {c['max_abs_diff_vs_loop_b']:.2g} "
            f"({c['loop_b_points']} pts); loss range [{c['surface_min']:.3g}, "
            f"{c['surface_max']:.3g}], centre {c['surface_centre']:.3g}"
        )
    print(f"(2) {LANCZOS_ITERS} Lanczos steps, top-{TOP_K} Hessian eigenvalues")
    print(
        f"{'name':24s} {'reference':50s} {'ours s':>7s} {'ref s':>7s} {'speedup':>8s} "
        f"{'max rel diff':>12s}  top eigenvalue (ours)"
    )
    for r in lanczos_rows:
        print(
            f"{r['name']:24s} {r['reference']:50s} {r['ours_s']:7.3f} {r['reference_s']:7.3f} "
            f"{r['speedup']:8.1f} {r['max_rel_diff_top_k']:12.2g}  {r['top_k_ours'][0]:.5g}"
        )
    print(
        f"(3) {SHARD_MODEL} surface on {shard['device_count']} virtual CPU devices: "
        f"{shard['all_run_s']:.3f} s (compile {shard['all_compile_s']:.2f} s) vs one device "
        f"{shard['one_run_s']:.3f} s (compile {shard['one_compile_s']:.2f} s); max abs diff "
        f"{shard['max_abs_diff']:.2g} (max rel {shard['max_rel_diff']:.2g})"
    )
    print(f"total wall {total:.0f} s; wrote {a.out}")


if __name__ == "__main__":
    main()
