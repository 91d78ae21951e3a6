"""terrain_jax.nets.ResidualLM: the residual recurrent next-token model and its Euler steps."""

import jax
import jax.numpy as jnp
import numpy as np

from terrain_jax.nets import ResidualLM

VOCAB, WIDTH, HIDDEN = 5, 6, 12


def _model(seed=0):
    return ResidualLM(VOCAB, WIDTH, HIDDEN, seed=seed)


def _mlp(m, h, e):
    return m.w2 @ np.tanh(m.w1 @ np.concatenate([h, e]) + m.b1) + m.b2


def test_field_and_leak_match_the_formula():
    m = _model()
    lam = np.log1p(np.exp(np.asarray(m.leak)))
    np.testing.assert_allclose(lam, 0.5, rtol=1e-6)  # softplus(leak) = 0.5 at init
    h, e = np.linspace(-1, 1, WIDTH, dtype=np.float32), np.asarray(m.embed[3])
    np.testing.assert_allclose(m.field(jnp.asarray(h), m.embed[3]), _mlp(m, h, e) - lam * h,
                               rtol=1e-5, atol=1e-6)  # fmt: skip


def test_teacher_forced_logits_are_a_residual_recurrence():
    m = _model(1)
    toks = jnp.array([0, 3, 1, 4, 2])
    logits = m(toks)
    h = m.h0
    for t, tok in enumerate(toks):  # row t is read out of h_t, before token t is fed
        np.testing.assert_allclose(logits[t], m.readout @ h + m.readout_b, rtol=1e-5, atol=1e-6)
        h = h + m.field(h, m.embed[tok])


def test_rollout_takes_explicit_steps_and_step_residuals_see_it():
    m = _model(2)
    hs, toks, conv, res = jax.jit(lambda p: m.rollout(p, 1.0, 6))(jnp.array([1, 2]))
    assert hs.shape == (7, WIDTH) and toks.shape == (6,)
    assert bool(jnp.all(conv)) and float(jnp.max(res)) == 0.0
    np.testing.assert_allclose(hs[0], m.prompt_state(jnp.array([1, 2])), rtol=1e-6)
    for t in range(6):
        assert int(toks[t]) == int(jnp.argmax(m.logits(hs[t])))
    r_exp, r_imp = m.step_residuals(hs, toks)
    assert float(jnp.max(r_exp)) < 1e-6  # the explicit equation holds to round-off
    assert float(jnp.min(r_imp)) > 1e-3  # the implicit one does not
    r2_exp, _ = m.step_residuals(jnp.stack([hs, hs]), jnp.stack([toks, toks]))  # batched
    np.testing.assert_array_equal(r2_exp[1], r_exp)


def test_implicit_step_solves_the_implicit_equation():
    m = _model(3)
    h = jnp.linspace(-2.0, 2.0, WIDTH)
    for s in (0.5, 8.0):
        z, tok, info = m.implicit_step(h, s, tol=1e-6, max_steps=200)
        assert bool(info.converged)
        assert int(tok) == int(jnp.argmax(m.logits(h)))  # the token is read from h
        eq = z - h - s * m.field(z, m.embed[tok])
        assert float(jnp.linalg.norm(eq) / jnp.linalg.norm(z)) < 1e-4
    _, _, conv, res = m.rollout(jnp.array([0, 4]), 8.0, 4, implicit=True, tol=1e-6)
    assert bool(jnp.all(conv)) and float(jnp.max(res)) < 1e-4
