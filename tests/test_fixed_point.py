"""Tests for terrain_jax.fixed_point: solvers (by name and as objects), convergence
reports and their status, backward passes, pytree and per-sample states, closed forms,
Picard trajectories and their rates."""

import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import FIXED_POINT_SOLVER_OBJECTS

from terrain_jax.fixed_point import (
    FIXED_POINT_BACKWARDS,
    FIXED_POINT_SOLVERS,
    JFB,
    AbstractBackward,
    AbstractFixedPointSolver,
    Anderson,
    Broyden,
    FixedPointResult,
    Implicit,
    NewtonKrylov,
    Phantom,
    Picard,
    Unroll,
    asymptotic_rate,
    fixed_point,
    iterate,
)
from terrain_jax.nets import DEQBlock, DEQCell

WIDTH, IN = 8, 3


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


def _tanh_map(z, args):
    W, U, b, x = args
    return jnp.tanh(W @ z + U @ x + b)


def _params(norm: float, dtype=np.float32, seed: int = 0, scale: float = 1.0):
    """W with ‖W‖₂ = norm; ``scale`` shrinks the drive U x + b (small: tanh stays linear)."""
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((WIDTH, WIDTH))
    W = norm * W / np.linalg.norm(W, 2)
    U = scale * rng.standard_normal((WIDTH, IN))
    b = scale * rng.standard_normal(WIDTH)
    x = rng.standard_normal(IN)
    return tuple(jnp.asarray(a, dtype) for a in (W, U, b, x))


def _fp_err(z, args):
    return float(jnp.linalg.norm(_tanh_map(z, args) - z) / jnp.linalg.norm(z))


@pytest.mark.parametrize("solver", FIXED_POINT_SOLVERS)
def test_contractive_map_converges(solver):
    args = _params(0.5)
    z, info = fixed_point(_tanh_map, jnp.zeros(WIDTH), args, solver=solver, tol=1e-5)
    assert bool(info.converged)
    assert _fp_err(z, args) <= 1e-5
    steps = int(info.steps)
    assert 0 < steps < 100
    trace = np.asarray(info.trace)
    assert np.all(np.isfinite(trace[:steps])) and np.all(np.isnan(trace[steps:]))
    assert trace[steps - 1] == pytest.approx(float(info.residual))


def test_picard_and_anderson_agree():
    args = _params(0.5)
    zp, _ = fixed_point(_tanh_map, jnp.zeros(WIDTH), args, solver="picard", tol=1e-6)
    za, _ = fixed_point(_tanh_map, jnp.zeros(WIDTH), args, solver="anderson", tol=1e-6)
    np.testing.assert_allclose(zp, za, atol=1e-5)


def test_anderson_fewer_steps_on_slow_contraction():
    # symmetric W with top eigenvalue 0.95 and a small drive: Picard contracts at ≈ 0.95^k
    W = np.linalg.qr(np.random.default_rng(5).standard_normal((WIDTH, WIDTH)))[0]
    W = W @ np.diag(np.linspace(-0.95, 0.95, WIDTH)) @ W.T
    args = (jnp.asarray(W, jnp.float32), *_params(0.95, seed=1, scale=0.3)[1:])
    z0 = jnp.zeros(WIDTH)
    _, ip = fixed_point(_tanh_map, z0, args, solver="picard", tol=1e-5, max_steps=500)
    _, ia = fixed_point(_tanh_map, z0, args, solver="anderson", tol=1e-5, max_steps=500)
    _, ib = fixed_point(_tanh_map, z0, args, solver="broyden", tol=1e-5, max_steps=500)
    assert bool(ip.converged) and bool(ia.converged) and bool(ib.converged)
    print(f"steps picard={int(ip.steps)} anderson={int(ia.steps)} broyden={int(ib.steps)}")
    assert int(ia.steps) < int(ip.steps) / 2
    assert int(ib.steps) < int(ip.steps) / 2


@pytest.mark.parametrize("solver", ["anderson", "broyden", "newton"])
def test_picard_diverges_anderson_converges(solver):
    A = 1.5 * jnp.eye(4)
    c = jnp.arange(1.0, 5.0)

    def f(z, args):
        A, c = args
        return A @ z + c

    z_star = -c / 0.5  # (I - A) z = c
    zp, ip = fixed_point(f, jnp.zeros(4), (A, c), solver="picard", max_steps=50)
    assert not bool(ip.converged)
    assert float(ip.residual) > 0.1 or not np.isfinite(float(ip.residual))
    za, ia = fixed_point(f, jnp.zeros(4), (A, c), solver=solver, max_steps=50)
    print(f"{solver} steps on A=1.5·I: {int(ia.steps)}")
    assert bool(ia.converged)
    np.testing.assert_allclose(za, z_star, rtol=1e-4)


