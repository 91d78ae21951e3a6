"""terrain_jax.ode.final_states: the one-compile convergence sweep against per-``n``
``integrate`` solves and the closed-form step factors of Euler and RK4 on ``y' = λy``."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from terrain_jax import LinearField, integrate
from terrain_jax.ode import final_states

LAM = -0.7


@pytest.mark.parametrize(
    "solver, factor",
    [
        ("euler", lambda z: 1 + z),
        ("rk4", lambda z: 1 + z + z**2 / 2 + z**3 / 6 + z**4 / 24),
    ],
)
def test_final_states_match_integrate_and_the_step_factor(solver, factor):
    steps = np.array([1, 2, 4, 8, 16])
    t0, t1 = 0.5, 2.5  # Δt = 2/n: dyadic, so every step lands exactly on the grid
    with jax.enable_x64(True):
        field = LinearField(jnp.array([[LAM, 0.0], [0.0, 2 * LAM]]))
        y0 = jnp.array([1.0, -3.0])
        got = np.asarray(final_states(field, y0, steps, t0=t0, t1=t1, solver=solver))
        assert got.shape == (steps.size, 2)
        for i, n in enumerate(steps):
            direct = integrate(field, y0, t0=t0, t1=t1, steps=int(n), solver=solver).y1
            np.testing.assert_allclose(got[i], np.asarray(direct), rtol=1e-14, atol=0)
        h = (t1 - t0) / steps
        want = np.stack([factor(h * LAM) ** steps, factor(h * 2 * LAM) ** steps], -1)
        np.testing.assert_allclose(got, want * np.asarray(y0), rtol=1e-12)


def test_final_states_passes_args():
    def field(t, y, args):
        return args * y

    got = final_states(field, jnp.array([2.0]), np.array([1, 2]), t1=1.0, args=jnp.float32(0.5))
    np.testing.assert_allclose(np.asarray(got)[:, 0], [2.0 * 1.5, 2.0 * 1.25**2], rtol=1e-6)
