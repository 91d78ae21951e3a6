"""Benchmark: the DEQ layer (``DEQBlock``) against unrolled backprop and optimistix.

An MLP cell ``z ↦ tanh(W2 relu(W1 z + b1) + U x + b2)`` (width 128, hidden 256, ‖W2‖₂‖W1‖₂
= 0.9, so the cell contracts), batch 128, Anderson, tol 1e-4. Rows:

(a) one training step (forward solve + implicit backward + adam update) against backprop
    through the same number of forward iterations the solve actually took (``n``): the
    same Anderson solver unrolled (``backward="unroll"``, ``n`` steps) and a hand-written
    ``lax.scan`` of ``n`` Picard steps (the weight-tied depth-``n`` net). Goal ≤ 1.0.
(b) the compiled step's temporary memory (``memory_analysis().temp_size_in_bytes``) for
    ``max_steps`` 10 → 100: implicit stays flat (goal ≤ 1.1×), unroll grows ~linearly.
(c) the batched layer's forward (and forward+gradient) against ``optimistix.fixed_point``:
    ``FixedPointIteration`` vmapped per sample and on the batch as one system, and
    ``optx.Newton`` root finding vmapped per sample (dense per-sample Jacobian) and on the
    batch as one system (dense *batch* Jacobian; at a reduced batch, see the row name).

Prints a table; writes ``results/bench_deq.json``.

    python scripts/bench_deq.py [--repeats 10] [--out results/bench_deq.json]
"""

import argparse
import json
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
import optimistix as optx
from jaxtyping import Array, PRNGKeyArray

from terrain_jax.bench import bench_row, machine_info, time_jitted
from terrain_jax.nets import DEQBlock

BATCH, WIDTH, HIDDEN, TOL, MAX_STEPS = 128, 128, 256, 1e-4, 50
SMALL_BATCH = 16  # for optx.Newton on the batch as one system (dense (B·n)² Jacobian)


class MLPCell(eqx.Module):
    """``z ↦ tanh(W2 relu(W1 z + b1) + U x + b2)`` for one sample, ``‖W2‖‖W1‖ ≈ lip``."""

    w1: Array
    b1: Array
    w2: Array
    b2: Array
    u: Array

    def __init__(self, width: int, hidden: int, *, key: PRNGKeyArray, lip: float = 0.8):
        k1, k2, k3 = jax.random.split(key, 3)
        w1 = jax.random.normal(k1, (hidden, width)) / jnp.sqrt(width)
        w2 = jax.random.normal(k2, (width, hidden)) / jnp.sqrt(hidden)
        s = jnp.sqrt(lip / (jnp.linalg.norm(w1, 2) * jnp.linalg.norm(w2, 2)))
        self.w1, self.w2 = s * w1, s * w2
        self.b1, self.b2 = jnp.zeros(hidden), jnp.zeros(width)
        self.u = jax.random.normal(k3, (width, width)) / jnp.sqrt(width)

    def __call__(self, z: Array, x: Array) -> Array:
        return jnp.tanh(self.w2 @ jax.nn.relu(self.w1 @ z + self.b1) + self.u @ x + self.b2)


def _deq_loss(**kw: Any):
    """MSE of ``DEQBlock(cell, **kw)(x)`` against ``y``."""

    def loss(cell, x, y):
        return jnp.mean((DEQBlock(cell, **kw)(x) - y) ** 2)

    return loss


