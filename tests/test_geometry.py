import itertools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from terrain_jax.geometry import (
    bregman,
    entropy,
    fisher_categorical,
    fisher_simplex,
    gaussian_fit_logpdf,
    gaussian_kl_objectives,
    gaussian_mixture_logpdf,
    kl,
    kl_gaussian,
    kl_monte_carlo,
    neg_entropy,
    project_simplex,
    simplex_lattice,
)
from terrain_jax.optim import mirror_descent, natural_gradient, projected_gd

TARGET = jnp.array([0.7, 0.2, 0.1])


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


def _simplex_points(key, batch, n, dtype=jnp.float32):
    """Uniform (Dirichlet(1)) points: normalised standard exponentials."""
    e = jax.random.exponential(key, (batch, n), dtype)
    return e / e.sum(-1, keepdims=True)


def _walk(tx, loss, p0, steps):
    """Run ``steps`` of an optax transformation; return the iterates (steps + 1, n)."""

    def step(carry, _):
        p, state = carry
        g = jax.grad(loss)(p)
        u, state = tx.update(g, state, p)
        p = optax.apply_updates(p, u)
        return (p, state), p

    _, ps = jax.lax.scan(step, (p0, tx.init(p0)), None, length=steps)
    return jnp.concatenate([p0[None], ps])


# ----------------------------------------------------------------------------- divergences


def test_bregman_of_neg_entropy_is_kl_on_simplex(getkey):
    p = _simplex_points(getkey(), 64, 5)
    q = _simplex_points(getkey(), 64, 5)
    D = jax.vmap(bregman(neg_entropy))(p, q)
    assert jnp.allclose(D, kl(p, q), rtol=1e-4, atol=1e-6)
    assert jnp.all(D > 0)