def test_broyden_on_nonsymmetric_expanding_linear_map():
    # non-normal A with spectral radius > 1 (eigenvalues ±1.3·i-ish and 2): Picard diverges
    rng = np.random.default_rng(7)
    A = rng.standard_normal((6, 6))
    A = 2.0 * A / np.max(np.abs(np.linalg.eigvals(A)))
    c = rng.standard_normal(6)
    z_star = np.linalg.solve(np.eye(6) - A, c)

    def f(z, args):
        A, c = args
        return A @ z + c

    args = (jnp.asarray(A, jnp.float32), jnp.asarray(c, jnp.float32))
    _, ip = fixed_point(f, jnp.zeros(6), args, solver="picard", max_steps=50)
    assert not bool(ip.converged)
    zb, ib = fixed_point(f, jnp.zeros(6), args, solver="broyden", memory=12, max_steps=50)
    print(f"broyden steps on non-normal A (ρ=2): {int(ib.steps)}")
    assert bool(ib.converged)
    np.testing.assert_allclose(zb, z_star, rtol=1e-3, atol=1e-4)


def _loss(args, backward, solver="anderson", tol=1e-12, max_steps=300):
    z, _ = fixed_point(
        _tanh_map, jnp.zeros(WIDTH, args[0].dtype), args, solver=solver, tol=tol,
        max_steps=max_steps, backward=backward,
    )  # fmt: skip
    return jnp.sum(jnp.sin(z))


def _flat_map(z, args):
    """A map with ``J_f(z*) = 0``: ``z* = a = tanh(W 1 + U x + b)``, ``f = a + ½ (W(z − a))²``."""
    W, U, b, x = args
    a = jnp.tanh(W @ jnp.ones_like(z) + U @ x + b)
    return a + 0.5 * (W @ (z - a)) ** 2


# Maps and phantom settings of the gradient grid. ``implicit`` and ``unroll`` are exact;
# ``jfb`` is exact where J_f(z*) = 0 (the flat map), ``phantom`` with k steps of τ = 1 is
# the Neumann series of (I − J_f)⁻¹ truncated after k terms: error ≤ Lip^k / (1 − Lip),
# here 0.5^40 / 0.5 ≈ 2e-12, so it must match finite differences too.
_GRID_MAP = {"implicit": _tanh_map, "unroll": _tanh_map, "phantom": _tanh_map, "jfb": _flat_map}
_GRID_TOL = {np.float64: 1e-12, np.float32: 1e-6}


@functools.cache
def _grid_value_and_grad(solver, backward, dtype):
    def loss(args):
        z, _ = fixed_point(
            _GRID_MAP[backward], jnp.zeros(WIDTH, dtype), args, solver=solver,
            tol=_GRID_TOL[dtype], max_steps=100, backward=backward, phantom_steps=40,
            phantom_damping=1.0,
        )  # fmt: skip
        return jnp.sum(jnp.sin(z))

    return jax.jit(jax.value_and_grad(loss))


def _directional(grads, dirs) -> float:
    return float(sum(jnp.vdot(g.astype(jnp.float64), d) for g, d in zip(grads, dirs, strict=True)))


def _fd_setup(solver, backward):
    """float64 params, a random direction in all of them, and the central difference."""
    vg64 = _grid_value_and_grad(solver, backward, np.float64)
    a64 = _params(0.5, np.float64)
    rng = np.random.default_rng(3)
    dirs = tuple(jnp.asarray(rng.standard_normal(a.shape)) for a in a64)
    eps = 1e-5
    plus = tuple(a + eps * d for a, d in zip(a64, dirs, strict=True))
    minus = tuple(a - eps * d for a, d in zip(a64, dirs, strict=True))
    fd = float((vg64(plus)[0] - vg64(minus)[0]) / (2 * eps))
    return vg64, a64, dirs, fd


