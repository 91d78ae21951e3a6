"""Lipschitz constants of fields in the state: an upper bound from the field's structure
(:meth:`AbstractField.lipschitz_bound`) and a lower bound from sampled Jacobians."""

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from .._typing import Key, VectorField
from ..linalg import jacobian_singular_values, top_singular_value
from ._base import AbstractField


def lipschitz_upper_bound(
    field: AbstractField | VectorField,
    *,
    input_shape: tuple[int, ...] | None = None,
    key: Key | None = None,
    iters: int = 200,
) -> Float[Array, "*blocks"]:
    """Upper bound on ``Lip(f)`` of a block in its state: ``field.lipschitz_bound(...)``.

    - :class:`MLPField`: ``Π ‖W_i‖₂ · Lip(σ)^(#σ)``, exact spectral norms (SVD) of the
      weights, times the activation's constant (:data:`ACTIVATION_LIPSCHITZ`; unknown
      activations are refused) once per hidden layer. With ``time=True`` only the state
      columns of the first weight count.
    - :class:`ConvField`: the operator norm of each 'SAME' convolution on inputs of
      ``input_shape = (channels, *space)`` (required), by ``iters`` power iterations on the
      convolution (``key``, default ``PRNGKey(0)``). Power iteration approaches each norm
      from below, so this bound is as tight as the iteration has converged.
    - :class:`LinearField`: ``‖A‖₂``.

    Stacked blocks (leading axes on every weight, e.g. ``net.blocks``) give one bound per
    block. Other fields raise ``NotImplementedError``; a plain callable, ``TypeError``.
    """
    if not isinstance(field, AbstractField):
        raise TypeError(
            "lipschitz_upper_bound supports MLPField, ConvField and LinearField; got "
            f"{type(field).__name__}."
        )
    return field.lipschitz_bound(input_shape=input_shape, key=key, iters=iters)


def lipschitz_lower_bound(
    field: VectorField,
    xs: Float[Array, "samples ..."],
    *,
    t: float = 0.0,
    key: Key | None = None,
    iters: int = 100,
) -> Float[Array, ""]:
    """Lower bound on ``Lip(f)``: ``max_i ‖J_f(x_i)‖₂`` over the samples ``xs`` (vmapped).

    ``xs`` stacks unbatched states along its first axis; ``f`` is called as
    ``field(t, x, None)``. Dense SVD of each ``J_f(x_i)`` by default; with a ``key``, the
    matrix-free :func:`~terrain_jax.linalg.top_singular_value` (``iters`` power
    iterations), which never overestimates ``‖J_f(x_i)‖₂`` and so still gives a lower
    bound.
    """

    def f(z):
        return field(t, z, None)

    if key is None:
        norms = jax.vmap(lambda x: jacobian_singular_values(f, x)[0])(xs)
    else:
        keys = jax.random.split(key, xs.shape[0])
        norms = jax.vmap(lambda x, k: top_singular_value(f, x, key=k, iters=iters))(xs, keys)
    return jnp.max(norms)