def test_bregman_of_neg_entropy_is_generalised_kl_off_simplex(getkey):
    # Unnormalised positive vectors: D(p, q) = Σ p log(p/q) − Σ p + Σ q.
    p = jax.random.uniform(getkey(), (64, 5), minval=0.1, maxval=3.0)
    q = jax.random.uniform(getkey(), (64, 5), minval=0.1, maxval=3.0)
    D = jax.vmap(bregman(neg_entropy))(p, q)
    generalised = kl(p, q) - p.sum(-1) + q.sum(-1)
    assert jnp.allclose(D, generalised, rtol=1e-4, atol=1e-5)
    # Sanity of bregman itself: the squared norm gives half the squared distance.
    D2 = jax.vmap(bregman(lambda x: 0.5 * jnp.sum(x**2)))(p, q)
    assert jnp.allclose(D2, 0.5 * jnp.sum((p - q) ** 2, -1), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("n", [3, 10])
def test_kl_is_half_chi_square_near_q_with_first_order_error(x64, getkey, n):
    q = _simplex_points(getkey(), 1, n, jnp.float64)[0] * 0.8 + 0.2 / n  # bounded away from 0
    d = jax.random.normal(getkey(), (n,), jnp.float64)
    d = (d - d.mean()) / jnp.linalg.norm(d)  # tangent to the simplex, unit norm

    def rel_err(eps):
        p = q + eps * d
        half_chi2 = 0.5 * jnp.sum((p - q) ** 2 / q)
        return float(jnp.abs(kl(p, q) - half_chi2) / half_chi2)

    eps1, eps2 = 0.02 * float(q.min()), 0.002 * float(q.min())
    r1, r2 = rel_err(eps1), rel_err(eps2)
    slope = np.log(r1 / r2) / np.log(eps1 / eps2)
    assert r1 < 0.1 and r2 < r1
    assert 0.9 < slope < 1.1, (r1, r2, slope)


def test_kl_nonnegative_and_zero_iff_equal(getkey):
    p = _simplex_points(getkey(), 256, 4)
    q = _simplex_points(getkey(), 256, 4)
    assert jnp.all(kl(p, q) > 0)
    assert jnp.all(kl(p, p) == 0)


def test_zero_conventions():
    p = jnp.array([0.5, 0.5, 0.0])
    assert jnp.allclose(entropy(p), jnp.log(2.0))
    assert jnp.allclose(neg_entropy(p), -jnp.log(2.0))
    assert jnp.allclose(entropy(jnp.full(7, 1 / 7)), jnp.log(7.0))
    q = jnp.array([0.25, 0.25, 0.5])
    # 0·log(0/q) = 0: the third entry contributes nothing.
    assert jnp.allclose(kl(p, q), jnp.log(2.0))
    # p > 0 where q = 0: infinite.
    assert kl(q, p) == jnp.inf
    assert jnp.isfinite(jax.grad(entropy)(q)).all()


# ----------------------------------------------------------------------------- Fisher metric


def test_fisher_simplex_is_hessian_of_kl(x64, getkey):
    p = _simplex_points(getkey(), 1, 5, jnp.float64)[0]
    H = jax.jit(jax.hessian(lambda q: kl(p, q)))(p)
    assert jnp.allclose(H, fisher_simplex(p), rtol=1e-10)
    # Second-order expansion on the tangent space: KL(p‖p+δ) ≈ ½ δᵀFδ, error O(‖δ‖³).
    d = jax.random.normal(getkey(), (5,), jnp.float64)
    d = 1e-3 * float(p.min()) * (d - d.mean()) / jnp.linalg.norm(d - d.mean())
    quad = 0.5 * d @ fisher_simplex(p) @ d
    assert abs(float(kl(p, p + d) - quad)) < 1e-2 * float(quad)


def test_fisher_categorical_is_hessian_of_kl_in_logits(x64, getkey):
    theta = jax.random.normal(getkey(), (6,), jnp.float64)
    p = jax.nn.softmax(theta)

    def kl_logits(delta):
        return kl(p, jax.nn.softmax(theta + delta))

    H = jax.jit(jax.hessian(kl_logits))(jnp.zeros(6, jnp.float64))
    F = fisher_categorical(p)
    assert jnp.allclose(H, F, rtol=1e-9, atol=1e-12)
    assert jnp.allclose(F @ jnp.ones(6, jnp.float64), 0, atol=1e-15)  # null along 1
    d = 1e-3 * jax.random.normal(getkey(), (6,), jnp.float64)
    quad = 0.5 * d @ F @ d
    assert abs(float(kl_logits(d) - quad)) < 1e-2 * float(quad)


# ----------------------------------------------------------------------------- Gaussians


def _kl_numeric(mu1, var1, mu2, var2):
    x = jnp.linspace(-40.0, 40.0, 400_001, dtype=jnp.float64)

    def logpdf(mu, var):
        return -0.5 * (x - mu) ** 2 / var - 0.5 * jnp.log(2 * jnp.pi * var)

    lp, lq = logpdf(mu1, var1), logpdf(mu2, var2)
    return float(jnp.trapezoid(jnp.exp(lp) * (lp - lq), x))


@pytest.mark.parametrize(
    "mu1, var1, mu2, var2", [(0.0, 1.0, 0.0, 4.0), (0.0, 4.0, 0.0, 1.0), (1.0, 0.5, -2.0, 3.0)]
)
def test_kl_gaussian_matches_numerical_integral(x64, mu1, var1, mu2, var2):
    assert np.isclose(float(kl_gaussian(mu1, var1, mu2, var2)), _kl_numeric(mu1, var1, mu2, var2))


def test_kl_gaussian_diagonal_and_asymmetry(x64):
    mu1, var1 = jnp.array([0.0, 1.0]), jnp.array([1.0, 0.5])
    mu2, var2 = jnp.array([0.0, -2.0]), jnp.array([4.0, 3.0])
    per_axis = sum(
        _kl_numeric(float(a), float(b), float(c), float(d))
        for a, b, c, d in zip(mu1, var1, mu2, var2, strict=True)
    )
    assert np.isclose(float(kl_gaussian(mu1, var1, mu2, var2)), per_axis)
    assert kl_gaussian(mu1, var1, mu1, var1) == 0
    # Narrow → wide costs less than wide → narrow.
    forward, reverse = kl_gaussian(0.0, 1.0, 0.0, 4.0), kl_gaussian(0.0, 4.0, 0.0, 1.0)
    assert forward < reverse and not np.isclose(float(forward), float(reverse))


def _gauss_logpdf(mu, var):
    """One sample's log density under the diagonal Gaussian ``N(mu, diag(var))``."""
    return lambda x: jnp.sum(-0.5 * (x - mu) ** 2 / var - 0.5 * jnp.log(2 * jnp.pi * var))


def _mc_gauss(key, mu1, var1, mu2, var2, n):
    x = mu1 + jnp.sqrt(var1) * jax.random.normal(key, (n, *jnp.shape(mu1)), jnp.float64)
    return kl_monte_carlo(_gauss_logpdf(mu1, var1), _gauss_logpdf(mu2, var2), x)


@pytest.mark.parametrize(
    "mu1, var1, mu2, var2",
    [
        (0.0, 1.0, 1.0, 4.0),
        (1.0, 4.0, 0.0, 1.0),
        ([0.0, 1.0, -1.0], [1.0, 0.5, 2.0], [0.5, -2.0, 0.0], [4.0, 3.0, 1.0]),
    ],
)
def test_kl_monte_carlo_matches_closed_form_gaussian(x64, getkey, mu1, var1, mu2, var2):
    mu1, var1, mu2, var2 = (jnp.asarray(a, jnp.float64) for a in (mu1, var1, mu2, var2))
    est, se = _mc_gauss(getkey(), mu1, var1, mu2, var2, 20_000)
    exact = float(kl_gaussian(mu1, var1, mu2, var2))
    assert 0 < float(se) < 0.05 * exact
    assert abs(float(est) - exact) < 4 * float(se)


def test_kl_monte_carlo_standard_error_is_calibrated(x64, getkey):
    # Over 400 independent estimates the z-scores (estimate − exact)/se have std ≈ 1.
    keys = jax.random.split(getkey(), 400)
    est, se = jax.vmap(lambda k: _mc_gauss(k, 0.0, 1.0, 1.0, 4.0, 1000))(keys)
    z = (est - kl_gaussian(0.0, 1.0, 1.0, 4.0)) / se
    assert 0.8 < float(jnp.std(z)) < 1.2
    assert abs(float(jnp.mean(z))) < 0.25


def test_kl_monte_carlo_same_seed_same_numbers(x64, getkey):
    key = getkey()
    first = _mc_gauss(key, 0.0, 1.0, 1.0, 4.0, 5000)
    again = jax.jit(_mc_gauss, static_argnums=5)(key, 0.0, 1.0, 1.0, 4.0, 5000)
    other = _mc_gauss(getkey(), 0.0, 1.0, 1.0, 4.0, 5000)
    assert float(first[0]) == float(again[0]) and float(first[1]) == float(again[1])
    assert float(first[0]) != float(other[0])
    # p = q: every log ratio is exactly zero.
    est, se = _mc_gauss(key, 0.5, 2.0, 0.5, 2.0, 100)
    assert float(est) == 0 and float(se) == 0
    with pytest.raises(ValueError, match="at least 2 samples"):
        kl_monte_carlo(jnp.sin, jnp.cos, jnp.zeros((1,)))


# ----------------------------------------------------------------------------- projection


def _project_brute_force(v):
    """Minimise ‖w − v‖ over every support: on support S, w_S = v_S − (Σ v_S − 1)/|S|."""
    n = len(v)
    best, best_dist = None, np.inf
    for r in range(1, n + 1):
        for S in itertools.combinations(range(n), r):
            S = list(S)
            w = np.zeros(n)
            w[S] = v[S] - (v[S].sum() - 1) / len(S)
            if np.all(w >= 0) and np.sum((w - v) ** 2) < best_dist:
                best, best_dist = w, np.sum((w - v) ** 2)
    return best


_proj = jax.jit(project_simplex)


def test_project_simplex(getkey):
    v = 3.0 * jax.random.normal(getkey(), (200, 4))
    w = _proj(v)
    assert jnp.allclose(w.sum(-1), 1, atol=1e-5) and jnp.all(w >= 0)
    assert jnp.allclose(_proj(w), w, atol=1e-6)  # idempotent
    assert jnp.allclose(jax.vmap(project_simplex)(v), w)
    brute = np.stack([_project_brute_force(vi) for vi in np.asarray(v, np.float64)])
    assert np.allclose(np.asarray(w), brute, atol=1e-5)
    # KKT: w = max(v − τ, 0) with one τ per row; off-support entries satisfy v ≤ τ.
    support = w > 0
    tau = jnp.sum(jnp.where(support, v - w, 0), -1) / support.sum(-1).astype(v.dtype)
    assert jnp.allclose(jnp.where(support, v - w, tau[:, None]), tau[:, None], atol=1e-5)
    assert jnp.all(jnp.where(support, True, v <= tau[:, None] + 1e-5))
    # Variational inequality of a Euclidean projection: ⟨v − w, z − w⟩ ≤ 0 for z on simplex.
    z = _simplex_points(getkey(), 200, 4)
    assert jnp.all(jnp.sum((v - w) * (z - w), -1) <= 1e-5)


def test_project_simplex_fixes_simplex_points(getkey):
    p = _simplex_points(getkey(), 50, 6)
    assert jnp.allclose(_proj(p), p, atol=1e-6)


# ----------------------------------------------------------------------------- walking styles


def test_mirror_descent_matches_closed_form_and_stays_on_simplex():
    # Loss KL(p‖t) = ⟨−log t, p⟩ − H(p): exponentiated gradient has the closed form
    # p_k ∝ p0^{(1−η)^k} t^{1−(1−η)^k}.
    eta, steps = 0.05, 400
    p0 = jnp.array([0.05, 0.15, 0.8])
    ps = _walk(mirror_descent(eta), lambda p: kl(p, TARGET), p0, steps)
    assert jnp.all(ps > 0)
    assert jnp.allclose(ps.sum(-1), 1, atol=1e-5)
    k = jnp.arange(steps + 1, dtype=jnp.float32)[:, None]
    a = (1 - eta) ** k
    closed = jax.nn.softmax(a * jnp.log(p0) + (1 - a) * jnp.log(TARGET), axis=-1)
    assert jnp.allclose(ps, closed, atol=1e-5)
    assert jnp.allclose(ps[-1], TARGET, atol=1e-5)
    # η = 1 lands on the minimiser in one step.
    assert jnp.allclose(_walk(mirror_descent(1.0), lambda p: kl(p, TARGET), p0, 1)[1], TARGET)


@pytest.mark.parametrize("style", [mirror_descent, projected_gd])
def test_simplex_walkers_converge_on_quadratic(style):
    p0 = jnp.full(3, 1 / 3)
    ps = _walk(style(0.5), lambda p: 0.5 * jnp.sum((p - TARGET) ** 2), p0, 500)
    assert jnp.all(ps >= 0)
    assert jnp.allclose(ps.sum(-1), 1, atol=1e-5)
    assert jnp.allclose(ps[-1], TARGET, atol=1e-5)


def test_projected_gd_reaches_boundary_mirror_descent_does_not():
    # Minimiser of ⟨c, p⟩ on the simplex is a vertex; PGD lands on it, EG only approaches.
    c = jnp.array([1.0, 0.0, 2.0])
    p0 = jnp.full(3, 1 / 3)
    pgd = _walk(projected_gd(0.5), lambda p: c @ p, p0, 20)[-1]
    md = _walk(mirror_descent(0.5), lambda p: c @ p, p0, 20)[-1]
    assert jnp.array_equal(pgd, jnp.array([0.0, 1.0, 0.0]))
    assert jnp.all(md > 0) and md[1] > 0.99


def _steps_to_tol(ps_loss, tol):
    below = ps_loss < tol
    return int(jnp.argmax(below)) if bool(below.any()) else None


def test_natural_gradient_beats_best_gd_on_categorical_fit():
    target = jnp.array([0.9, 0.09, 0.01])

    def loss(theta):
        return kl(target, jax.nn.softmax(theta))

    theta0 = jnp.zeros(3)
    tol, steps = 1e-6, 400
    ng = natural_gradient(1.0, lambda th: fisher_categorical(jax.nn.softmax(th)))
    ng_losses = jax.jit(lambda: jax.vmap(loss)(_walk(ng, loss, theta0, steps)))()
    ng_steps = _steps_to_tol(ng_losses, tol)
    assert ng_steps is not None
    # Best plain GD over a learning-rate grid reaching past its stability limit
    # 2/λ_max(F(target)) ≈ 12 (lr ≥ 12 never reaches tol).
    lrs = jnp.array([0.5, 1.0, 2.0, 4.0, 8.0, 12.0, 16.0])
    gd_losses = jax.vmap(lambda lr: jax.vmap(loss)(_walk(optax.sgd(lr), loss, theta0, steps)))(lrs)
    gd_steps = [_steps_to_tol(row, tol) or steps + 1 for row in gd_losses]
    assert 3 * ng_steps < min(gd_steps), (ng_steps, gd_steps)


def test_walkers_need_params():
    for tx in (mirror_descent(0.1), projected_gd(0.1), natural_gradient(0.1, jnp.diag)):
        with pytest.raises(ValueError, match="needs the current params"):
            tx.update(jnp.ones(3), tx.init(jnp.ones(3)))
    ng = natural_gradient(0.1, lambda th: jnp.eye(2))
    with pytest.raises(ValueError, match="3 flattened params"):
        ng.update(jnp.ones(3), ng.init(jnp.ones(3)), jnp.ones(3))


def test_simplex_lattice_points():
    pts = simplex_lattice(9)
    assert pts.shape == (28, 3) and pts.dtype == np.float64  # C(8, 2)
    np.testing.assert_allclose(pts.sum(-1), 1.0)
    assert pts.min() == pytest.approx(1 / 9)
    assert len({tuple(p) for p in np.round(pts * 9).astype(int)}) == 28
    np.testing.assert_array_equal(pts[:2] * 9, [[1, 1, 7], [1, 2, 6]])  # lexicographic
    assert simplex_lattice(6, n=4).shape == (10, 4)  # C(5, 3)
    np.testing.assert_array_equal(simplex_lattice(3), [[1 / 3, 1 / 3, 1 / 3]])
    with pytest.raises(ValueError, match="m >= n"):
        simplex_lattice(2)


def test_gaussian_kl_objectives_forward_is_moment_matching_reverse_is_a_mode(x64):
    x = jnp.linspace(-10.0, 10.0, 4001)
    log_pi = gaussian_mixture_logpdf(x, (-2.0, 2.0), 0.5)
    assert float(jnp.sum(jnp.exp(log_pi)) * (x[1] - x[0])) == pytest.approx(1.0, abs=1e-9)
    forward, reverse = gaussian_kl_objectives(x, log_pi)
    # on a Gaussian target both are kl_gaussian
    log_n = jax.scipy.stats.norm.logpdf(x, 0.5, 1.5)
    f1, r1 = gaussian_kl_objectives(x, log_n)
    theta = jnp.array([-0.3, jnp.log(0.8)])
    assert float(f1(theta)) == pytest.approx(float(kl_gaussian(0.5, 2.25, -0.3, 0.64)), rel=1e-8)
    assert float(r1(theta)) == pytest.approx(float(kl_gaussian(-0.3, 0.64, 0.5, 2.25)), rel=1e-8)
    # forward KL's minimiser is the moment match N(0, 0.25 + 4); reverse KL's sits at a mode
    g = jax.grad(forward)(jnp.array([0.0, 0.5 * jnp.log(4.25)]))
    np.testing.assert_allclose(g, 0.0, atol=1e-8)
    # KL(one component ‖ the mixture) ≈ log 2 (the other component is far away)
    assert float(reverse(jnp.array([2.0, jnp.log(0.5)]))) == pytest.approx(np.log(2.0), abs=1e-3)
    assert float(reverse(jnp.array([2.0, jnp.log(0.5)]))) < float(reverse(jnp.array([0.0, 0.7])))


def test_gaussian_fit_logpdf_matches_scipy():
    """The maximum-likelihood Gaussian's log density against scipy's, at its own fit."""
    from scipy.stats import multivariate_normal

    rng = np.random.default_rng(1)
    x_train = rng.normal(size=(400, 3)) @ np.array([[1.0, 0.3, 0.0], [0.0, 2.0, 0.5], [0, 0, 0.7]])
    x_test = rng.normal(size=(25, 3))
    ref = multivariate_normal(x_train.mean(0), np.cov(x_train.T, bias=True)).logpdf(x_test)
    np.testing.assert_allclose(gaussian_fit_logpdf(x_train, x_test), ref, rtol=1e-12)