@pytest.mark.parametrize("backward", FIXED_POINT_BACKWARDS)
@pytest.mark.parametrize("solver", FIXED_POINT_SOLVERS)
def test_gradient_grid_float64(x64, solver, backward):
    """Every solver × backward pair in float64: AD gradient vs central differences (step
    1e-5, solve to 1e-12: truncation ~1e-10, round-off ~1e-11) along a random direction
    in all arguments, relative error ≤ 1e-6; implicit == unrolled at convergence."""
    vg64, a64, dirs, fd = _fd_setup(solver, backward)
    g64 = vg64(a64)[1]
    err = abs(_directional(g64, dirs) - fd) / abs(fd)
    print(f"{solver}/{backward}: rel err float64 {err:.1e}")
    assert err <= 1e-6
    if backward == "implicit":
        g_unr = _grid_value_and_grad(solver, "unroll", np.float64)(a64)[1]
        for gi, gu in zip(g64, g_unr, strict=True):
            np.testing.assert_allclose(gi, gu, rtol=1e-8, atol=1e-10)


# float32 on the whole grid costs ~16 more compiles; the implicit row runs by default,
# the rest with --runslow.
_F32_GRID = [
    pytest.param(s, b, marks=() if b == "implicit" else pytest.mark.slow)
    for s in FIXED_POINT_SOLVERS
    for b in FIXED_POINT_BACKWARDS
]


@pytest.mark.parametrize(("solver", "backward"), _F32_GRID)
def test_gradient_grid_float32(x64, solver, backward):
    """The same pair in float32 (params cast, tol 1e-6) against the float64 central
    difference of the same map (computed in float64, so the FD step is not the limit):
    relative error ≤ 1e-3."""
    _, _, dirs, fd = _fd_setup(solver, backward)
    g32 = _grid_value_and_grad(solver, backward, np.float32)(_params(0.5, np.float32))[1]
    assert all(g.dtype == jnp.float32 for g in g32)
    err = abs(_directional(g32, dirs) - fd) / abs(fd)
    print(f"{solver}/{backward}: rel err float32 {err:.1e}")
    assert err <= 1e-3


def test_implicit_gradient_float32_and_closure():
    args = _params(0.5)
    W = args[0]

    def loss_closure(W):
        f = lambda z, a: _tanh_map(z, (W, *a))
        z, _ = fixed_point(f, jnp.zeros(WIDTH), args[1:], tol=1e-6)
        return jnp.sum(jnp.sin(z))

    g_closure, g_args = jax.jit(
        lambda W, args: (
            jax.grad(loss_closure)(W),
            jax.grad(_loss)(args, "implicit", "anderson", 1e-6, 100)[0],
        )
    )(W, args)
    np.testing.assert_allclose(g_closure, g_args, rtol=1e-5, atol=1e-6)


def test_phantom_gradient_tends_to_implicit(x64):
    args = _params(0.5, np.float64)

    def loss(args, k, backward="phantom"):
        z, _ = fixed_point(
            _tanh_map, jnp.zeros(WIDTH), args, tol=1e-12, max_steps=300,
            backward=backward, phantom_steps=k, phantom_damping=0.5,
        )  # fmt: skip
        return jnp.sum(jnp.sin(z))

    flat = lambda g: jnp.concatenate([jnp.ravel(a) for a in g])
    vg = jax.jit(jax.value_and_grad(loss), static_argnums=(1, 2))
    (v_imp, g_imp), (v_100, g_100), (_, g_1) = (
        vg(args, 1, "implicit"), vg(args, 100, "phantom"), vg(args, 1, "phantom")
    )  # fmt: skip
    g_imp, g_100, g_1 = flat(g_imp), flat(g_100), flat(g_1)
    rel_100 = float(jnp.linalg.norm(g_100 - g_imp) / jnp.linalg.norm(g_imp))
    rel_1 = float(jnp.linalg.norm(g_1 - g_imp) / jnp.linalg.norm(g_imp))
    cos_1 = float(jnp.vdot(g_1, g_imp) / (jnp.linalg.norm(g_1) * jnp.linalg.norm(g_imp)))
    print(f"phantom rel err k=100: {rel_100:.2e}, k=1: {rel_1:.2e} (cos {cos_1:.3f})")
    assert rel_100 <= 1e-4
    assert rel_1 > 1e-2 and cos_1 > 0
    # the forward value is still z* (phantom only changes the gradient)
    assert float(v_100) == float(v_imp)


