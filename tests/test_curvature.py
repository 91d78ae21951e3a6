"""Curvature operators and their spectra (terrain_jax.spectra, curvature part).

References are dense linear algebra in float64: ``jax.hessian`` of the loss of flattened
parameters and ``jnp.linalg.eigh`` of it, per-example gradient outer products for the
empirical Fisher, and the closed-form variance of a sphere-probe quadratic form for SLQ.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from terrain_jax import data as D
from terrain_jax.curvature import (
    SpectralGap,
    fisher_operator,
    gauss_newton_operator,
    hessian_operator,
    hessian_top_eigenvalues,
    hvp,
    sharpness,
    spectral_gap,
)
from terrain_jax.linalg import hutchinson_trace, spectral_density

N_EXAMPLES = 300
BATCH = 64  # 300 = 4 * 64 + 44: a ragged last batch


@pytest.fixture(scope="module", autouse=True)
def x64():
    with jax.enable_x64(True):
        yield


def _nll(logits, y):
    return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], axis=1))


def _model_fn(model, x):
    return jax.vmap(model)(x)


def _loss(model, x, y):
    return _nll(_model_fn(model, x), y)


@pytest.fixture(scope="module")
def problem():
    """A 64-16-10 tanh MLP (1,210 parameters) after 100 GD steps on 300 digits, float64,
    with its dense Hessian and that Hessian's eigenvalues (ascending)."""
    ds = D.digits(seed=0)
    x = jnp.asarray(ds.x_train[:N_EXAMPLES], jnp.float64)
    y = jnp.asarray(ds.y_train[:N_EXAMPLES])
    model = eqx.nn.MLP(64, 10, 16, 1, activation=jnp.tanh, key=jax.random.PRNGKey(0))
    model = jax.tree.map(lambda a: a.astype(jnp.float64) if eqx.is_inexact_array(a) else a, model)
    diff, static = eqx.partition(model, eqx.is_inexact_array)

    @jax.jit
    def train(diff):
        def step(_, d):
            g = jax.grad(lambda dd: _loss(eqx.combine(dd, static), x, y))(d)
            return jax.tree.map(lambda a, b: a - 0.5 * b, d, g)

        return jax.lax.fori_loop(0, 100, step, diff)

    diff = train(diff)
    model = eqx.combine(diff, static)
    flat, unravel = ravel_pytree(diff)
    H = jax.jit(jax.hessian(lambda f: _loss(eqx.combine(unravel(f), static), x, y)))(flat)
    return {"model": model, "x": x, "y": y, "H": H, "eig": jnp.linalg.eigvalsh(H), "n": flat.size}


def _with_hessian(problem, fn, *args, batch_size=None):
    """``fn(H, *args)`` jitted, with ``H`` built inside the jit (as users should)."""

    @eqx.filter_jit
    def run(model, *args):
        return fn(
            hessian_operator(_loss, model, (problem["x"], problem["y"]), batch_size=batch_size),
            *args,
        )

    return run(problem["model"], *args)


def _dense(make, *args):
    """The matrix of the operator ``make(*args)``, built and applied inside one jit."""

    @eqx.filter_jit
    def run(*args):
        op = make(*args)
        return jax.vmap(op)(jnp.eye(op.dim, dtype=op.dtype)).T

    return run(*args)


def test_hvp_matches_dense_hessian(problem, getkey):
    model, x, y, H = problem["model"], problem["x"], problem["y"], problem["H"]
    diff = eqx.filter(model, eqx.is_inexact_array)
    v_flat = jax.random.normal(getkey(), (problem["n"],), jnp.float64)
    _, unravel = ravel_pytree(diff)
    hv = eqx.filter_jit(hvp)(_loss, model, unravel(v_flat), x, y)
    assert jax.tree.structure(hv) == jax.tree.structure(diff)
    np.testing.assert_allclose(ravel_pytree(hv)[0], H @ v_flat, rtol=1e-10, atol=1e-12)
    hv_op = eqx.filter_jit(lambda m, v: hessian_operator(_loss, m, (x, y))(v))(model, v_flat)
    np.testing.assert_allclose(hv_op, H @ v_flat, rtol=1e-10, atol=1e-12)


