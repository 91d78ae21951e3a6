"""A residual recurrent next-token model whose generation step is an Euler step of its state.

``logits_t = R h_t + c`` predicts ``x_{t+1}``, and ``h_{t+1} = h_t + F(h_t, E x_{t+1})`` with
``F(h, e) = −λ ⊙ h + W_2 tanh(W_1 [h; e] + b_1) + b_2`` and a learned leak
``λ = softplus(·) > 0`` (a leaky residual RNN): the single-stream reduction of a GPT's
residual stream. Generating, the token is read out of the current state, so one generated
token is one **explicit** Euler step of the autonomous field ``G(h) = F(h, E x(h))``
(:meth:`ResidualLM.explicit_step`); the implicit Euler step of the same state equation
needs a fixed-point solve (:meth:`ResidualLM.implicit_step`).
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jaxtyping import Array, Bool, Float, Int

from ..fixed_point import FixedPointInfo, fixed_point

__all__ = ["ResidualLM"]


class ResidualLM(eqx.Module):
    """``logits_t = R h_t + c`` (predicts ``x_{t+1}``); ``h_{t+1} = h_t + F(h_t, E x_{t+1})``.

    ``F(h, e) = −λ ⊙ h + W_2 tanh(W_1 [h; e] + b_1) + b_2`` (:meth:`field`) with the leak
    rates ``λ = softplus(leak)`` (:meth:`decay`), ``leak`` per state coordinate at init.
    The leak makes step-size stability a question: without it ``F`` is bounded and no
    update can do more than drift linearly. Weights are drawn with NumPy from ``seed``
    (a handful of arrays: no per-array compilation of a JAX PRNG kernel).
    """

    embed: Float[Array, "vocab width"]
    w1: Float[Array, "hidden two_width"]
    b1: Float[Array, " hidden"]
    w2: Float[Array, "width hidden"]
    b2: Float[Array, " width"]
    readout: Float[Array, "vocab width"]
    readout_b: Float[Array, " vocab"]
    h0: Float[Array, " width"]
    leak: Float[Array, " width"]

    def __init__(self, vocab: int, width: int, hidden: int, *, seed: int, leak: float = 0.5):
        rng = np.random.default_rng(seed)

        def normal(shape, scale):
            return jnp.asarray(scale * rng.standard_normal(shape), jnp.float32)

        self.embed = normal((vocab, width), 1.0)
        self.w1 = normal((hidden, 2 * width), 1 / np.sqrt(2 * width))
        self.b1 = jnp.zeros((hidden,))
        self.w2 = normal((width, hidden), 0.5 / np.sqrt(hidden))
        self.b2 = jnp.zeros((width,))
        self.readout = normal((vocab, width), 1 / np.sqrt(width))
        self.readout_b = jnp.zeros((vocab,))
        self.h0 = jnp.zeros((width,))
        self.leak = jnp.full((width,), float(np.log(np.expm1(leak))))  # softplus⁻¹(leak)

    def decay(self) -> Float[Array, " width"]:
        """The learned leak rates ``λ = softplus(leak) > 0``."""
        return jax.nn.softplus(self.leak)

    def field(self, h: Float[Array, " width"], e: Float[Array, " width"]) -> Float[Array, " width"]:
        """The increment ``F(h, e) = −λ ⊙ h + W_2 tanh(W_1 [h; e] + b_1) + b_2``."""
        mlp = self.w2 @ jnp.tanh(self.w1 @ jnp.concatenate([h, e]) + self.b1) + self.b2
        return mlp - self.decay() * h

    def logits(self, h: Float[Array, " width"]) -> Float[Array, " vocab"]:
        """``R h + c``: the scores of the next token read out of the state ``h``."""
        return self.readout @ h + self.readout_b

    def __call__(self, tokens: Int[Array, " seq"]) -> Float[Array, "seq vocab"]:
        """Teacher-forced logits: row ``t`` predicts ``tokens[t]`` from ``h_t``."""

        def step(h, tok):
            return h + self.field(h, self.embed[tok]), self.logits(h)

        _, logits = lax.scan(step, self.h0, tokens)
        return logits

    def prompt_state(self, prompt: Int[Array, " p"]) -> Float[Array, " width"]:
        """The state after teacher-forcing the (short, statically unrolled) ``prompt``."""
        h = self.h0
        for i in range(prompt.shape[0]):
            h = h + self.field(h, self.embed[prompt[i]])
        return h

    def explicit_step(
        self, h: Float[Array, " width"], s: float | Array
    ) -> tuple[Float[Array, " width"], Int[Array, ""]]:
        """The model's generation step: read ``x(h) = argmax``, then ``h + s F(h, E x)``."""
        tok = jnp.argmax(self.logits(h))
        return h + s * self.field(h, self.embed[tok]), tok

    def implicit_step(
        self,
        h: Float[Array, " width"],
        s: float | Array,
        *,
        tol: float = 1e-5,
        max_steps: int = 100,
        memory: int = 8,
    ) -> tuple[Float[Array, " width"], Int[Array, ""], FixedPointInfo]:
        """Implicit Euler for the state: solve ``h' = h + s F(h', E x(h))`` (token read from
        ``h``); returns ``(h', token, info)``.

        Solved as ``h' = (h + s MLP(h')) / (1 + sλ)`` (an exact rearrangement) by Anderson
        (``memory``, relative residual ``tol``), started from ``h``.
        """
        tok = jnp.argmax(self.logits(h))
        e = self.embed[tok]

        def g(z, args):
            # z = h + s(MLP(z) − λz)  ⇔  z = (h + s MLP(z)) / (1 + sλ): the same equation with
            # the linear leak moved to the left, so the iteration map stays tame as s grows
            hh, ss, ee = args
            lam = self.decay()
            return (hh + ss * (self.field(z, ee) + lam * z)) / (1 + ss * lam)

        args = (h, jnp.asarray(s, h.dtype), e)
        z, info = fixed_point(
            g, h, args, solver="anderson", tol=tol, max_steps=max_steps, memory=memory
        )
        return z, tok, info

    def rollout(
        self,
        prompt: Int[Array, " p"],
        s: float | Array,
        steps: int,
        *,
        implicit: bool = False,
        **solve: float | int,
    ) -> tuple[Float[Array, "times width"], Int[Array, " gen"], Bool[Array, " gen"], Array]:
        """Generate ``steps`` tokens after ``prompt`` with step scale ``s``.

        Returns the states ``h_p … h_{p+steps}``, the tokens, and per step whether the
        implicit solve converged and the residual of ``h' = h + s F(h', e)`` relative to
        ``‖h'‖`` (``True`` and ``0`` for explicit steps). ``solve``: keywords of
        :meth:`implicit_step`.
        """
        h = self.prompt_state(prompt)

        def body(h, _):
            if implicit:
                h_new, tok, info = self.implicit_step(h, s, **solve)
                eq = h_new - h - s * self.field(h_new, self.embed[tok])
                conv, res = info.converged, jnp.linalg.norm(eq) / (jnp.linalg.norm(h_new) + 1e-8)
            else:
                h_new, tok = self.explicit_step(h, s)
                conv, res = jnp.ones((), bool), jnp.zeros((), h.dtype)
            return h_new, (h_new, tok, conv, res)

        _, (hs, toks, conv, res) = lax.scan(body, h, None, length=steps)
        return jnp.concatenate([h[None], hs]), toks, conv, res

    def step_residuals(
        self, hs: Float[Array, "*batch times width"], toks: Int[Array, "*batch steps"]
    ) -> tuple[Float[Array, "*batch steps"], Float[Array, "*batch steps"]]:
        """Which Euler equation do the steps ``h_t → h_{t+1}`` (token ``x_{t+1}``) satisfy?

        The residual of the explicit equation ``h_{t+1} = h_t + F(h_t, E x_{t+1})``
        relative to ``‖h_{t+1}‖`` (round-off scale; ``‖Δh‖`` can be tiny), and of the
        implicit one ``h_{t+1} = h_t + F(h_{t+1}, E x_{t+1})`` relative to the step
        ``‖h_{t+1} − h_t‖`` (how far the step misses it).
        """
        h, h_next = hs[..., :-1, :], hs[..., 1:, :]
        e = self.embed[toks]
        f = self.field
        for _ in range(toks.ndim):
            f = jax.vmap(f)
        d = jnp.linalg.norm(h_next - h, axis=-1)
        n = jnp.linalg.norm(h_next, axis=-1)
        r_exp = jnp.linalg.norm(h_next - h - f(h, e), axis=-1) / n
        r_imp = jnp.linalg.norm(h_next - h - f(h_next, e), axis=-1) / d
        return r_exp, r_imp
