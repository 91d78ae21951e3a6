"""Sharpness: the top Hessian eigenpair of a loss, warm-startable for tracking inside a
training loop (edge-of-stability analyses compare it with ``2/η``)."""

from collections.abc import Callable

from jaxtyping import Array, Float, PRNGKeyArray, PyTree

from ..linalg import Eigenpairs, top_eigenpairs
from ._operators import hessian_operator


def sharpness(
    loss_fn: Callable[..., Array],
    params: PyTree,
    data: PyTree,
    key: PRNGKeyArray,
    *,
    num_iters: int = 20,
    v0: Float[Array, " n"] | None = None,
    batch_size: int | None = None,
) -> Eigenpairs:
    """Top Hessian eigenpair ``(λ_max, v)`` of the mean loss over ``data``: the quantity
    edge-of-stability analyses compare with ``2/η`` (Cohen et al. 2021).

    Cheap enough to call every few steps inside a jitted training ``lax.scan``:
    ``num_iters`` Hessian-vector products and one compiled Lanczos loop; carry
    ``result.vectors[0]`` as the next call's ``v0`` so the warm start converges in a
    handful of steps. ``result.residuals[0]`` bounds the error of ``λ_max``.
    """
    op = hessian_operator(loss_fn, params, data, batch_size=batch_size)
    return top_eigenpairs(op, op.dim, 1, key, num_iters=num_iters, v0=v0)
