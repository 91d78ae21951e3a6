"""terrain_jax.train: the scanned training loop, accuracy, cross-entropy."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jaxtyping import Array

from terrain_jax import train
from terrain_jax.data import gaussian_mixture


class Linear(eqx.Module):
    w: Array
    b: Array

    def __call__(self, x):
        return x @ self.w.T + self.b


def _problem(key):
    """Two well-separated blobs: linearly separable."""
    centres = jnp.array([[-2.0, 0.5], [2.0, -0.5]])
    return gaussian_mixture(256, centers=centres, std=0.4, key=key)


def _loss(model, xb, yb):
    return train.cross_entropy(model(xb), yb)


ZERO = Linear(jnp.zeros((2, 2)), jnp.zeros((2,)))
OPT = optax.adam(0.05)


def test_cross_entropy_matches_closed_forms():
    logits = jnp.zeros((5, 4))
    labels = jnp.array([0, 1, 2, 3, 0], dtype=jnp.int32)
    assert float(train.cross_entropy(logits, labels)) == pytest.approx(np.log(4), rel=1e-6)
    logits = jnp.array([[2.0, 0.0], [0.0, 3.0]])
    labels = jnp.array([0, 0], dtype=jnp.int32)
    expect = np.mean([np.log1p(np.exp(-2.0)), np.log1p(np.exp(3.0))])
    assert float(train.cross_entropy(logits, labels)) == pytest.approx(expect, rel=1e-5)


def test_fit_learns_a_separable_problem_and_is_deterministic(getkey):
    x, y = _problem(getkey())
    key = getkey()
    before = float(_loss(ZERO, x, y))
    assert train.accuracy(ZERO, x, y) == pytest.approx(0.5)  # argmax ties -> class 0
    model, hist = train.fit(ZERO, _loss, OPT, x, y, steps=200, batch_size=32, key=key)
    after = float(_loss(model, x, y))
    assert hist["loss"].shape == (200,) and np.all(np.isfinite(hist["loss"]))
    assert hist["loss"][0] == pytest.approx(before, rel=1e-5)  # step 0 is before any update
    assert after < 0.1 * before
    assert np.mean(hist["loss"][-20:]) < 0.1 * np.mean(hist["loss"][:20])
    assert train.accuracy(model, x, y) >= 0.99

    again, hist2 = train.fit(ZERO, _loss, OPT, x, y, steps=200, batch_size=32, key=key)
    np.testing.assert_array_equal(hist["loss"], hist2["loss"])
    np.testing.assert_array_equal(np.asarray(model.w), np.asarray(again.w))
    _, hist3 = train.fit(ZERO, _loss, OPT, x, y, steps=200, batch_size=32, key=getkey())
    assert not np.array_equal(hist["loss"], hist3["loss"])  # the key shuffles the batches


def test_fit_chunks_by_eval_every_same_result_as_one_call(getkey):
    x, y = _problem(getkey())
    key = getkey()
    one, h1 = train.fit(ZERO, _loss, OPT, x, y, steps=50, batch_size=64, key=key)
    chunked, h2 = train.fit(ZERO, _loss, OPT, x, y, steps=50, batch_size=64, key=key, eval_every=20)
    np.testing.assert_array_equal(h2["eval_step"], [20, 40, 50])
    np.testing.assert_allclose(h1["loss"], h2["loss"], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(np.asarray(one.w), np.asarray(chunked.w), rtol=1e-5, atol=1e-7)
    # the default evaluation is the full-data loss of the model after each chunk
    assert h2["train_loss"].shape == (3,)
    assert h2["train_loss"][-1] == pytest.approx(float(_loss(chunked, x, y)), rel=1e-5)
    assert h2["train_loss"][0] > h2["train_loss"][-1]


def test_fit_full_batch_eval_fn_and_frozen_non_float_leaves(getkey):
    class Tagged(eqx.Module):
        lin: Linear
        tag: Array  # an integer array: carried along, never updated

        def __call__(self, x):
            return self.lin(x)

    x, y = _problem(getkey())
    model = Tagged(ZERO, jnp.arange(3, dtype=jnp.int32))
    trained, hist = train.fit(
        model,
        _loss,
        optax.sgd(0.5),
        x,
        y,
        steps=30,
        key=getkey(),
        eval_every=10,
        eval_fn=lambda m: {"acc_proxy": jnp.mean(jnp.argmax(m(x), -1) == y)},
    )
    # full batch + SGD is deterministic gradient descent: the loss decreases monotonically
    assert np.all(np.diff(hist["loss"]) < 0)
    np.testing.assert_array_equal(np.asarray(trained.tag), [0, 1, 2])
    assert hist["acc_proxy"].shape == (3,) and hist["acc_proxy"][-1] >= 0.99


def test_fit_refuses_bad_input_and_reports_divergence(getkey):
    x, y = _problem(getkey())
    with pytest.raises(ValueError, match="steps"):
        train.fit(ZERO, _loss, OPT, x, y, steps=0, key=getkey())
    # refused by our check, or earlier by jaxtyping's runtime check (a TypeError) in tests
    with pytest.raises((ValueError, TypeError)):
        train.fit(ZERO, _loss, OPT, x, y[:10], steps=5, key=getkey())

    def nan_loss(model, xb, yb):
        return _loss(model, xb, yb) * jnp.nan

    with pytest.raises(FloatingPointError, match="non-finite"):
        train.fit(ZERO, nan_loss, OPT, x, y, steps=3, key=getkey())


def test_accuracy_counts_exactly_with_a_ragged_last_batch():
    class Always(eqx.Module):
        cls: int = eqx.field(static=True)

        def __call__(self, x):
            return jax.nn.one_hot(jnp.full(x.shape[:1], self.cls), 3)

    x = jnp.zeros((50, 4))
    y = jnp.array([0] * 13 + [1] * 30 + [2] * 7, dtype=jnp.int32)
    for bs in (7, 50, 1000):  # ragged, exact, larger than the set
        assert train.accuracy(Always(0), x, y, batch_size=bs) == pytest.approx(13 / 50)
        assert train.accuracy(Always(2), x, y, batch_size=bs) == pytest.approx(7 / 50)
    # a per-example module, through `apply`
    per_example = eqx.nn.Linear(4, 3, key=jax.random.PRNGKey(0))
    acc = train.accuracy(per_example, x, y, apply=lambda m, xb: jax.vmap(m)(xb))
    pred = int(jnp.argmax(per_example(x[0])))
    assert acc == pytest.approx(float(np.mean(np.asarray(y) == pred)))
