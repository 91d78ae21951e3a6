"""Curvature of a loss in its parameters as matrix-free operators on flat parameter vectors:
the Hessian, the generalised Gauss–Newton matrix and the Fisher information, each the exact
mean over a dataset (optionally in batches), and the Hessian-vector product under them."""

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree
from jax.typing import DTypeLike
from jaxtyping import Array, ArrayLike, Float, PyTree

from ..data import num_examples, split_batches


class CurvatureOperator(eqx.Module):
    """A symmetric linear map ``v ↦ A v`` on flat parameter vectors (Hessian, GGN, Fisher).

    Callable like the plain ``matvec`` it wraps; ``dim`` and ``dtype`` describe the flat
    vector and ``unravel`` maps one back to the parameter pytree (its inexact-array
    leaves). Build it inside the ``jit`` that uses it: the closure holds the parameters
    and data as traced values, so passing the operator across a ``jit`` boundary would
    bake them in as constants.
    """

    matvec: Callable[[Array], Array]
    unravel: Callable[[Array], PyTree]
    dim: int = eqx.field(static=True)
    dtype: DTypeLike = eqx.field(static=True)

    def __call__(self, v: Float[Array, " n"]) -> Float[Array, " n"]:
        return self.matvec(v)


FISHER_KINDS = ("true", "empirical")


def _split_params(
    params: PyTree,
) -> tuple[Array, Callable[[Array], PyTree], Callable[[Array], PyTree]]:
    """Flat inexact-array leaves of ``params``, their unravel, and flat ↦ full pytree."""
    diff, static = eqx.partition(params, eqx.is_inexact_array)
    flat, unravel = ravel_pytree(diff)
    if flat.size == 0:
        raise ValueError("params has no floating-point array leaves to differentiate.")
    return flat, unravel, lambda f: eqx.combine(unravel(f), static)


def _as_tuple(data: PyTree) -> tuple:
    return data if isinstance(data, tuple) else (data,)


def _data_average(
    apply: Callable[[tuple], Array], data: tuple, batch_size: int, out: Array
) -> Array:
    """``Σ_b (n_b / N) apply(batch_b)`` over contiguous batches of ``data``.

    The ``N // batch_size`` full batches run in one ``lax.scan``; a ragged remainder is one
    more call at its own size. With ``apply`` a mean over its batch this is the mean over
    all ``N`` examples. ``out`` is a zero of ``apply``'s output (sets the carry).
    """
    full, rest, n, bs, n_rest = split_batches(data, batch_size)

    def body(acc, batch):
        return acc + apply(batch), None

    total, _ = jax.lax.scan(body, out, full)
    total = total * (bs / n)
    if rest is not None:
        total = total + apply(rest) * (n_rest / n)
    return total


def _operator(
    prepare: Callable[[tuple], Callable[[Array], Array]],
    flat: Array,
    unravel: Callable[[Array], PyTree],
    data: tuple,
    batch_size: int | None,
) -> CurvatureOperator:
    """``v ↦ mean over data of A_b v`` from ``prepare(batch) -> (v ↦ A_b v)``.

    ``prepare`` runs inside every product: the forward pass is recomputed each time
    rather than linearised once and stored. On CPU that measured faster (90 Hessian
    products of a 9.6k-parameter MLP on 1,437 digits: 0.12 s recomputed vs 0.16 s
    through a stored ``jax.linearize``), and memory stays at one batch's activations.
    """
    n = num_examples(data)
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer or None; got {batch_size}.")
    if batch_size is None or batch_size >= n:

        def matvec(v):
            return prepare(data)(v)

    else:
        zero = jnp.zeros_like(flat)

        def matvec(v):
            return _data_average(lambda b: prepare(b)(v), data, batch_size, zero)

    return CurvatureOperator(matvec, unravel, flat.size, flat.dtype)


def hvp(loss_fn: Callable[..., Array], params: PyTree, v: PyTree, *data: PyTree) -> PyTree:
    """Hessian-vector product ``∇²_θ L(θ) v`` of ``L = loss_fn(params, *data)``.

    Forward-over-reverse (``jvp`` of ``grad``): one forward and one backward pass in
    forward-mode tangents, about the cost of two gradients. ``params`` may be any pytree
    or ``eqx.Module``; only its inexact-array leaves are differentiated, and ``v`` has the
    structure ``eqx.filter(params, eqx.is_inexact_array)`` (the result has it too).
    """
    diff, static = eqx.partition(params, eqx.is_inexact_array)

    def grad(d):
        return jax.grad(lambda dd: loss_fn(eqx.combine(dd, static), *data))(d)

    return jax.jvp(grad, (diff,), (v,))[1]