def _make_step(optimizer: Any, static: Any, loss: Any):
    """``step(params, opt_state, x, y)``: one adam step on the cell's parameters."""

    def step(params, opt_state, x, y):
        value, g = jax.value_and_grad(lambda p: loss(eqx.combine(p, static), x, y))(params)
        with jax.numpy_dtype_promotion("standard"):
            updates, opt_state = optimizer.update(g, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, value

    return step


def _scan_loss(n: int):
    """Backprop reference: ``n`` Picard steps of the cell, hand-written ``lax.scan``."""

    def loss(cell, x, y):
        def body(z, _):
            return jax.vmap(cell)(z, x), None

        z, _ = jax.lax.scan(body, jnp.zeros_like(x), None, length=n)
        return jnp.mean((z - y) ** 2)

    return loss


def _temp_bytes(step: Any, *args: Any) -> int:
    return int(jax.jit(step).lower(*args).compile().memory_analysis().temp_size_in_bytes)


def _optx_solve(cell: Any, solver: Any, x: Array, *, per_sample: bool) -> Array:
    """``optimistix.fixed_point`` of the cell: vmapped per sample or one batched system."""
    if isinstance(solver, optx.AbstractRootFinder):

        def fn(z, xx):
            return (jax.vmap(cell)(z, xx) if z.ndim == 2 else cell(z, xx)) - z
    else:

        def fn(z, xx):
            return jax.vmap(cell)(z, xx) if z.ndim == 2 else cell(z, xx)

    def one(xx):
        if isinstance(solver, optx.AbstractRootFinder):
            sol = optx.root_find(fn, solver, jnp.zeros_like(xx), xx, throw=False,
                                 max_steps=MAX_STEPS)  # fmt: skip
        else:
            sol = optx.fixed_point(fn, solver, jnp.zeros_like(xx), xx, throw=False,
                                   max_steps=MAX_STEPS)  # fmt: skip
        return sol.value, sol.stats["num_steps"]

    return jax.vmap(one)(x) if per_sample else one(x)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--out", type=Path, default=Path("results/bench_deq.json"))
    a = p.parse_args()
    rep = dict(repeats=a.repeats, min_time=1.0)

    kc, kx, ky = jax.random.split(jax.random.PRNGKey(0), 3)
    cell = MLPCell(WIDTH, HIDDEN, key=kc, lip=0.9)
    x = jax.random.normal(kx, (BATCH, WIDTH))
    y = jnp.tanh(jax.random.normal(ky, (BATCH, WIDTH)))
    block = DEQBlock(cell, solver="anderson", tol=TOL, max_steps=MAX_STEPS)
    optimizer = optax.adam(1e-3)
    params, static = eqx.partition(cell, eqx.is_inexact_array)
    opt_state = optimizer.init(params)
    _, info = jax.jit(lambda b, x: b.solve(x))(block, x)
    n = int(jnp.max(info.steps))
    print(
        f"forward: Anderson took {n} steps (max over the batch; mean "
        f"{float(jnp.mean(info.steps)):.1f}), converged {bool(jnp.all(info.converged))}"
    )

    rows: list[dict[str, Any]] = []
    # (a) training step: implicit vs unrolled backprop through n forward iterations
    kw = dict(solver="anderson", tol=TOL, max_steps=MAX_STEPS)
    step_imp = _make_step(optimizer, static, _deq_loss(**kw))
    ours = time_jitted(step_imp, params, opt_state, x, y, **rep)
    step_unr = _make_step(optimizer, static, _deq_loss(**{**kw, "tol": 0.0, "max_steps": n,
                                                         "backward": "unroll"}))  # fmt: skip
    ref_unr = time_jitted(step_unr, params, opt_state, x, y, **rep)
    ref_scan = time_jitted(
        _make_step(optimizer, static, _scan_loss(n)), params, opt_state, x, y, **rep
    )
    rows.append(bench_row("train_step_implicit", ours, f"anderson unrolled {n} steps, backprop",
                          ref_unr, "ratio <= 1.0", forward_steps=n))  # fmt: skip
    rows.append(bench_row("train_step_implicit", ours, f"lax.scan {n} picard steps, backprop",
                          ref_scan, "ratio <= 1.0", forward_steps=n))  # fmt: skip

    # (b) temporary memory of the compiled step, max_steps 10 vs 100
    mem = {}
    for backward in ("implicit", "unroll"):
        for ms in (10, 100):
            loss = _deq_loss(**{**kw, "max_steps": ms, "backward": backward})
            mem[backward, ms] = _temp_bytes(
                _make_step(optimizer, static, loss), params, opt_state, x, y
            )
    mem_rows = []
    for backward, goal in (("implicit", "ratio <= 1.1"), ("unroll", "grows ~10x (linear)")):
        r = mem[backward, 100] / mem[backward, 10]
        mem_rows.append(
            {"name": f"temp_bytes_{backward}_max_steps_100_vs_10", "ours_bytes":
             mem[backward, 100], "reference": "max_steps=10", "reference_bytes":
             mem[backward, 10], "ratio": r, "goal": goal}
        )  # fmt: skip

    # (c) the batched layer vs optimistix.fixed_point (forward, and forward + gradient)
    fpi = optx.FixedPointIteration(rtol=TOL, atol=TOL)
    newton = optx.Newton(rtol=TOL, atol=TOL)

    def ours_fwd(block, x):
        return block(x)

    def optx_fwd(solver, per_sample):
        return lambda cell, x: _optx_solve(cell, solver, x, per_sample=per_sample)[0]

    def grad_of(fwd):
        return lambda m, x: eqx.filter_grad(lambda mm: jnp.mean((fwd(mm, x) - y) ** 2))(m)

    picard = DEQBlock(cell, solver="picard", tol=TOL, max_steps=MAX_STEPS)
    ours_newton = DEQBlock(cell, solver="newton", tol=TOL, max_steps=MAX_STEPS)
    t_and = time_jitted(ours_fwd, block, x, **rep)
    t_pic = time_jitted(ours_fwd, picard, x, **rep)
    t_new = time_jitted(ours_fwd, ours_newton, x, **rep)
    steps = {
        "optx_fpi_vmap": _optx_solve(cell, fpi, x, per_sample=True)[1],
        "optx_fpi_batch": _optx_solve(cell, fpi, x, per_sample=False)[1],
        "optx_newton_vmap": _optx_solve(cell, newton, x, per_sample=True)[1],
        "ours_picard": jax.jit(lambda b, x: b.solve(x))(picard, x)[1].steps,
        "ours_newton": jax.jit(lambda b, x: b.solve(x))(ours_newton, x)[1].steps,
    }
    steps = {k: int(jnp.max(v)) for k, v in steps.items()}
    print("max steps:", steps)
    t_fpi_v = time_jitted(optx_fwd(fpi, True), cell, x, **rep)
    t_fpi_b = time_jitted(optx_fwd(fpi, False), cell, x, **rep)
    t_new_v = time_jitted(optx_fwd(newton, True), cell, x, **rep)
    rows += [
        bench_row("forward_anderson", t_and, "optx.FixedPointIteration vmap per sample",
                  t_fpi_v, "report"),
        bench_row("forward_picard", t_pic, "optx.FixedPointIteration vmap per sample",
                  t_fpi_v, "report"),
        bench_row("forward_anderson", t_and, "optx.FixedPointIteration batch as one system",
                  t_fpi_b, "report"),
        bench_row("forward_newton", t_new, "optx.Newton vmap per sample (dense n×n J)",
                  t_new_v, "report"),
        bench_row("forward_anderson", t_and, "optx.Newton vmap per sample (dense n×n J)",
                  t_new_v, "report"),
    ]  # fmt: skip
    g_and = time_jitted(grad_of(ours_fwd), block, x, **rep)
    g_fpi_v = time_jitted(grad_of(optx_fwd(fpi, True)), cell, x, **rep)
    g_new_v = time_jitted(grad_of(optx_fwd(newton, True)), cell, x, **rep)
    rows += [
        bench_row("forward_grad_anderson_implicit", g_and,
                  "optx.FixedPointIteration vmap + ImplicitAdjoint", g_fpi_v, "report"),
        bench_row("forward_grad_anderson_implicit", g_and,
                  "optx.Newton vmap + ImplicitAdjoint", g_new_v, "report"),
    ]  # fmt: skip
    # optx.Newton on the batch as one system: dense (B·n)² Jacobian, at a reduced batch
    xs = x[:SMALL_BATCH]
    t_small = time_jitted(ours_fwd, block, xs, **rep)
    t_new_b = time_jitted(optx_fwd(newton, False), cell, xs, **rep)
    rows.append(bench_row(f"forward_anderson_batch{SMALL_BATCH}", t_small,
                          f"optx.Newton batch {SMALL_BATCH} as one system "
                          f"(dense {SMALL_BATCH * WIDTH}² J)", t_new_b, "report"))  # fmt: skip

    out = {
        "machine": machine_info(),
        "config": {"batch": BATCH, "width": WIDTH, "hidden": HIDDEN, "tol": TOL,
                   "max_steps": MAX_STEPS, "forward_steps": n, "max_steps_taken": steps},
        "rows": rows,
        "memory_rows": mem_rows,
    }  # fmt: skip
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(out, indent=2) + "\n")

    print(f"{'name':36s} {'reference':52s} {'ours ms':>9s} {'ref ms':>9s} {'ratio':>7s}  goal")
    for r in rows:
        print(f"{r['name']:36s} {r['reference']:52s} {r['ours_s'] * 1e3:9.2f} "
              f"{r['reference_s'] * 1e3:9.2f} {r['ratio']:7.3f}  {r['goal']}")  # fmt: skip
    for r in mem_rows:
        mib, ref_mib = r["ours_bytes"] / 2**20, r["reference_bytes"] / 2**20
        print(f"{r['name']:44s} {ref_mib:8.2f} MiB -> {mib:8.2f} MiB  "
              f"ratio {r['ratio']:6.2f}  {r['goal']}")  # fmt: skip
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
