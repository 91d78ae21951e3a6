"""Benchmark: per-layer gradient norms of a depth-1,000 residual MLP, ours vs Python loops.

``terrain_jax.spectra.layer_gradient_norms`` (a forward ``lax.scan`` and one reverse
``lax.scan`` of per-layer VJPs) on a ResidualNet of depth 1,000, width 64, hidden 128,
batch 64, against three references computing the same numbers (checked equal):

- an eager Python loop over layers of jitted per-layer steps with a manual VJP chain
  (1,000 forward calls, 1,000 backward calls; compile = the three small step functions);
- a Python for-loop over a list of layer modules inside one ``jax.jit`` (unrolled): its
  compile time grows faster than linearly with depth (about 100 s at depth 1,000 on this
  2-core machine, most of this script's ~2 minutes); ``--unrolled-depth 300`` measures it
  at a smaller depth instead (ours at the same depth) and estimates depth 1,000;
- ``method="taps"``: ``jax.grad`` through the net's own scan with zero taps.

Also the compile time of ours at depths 10, 100, 1,000 (it should be flat) and of the
unrolled loop at 10, 100 and ``--unrolled-depth``. Prints a table of run-time and
compile-time ratios; writes ``results/bench_depth.json``.

    python scripts/bench_depth.py [--repeats 10] [--unrolled-depth 1000]
                                  [--out results/bench_depth.json]
"""

import argparse
import json
import os
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from terrain_jax import ResidualNet
from terrain_jax.bench import Timing, bench_row, machine_info, time_jitted
from terrain_jax.nets import layer_gradient_norms

DEPTH, WIDTH, HIDDEN, BATCH = 1000, 64, 128, 64
COMPILE_DEPTHS = (10, 100, 1000)


def _loss(out, y):
    return jnp.mean((out - y) ** 2)


def _ours(method):
    def fn(net, x, y):
        out = layer_gradient_norms(net, _loss, x, y, method=method)
        return out["loss"], out["state_grad_norms"], out["param_grad_norms"]

    return fn


def _tree_norm(tree):
    return jnp.sqrt(sum(jnp.sum(g**2) for g in jax.tree_util.tree_leaves(tree)))


def _unrolled(blocks, h, x, y):
    """The reference inside one jit: a Python loop over a list of layer modules."""

    def total(blocks, x, taps):
        z = x
        for k, (b, tap) in enumerate(zip(blocks, taps, strict=True)):
            z = z + h * b(k * h, z) + tap
        return _loss(z, y)

    taps = [jnp.zeros_like(x) for _ in blocks]
    loss, (g_blocks, g_x, g_taps) = jax.value_and_grad(total, argnums=(0, 1, 2))(blocks, x, taps)
    states = jnp.stack([jnp.linalg.norm(g_x)] + [jnp.linalg.norm(g) for g in g_taps])
    return loss, states, jnp.stack([_tree_norm(g) for g in g_blocks])


class _EagerLoop:
    """The reference outside jit: jitted per-layer steps driven by a Python loop."""

    def __init__(self, net):
        self.h = net.h
        self.blocks = [net.block(k) for k in range(net.depth)]  # the layers as a list
        self.ts = [jnp.asarray(k * net.h, jnp.float32) for k in range(net.depth)]
        self.fwd = jax.jit(self._layer)
        self.bwd = jax.jit(self._layer_vjp)
        self.loss_grad = jax.jit(jax.value_and_grad(_loss))

    def _layer(self, block, t, z):
        return z + self.h * block(t, z)

    def _layer_vjp(self, block, t, z, g):
        _, vjp = jax.vjp(lambda b, z: self._layer(b, t, z), block, z)
        g_block, g_z = vjp(g)
        return g_z, _tree_norm(g_block), jnp.linalg.norm(g_z)

    def compile_s(self, x, y):
        """Compile time of the three step functions (what the loop compiles, once)."""
        t = time.perf_counter()
        b, ts = self.blocks[0], self.ts[0]
        self.fwd.lower(b, ts, x).compile()
        self.bwd.lower(b, ts, x, x).compile()
        self.loss_grad.lower(x, y).compile()
        return time.perf_counter() - t

    def __call__(self, x, y):
        zs = [x]
        for b, t in zip(self.blocks, self.ts, strict=True):
            zs.append(self.fwd(b, t, zs[-1]))
        loss, g = self.loss_grad(zs[-1], y)
        states, params = [jnp.linalg.norm(g)], []
        for k in range(len(self.blocks) - 1, -1, -1):
            g, p, s = self.bwd(self.blocks[k], self.ts[k], zs[k], g)
            params.append(p)
            states.append(s)
        return loss, jnp.stack(states[::-1]), jnp.stack(params[::-1])


