"""Jacobian diagnostics at a fixed point (``jacobian_frobenius``, ``spectral_radius``),
still imported through the ``terrain_jax.equilibrium`` shim; the fixed-point solver tests
are in ``test_fixed_point.py``."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from terrain_jax.linalg import jacobian_frobenius, spectral_radius

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


def _pytree_map(z, args):
    """The tanh map with its state split into a dict {"a": (3,), "b": (tuple of (5,))}."""
    flat = jnp.concatenate([z["a"], z["b"][0]])
    out = _tanh_map(flat, args)
    return {"a": out[:3], "b": (out[3:],)}


def _split(flat):
    return {"a": flat[..., :3], "b": (flat[..., 3:],)}


# --------------------------------------------------------------------------- diagnostics


def test_jacobian_frobenius_exact_for_diagonal_jacobian(getkey):
    # J = diag(w · tanh'(w z)): with Rademacher probes every sample gives Σ J_ii² exactly
    w = jnp.linspace(-1.0, 2.0, WIDTH)
    z = jnp.linspace(0.3, -0.4, WIDTH)
    f = lambda z, w: jnp.tanh(w * z)
    exact = jnp.sum(jnp.diagonal(jax.jacfwd(f)(z, w)) ** 2)
    est = jacobian_frobenius(f, z, w, getkey(), samples=1)
    np.testing.assert_allclose(est, exact, rtol=1e-6)


@pytest.mark.parametrize("probe", ["normal", "rademacher"])
def test_jacobian_frobenius_unbiased_within_five_sigma(probe, getkey):
    args = _params(0.9, seed=1)
    z = jnp.asarray(np.random.default_rng(1).standard_normal(WIDTH), jnp.float32)
    J = np.asarray(jax.jacfwd(_tanh_map)(z, args), np.float64)
    A = J.T @ J
    exact = np.trace(A)
    # Var ‖Jv‖² = 2‖A‖_F² (Gaussian) or 2(‖A‖_F² − Σ A_ii²) (Rademacher), A = JᵀJ
    var = 2 * (np.sum(A**2) - (np.sum(np.diag(A) ** 2) if probe == "rademacher" else 0))
    n = 4000
    est = float(jacobian_frobenius(_tanh_map, z, args, getkey(), samples=n, probe=probe))
    assert abs(est - exact) <= 5 * np.sqrt(var / n)


def test_jacobian_frobenius_is_differentiable(x64, getkey):
    args = _params(0.9, np.float64, seed=1)
    z = jnp.asarray(np.random.default_rng(1).standard_normal(WIDTH))
    key = getkey()
    pen = lambda W: jacobian_frobenius(_tanh_map, z, (W, *args[1:]), key, samples=3)
    d = jnp.asarray(np.random.default_rng(2).standard_normal((WIDTH, WIDTH)))
    eps = 1e-6
    fd = float((pen(args[0] + eps * d) - pen(args[0] - eps * d)) / (2 * eps))
    ad = float(jnp.vdot(jax.grad(pen)(args[0]), d))
    assert abs(ad - fd) <= 1e-6 * abs(fd)
    with pytest.raises(ValueError, match="rademacher"):
        jacobian_frobenius(_tanh_map, z, args, key, probe="nope")


def _dense_radius(f, z, args):
    return float(np.max(np.abs(np.linalg.eigvals(np.asarray(jax.jacfwd(f)(z, args))))))


@pytest.mark.parametrize("symmetric", [True, False])
def test_spectral_radius_matches_dense_eigenvalues(x64, symmetric):
    rng = np.random.default_rng(11)
    W = rng.standard_normal((WIDTH, WIDTH))
    W = (W + W.T) / 2 if symmetric else W
    args = (jnp.asarray(W), *_params(1.0, np.float64)[1:])
    z = jnp.asarray(rng.standard_normal(WIDTH))
    est = float(spectral_radius(_tanh_map, z, args, iters=WIDTH))  # full Krylov space
    np.testing.assert_allclose(est, _dense_radius(_tanh_map, z, args), rtol=1e-8)


def test_spectral_radius_complex_dominant_pair_with_few_iterations(x64):
    # J = P diag-blocks(0.9·rotation(1 rad), 0.3·random) P⁻¹ (n = 40): the dominant pair
    # is complex, where power iteration oscillates; 12 Arnoldi steps resolve it
    rng = np.random.default_rng(3)
    n = 40
    B = 0.3 * rng.standard_normal((n, n)) / np.sqrt(n)
    B[:2, :] = 0.0
    B[:, :2] = 0.0
    B[:2, :2] = 0.9 * np.array([[np.cos(1.0), -np.sin(1.0)], [np.sin(1.0), np.cos(1.0)]])
    P = np.eye(n) + 0.2 * rng.standard_normal((n, n)) / np.sqrt(n)
    A = jnp.asarray(P @ B @ np.linalg.inv(P))
    f = lambda z, A: A @ z
    z = jnp.zeros(n)
    exact = _dense_radius(f, z, A)
    assert exact == pytest.approx(0.9, rel=1e-10)
    est = float(spectral_radius(f, z, A, iters=12))
    assert est == pytest.approx(exact, rel=1e-4)
    # power iteration on the same operator does not settle: ‖J v_k‖ keeps oscillating
    v = jnp.asarray(rng.standard_normal(n))
    ratios = []
    for _ in range(60):
        w = A @ v
        ratios.append(float(jnp.linalg.norm(w) / jnp.linalg.norm(v)))
        v = w / jnp.linalg.norm(w)
    assert max(ratios[-10:]) - min(ratios[-10:]) > 1e-3


def test_spectral_radius_of_pytree_state():
    args = _params(0.7, seed=5)
    z = jnp.asarray(np.random.default_rng(5).standard_normal(WIDTH), jnp.float32)
    est = float(spectral_radius(_pytree_map, _split(z), args, iters=WIDTH))
    np.testing.assert_allclose(est, _dense_radius(_tanh_map, z, args), rtol=1e-4)