def test_batched_operators_equal_full_data(problem, getkey):
    model, x, y = problem["model"], problem["x"], problem["y"]
    v = jax.random.normal(getkey(), (problem["n"],), jnp.float64)

    @eqx.filter_jit
    def products(model, v, b):
        return (
            hessian_operator(_loss, model, (x, y), batch_size=b)(v),
            gauss_newton_operator(_model_fn, _nll, model, (x, y), batch_size=b)(v),
            fisher_operator(_model_fn, model, (x, y), kind="empirical", batch_size=b)(v),
        )

    batched, full = products(model, v, BATCH), products(model, v, None)
    np.testing.assert_allclose(batched[0], problem["H"] @ v, rtol=1e-10, atol=1e-12)
    # an unweighted mean of the 5 batch means would differ: the last batch has 44 examples
    for a, b in zip(batched, full, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


def test_lanczos_top5_matches_eigh(problem, getkey):
    exact = problem["eig"][::-1][:5]

    def top5(op, k1, k2):
        return (
            hessian_top_eigenvalues(op, op.dim, 5, k1, num_iters=90),
            hessian_top_eigenvalues(op, op.dim, 5, k2, num_iters=90, which="LM"),
        )

    res, lm = _with_hessian(problem, top5, getkey(), getkey())
    np.testing.assert_allclose(res.values, exact, rtol=1e-4)
    assert int(res.num_matvecs) == 90
    # Ritz vectors: orthonormal, and the reported residual is the true ‖H v − λ v‖
    np.testing.assert_allclose(res.vectors @ res.vectors.T, jnp.eye(5), atol=1e-10)
    true_res = jnp.linalg.norm(
        res.vectors @ problem["H"] - res.values[:, None] * res.vectors, axis=1
    )
    np.testing.assert_allclose(true_res, res.residuals, atol=1e-9)
    eig = problem["eig"]
    np.testing.assert_allclose(lm.values, eig[jnp.argsort(-jnp.abs(eig))][:5], rtol=1e-4)


def test_lanczos_eigenvalue_gradient_matches_perturbation_theory(getkey):
    """Reverse mode through the compiled Lanczos: for ``A(θ) = B + diag(θ)`` the top
    eigenvalue's gradient is ``v∘v`` (``v`` its unit eigenvector, from dense ``eigh``)."""
    n = 30
    b = jax.random.normal(getkey(), (n, n), jnp.float64)
    b = (b + b.T) / 2
    theta = jax.random.normal(getkey(), (n,), jnp.float64)
    key = getkey()

    def top(th):
        a = b + jnp.diag(th)
        return hessian_top_eigenvalues(lambda v: a @ v, n, 1, key, num_iters=n).values[0]

    grad = jax.jit(jax.grad(top))(theta)
    _, vecs = jnp.linalg.eigh(b + jnp.diag(theta))
    np.testing.assert_allclose(grad, vecs[:, -1] ** 2, atol=1e-8)
    assert float(jnp.max(grad)) > 0.05  # not trivially zero


def test_power_deflation_top5_matches_eigh(problem, getkey):
    eig = problem["eig"]
    exact = eig[jnp.argsort(-jnp.abs(eig))][:5]
    res = _with_hessian(
        problem, lambda op, k: hessian_top_eigenvalues(op, op.dim, 5, k, method="power"), getkey()
    )
    np.testing.assert_allclose(res.values, exact, rtol=1e-4)
    assert bool(jnp.all(res.residuals <= 1e-5 * jnp.abs(res.values)))
    assert bool(jnp.all(res.num_matvecs < 1000))  # stopped by tolerance, not the cap
    np.testing.assert_allclose(res.vectors @ res.vectors.T, jnp.eye(5), atol=1e-8)


def test_lanczos_survives_breakdown(getkey):
    # eigenvalues 3, 2, 1, each 20 times: a Krylov space closes after 3 steps, and every
    # restart (a fresh vector orthogonal to the basis) finds another copy of each
    d = jnp.repeat(jnp.array([3.0, 2.0, 1.0]), 20)
    e_last = jnp.zeros(60).at[-1].set(1.0)  # an eigenvector (eigenvalue 1)

    def diag(v):
        return d * v

    @jax.jit
    def run(keys):
        return (
            hessian_top_eigenvalues(diag, 60, 10, keys[0], num_iters=10),
            hessian_top_eigenvalues(lambda v: 0.0 * v, 60, 2, keys[1], num_iters=5),
            hessian_top_eigenvalues(diag, 60, 1, keys[2], num_iters=5, v0=e_last),
            hessian_top_eigenvalues(diag, 60, 1, keys[3], method="power"),
        )

    res, zero, warm, pw = run(jax.random.split(getkey(), 4))
    # three closed blocks give 3, 2, 1 three times each (residual 0); the 10th step starts
    # a 4th block, cut short: its Ritz value is no eigenvalue, and its reported residual
    # says so (some eigenvalue lies within the residual of each value)
    done = res.residuals < 1e-12
    assert int(jnp.sum(done)) == 9
    np.testing.assert_allclose(
        jnp.sort(jnp.where(done, res.values, jnp.inf))[:9],
        jnp.repeat(jnp.array([1.0, 2.0, 3.0]), 3),
        rtol=1e-12,
    )
    gap = jnp.min(jnp.abs(res.values[:, None] - jnp.array([3.0, 2.0, 1.0])), axis=1)
    assert bool(jnp.all(gap <= res.residuals + 1e-12))
    np.testing.assert_allclose(res.vectors @ res.vectors.T, jnp.eye(10), atol=1e-12)
    # a zero operator, and a start on an eigenvector: immediate breakdown, no NaN
    np.testing.assert_array_equal(zero.values, [0.0, 0.0])
    np.testing.assert_allclose(warm.values, [3.0], rtol=1e-12)
    # Rayleigh quotient of a residual-r vector: error <= r² / gap (gap = 1 here)
    assert float(jnp.abs(pw.values[0] - 3.0)) <= float(pw.residuals[0]) ** 2 + 1e-14


def test_probe_chunks_equal_vmapped_probes(getkey):
    B = jax.random.normal(getkey(), (50, 50))
    A = B + B.T

    @jax.jit
    def run(key):
        def matvec(v):
            return A @ v

        return [
            (
                hutchinson_trace(matvec, 50, key, 12, probe_batch=b),
                spectral_density(matvec, 50, key, num_iters=8, num_probes=8, probe_batch=b),
            )
            for b in (None, 4)
        ]

    (tr_v, sd_v), (tr_c, sd_c) = run(getkey())
    assert float(tr_v[1]) > 0.0
    np.testing.assert_allclose(tr_c, tr_v, rtol=1e-12)
    np.testing.assert_allclose(sd_c.nodes, sd_v.nodes, rtol=1e-12)
    np.testing.assert_allclose(sd_c.density, sd_v.density, rtol=1e-10, atol=1e-12)


def test_hutchinson_within_three_standard_errors(problem, getkey):
    exact = jnp.trace(problem["H"])

    def traces(op, k1, k2):
        return (
            hutchinson_trace(op, op.dim, k1, 50),
            hutchinson_trace(op, op.dim, k2, 50, probe="normal"),
        )

    (est, sem), (est_n, sem_n) = _with_hessian(problem, traces, getkey(), getkey())
    assert 0.0 < float(sem) < abs(float(exact))
    assert abs(float(est - exact)) <= 3.0 * float(sem)
    assert abs(float(est_n - exact)) <= 3.0 * float(sem_n)


def test_slq_moments_match_exact_spectrum(problem, getkey):
    eig, n, probes = problem["eig"], problem["n"], 20

    def slq(op, key):
        return spectral_density(op, op.dim, key, num_iters=40, num_probes=probes)

    sd = _with_hessian(problem, slq, getkey())
    assert sd.nodes.shape == (probes, 40) and sd.density.shape == (1000,)
    np.testing.assert_allclose(jnp.sum(sd.weights, axis=1), 1.0, rtol=1e-10)
    assert bool(jnp.all(sd.density >= 0.0))
    np.testing.assert_allclose(jnp.trapezoid(sd.density, sd.grid), 1.0, atol=1e-6)
    # qᵀ A q for q uniform on the unit sphere: mean tr(A)/n, variance
    # 2/(n+2) (tr(A²)/n − (tr A / n)²); the quadrature is exact per probe for k ≤ 2m − 1
    for k in (1, 2):
        mk, m2k = jnp.mean(eig**k), jnp.mean(eig ** (2 * k))
        sd_k = jnp.sqrt(2.0 / (n + 2) * (m2k - mk**2) / probes)
        assert abs(float(sd.moment(k) - mk)) <= 4.0 * float(sd_k), (k, sd.moment(k), mk, sd_k)
    # the first moment is the same estimator as Hutchinson's with sphere probes: ~1e-2
    # relative here, versus ~1 for a wrong normalisation
    assert abs(float(sd.moment(1) / jnp.mean(eig) - 1.0)) < 0.1


def test_gauss_newton_equals_hessian_for_linear_mse(getkey):
    x = jax.random.normal(getkey(), (40, 5), jnp.float64)
    y = jax.random.normal(getkey(), (40, 3), jnp.float64)
    params = {
        "W": jax.random.normal(getkey(), (3, 5), jnp.float64),
        "b": jax.random.normal(getkey(), (3,), jnp.float64),
    }

    def model_fn(p, x):
        return x @ p["W"].T + p["b"]

    def mse(out, y):
        return jnp.mean(jnp.sum((out - y) ** 2, axis=-1))

    ggn = _dense(lambda p: gauss_newton_operator(model_fn, mse, p, (x, y), batch_size=16), params)
    flat, unravel = ravel_pytree(params)
    H = jax.jit(jax.hessian(lambda f: mse(model_fn(unravel(f), x), y)))(flat)
    np.testing.assert_allclose(ggn, H, rtol=1e-10, atol=1e-12)


def test_fisher_equals_ggn_for_softmax_cross_entropy(problem, getkey):
    model, x, y = problem["model"], problem["x"][:100], problem["y"][:100]
    ggn = _dense(lambda m: gauss_newton_operator(_model_fn, _nll, m, (x, y)), model)
    fisher = _dense(lambda m: fisher_operator(_model_fn, m, (x, y)), model)
    np.testing.assert_allclose(fisher, ggn, rtol=1e-8, atol=1e-12)
    assert float(jnp.max(jnp.abs(ggn - problem["H"]))) > 1e-3  # GGN is not the Hessian
    # empirical Fisher: mean of per-example score outer products
    diff, static = eqx.partition(model, eqx.is_inexact_array)
    flat, unravel = ravel_pytree(diff)

    def per_example_nll(f):
        logits = _model_fn(eqx.combine(unravel(f), static), x)
        return -jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], axis=1)[:, 0]

    G = jax.jacrev(per_example_nll)(flat)
    emp = _dense(lambda m: fisher_operator(_model_fn, m, (x, y), kind="empirical"), model)
    np.testing.assert_allclose(emp, G.T @ G / x.shape[0], rtol=1e-8, atol=1e-12)