def _time_eager(loop, x, y, repeats):
    compile_s = loop.compile_s(x, y)
    jax.block_until_ready(loop(x, y))  # warm-up
    runs = []
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(loop(x, y))
        runs.append(time.perf_counter() - t)
    return Timing(compile_s, float(np.median(runs)), tuple(runs), None)


def _compile_row(name, ours_s, reference, reference_s, goal, **extra):
    return {
        "name": name,
        "ours_s": ours_s,
        "reference": reference,
        "reference_s": reference_s,
        "ratio": ours_s / reference_s,
        "goal": goal,
        **extra,
    }


def _check_same(a, b, what):
    for u, v, name in zip(a, b, ("loss", "state norms", "param norms"), strict=True):
        np.testing.assert_allclose(u, v, rtol=1e-4, atol=1e-9, err_msg=f"{what}: {name}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--unrolled-depth", type=int, default=DEPTH)
    p.add_argument("--out", type=Path, default=Path("results/bench_depth.json"))
    a = p.parse_args()
    start = time.perf_counter()

    kx, ky = jax.random.split(jax.random.PRNGKey(1))
    x = jax.random.normal(kx, (BATCH, WIDTH))
    y = jax.random.normal(ky, (BATCH, WIDTH))
    ud = a.unrolled_depth
    depths = sorted({*COMPILE_DEPTHS, ud})
    nets = {d: ResidualNet(WIDTH, HIDDEN, d, key=jax.random.PRNGKey(0)) for d in depths}
    net = nets[DEPTH]

    # ours at every depth (compile flatness), then at DEPTH with the full repeats
    ours = {
        d: time_jitted(_ours("sweep"), nets[d], x, y, repeats=a.repeats if d in (DEPTH, ud) else 3)
        for d in depths
    }
    taps = time_jitted(_ours("taps"), net, x, y, repeats=a.repeats)
    eager_loop = _EagerLoop(net)
    eager = _time_eager(eager_loop, x, y, max(3, a.repeats // 2))
    _check_same(jax.jit(_ours("sweep"))(net, x, y), eager_loop(x, y), "ours vs eager loop")
    _check_same(jax.jit(_ours("sweep"))(net, x, y), jax.jit(_ours("taps"))(net, x, y), "taps")

    unrolled = {}
    for d in sorted({10, 100, ud}):
        blocks = [nets[d].block(k) for k in range(d)]
        fn = jax.jit(_unrolled, static_argnums=1)
        t = time.perf_counter()
        compiled = fn.lower(blocks, nets[d].h, x, y).compile()
        compile_s = time.perf_counter() - t
        if d == ud:
            _check_same(jax.jit(_ours("sweep"))(nets[d], x, y), compiled(blocks, x, y), "unrolled")
            jax.block_until_ready(compiled(blocks, x, y))
            runs = []
            for _ in range(max(3, a.repeats // 2)):
                t = time.perf_counter()
                jax.block_until_ready(compiled(blocks, x, y))
                runs.append(time.perf_counter() - t)
            unrolled[d] = Timing(compile_s, float(np.median(runs)), tuple(runs), None)
        else:
            unrolled[d] = Timing(compile_s, float("nan"), (), None)

    rows = [
        bench_row(
            f"grad_norms_d{DEPTH}_vs_eager_loop",
            ours[DEPTH],
            f"eager Python loop of jitted per-layer steps + manual vjp chain (depth {DEPTH})",
            eager,
            "ratio <= 1.0",
        ),
        bench_row(
            f"grad_norms_d{DEPTH}_sweep_vs_taps",
            ours[DEPTH],
            f"method='taps': jax.grad through net(x, taps=0) (depth {DEPTH})",
            taps,
            "ratio <= 1.0",
        ),
        bench_row(
            f"grad_norms_d{ud}_vs_unrolled_jit_run",
            ours[ud],
            f"Python for-loop over layers inside one jax.jit (unrolled), depth {ud}"
            + ("" if ud == DEPTH else f" (depth {DEPTH}: --unrolled-depth {DEPTH})"),
            unrolled[ud],
            "ratio <= 1.25",
        ),
        _compile_row(
            f"grad_norms_d{ud}_vs_unrolled_jit_compile",
            ours[ud].compile_s,
            f"compile time of the unrolled jit, depth {ud}",
            unrolled[ud].compile_s,
            "ratio <= 0.2",
        ),
        _compile_row(
            f"grad_norms_compile_d{DEPTH}_vs_d10",
            ours[DEPTH].compile_s,
            "compile time of ours at depth 10",
            ours[10].compile_s,
            "ratio <= 1.5 (flat in depth)",
        ),
    ]
    compile_by_depth = {
        "ours": {str(d): ours[d].compile_s for d in sorted(ours)},
        "unrolled_jit": {str(d): unrolled[d].compile_s for d in sorted(unrolled)},
    }
    # what depth 1,000 would cost the unrolled jit: a power law through the two largest
    # measured depths (its compile time grows faster than linearly)
    (d1, c1), (d2, c2) = [(d, unrolled[d].compile_s) for d in sorted(unrolled)[-2:]]
    est_1000 = c2 * (DEPTH / d2) ** (np.log(c2 / c1) / np.log(d2 / d1))
    out = {
        "machine": {**machine_info(), "loadavg_1min": os.getloadavg()[0]},
        "config": {"depth": DEPTH, "width": WIDTH, "hidden": HIDDEN, "batch": BATCH},
        "rows": rows,
        "compile_s_by_depth": compile_by_depth,
        "unrolled_compile_s_estimate_depth_1000": None if ud == DEPTH else float(est_1000),
        "run_s_by_depth": {str(d): ours[d].run_s for d in sorted(ours)},
        "wall_s": time.perf_counter() - start,
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = a.out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(out, indent=2) + "\n")
    tmp.replace(a.out)

    m = out["machine"]
    print(
        f"machine: {m['device']} x{m['device_count']}, {m['cpu_count']} cpus, "
        f"load {m['loadavg_1min']:.1f}; depth {DEPTH}, width {WIDTH}, hidden {HIDDEN}, "
        f"batch {BATCH}"
    )
    print(f"{'name':40s} {'ours s':>9s} {'ref s':>9s} {'ratio':>7s}  {'goal':28s}")
    for r in rows:
        ok = "ok" if r["ratio"] <= float(r["goal"].split("<=")[1].split()[0]) else "MISSED"
        print(
            f"{r['name']:40s} {r['ours_s']:9.4f} {r['reference_s']:9.4f} {r['ratio']:7.3f}  "
            f"{r['goal']:28s} {ok}"
        )
        print(f"{'':40s} reference: {r['reference']}")
        if "ours_compile_s" in r:
            print(
                f"{'':40s} compile ours {r['ours_compile_s']:.2f} s, reference "
                f"{r['reference_compile_s']:.2f} s "
                f"(ratio {r['ours_compile_s'] / r['reference_compile_s']:.3f})"
            )
    print("compile time (s) by depth:")
    for name, by in compile_by_depth.items():
        print(f"  {name:14s} " + "  ".join(f"d={d}: {s:6.2f}" for d, s in by.items()))
    if ud != DEPTH:
        print(f"  unrolled_jit at depth {DEPTH}: ~{est_1000:.0f} s (power-law estimate)")
    print(f"wrote {a.out} in {out['wall_s']:.0f} s")


if __name__ == "__main__":
    main()
