"""terrain_jax.train.fit_until: chunks of fit until the full-data loss is below a threshold,
against the same chunks written out by hand."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array

from terrain_jax import train
from terrain_jax.data import gaussian_mixture


class Linear(eqx.Module):
    w: Array
    b: Array

    def __call__(self, x):
        return x @ self.w.T + self.b


def _loss(model, xb, yb):
    return train.cross_entropy(model(xb), yb)


ZERO = Linear(jnp.zeros((2, 2)), jnp.zeros((2,)))
SGD = optax.sgd(0.05)


def _problem(key):
    return gaussian_mixture(256, centers=jnp.array([[-2.0, 0.5], [2.0, -0.5]]), std=0.4, key=key)


def test_fit_until_stops_at_the_first_check_below_the_threshold(getkey):
    x, y = _problem(getkey())
    key = getkey()
    until = dict(threshold=0.05, check_every=10, max_steps=10_000, batch_size=32)
    model, steps, hist = train.fit_until(ZERO, _loss, SGD, x, y, key=key, **until)
    assert steps == 10 * hist.size and hist.size > 1
    assert hist[-1] < 0.05 and np.all(hist[:-1] >= 0.05)
    assert float(_loss(model, x, y)) == hist[-1]
    # the same run by hand: fit chunks keyed by fold_in(key, steps done)
    m, want = ZERO, []
    for done in range(0, steps, 10):
        k = jax.random.fold_in(key, done)
        m, _ = train.fit(m, _loss, SGD, x, y, steps=10, batch_size=32, key=k)
        want.append(float(_loss(m, x, y)))
    np.testing.assert_array_equal(hist, want)
    np.testing.assert_array_equal(np.asarray(model.w), np.asarray(m.w))


def test_fit_until_gives_up_after_max_steps(getkey):
    x, y = _problem(getkey())
    model, steps, hist = train.fit_until(
        ZERO, _loss, SGD, x, y, threshold=0.0, check_every=20, max_steps=50, key=getkey()
    )
    assert steps == 60 and hist.shape == (3,)  # rounded up to whole chunks
    assert hist[-1] >= 0.0 and hist[-1] < float(_loss(ZERO, x, y))
