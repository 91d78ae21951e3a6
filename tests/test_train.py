"""terrain_jax.train: the scanned loop, the shared step, recipes, profiling, losses."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jaxtyping import Array

from terrain_jax import train
from terrain_jax.data import batch_indices, gaussian_mixture


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


# ----------------------------------------------------------------------------- recipes


@pytest.mark.parametrize("steps", [7, 100, 1234])
def test_warmup_cosine_matches_its_closed_form(steps):
    lr, final = 3e-3, 0.01
    sched = train.warmup_cosine(lr, steps, final_frac=final)
    w = max(1, steps // 20)  # the experiments' warm-up: one twentieth of the run
    assert float(sched(0)) == 0.0
    assert float(sched(w)) == pytest.approx(lr, rel=1e-6)
    assert float(sched(steps)) == pytest.approx(lr * final, rel=1e-6)
    k = (w + steps) // 2
    cosine = lr * final + (lr - lr * final) * 0.5 * (1 + np.cos(np.pi * (k - w) / (steps - w)))
    assert float(sched(k)) == pytest.approx(cosine, rel=1e-5)
    if w > 1:
        assert float(sched(w // 2)) == pytest.approx(lr * (w // 2) / w, rel=1e-6)


def test_recipes_are_optax_on_the_schedule_bit_for_bit():
    """adamw_cosine is exactly optax.adamw on optax.warmup_cosine_decay_schedule with the
    arguments the experiments wrote by hand, so moving them onto it changes no number."""
    lr, steps, wd = 1e-2, 60, 1e-4
    hand = optax.warmup_cosine_decay_schedule(0.0, lr, max(1, steps // 20), steps, lr * 0.01)
    ours = train.warmup_cosine(lr, steps)
    for k in range(steps + 1):
        assert float(ours(k)) == float(hand(k))
    x = jnp.array([0.5, -1.5])
    pairs = [
        (train.adamw_cosine(lr, steps, weight_decay=wd), optax.adamw(hand, weight_decay=wd)),
        (train.get_recipe("adam_cosine", lr, steps), optax.adam(hand)),
    ]
    for a, b in pairs:
        ref = _optax_walk(b, x, 10)
        np.testing.assert_array_equal(_optax_walk(a, x, 10), ref)
    with pytest.raises(ValueError, match="valid names are: adamw_cosine, adam_cosine"):
        train.get_recipe("sgd_cosine", lr, steps)


def _optax_walk(tx, x, steps):
    with jax.numpy_dtype_promotion("standard"):
        state = tx.init(x)
        for _ in range(steps):
            u, state = tx.update(2 * x, state, x)
            x = optax.apply_updates(x, u)
    return np.asarray(x)


# ----------------------------------------------------------------------------- the step


def test_make_step_equals_a_hand_written_optax_update(getkey):
    x, y = _problem(getkey())
    model = Linear(0.1 * jax.random.normal(getkey(), (2, 2)), jnp.zeros((2,)))
    opt = optax.adamw(0.05, weight_decay=1e-2)
    params, static = eqx.partition(model, eqx.is_array)
    with jax.numpy_dtype_promotion("standard"):
        state = opt.init(params)
    step = train.make_step(_loss, opt, static)
    p, s, loss = step(params, state, x[:32], y[:32])

    value, g = jax.value_and_grad(lambda m: _loss(m, x[:32], y[:32]))(model)
    with jax.numpy_dtype_promotion("standard"):
        upd, s_ref = opt.update(g, state, model)
    p_ref = optax.apply_updates(model, upd)
    assert float(loss) == pytest.approx(float(value), rel=1e-6)
    np.testing.assert_allclose(np.asarray(p.w), np.asarray(p_ref.w), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(np.asarray(p.b), np.asarray(p_ref.b), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(np.asarray(s[0].mu.w), np.asarray(s_ref[0].mu.w), rtol=1e-6)

    # the plain function is the same step (run op by op: equal to rounding); has_aux and
    # per-step extra inputs pass through
    plain = train.make_step(_loss, opt, static, jit=False)
    w_plain = np.asarray(plain(params, state, x[:32], y[:32])[0].w)
    np.testing.assert_allclose(w_plain, np.asarray(p.w), rtol=1e-6, atol=1e-7)

    def aux_loss(m, xb, yb, scale):
        return scale * _loss(m, xb, yb), {"n": xb.shape[0]}

    out = train.make_step(aux_loss, opt, static, has_aux=True)(
        params, state, x[:32], y[:32], jnp.float32(2.0)
    )
    assert len(out) == 4 and float(out[2]) == pytest.approx(2 * float(value), rel=1e-6)
    assert int(out[3]["n"]) == 32


def test_fit_is_make_step_scanned_with_an_explicit_order_and_step_inputs(getkey):
    """fit(indices=, step_inputs=) equals the hand loop over make_step with the same order
    and the per-step key of a stochastic loss."""
    x, y = _problem(getkey())
    steps, bs = 12, 16
    idx = jax.random.randint(getkey(), (steps, bs), 0, x.shape[0])
    keys = jax.random.split(getkey(), steps)

    def noisy(m, xb, yb, key):
        return _loss(m, xb + 0.1 * jax.random.normal(key, xb.shape), yb)

    model, hist = train.fit(ZERO, noisy, OPT, x, y, steps=steps, indices=idx, step_inputs=(keys,))
    params, static = eqx.partition(ZERO, eqx.is_array)
    with jax.numpy_dtype_promotion("standard"):
        state = OPT.init(params)
    step = train.make_step(noisy, OPT, static)
    losses = []
    for k in range(steps):
        params, state, loss = step(params, state, x[idx[k]], y[idx[k]], keys[k])
        losses.append(float(loss))
    np.testing.assert_allclose(hist["loss"], losses, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(np.asarray(model.w), np.asarray(params.w), rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="leading axis of length steps"):
        train.fit(ZERO, noisy, OPT, x, y, steps=steps, indices=idx, step_inputs=(keys[:3],))
    with pytest.raises(ValueError, match="shape"):
        train.fit(ZERO, _loss, OPT, x, y, steps=steps + 1, indices=idx)
    with pytest.raises(ValueError, match="needs `key`"):
        train.fit(ZERO, _loss, OPT, x, y, steps=steps)


def test_profile_step_reports_memory_compile_and_run_time(getkey):
    x, y = _problem(getkey())
    params, static = eqx.partition(ZERO, eqx.is_array)
    with jax.numpy_dtype_promotion("standard"):
        state = OPT.init(params)
    step = train.make_step(_loss, OPT, static)
    args = (params, state, x[:64], y[:64])
    c = train.compile_step(step, *args)
    assert c.temp_bytes == train.compiled_memory(step, *args) >= 0 and c.compile_s > 0
    np.testing.assert_array_equal(np.asarray(c.compiled(*args)[0].w), step(*args)[0].w)
    prof = train.profile_step(train.make_step(_loss, OPT, static, jit=False), *args, repeats=3)
    assert prof.temp_bytes == c.temp_bytes and prof.run_s > 0 and prof.compile_s > 0


def test_fit_timed_is_the_compiled_step_called_per_minibatch(getkey):
    """fit_timed equals the hand loop of the same jitted make_step over batch_indices'
    order, bit for bit; aux and per-step inputs are stacked, every epoch is timed."""
    x, y = _problem(getkey())
    steps, bs, per_epoch = 10, 32, 4
    key, keys = getkey(), jax.random.split(getkey(), steps)

    def noisy(m, xb, yb, k):
        loss = _loss(m, xb + 0.1 * jax.random.normal(k, xb.shape), yb)
        return loss, (jnp.int32(xb.shape[0]), 2 * loss)

    run = train.fit_timed(ZERO, noisy, OPT, x, y, steps=steps, batch_size=bs, key=key,
                          steps_per_epoch=per_epoch, step_inputs=(keys,), has_aux=True)  # fmt: skip
    assert isinstance(run, train.TimedFit) and run.epoch_s.shape == (3,)
    assert np.all(run.epoch_s > 0) and run.step.temp_bytes >= 0
    params, static = eqx.partition(ZERO, eqx.is_array)
    with jax.numpy_dtype_promotion("standard"):
        state = OPT.init(params)
    step = train.make_step(noisy, OPT, static, has_aux=True)
    idx = np.asarray(batch_indices(x.shape[0], bs, steps, key=key))
    losses = []
    for k in range(steps):
        params, state, loss, _ = step(params, state, x[idx[k]], y[idx[k]], keys[k])
        losses.append(loss)
    np.testing.assert_array_equal(run.loss, np.asarray(losses))
    np.testing.assert_array_equal(np.asarray(run.model.w), np.asarray(params.w))
    assert run.aux[0].tolist() == [bs] * steps
    np.testing.assert_array_equal(run.aux[1], 2 * run.loss)
    with pytest.raises(FloatingPointError, match="non-finite"):
        train.fit_timed(ZERO, lambda m, xb, yb: jnp.nan * _loss(m, xb, yb), OPT, x, y,
                        steps=2, batch_size=bs, key=key, steps_per_epoch=1)  # fmt: skip


def test_ce_loss_and_masked_accuracy():
    class Masked(eqx.Module):
        """Class 1 iff the first layer is kept: accuracies 1 and 0 on labels all 1."""

        def __call__(self, x, *, mask):
            keep = mask[0].astype(x.dtype)
            return jnp.stack([1 - keep, keep], -1) * jnp.ones(x.shape[:1])[:, None]

    x = jnp.zeros((8, 3))
    y = jnp.ones((8,), jnp.int32)
    masks = jnp.array([[True, False], [False, True]])
    np.testing.assert_array_equal(train.masked_accuracy(Masked(), x, y, masks), [1.0, 0.0])
    lin = Linear(jnp.eye(2), jnp.zeros((2,)))
    xb = jnp.array([[2.0, 0.0], [0.0, 1.0]])
    yb = jnp.array([0, 0], jnp.int32)
    assert float(train.ce_loss(lin, xb, yb)) == float(train.cross_entropy(lin(xb), yb))
