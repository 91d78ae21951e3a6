"""``optim`` step-size stability: the linear step matrices against optax's own steps, their
spectral radii and edges against closed forms, the simplex styles' linearised edges, and the
measured edge by bisection against the finite-N closed form of GD on a parabola."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from terrain_jax.geometry import kl
from terrain_jax.optim import (
    linear_edge,
    linear_rate,
    quadratic_gd_losses,
    stability_edge,
    step_matrix,
    walk,
    walk_many,
)


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


@pytest.mark.parametrize("style", ["sgd", "momentum", "nesterov"])
@pytest.mark.parametrize("a", [3.0, -2.0])
def test_step_matrix_is_the_optax_step_on_a_parabola(x64, style, a):
    # on L = aθ²/2 the walk is linear in (θ, m), m = 0 at the start: θ_k = e1ᵀ M^k (θ0, 0)
    lr, k = 0.05, 12
    path = walk(lambda t: 0.5 * a * t**2, style, jnp.array(1.5), k, hyper={"learning_rate": lr})
    M = step_matrix(style, a, lr)
    state = np.zeros(M.shape[0])
    state[0] = 1.5
    expect = [np.linalg.matrix_power(M, j) @ state for j in range(k + 1)]
    np.testing.assert_allclose(path.positions, [e[0] for e in expect], rtol=1e-12)


def test_linear_rate_closed_forms():
    assert linear_rate("sgd", 4.0, 0.3) == pytest.approx(0.2)
    assert linear_rate("sgd", -2.0, 0.1) == pytest.approx(1.2)  # a saddle: escape rate
    # heavy ball: z² − (1 + β − ηa) z + β = 0; complex roots have |z| = √β
    assert linear_rate("momentum", 4.0, 0.2, momentum=0.5) == pytest.approx(np.sqrt(0.5))
    assert linear_rate("momentum", -2.0, 0.1) == pytest.approx(1.5)
    with pytest.raises(ValueError, match="valid: sgd, momentum, nesterov"):
        step_matrix("adam", 1.0, 0.1)


@pytest.mark.parametrize("style", ["sgd", "momentum", "nesterov"])
def test_linear_edge_is_where_the_rate_reaches_one(x64, style):
    H = jnp.diag(jnp.array([0.5, 4.0]))
    edge = float(linear_edge(style, H))
    closed = {"sgd": 0.5, "momentum": 0.5 * 1.9, "nesterov": 0.5 * 1.9 / 2.8}[style]
    assert edge == pytest.approx(closed)
    assert linear_rate(style, 4.0, 0.999 * edge) < 1 < linear_rate(style, 4.0, 1.001 * edge)


def test_linear_edges_on_the_simplex(x64):
    p = jnp.array([0.6, 0.3, 0.1])
    H_kl = jax.hessian(lambda q: kl(p, q))(p)  # diag(1/p) at the minimiser
    # mirror descent on KL(p‖·): H F = I − 1pᵀ, so the edge is 2 at every p
    assert float(linear_edge("mirror_descent", H_kl, p)) == pytest.approx(2.0)
    # projected GD: P diag(1/p) P interlaces diag(1/p): 2 min p ≤ η_c ≤ 2 p_mid
    e = float(linear_edge("projected_gd", H_kl, p))
    assert 2 * 0.1 <= e <= 2 * 0.3
    # on ½‖q − p‖² the tangent Hessian is P: projected GD's edge is 2
    assert float(linear_edge("projected_gd", jnp.eye(3), p)) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="pass `at`"):
        linear_edge("projected_gd", jnp.eye(3))
    with pytest.raises(ValueError, match="valid:"):
        linear_edge("adam", jnp.eye(3))


def test_stability_edge_finds_the_finite_n_edge_of_gd(x64):
    # |θ_N| < r|θ_0| on λθ²/2 holds iff |1 − ηλ|^N < r: the edge is (1 + r^{1/N})/λ
    lams, steps, r = jnp.array([1.0, 4.0, 10.0]), 50, 1e-3

    def converges(eta, lam):
        path = walk(lambda t: 0.5 * lam * t**2, "sgd", jnp.array(1.0), steps,
                    hyper={"learning_rate": eta})  # fmt: skip
        return jnp.abs(path.positions[-1]) < r

    edge, ok = jax.jit(lambda lam: stability_edge(converges, lam, hi=64.0, coarse=8, iters=30))(
        lams
    )
    assert bool(jnp.all(ok))
    np.testing.assert_allclose(edge, (1 + r ** (1 / steps)) / lams, rtol=1e-6)
    # nothing converges / the top already converges: no bracket
    edge, ok = stability_edge(lambda eta, x: x < 0, jnp.ones(2), hi=1.0, coarse=3, iters=2)
    assert not bool(jnp.any(ok)) and bool(jnp.all(jnp.isnan(edge)))
    edge, ok = stability_edge(lambda eta, x: eta < x, jnp.full(2, 5.0), hi=1.0, coarse=3, iters=2)
    assert not bool(jnp.any(ok))


def test_quadratic_gd_losses_are_the_walks_losses(x64):
    lam = jnp.array([1.0, 30.0])
    x0s = jnp.array([[1.0, -0.5], [0.2, 2.0]])
    lrs = jnp.array([0.01, 0.05, 0.066, 0.07])  # the last is past 2/30: diverging
    path = walk_many(lambda t: 0.5 * jnp.sum(lam * t**2), "sgd", x0s, 40,
                     hyper_grid={"learning_rate": lrs})  # fmt: skip
    exact = quadratic_gd_losses(lam, x0s, lrs, 40)
    assert exact.shape == (4, 2, 41) and exact.dtype == np.float64
    np.testing.assert_allclose(path.losses, exact, rtol=1e-10)
    assert exact[3, 0, -1] > exact[3, 0, 0]  # past 2/λ_max the loss grows
    with pytest.raises((ValueError, TypeError)):  # TypeError: the shape annotation in tests
        quadratic_gd_losses(lam, x0s[:, :1], lrs, 3)
