"""Walking styles with a geometry: mirror descent, projected GD, natural gradient.

Each is an ``optax.GradientTransformation`` that needs the current params (optax's third
``update`` argument): the step depends on where the walker stands, not only on the
gradient. Mirror descent and projected GD walk the probability simplex (last axis);
natural gradient preconditions by a metric evaluated at the params.
"""

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.flatten_util import ravel_pytree
from jaxtyping import Array, Float

from .._typing import Params
from ..geometry import project_simplex

__all__ = ["mirror_descent", "projected_gd", "natural_gradient", "NaturalGradientState"]


def _need_params(params: Params | None, name: str) -> None:
    if params is None:
        raise ValueError(
            f"{name} needs the current params: call `update(grads, state, params)` "
            "(optax passes them as the third argument)."
        )


def mirror_descent(learning_rate: float | Array) -> optax.GradientTransformation:
    """Mirror descent with the negative-entropy mirror map (exponentiated gradient).

    Each leaf of ``params`` is a probability vector (last axis; strictly positive):
    ``p ← p · exp(−η g) / Z``. The update returned is ``p_new − p`` so that
    ``optax.apply_updates`` gives ``p_new``; iterates stay on the open simplex for any ``η``.
    """

    def init_fn(params: Params) -> optax.EmptyState:
        del params
        return optax.EmptyState()

    def update_fn(updates: Params, state: optax.EmptyState, params: Params | None = None):
        _need_params(params, "mirror_descent")

        def step(g: Array, p: Array) -> Array:
            p_new = jax.nn.softmax(jnp.log(p) - learning_rate * g, axis=-1)
            return p_new - p

        return jax.tree.map(step, updates, params), state

    return optax.GradientTransformation(init_fn, update_fn)


def projected_gd(learning_rate: float | Array) -> optax.GradientTransformation:
    """Projected gradient descent on the simplex: ``p ← Π(p − η g)`` (Euclidean projection).

    Each leaf of ``params`` is a probability vector along its last axis. Unlike
    :func:`mirror_descent`, iterates can land on the simplex boundary (zero entries).
    """

    def init_fn(params: Params) -> optax.EmptyState:
        del params
        return optax.EmptyState()

    def update_fn(updates: Params, state: optax.EmptyState, params: Params | None = None):
        _need_params(params, "projected_gd")

        def step(g: Array, p: Array) -> Array:
            return project_simplex(p - learning_rate * g) - p

        return jax.tree.map(step, updates, params), state

    return optax.GradientTransformation(init_fn, update_fn)


class NaturalGradientState(NamedTuple):
    """Natural gradient keeps no state; the metric is recomputed at each step's params."""


def natural_gradient(
    learning_rate: float | Array,
    metric_fn: Callable[[Params], Float[Array, "n n"]],
    damping: float = 0.0,
) -> optax.GradientTransformation:
    """Natural gradient descent: ``θ ← θ − η G(θ)⁺ g`` with ``G`` a metric at the params.

    ``metric_fn(params)`` returns the ``(n, n)`` metric for the params flattened with
    ``jax.flatten_util.ravel_pytree`` (for one vector: just that vector). ``G + damping·I``
    is inverted with a Hermitian pseudo-inverse, so a singular metric is fine when the
    gradient lies in its range. The categorical case: parametrise by logits ``θ`` with
    ``p = softmax θ`` and pass ``lambda θ: fisher_categorical(jax.nn.softmax(θ))``; the
    gradient of any ``L(softmax θ)`` sums to zero, i.e. it is orthogonal to the null vector
    ``1`` of ``diag(p) − ppᵀ``, so the step is well defined. For ``L = KL(t ‖ softmax θ)``
    the Fisher metric equals the Hessian at the optimum, so ``η = 1`` is a Newton step there.
    """

    def init_fn(params: Params) -> NaturalGradientState:
        del params
        return NaturalGradientState()

    def update_fn(updates: Params, state: NaturalGradientState, params: Params | None = None):
        _need_params(params, "natural_gradient")
        flat_g, unravel = ravel_pytree(updates)
        flat_p, _ = ravel_pytree(params)
        G = metric_fn(params)
        n = flat_p.shape[0]
        if G.shape != (n, n):
            raise ValueError(
                f"metric_fn must return an ({n}, {n}) matrix for {n} flattened params; "
                f"got shape {G.shape}."
            )
        G = G + damping * jnp.eye(n, dtype=G.dtype)
        direction = jnp.linalg.pinv(G, hermitian=True) @ flat_g
        return unravel(-learning_rate * direction), state

    return optax.GradientTransformation(init_fn, update_fn)