def test_sharpness_jits_once_and_warm_starts(problem, getkey):
    x, y = problem["x"], problem["y"]
    exact = problem["eig"][-1]

    @eqx.filter_jit
    @eqx.debug.assert_max_traces(max_traces=1)
    def track(model, key, v0):
        return sharpness(_loss, model, (x, y), key, num_iters=20, v0=v0, batch_size=BATCH)

    cold = track(problem["model"], getkey(), jax.random.normal(getkey(), (problem["n"],)))
    np.testing.assert_allclose(cold.values[0], exact, rtol=1e-6)
    warm = track(problem["model"], getkey(), cold.vectors[0])
    np.testing.assert_allclose(warm.values[0], exact, rtol=1e-10)
    assert float(warm.residuals[0]) <= float(cold.residuals[0])


def test_errors_name_valid_choices(problem, getkey):
    op = hessian_operator(_loss, problem["model"], (problem["x"][:5], problem["y"][:5]))
    with pytest.raises(ValueError, match="lanczos, power"):
        hessian_top_eigenvalues(op, op.dim, 1, getkey(), method="arnoldi")
    with pytest.raises(ValueError, match="method='lanczos'"):
        hessian_top_eigenvalues(op, op.dim, 1, getkey(), method="power", which="LA")
    with pytest.raises(ValueError, match="true, empirical"):
        fisher_operator(_model_fn, problem["model"], (problem["x"], problem["y"]), kind="kfac")
    with pytest.raises(ValueError, match="rademacher, normal"):
        hutchinson_trace(op, op.dim, getkey(), 10, probe="sphere")
    with pytest.raises(ValueError, match="leading"):
        hessian_operator(_loss, problem["model"], (problem["x"], problem["y"][:10]))


