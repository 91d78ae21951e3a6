"""terrain_jax.train.gd_with_sharpness on least squares, where GD and the Hessian are closed
forms: ``L(w) = ½ mean (x w − y)²`` has Hessian ``H = xᵀx / n`` and GD iterates
``w_t = w* + (I − ηH)^t (w_0 − w*)``."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from terrain_jax.train import gd_with_sharpness


def _loss(w, x, y):
    return 0.5 * jnp.mean((x @ w - y) ** 2)


def _problem(getkey, n=40, d=5):
    x = jax.random.normal(getkey(), (n, d)) * jnp.linspace(0.5, 2.0, d)
    y = jax.random.normal(getkey(), (n,))
    w0 = jax.random.normal(getkey(), (d,))
    x64, y64 = np.asarray(x, np.float64), np.asarray(y, np.float64)
    H = x64.T @ x64 / n
    w_star = np.linalg.lstsq(x64, y64, rcond=None)[0]
    return (x, y), w0, H, w_star


def _closed_form_losses(H, w_star, w0, eta, steps, x, y):
    e = np.asarray(w0, np.float64) - w_star
    out = []
    for _ in range(steps + 1):
        w = w_star + e
        out.append(0.5 * np.mean((np.asarray(x, np.float64) @ w - np.asarray(y, np.float64)) ** 2))
        e = e - eta * (H @ e)
    return np.asarray(out)


@pytest.mark.parametrize("factor", [0.5, 1.05])
def test_tracks_the_closed_form_sharpness_and_loss(getkey, factor):
    data, w0, H, w_star = _problem(getkey)
    lam = np.linalg.eigvalsh(H)[-1]
    eta, k, chunks = factor * 2.0 / lam, 7, 6
    run = jax.jit(gd_with_sharpness, static_argnums=(0, 5), static_argnames="num_iters")
    rec = run(_loss, w0, data, eta, k, chunks, getkey(), num_iters=5)
    rec = {name: np.asarray(v) for name, v in rec.items()}
    assert rec["sharpness"].shape == rec["loss"].shape == (chunks + 1,)
    for name in ("up_steps", "loss_min", "loss_max"):
        assert rec[name].shape == (chunks,)
    assert "params" not in rec
    # the Hessian is constant: every (warm-started) measurement is λ_max
    np.testing.assert_allclose(rec["sharpness"], lam, rtol=1e-4)
    want = _closed_form_losses(H, w_star, w0, eta, chunks * k, *data)
    np.testing.assert_allclose(rec["loss"], want[::k], rtol=2e-4)
    per_chunk = want[: chunks * k].reshape(chunks, k)
    np.testing.assert_allclose(rec["loss_min"], per_chunk.min(axis=1), rtol=2e-4)
    np.testing.assert_allclose(rec["loss_max"], per_chunk.max(axis=1), rtol=2e-4)
    if factor < 1:  # stable GD on a convex quadratic: the loss never rises
        assert rec["up_steps"].sum() == 0
    else:  # past 2/λ_max the top mode grows: eventually every step raises the loss
        assert rec["up_steps"][-1] == k
        assert rec["loss"][-1] > rec["loss"][0]


def test_pytree_params_match_a_flat_vector_and_params_are_returned(getkey):
    data, w0, H, _ = _problem(getkey)
    eta, key = 1.0 / np.linalg.eigvalsh(H)[-1], getkey()
    v0 = jax.random.normal(getkey(), w0.shape)
    flat = gd_with_sharpness(_loss, w0, data, eta, 3, 4, key, v0=v0, return_params=True)

    def tree_loss(p, x, y):
        return _loss(jnp.concatenate([p["a"], p["b"]]), x, y)

    tree = {"a": w0[:2], "b": w0[2:]}
    out = gd_with_sharpness(tree_loss, tree, data, eta, 3, 4, key, v0=v0, return_params=True)
    got = np.concatenate([out["params"]["a"], out["params"]["b"]], axis=1)
    np.testing.assert_allclose(got, flat["params"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out["sharpness"], flat["sharpness"], rtol=1e-5)
    np.testing.assert_array_equal(flat["params"][0], w0)  # measured before each chunk
