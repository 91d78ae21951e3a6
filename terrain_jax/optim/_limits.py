"""Continuous-time limits of the walking styles, as fields ``f(t, y, args)``.

Each plugs into :func:`terrain_jax.integrate`: :func:`gradient_flow` (the ``η → 0`` limit
of gradient descent), :func:`heavy_ball` (momentum: a damped Hamiltonian flow) and
:func:`nesterov_ode` (Su, Boyd & Candès' limit of Nesterov's method).
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp
import jax.tree_util as jtu
from jaxtyping import Array, Float

from .._typing import Args, Key, Params, Scalar, ScalarLike, State
from ..fields import AbstractField, GradientField

__all__ = ["gradient_flow", "HeavyBallField", "heavy_ball", "NesterovODEField", "nesterov_ode"]

Loss = Callable[[Params], Scalar]


def _no_bound(field: AbstractField) -> NotImplementedError:
    return NotImplementedError(
        f"{type(field).__name__} has no structural Lipschitz bound: it depends on the loss's "
        "curvature; bound it with terrain_jax.lipschitz_lower_bound or a sharpness estimate."
    )


def gradient_flow(loss: Loss) -> GradientField:
    """The field ``ẋ = −∇L(x)``: the ``η → 0`` limit of gradient descent.

    Explicit Euler on it with step ``η`` is exactly :func:`~terrain_jax.walk` with ``"sgd"``
    and learning rate ``η``; GD stays within ``O(η)`` of this flow at times ``t = kη``.
    """
    return GradientField(loss)


class HeavyBallField(AbstractField):
    """Damped Hamiltonian flow on ``(x, p)``: ``ẋ = p``, ``ṗ = −γ p − ∇L(x)``.

    The continuous limit of momentum; ``H = ½‖p‖² + L(x)`` (:meth:`energy`) decreases at
    rate ``dH/dt = −γ‖p‖²``.
    """

    loss: Callable
    damping: float | Array

    def __call__(
        self, t: ScalarLike, y: tuple[State, State], args: Args = None
    ) -> tuple[State, State]:
        x, p = y
        g = jax.grad(self.loss)(x)
        return p, jtu.tree_map(lambda pi, gi: -self.damping * pi - gi, p, g)

    def lipschitz_bound(
        self,
        *,
        input_shape: tuple[int, ...] | None = None,
        key: Key | None = None,
        iters: int = 200,
    ) -> Float[Array, ""]:
        """Not available: the bound rests on ``Lip(∇L)``, the loss's top curvature."""
        raise _no_bound(self)

    def energy(self, y: tuple[State, State]) -> Float[Array, ""]:
        """``H(x, p) = ½‖p‖² + L(x)`` of one state; ``jax.vmap(field.energy)(traj.ys)``
        for a saved trajectory."""
        x, p = y
        kinetic = 0.5 * sum(jnp.sum(a * a) for a in jtu.tree_leaves(p))
        return kinetic + self.loss(x)


def heavy_ball(loss: Loss, damping: float | Array) -> HeavyBallField:
    """The heavy-ball field (see :class:`HeavyBallField`) with friction ``damping = γ``."""
    return HeavyBallField(loss, damping)


class NesterovODEField(AbstractField):
    """``ẍ + (3/t) ẋ + ∇L(x) = 0`` as a first-order field on ``(x, v)``.

    Su, Boyd & Candès' continuous limit of Nesterov's accelerated gradient. The friction
    ``3/t`` is singular at ``t = 0``: integrate from some ``t0 > 0`` (e.g. ``1e-3`` with
    ``v = 0``); at ``t = 0`` the field returns NaN.
    """

    loss: Callable

    def __call__(
        self, t: ScalarLike, y: tuple[State, State], args: Args = None
    ) -> tuple[State, State]:
        x, v = y
        g = jax.grad(self.loss)(x)
        return v, jtu.tree_map(lambda vi, gi: -(3.0 / t) * vi - gi, v, g)

    def lipschitz_bound(
        self,
        *,
        input_shape: tuple[int, ...] | None = None,
        key: Key | None = None,
        iters: int = 200,
    ) -> Float[Array, ""]:
        """Not available: the bound rests on ``Lip(∇L)`` and on the friction ``3/t``."""
        raise _no_bound(self)


def nesterov_ode(loss: Loss) -> NesterovODEField:
    """The Nesterov ODE field (see :class:`NesterovODEField`); start at ``t0 > 0``."""
    return NesterovODEField(loss)
