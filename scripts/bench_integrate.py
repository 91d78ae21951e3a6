"""Benchmark: an Euler ODEBlock against a hand-written ``lax.scan`` residual net.

Same weights, same arithmetic (batch 256, width 64, hidden 128, 32 steps). Goal: the
library's ODEBlock within 1.15x of the hand-written loop for the forward pass and for
forward+gradient, and its forward FLOP rate reported as a fraction of this machine's
measured float32 matmul peak. Prints a table; writes ``results/bench_integrate.json``.

    python scripts/bench_integrate.py [--repeats 50] [--out results/bench_integrate.json]
"""

import argparse
import json
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp

from terrain_jax import MLPField, ODEBlock
from terrain_jax.bench import bench_row, machine_info, matmul_peak, time_jitted

BATCH, WIDTH, HIDDEN, STEPS = 256, 64, 128, 32
GOAL = 1.15


def _scan_resnet(params, x):
    """The reference: a residual net written by hand with lax.scan."""
    (w1, w2), (b1, b2) = params
    h = 1.0 / STEPS

    def body(y, _):
        return y + h * (jnp.tanh(y @ w1.T + b1) @ w2.T + b2), None

    y, _ = jax.lax.scan(body, x, None, length=STEPS)
    return y


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--repeats", type=int, default=50)
    p.add_argument("--out", type=Path, default=Path("results/bench_integrate.json"))
    a = p.parse_args()

    kf, kx = jax.random.split(jax.random.PRNGKey(0))
    field = MLPField(WIDTH, HIDDEN, key=kf)
    block = ODEBlock(field, solver="euler", steps=STEPS)
    x = jax.random.normal(kx, (BATCH, WIDTH))
    params = (tuple(field.weights), tuple(field.biases))
    assert jnp.allclose(block(x), _scan_resnet(params, x), atol=1e-5), "not the same function"

    def ours_fwd(block, x):
        return block(x)

    def ours_grad(block, x):
        return eqx.filter_grad(lambda b: jnp.mean(b(x) ** 2))(block)

    def ref_grad(params, x):
        return jax.grad(lambda q: jnp.mean(_scan_resnet(q, x) ** 2))(params)

    peak = matmul_peak()
    rows = []
    t_of = jax.jit(ours_fwd)
    # time_jitted jit-compiles; modules are pytrees so they pass straight through
    ours_f = time_jitted(t_of, block, x, repeats=a.repeats, min_time=1.0)
    ref_f = time_jitted(_scan_resnet, params, x, repeats=a.repeats, min_time=1.0)
    ours_g = time_jitted(ours_grad, block, x, repeats=a.repeats, min_time=1.0)
    ref_g = time_jitted(ref_grad, params, x, repeats=a.repeats, min_time=1.0)
    flops = 2 * STEPS * BATCH * (WIDTH * HIDDEN + HIDDEN * WIDTH)
    rows.append(
        bench_row(
            "euler_odeblock_forward",
            ours_f,
            "lax.scan residual net",
            ref_f,
            f"ratio <= {GOAL}",
            forward_gflops=flops / ours_f.run_s / 1e9,
            fraction_of_matmul_peak=flops / ours_f.run_s / peak,
        )
    )
    rows.append(
        bench_row(
            "euler_odeblock_forward_grad",
            ours_g,
            "lax.scan residual net",
            ref_g,
            f"ratio <= {GOAL}",
        )
    )
    out = {
        "machine": {**machine_info(), "matmul_peak_gflops": peak / 1e9},
        "config": {"batch": BATCH, "width": WIDTH, "hidden": HIDDEN, "steps": STEPS},
        "rows": rows,
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(out, indent=2) + "\n")

    print(
        f"machine: {out['machine']['device']} x{out['machine']['device_count']}, "
        f"float32 matmul peak {peak / 1e9:.1f} GFLOP/s"
    )
    print(
        f"{'name':32s} {'ours ms':>9s} {'ref ms':>9s} {'ratio':>7s}  {'goal':10s} "
        f"{'compile ours/ref s':>18s}"
    )
    for r in rows:
        ok = "ok" if r["ratio"] <= GOAL else "MISSED"
        print(
            f"{r['name']:32s} {r['ours_s'] * 1e3:9.3f} {r['reference_s'] * 1e3:9.3f} "
            f"{r['ratio']:7.3f}  {r['goal']:10s} {r['ours_compile_s']:8.2f}/"
            f"{r['reference_compile_s']:.2f}  {ok}"
        )
    f = rows[0]
    print(
        f"forward: {f['forward_gflops']:.1f} GFLOP/s = {f['fraction_of_matmul_peak']:.2f} of "
        "the measured matmul peak"
    )
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