# ----------------------------------------------------------------------------- outliers


def _planted(key, k, bulk=40):
    """``k`` outliers ``20, 25, …`` over a bulk in ``[-0.5, 1]`` (negatives included), shuffled."""
    k_bulk, k_perm = jax.random.split(key)
    outliers = 20.0 + 5.0 * jnp.arange(k, dtype=jnp.float64)
    values = jnp.concatenate([jax.random.uniform(k_bulk, (bulk,), minval=-0.5), outliers])
    return jax.random.permutation(k_perm, values), outliers


@pytest.mark.parametrize("k", [1, 3, 10])
def test_spectral_gap_counts_planted_outliers(getkey, k):
    values, outliers = _planted(getkey(), k)
    gap = spectral_gap(values)
    assert isinstance(gap, SpectralGap)
    assert int(gap.count) == k
    bulk_top = float(jnp.sort(values)[-k - 1])
    np.testing.assert_allclose(gap.ratio, float(outliers[0]) / bulk_top)
    assert bulk_top < float(gap.threshold) < float(outliers[0])
    assert int(spectral_gap(values, min_ratio=2.0).count) == k  # a gap of ≥ 20×
    assert int(jax.jit(spectral_gap)(values).count) == k


def _argmax_positive_ratio(values):
    """The rule written out with numpy: sort descending, keep positives, argmax ratio."""
    pos = np.sort(np.asarray(values))[::-1]
    pos = pos[pos > 0]
    ratios = pos[:-1] / pos[1:]
    return int(np.argmax(ratios)) + 1, float(ratios.max())