def test_phantom_validates_arguments():
    args = _params(0.5)
    with pytest.raises(ValueError, match="phantom_steps"):
        fixed_point(_tanh_map, jnp.zeros(WIDTH), args, backward="phantom", phantom_steps=0)


def test_jfb_gradient_is_one_step_approximation():
    args = _params(0.5)
    g_jfb = jax.grad(_loss)(args, "jfb", "anderson", 1e-6, 100)
    g_imp = jax.grad(_loss)(args, "implicit", "anderson", 1e-6, 100)
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in g_jfb)
    # descent direction: positive alignment with the exact gradient
    dot = sum(float(jnp.vdot(a, b)) for a, b in zip(g_jfb, g_imp, strict=True))
    assert dot > 0
    # ... but not exact here (J_f(z*) ≠ 0; the grid checks exactness where J_f(z*) = 0)
    flat = lambda g: jnp.concatenate([jnp.ravel(a) for a in g])
    assert float(jnp.linalg.norm(flat(g_jfb) - flat(g_imp)) / jnp.linalg.norm(flat(g_imp))) > 1e-2


def test_z0_gets_zero_gradient():
    args = _params(0.5)

    def loss(z0):
        z, _ = fixed_point(_tanh_map, z0, args)
        return jnp.sum(z)

    assert float(jnp.max(jnp.abs(jax.grad(loss)(jnp.ones(WIDTH))))) == 0.0


@pytest.mark.parametrize("solver", FIXED_POINT_SOLVERS)
def test_batched_converges_per_sample(solver):
    args = _params(0.9, seed=2)
    z_star, _ = fixed_point(_tanh_map, jnp.zeros(WIDTH), args, tol=1e-7)
    # one sample starts at the fixed point (0 steps), the others far from it
    z0 = jnp.stack([z_star, jnp.zeros(WIDTH), 5.0 * jnp.ones(WIDTH)])
    z, info = fixed_point(_tanh_map, z0, args, solver=solver, batched=True, tol=1e-6)
    assert z.shape == (3, WIDTH) and info.steps.shape == (3,)
    assert info.trace.shape == (3, 100)
    assert bool(jnp.all(info.converged))
    one = jax.jit(lambda z0: fixed_point(_tanh_map, z0, args, solver=solver, tol=1e-6))
    for i in range(3):
        _, single = one(z0[i])
        assert int(info.steps[i]) == int(single.steps)
        assert _fp_err(z[i], args) <= 1e-6
    # the batch does not share one stopping time
    assert len(set(np.asarray(info.steps).tolist())) > 1


def test_throw_raises_with_residual():
    args = _params(0.95, seed=1)
    with pytest.raises(Exception, match="residual"):
        z, _ = fixed_point(_tanh_map, jnp.zeros(WIDTH), args, solver="picard",
                           max_steps=3, throw=True)  # fmt: skip
        z.block_until_ready()
    # no raise when converged
    fixed_point(_tanh_map, jnp.zeros(WIDTH), args, throw=True)[0].block_until_ready()


def test_throw_under_jit():
    args = _params(0.95, seed=1)
    run = jax.jit(lambda a: fixed_point(_tanh_map, jnp.zeros(WIDTH), a, max_steps=2, throw=True))
    with pytest.raises(Exception, match="residual"):
        run(args)[0].block_until_ready()


def test_unknown_names_list_valid_ones():
    args = _params(0.5)
    with pytest.raises(ValueError, match="picard") as e:
        fixed_point(_tanh_map, jnp.zeros(WIDTH), args, solver="nope")
    assert "anderson" in str(e.value) and "broyden" in str(e.value)
    assert "newton" in str(e.value)
    with pytest.raises(ValueError, match="implicit") as e:
        fixed_point(_tanh_map, jnp.zeros(WIDTH), args, backward="nope")
    for name in (*FIXED_POINT_BACKWARDS, "phantom"):
        assert name in str(e.value)


def test_jit_and_damping():
    args = _params(0.5)
    run = jax.jit(
        lambda a: fixed_point(_tanh_map, jnp.zeros(WIDTH), a, solver="picard", damping=0.7)
    )
    z, info = run(args)
    assert bool(info.converged) and _fp_err(z, args) <= 1e-5


