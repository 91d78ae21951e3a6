"""Tests for terrain_jax.equilibrium: solvers, convergence reports, backward passes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from terrain_jax.equilibrium import (
    FIXED_POINT_BACKWARDS,
    FIXED_POINT_SOLVERS,
    fixed_point,
)

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


@pytest.mark.parametrize("solver", ["anderson", "broyden"])
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


@pytest.mark.parametrize("solver", FIXED_POINT_SOLVERS)
def test_implicit_gradient_matches_finite_differences_and_unroll(x64, solver):
    args = _params(0.5, np.float64)
    g_imp = jax.grad(_loss)(args, "implicit", solver)
    g_unr = jax.grad(_loss)(args, "unroll", solver)
    # Central differences along a random direction in every argument.
    rng = np.random.default_rng(3)
    dirs = tuple(jnp.asarray(rng.standard_normal(a.shape)) for a in args)
    eps = 1e-5
    plus = tuple(a + eps * d for a, d in zip(args, dirs, strict=True))
    minus = tuple(a - eps * d for a, d in zip(args, dirs, strict=True))
    fd = float((_loss(plus, "implicit", solver) - _loss(minus, "implicit", solver)) / (2 * eps))
    ad = float(sum(jnp.vdot(g, d) for g, d in zip(g_imp, dirs, strict=True)))
    assert abs(ad - fd) / abs(fd) <= 1e-6
    for gi, gu in zip(g_imp, g_unr, strict=True):
        np.testing.assert_allclose(gi, gu, rtol=1e-8, atol=1e-10)


def test_implicit_gradient_float32_and_closure():
    args = _params(0.5)
    W = args[0]

    def loss_closure(W):
        f = lambda z, a: _tanh_map(z, (W, *a))
        z, _ = fixed_point(f, jnp.zeros(WIDTH), args[1:], tol=1e-6)
        return jnp.sum(jnp.sin(z))

    g_closure = jax.grad(loss_closure)(W)
    g_args = jax.grad(_loss)(args, "implicit", "anderson", 1e-6, 100)[0]
    np.testing.assert_allclose(g_closure, g_args, rtol=1e-5, atol=1e-6)
    g_unr = jax.grad(_loss)(args, "unroll", "anderson", 1e-6, 100)[0]
    np.testing.assert_allclose(g_closure, g_unr, rtol=1e-3, atol=1e-5)


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
    for i in range(3):
        _, single = fixed_point(_tanh_map, z0[i], args, solver=solver, tol=1e-6)
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
    with pytest.raises(ValueError, match="planned"):
        fixed_point(_tanh_map, jnp.zeros(WIDTH), args, solver="newton")
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