def test_spectral_gap_is_the_argmax_rule_on_random_spectra(getkey):
    for _ in range(20):
        values = jax.random.normal(getkey(), (15,)) * jnp.exp(jax.random.normal(getkey(), (15,)))
        count, ratio = _argmax_positive_ratio(values)
        gap = spectral_gap(values)
        assert int(gap.count) == count and float(gap.ratio) == ratio


def test_spectral_gap_threshold_rule_and_no_gap():
    smooth = jnp.linspace(2.0, 1.0, 30, dtype=jnp.float64)  # no outliers: a smooth bulk
    plain = spectral_gap(smooth)  # min_ratio=1: the largest ratio, wherever it is
    assert int(plain.count) == 29  # λ_k/λ_{k+1} grows down the bulk
    assert float(plain.ratio) < 1.1
    none = spectral_gap(smooth, min_ratio=2.0)
    assert int(none.count) == 0 and np.isnan(float(none.threshold))
    assert float(none.ratio) == float(plain.ratio)  # the gap is reported, just not accepted
    # The rule is λ_k*/λ_{k*+1} ≥ min_ratio, inclusive.
    stepped = jnp.array([8.0, 4.0, 1.0, 0.9], jnp.float64)
    assert int(spectral_gap(stepped, min_ratio=4.0).count) == 2
    assert int(spectral_gap(stepped, min_ratio=4.0 + 1e-9).count) == 0
    np.testing.assert_allclose(spectral_gap(stepped).threshold, 2.5)
    # Fewer than two positive eigenvalues: nothing to separate.
    flat = spectral_gap(jnp.array([1.0, 0.0, -1.0], jnp.float64))
    assert int(flat.count) == 0 and np.isnan(float(flat.ratio))
    assert np.isnan(np.asarray(flat.ratios)).all()
    with pytest.raises(ValueError, match="at least 2 eigenvalues"):
        spectral_gap(jnp.ones((1,)))
