"""Continuous normalising flows: the exact-trace density of a linear flow is the closed-form
Gaussian; Hutchinson's trace is unbiased; sampling and density evaluation agree; the
density integrates to one."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.linalg import expm
from scipy.stats import multivariate_normal

from terrain_jax.fields import LinearField
from terrain_jax.linalg import HUTCHINSON_PROBES
from terrain_jax.nets import CNF


def test_linear_flow_log_prob_is_gaussian(getkey):
    """z(T) = e^{TA} x ~ N(0, I), so x ~ N(0, M Mᵀ) with M = e^{-TA}."""
    A = np.array([[-0.3, 0.8], [-0.5, 0.4]])
    T = 1.5
    field = LinearField(jnp.asarray(A, jnp.float32))
    cnf = CNF(2, field=field, T=T, solver="rk4", steps=40)  # RK4 error ~(hλ)^5/120 ≈ 1e-8
    x = 1.5 * jax.random.normal(getkey(), (16, 2))
    lp = eqx.filter_jit(cnf.log_prob)(x)
    M = expm(-T * A)
    want = multivariate_normal(np.zeros(2), M @ M.T).logpdf(np.asarray(x, np.float64))
    np.testing.assert_allclose(np.asarray(lp), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("probe", HUTCHINSON_PROBES)
def test_hutchinson_log_prob_is_unbiased(getkey, probe):
    # fixed steps: the exact and estimated integrands see the same discretisation
    cnf = CNF(3, 16, key=getkey(), solver="rk4", steps=8, T=1.0)
    n = 3000
    x0 = jax.random.normal(getkey(), (3,))
    x = jnp.broadcast_to(x0, (n, 3))  # one point, one probe per row
    exact = float(eqx.filter_jit(cnf.log_prob)(x0[None])[0])
    est = np.asarray(
        eqx.filter_jit(lambda c, xx, k: c.log_prob(xx, trace="hutchinson", key=k, probe=probe))(
            cnf, x, getkey()
        ),
        dtype=np.float64,
    )
    se = est.std(ddof=1) / np.sqrt(n)
    assert se > 1e-4  # the estimate really is random
    assert abs(est.mean() - exact) < 3 * se


def test_sample_log_prob_round_trip(getkey):
    cnf = CNF(2, 16, key=getkey(), solver="rk4", steps=32, T=1.0)
    key = getkey()
    x, lp_back = eqx.filter_jit(lambda c, k: c.sample_and_log_prob(k, 32))(cnf, key)
    x_only = eqx.filter_jit(lambda c, k: c.sample(k, 32))(cnf, key)
    lp_fwd = eqx.filter_jit(cnf.log_prob)(x)
    np.testing.assert_allclose(np.asarray(x_only), np.asarray(x), atol=1e-6)
    # forward and backward RK4 grids are not exact inverses: O(h^4) apart
    np.testing.assert_allclose(np.asarray(lp_fwd), np.asarray(lp_back), atol=1e-4)
    assert float(jnp.std(lp_fwd)) > 0.1  # a non-trivial density


def test_density_integrates_to_one(getkey):
    cnf = CNF(2, 16, key=getkey(), solver="rk4", steps=8, T=1.0)
    g = jnp.linspace(-7.0, 7.0, 141)
    xx, yy = jnp.meshgrid(g, g)
    pts = jnp.stack([xx.ravel(), yy.ravel()], axis=-1)
    p = jnp.exp(eqx.filter_jit(cnf.log_prob)(pts))
    mass = float(jnp.sum(p)) * float(g[1] - g[0]) ** 2
    assert abs(mass - 1.0) < 2e-3


def test_cnf_errors(getkey):
    cnf = CNF(2, 8, key=getkey(), solver="rk4", steps=2)
    x = jnp.zeros((3, 2))
    with pytest.raises(ValueError, match="exact, hutchinson"):
        cnf.log_prob(x, trace="bogus")
    with pytest.raises(ValueError, match="key="):
        cnf.log_prob(x, trace="hutchinson")
    with pytest.raises(ValueError, match="rademacher, normal"):
        cnf.log_prob(x, trace="hutchinson", key=getkey(), probe="uniform")
    with pytest.raises(ValueError, match="key="):
        CNF(2)