def test_newton_converges_quadratically_where_picard_fails(x64):
    args = _params(3.0, np.float64, seed=4)  # ‖W‖₂ = 3: Picard does not settle
    _, ip = fixed_point(_tanh_map, jnp.zeros(WIDTH), args, solver="picard", max_steps=50)
    assert not bool(ip.converged)
    z, info = fixed_point(_tanh_map, jnp.zeros(WIDTH), args, solver="newton", tol=1e-14)
    assert bool(info.converged) and int(info.steps) <= 8
    assert _fp_err(z, args) <= 1e-13
    r = np.asarray(info.trace)[: int(info.steps)]
    print("newton residuals:", r)
    # quadratic: log r_{k+1} / log r_k ≈ 2 once r_k < 1e-2 (above the round-off floor)
    orders = [
        np.log(b) / np.log(a) for a, b in zip(r[:-1], r[1:], strict=True) if a < 1e-2 and b > 1e-13
    ]
    assert orders and min(orders) >= 1.8


def test_newton_throw_reports_residual():
    args = _params(3.0, seed=4)
    with pytest.raises(Exception, match="residual"):
        fixed_point(_tanh_map, jnp.zeros(WIDTH), args, solver="newton", max_steps=1,
                    throw=True)[0].block_until_ready()  # fmt: skip


def _pytree_map(z, args):
    """The tanh map with its state split into a dict {"a": (3,), "b": (tuple of (5,))}."""
    flat = jnp.concatenate([z["a"], z["b"][0]])
    out = _tanh_map(flat, args)
    return {"a": out[:3], "b": (out[3:],)}


def _split(flat):
    return {"a": flat[..., :3], "b": (flat[..., 3:],)}