def hessian_operator(
    loss_fn: Callable[..., Array],
    params: PyTree,
    data: PyTree,
    *,
    batch_size: int | None = None,
) -> CurvatureOperator:
    """The Hessian of the mean loss over ``data`` as an operator on flat parameters.

    ``loss_fn(params, *batch)`` must be the *mean* loss over the examples of ``batch``
    (``data`` is a tuple of arrays sharing a leading example axis, or one array). With
    ``batch_size`` the product is ``Σ_b (n_b/N) H_b v`` over contiguous batches, full
    ones in a ``lax.scan`` and a ragged last one at its own size, which equals the
    full-data Hessian; memory is one batch's. Each product is forward-over-reverse
    (:func:`hvp`), about two gradients' cost.
    """
    data = _as_tuple(data)
    flat, unravel, rebuild = _split_params(params)

    def prepare(batch):
        return lambda v: hvp(lambda f, *b: loss_fn(rebuild(f), *b), flat, v, *batch)

    return _operator(prepare, flat, unravel, data, batch_size)


def gauss_newton_operator(
    model_fn: Callable[[PyTree, Array], Array],
    loss_fn: Callable[[Array, Array], Array],
    params: PyTree,
    data: tuple[ArrayLike, ArrayLike],
    *,
    batch_size: int | None = None,
) -> CurvatureOperator:
    """Generalised Gauss–Newton ``G = J_outᵀ H_out J_out`` of ``loss_fn(model_fn(θ, x), y)``.

    ``model_fn(params, x)`` maps a batch of inputs to outputs; ``loss_fn(outputs, y)`` is
    the mean loss over the batch and ``H_out`` its Hessian in the outputs, so ``G`` is the
    Hessian with the second-derivative-of-the-model term dropped: positive semi-definite
    for convex ``loss_fn``, equal to the Hessian for a model linear in ``θ``. One jvp,
    one output-space HVP and one vjp per product. ``data = (x, y)``; batching as in
    :func:`hessian_operator`.
    """
    x, y = data
    flat, unravel, rebuild = _split_params(params)

    def prepare(batch):
        xb, yb = batch
        out, jvp = jax.linearize(lambda f: model_fn(rebuild(f), xb), flat)
        vjp = jax.linear_transpose(jvp, flat)
        h_out = jax.linearize(jax.grad(lambda o: loss_fn(o, yb)), out)[1]
        return lambda v: vjp(h_out(jvp(v)))[0]

    return _operator(prepare, flat, unravel, (x, y), batch_size)


def fisher_operator(
    model_fn: Callable[[PyTree, Array], Array],
    params: PyTree,
    data: tuple[ArrayLike, ArrayLike],
    *,
    kind: str = "true",
    batch_size: int | None = None,
) -> CurvatureOperator:
    """Fisher information of a softmax classifier, averaged over the examples of ``data``.

    ``model_fn(params, x)`` returns logits ``(B, classes)``; ``y`` holds integer labels.
    With scores ``g_c = ∇_θ log p(c | x) = J_outᵀ (e_c − p)``:

    - ``kind="true"``: ``F = mean_x Σ_c p_c g_c g_cᵀ`` (labels drawn from the model);
      for softmax cross-entropy this equals the Gauss–Newton matrix;
    - ``kind="empirical"``: ``F = mean_x g_y g_yᵀ`` at the data labels ``y`` (rank ≤ N;
      not a curvature matrix in general, kept because optimisers and papers use it).

    Each product is one jvp, a per-example ``classes × classes`` contraction and one vjp.
    """
    if kind not in FISHER_KINDS:
        raise ValueError(f"Unknown Fisher kind {kind!r}; valid kinds: {', '.join(FISHER_KINDS)}.")
    x, y = data
    flat, unravel, rebuild = _split_params(params)

    def prepare(batch):
        xb, yb = batch
        logits, jvp = jax.linearize(lambda f: model_fn(rebuild(f), xb), flat)
        vjp = jax.linear_transpose(jvp, flat)
        p = jax.nn.softmax(logits, axis=-1)
        eye = jnp.eye(p.shape[-1], dtype=p.dtype)
        scale = 1.0 / p.shape[0]

        def matvec(v):
            r = jvp(v)  # (B, C): J_out v
            if kind == "empirical":
                d = eye[yb] - p  # (B, C): e_y − p
                cot = d * jnp.sum(d * r, axis=-1, keepdims=True)
            else:
                d = eye[None] - p[:, None, :]  # (B, C, C): row c is e_c − p
                s = jnp.einsum("bcd,bd->bc", d, r)
                cot = jnp.einsum("bc,bc,bcd->bd", p, s, d)
            return vjp(cot * scale)[0]

        return matvec

    return _operator(prepare, flat, unravel, (x, y), batch_size)
