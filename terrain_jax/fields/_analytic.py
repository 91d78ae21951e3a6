"""Fields with closed forms or structure: linear (with its exact flow), gradient flows of a
potential, (damped) Hamiltonian flows, and the Van der Pol oscillator."""

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.scipy.linalg
import jax.tree_util as jtu
from jaxtyping import Array, ArrayLike, Float, PyTree

from .._typing import Args, Key, ScalarLike, State
from ._base import AbstractField, no_lipschitz_bound
from ._init import spectral_norm


class LinearField(AbstractField):
    """``f(t, y) = A y``: the flow is ``expm(tA) y0`` (:meth:`exact_flow`), the reference
    for every solver test."""

    A: Float[Array, "n n"]

    def __init__(self, A: Float[ArrayLike, "n n"]):
        self.A = jnp.asarray(A)

    def __call__(
        self, t: ScalarLike, y: Float[Array, "*batch n"], args: Args = None
    ) -> Float[Array, "*batch n"]:
        return y @ self.A.T

    def exact_flow(
        self, t: ScalarLike, y0: Float[ArrayLike, "*batch n"]
    ) -> Float[Array, "*batch n"]:
        """The exact solution ``y(t) = expm(tA) y0`` (rows of a batch ``(..., n)`` each)."""
        return jnp.asarray(y0) @ jax.scipy.linalg.expm(t * self.A).T

    def lipschitz_bound(
        self,
        *,
        input_shape: tuple[int, ...] | None = None,
        key: Key | None = None,
        iters: int = 200,
    ) -> Float[Array, "*blocks"]:
        """``‖A‖₂`` (exact, by SVD; one per block for stacked fields)."""
        return spectral_norm(self.A)


class GradientField(AbstractField):
    """Gradient flow ``f(t, y) = -∇L(y)`` of a scalar potential ``L`` over any pytree ``y``.

    Explicit Euler on this field with step ``η`` is gradient descent with learning rate ``η``.
    ``potential`` is called as ``potential(y)``, or ``potential(y, args)`` when
    ``takes_args=True``.
    """

    potential: Callable  # a pytree: a Terrain (an eqx.Module holding arrays) is fine
    takes_args: bool = eqx.field(static=True, default=False)

    def __call__(self, t: ScalarLike, y: State, args: Args = None) -> State:
        fn = (lambda z: self.potential(z, args)) if self.takes_args else self.potential
        return jtu.tree_map(jnp.negative, jax.grad(fn)(y))

    def lipschitz_bound(self, **kwargs: object) -> Float[Array, "*blocks"]:
        """Not available: ``Lip(∇L)`` is a property of the potential (its top curvature)."""
        raise no_lipschitz_bound(self)


class HamiltonianField(AbstractField):
    """Hamilton's equations for ``H(q, p)`` on the state ``(q, p)``, with optional damping.

    ``dq/dt = ∂H/∂p``, ``dp/dt = -∂H/∂q - γ ∂H/∂p``. With ``H = ½‖p‖² + L(q)`` and
    ``γ > 0`` this is the heavy-ball flow: energy ``H`` decreases at rate ``γ‖p‖²``.
    """

    hamiltonian: Callable
    damping: float | Array = 0.0

    def __call__(
        self, t: ScalarLike, y: tuple[PyTree, PyTree], args: Args = None
    ) -> tuple[PyTree, PyTree]:
        q, p = y
        dHdq, dHdp = jax.grad(self.hamiltonian, argnums=(0, 1))(q, p)
        dq = dHdp
        dp = jtu.tree_map(lambda a, b: -a - self.damping * b, dHdq, dHdp)
        return dq, dp

    def lipschitz_bound(self, **kwargs: object) -> Float[Array, "*blocks"]:
        """Not available: the bound is a property of the Hamiltonian's curvature."""
        raise no_lipschitz_bound(self)


class VanDerPolField(AbstractField):
    """The Van der Pol oscillator ``y₁' = y₂``, ``y₂' = μ(1 − y₁²)y₂ − y₁`` on ``(..., 2)``.

    Stiff for large ``μ``: on the slow phases the Jacobian (:meth:`jacobian`) has an
    eigenvalue near ``μ(1 − y₁²)``, about ``−3μ`` when ``y₁ ≈ 2``.
    """

    mu: float | Array

    def __call__(
        self, t: ScalarLike, y: Float[Array, "*batch 2"], args: Args = None
    ) -> Float[Array, "*batch 2"]:
        y1, y2 = y[..., 0], y[..., 1]
        return jnp.stack([y2, self.mu * (1.0 - y1**2) * y2 - y1], axis=-1)

    def jacobian(self, y: Float[ArrayLike, "*batch 2"]) -> Float[Array, "*batch 2 2"]:
        """The analytic Jacobian ``∂f/∂y`` at states ``y`` (each row of a batch)."""
        y = jnp.asarray(y)
        y1, y2 = y[..., 0], y[..., 1]
        top = jnp.stack([jnp.zeros_like(y1), jnp.ones_like(y1)], axis=-1)
        bottom = jnp.stack([-2.0 * self.mu * y1 * y2 - 1.0, self.mu * (1.0 - y1**2)], axis=-1)
        return jnp.stack([top, bottom], axis=-2)

    def lipschitz_bound(self, **kwargs: object) -> Float[Array, "*blocks"]:
        """Not available: the field is not globally Lipschitz (its Jacobian grows with ``y``)."""
        raise no_lipschitz_bound(self)