def test_pytree_state_matches_flat():
    args = _params(0.5)

    def loss(args, f, z0):
        z, _ = fixed_point(f, z0, args, tol=1e-6)
        return sum(jnp.sum(jnp.sin(leaf)) for leaf in jax.tree_util.tree_leaves(z))

    @jax.jit
    def run(args):
        z_tree, info = fixed_point(_pytree_map, _split(jnp.zeros(WIDTH)), args, tol=1e-6)
        z_flat, _ = fixed_point(_tanh_map, jnp.zeros(WIDTH), args, tol=1e-6)
        g_tree = jax.grad(loss)(args, _pytree_map, _split(jnp.zeros(WIDTH)))
        g_flat = jax.grad(loss)(args, _tanh_map, jnp.zeros(WIDTH))
        return z_tree, info, z_flat, g_tree, g_flat

    z, info, z_flat, g_tree, g_flat = run(args)
    assert jax.tree_util.tree_structure(z) == jax.tree_util.tree_structure(_split(z_flat))
    assert bool(info.converged)
    np.testing.assert_allclose(jnp.concatenate([z["a"], z["b"][0]]), z_flat, atol=1e-6)
    for a, b in zip(g_tree, g_flat, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_batched_pytree_state_with_per_sample_args():
    W, U, b, _ = _params(0.9, seed=2)
    xs = jnp.asarray(np.random.default_rng(0).standard_normal((4, IN)), jnp.float32)
    z0 = _split(jnp.zeros((4, WIDTH)))
    axes = (None, None, None, 0)

    def loss(xs):
        z, info = fixed_point(_pytree_map, z0, (W, U, b, xs), batched=True, args_axes=axes,
                              tol=1e-6)  # fmt: skip
        return jnp.sum(jnp.sin(z["a"])) + jnp.sum(jnp.sin(z["b"][0])), (z, info)

    def loss_one(x):  # one sample, unbatched, flat state
        z, _ = fixed_point(_tanh_map, jnp.zeros(WIDTH), (W, U, b, x), tol=1e-6)
        return jnp.sum(jnp.sin(z))

    run = jax.jit(lambda xs: (jax.grad(loss, has_aux=True)(xs), jax.grad(loss_one)(xs[2])))
    (g, (z, info)), g_one = run(xs)
    assert info.steps.shape == (4,) and bool(jnp.all(info.converged))
    zb = jnp.concatenate([z["a"], z["b"][0]], axis=-1)
    for i in range(4):  # each sample solved with its own x
        assert _fp_err(zb[i], (W, U, b, xs[i])) <= 1e-6
    assert float(jnp.min(jnp.abs(zb[0] - zb[1]))) > 0  # the samples differ
    np.testing.assert_allclose(g[2], g_one, rtol=1e-4, atol=1e-6)


def test_state_validation():
    args = _params(0.5)
    with pytest.raises(ValueError, match="floating"):
        fixed_point(_tanh_map, jnp.zeros(WIDTH, jnp.int32), args)
    with pytest.raises(ValueError, match="structure"):
        fixed_point(lambda z, a: z[:3], jnp.zeros(WIDTH), args)
    with pytest.raises(ValueError, match="batched"):
        fixed_point(_tanh_map, jnp.zeros(WIDTH), args, args_axes=0)


# --------------------------------------------------------------------------- objects


def _same(a, b) -> bool:
    """Bit-identical pytrees (nan == nan)."""
    la, lb = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
    return len(la) == len(lb) and all(
        np.array_equal(np.asarray(x), np.asarray(y), equal_nan=True)
        for x, y in zip(la, lb, strict=True)
    )


def test_canonical_list_matches_names():
    assert len(FIXED_POINT_SOLVER_OBJECTS) == len(FIXED_POINT_SOLVERS)
    for s in FIXED_POINT_SOLVER_OBJECTS:
        assert isinstance(s, AbstractFixedPointSolver)
    for b in (Implicit(), JFB(), Unroll(), Phantom()):
        assert isinstance(b, AbstractBackward)
    # defaults are fixed_point's defaults
    assert Anderson() == Anderson(memory=5, damping=1.0, regularisation=1e-4)
    assert Broyden() == Broyden(memory=5, damping=1.0)
    assert Picard() == Picard(damping=1.0) and NewtonKrylov().damping == 1.0
    assert Phantom() == Phantom(steps=5, damping=0.5)


@pytest.mark.parametrize(
    ("name", "solver"), list(zip(FIXED_POINT_SOLVERS, FIXED_POINT_SOLVER_OBJECTS, strict=True))
)
def test_solver_object_equals_its_name(name, solver):
    """Value, info and implicit gradient of a solver object are those of its name."""
    args = _params(0.9, seed=2)

    def run(solver, args):
        def loss(args):
            z, info = fixed_point(_tanh_map, jnp.zeros(WIDTH), args, solver=solver, tol=1e-6)
            return jnp.sum(jnp.sin(z)), (z, info)

        return jax.value_and_grad(loss, has_aux=True)(args)

    by_name, by_object = run(name, args), run(solver, args)
    assert _same(by_name, by_object)
    assert int(by_name[0][1][1].steps) > 0


@pytest.mark.parametrize(
    ("name", "backward", "extra"),
    [
        ("implicit", Implicit(), {}),
        ("jfb", JFB(), {}),
        ("unroll", Unroll(), {}),
        ("phantom", Phantom(steps=7, damping=0.8), dict(phantom_steps=7, phantom_damping=0.8)),
    ],
)
def test_backward_object_equals_its_name(name, backward, extra):
    args = _params(0.5)

    def grad(**kw):
        loss = lambda a: jnp.sum(jnp.sin(fixed_point(_tanh_map, jnp.zeros(WIDTH), a, **kw)[0]))
        return jax.grad(loss)(args)

    assert _same(grad(backward=name, **extra), grad(backward=backward))


def test_loose_keywords_override_named_settings():
    """``memory=`` / ``damping=`` build the named solver with those fields (and are ignored
    by solvers without them), exactly as the object does."""
    W = np.linalg.qr(np.random.default_rng(5).standard_normal((WIDTH, WIDTH)))[0]
    W = W @ np.diag(np.linspace(-0.95, 0.95, WIDTH)) @ W.T
    args = (jnp.asarray(W, jnp.float32), *_params(0.95, seed=1, scale=0.3)[1:])
    run = lambda **kw: fixed_point(_tanh_map, jnp.zeros(WIDTH), args, tol=1e-6, **kw)
    default, m3 = run(solver=Anderson()), run(solver=Anderson(memory=3))
    assert _same(run(solver="anderson", memory=3), m3)
    assert _same(run(solver="broyden", damping=0.7), run(solver=Broyden(damping=0.7)))
    assert _same(run(solver="picard", memory=3), run(solver=Picard()))
    # a shorter window changes the iterates (after the first 3 steps) and the step count
    assert bool(default[1].converged) and bool(m3[1].converged)
    assert int(default[1].steps) != int(m3[1].steps)
    assert not _same(default[1].trace, m3[1].trace)
    np.testing.assert_allclose(default[1].trace[:3], m3[1].trace[:3], rtol=1e-5)


def test_loose_keywords_with_an_object_are_refused():
    args = _params(0.5)
    z0 = jnp.zeros(WIDTH)
    with pytest.raises(ValueError, match="memory=.*on the object"):
        fixed_point(_tanh_map, z0, args, solver=Anderson(), memory=3)
    with pytest.raises(ValueError, match="damping=.*on the object"):
        fixed_point(_tanh_map, z0, args, solver=Picard(), damping=0.5)
    with pytest.raises(ValueError, match="phantom_steps=.*on the object"):
        fixed_point(_tanh_map, z0, args, backward=Phantom(), phantom_steps=3)
    with pytest.raises(ValueError, match="memory"):
        Anderson(memory=0)
    with pytest.raises(ValueError, match="phantom_damping"):
        Phantom(damping=0.0)


def test_wrong_object_type_is_refused():
    # a ValueError naming the valid solvers, or the runtime type checker's TypeError first
    args = _params(0.5)
    with pytest.raises((TypeError, ValueError)):
        fixed_point(_tanh_map, jnp.zeros(WIDTH), args, solver=Implicit())
    with pytest.raises((TypeError, ValueError)):
        fixed_point(_tanh_map, jnp.zeros(WIDTH), args, backward=Picard())


# --------------------------------------------------------------------------- status


def test_result_reports_why_the_solve_stopped():
    A, c = 1.5 * jnp.eye(4), jnp.arange(1.0, 5.0)
    f = lambda z, a: a[0] @ z + a[1]
    _, ok = fixed_point(_tanh_map, jnp.zeros(WIDTH), _params(0.5), solver=Picard())
    assert ok.result == FixedPointResult.successful and bool(ok.converged)
    # expanding linear map: Picard's residual settles at ‖(A − I) z‖/‖z‖ ≈ 0.5, finite
    _, slow = fixed_point(f, jnp.zeros(4), (A, c), solver=Picard(), max_steps=50)
    assert slow.result == FixedPointResult.max_steps_reached and not bool(slow.converged)
    assert int(slow.steps) == 50
    assert "max_steps" in FixedPointResult[slow.result]
    # a map that overflows float32 within a few steps
    _, blown = fixed_point(f, jnp.zeros(4), (1e30 * jnp.eye(4), c), solver=Picard())
    assert blown.result == FixedPointResult.nonfinite and int(blown.steps) < 100
    assert "diverged" in FixedPointResult[blown.result]
    # batched: one status per sample
    z0 = jnp.stack([jnp.zeros(WIDTH), jnp.ones(WIDTH)])
    _, info = fixed_point(_tanh_map, z0, _params(0.5), batched=True, max_steps=1)
    assert (info.result == FixedPointResult.successful).shape == (2,)
    np.testing.assert_array_equal(
        np.asarray(info.result == FixedPointResult.successful), np.asarray(info.converged)
    )


# --------------------------------------------------------------------------- closed forms


def _linear_problem(n=6, norm=0.5, seed=9):
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((n, n))
    A = norm * A / np.linalg.norm(A, 2)
    b = rng.standard_normal(n)
    return jnp.asarray(A), jnp.asarray(b)


def _linear_map(z, args):
    A, b = args
    return A @ z + b


@pytest.mark.parametrize("solver", FIXED_POINT_SOLVER_OBJECTS, ids=FIXED_POINT_SOLVERS)
def test_every_solver_solves_a_contractive_linear_map(x64, solver):
    """``z* = (I − A)⁻¹ b`` for ‖A‖₂ = 0.5, and the implicit gradient of ``sum(z*)`` in
    ``b`` is ``(I − A)⁻ᵀ 1`` (both closed forms)."""
    A, b = _linear_problem()
    eye = np.eye(A.shape[0])
    z_exact = np.linalg.solve(eye - np.asarray(A), np.asarray(b))

    def loss(b):
        z, info = fixed_point(_linear_map, jnp.zeros_like(b), (A, b), solver=solver, tol=1e-12)
        return jnp.sum(z), (z, info)

    g, (z, info) = jax.jit(jax.grad(loss, has_aux=True))(b)
    assert info.result == FixedPointResult.successful
    np.testing.assert_allclose(z, z_exact, rtol=1e-10, atol=1e-11)
    g_exact = np.linalg.solve((eye - np.asarray(A)).T, np.ones_like(z_exact))
    np.testing.assert_allclose(g, g_exact, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("solver", FIXED_POINT_SOLVER_OBJECTS, ids=FIXED_POINT_SOLVERS)
def test_implicit_gradient_equals_finite_differences(x64, solver):
    """float64: the implicit gradient along a random direction in all arguments equals
    the central difference (step 1e-5) to 1e-6 relative."""
    args = _params(0.5, np.float64)
    rng = np.random.default_rng(4)
    dirs = tuple(jnp.asarray(rng.standard_normal(a.shape)) for a in args)

    def loss(args):
        z, _ = fixed_point(_tanh_map, jnp.zeros(WIDTH), args, solver=solver, tol=1e-12,
                           max_steps=300, backward=Implicit())  # fmt: skip
        return jnp.sum(jnp.sin(z))

    vg = jax.jit(jax.value_and_grad(loss))
    eps = 1e-5
    shift = lambda s: tuple(a + s * eps * d for a, d in zip(args, dirs, strict=True))
    fd = float((vg(shift(1.0))[0] - vg(shift(-1.0))[0]) / (2 * eps))
    ad = _directional(vg(args)[1], dirs)
    assert abs(ad - fd) <= 1e-6 * abs(fd)


# --------------------------------------------------------------------------- trajectories


def test_iterate_is_the_picard_orbit(x64):
    A, b = _linear_problem(norm=0.8)
    z0 = jnp.ones(A.shape[0])
    zs = iterate(_linear_map, z0, (A, b), 20)
    assert zs.shape == (21, A.shape[0])
    z = np.asarray(z0)
    for k in range(21):
        np.testing.assert_allclose(zs[k], z, rtol=1e-12, atol=1e-13)
        z = np.asarray(A) @ z + np.asarray(b)
    # observe: a function of each iterate, computed inside the scan
    norms = iterate(_linear_map, z0, (A, b), 20, observe=jnp.linalg.norm)
    np.testing.assert_allclose(norms, np.linalg.norm(np.asarray(zs), axis=-1), rtol=1e-12)
    # pytree states gain the leading axis on every leaf
    tree = iterate(_pytree_map, _split(jnp.zeros(WIDTH)), _params(0.5, np.float64), 4)
    assert tree["a"].shape == (5, 3) and tree["b"][0].shape == (5, 5)


def test_asymptotic_rate_of_geometric_traces(x64):
    k = np.arange(40)
    e = 3.0 * 0.7**k
    assert float(asymptotic_rate(e)) == pytest.approx(0.7, rel=1e-12)
    # the tail above the floor counts, nan after termination never does
    e2 = np.concatenate([2.0 * 0.9 ** k[:20], 1e-12 * np.ones(5), np.full(5, np.nan)])
    assert float(asymptotic_rate(e2, floor=1e-9)) == pytest.approx(0.9, rel=1e-12)
    assert np.isnan(float(asymptotic_rate(np.array([1.0, 0.5]))))
    # Picard on a linear map: the rate of the error is the spectral radius of A
    A = jnp.diag(jnp.asarray([0.6, -0.3, 0.1]))
    zs = iterate(_linear_map, jnp.ones(3), (A, jnp.zeros(3)), 30)
    assert float(asymptotic_rate(jnp.linalg.norm(zs, axis=-1))) == pytest.approx(0.6, rel=1e-6)


# --------------------------------------------------------------------------- DEQBlock


def test_deq_block_takes_solver_and_backward_objects(getkey):
    cell = DEQCell(WIDTH, key=getkey())
    x = jax.random.normal(getkey(), (4, WIDTH))
    target = jax.random.normal(getkey(), (4, WIDTH))

    def run(block):
        loss = lambda c: jnp.mean((eqx.tree_at(lambda b: b.cell, block, c)(x) - target) ** 2)
        return block.solve(x), jax.grad(loss)(block.cell)

    named = DEQBlock(cell, solver="broyden", memory=3, backward="phantom", phantom_steps=4)
    objects = DEQBlock(cell, solver=Broyden(memory=3), backward=Phantom(steps=4))
    assert _same(run(named), run(objects))
    # objects are static configuration: a block can be an argument of jax.jit
    z, info = jax.jit(lambda b: b.solve(x))(objects)
    assert _same(z, run(objects)[0][0])
    with pytest.raises(ValueError, match="on the object"):
        DEQBlock(cell, solver=Broyden(), memory=3).solve(x)
