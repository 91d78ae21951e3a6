"""Classification losses and accuracies of models called on a batch."""

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array, ArrayLike, Bool, Float, Int, PyTree, Shaped

__all__ = ["cross_entropy", "ce_loss", "accuracy", "masked_accuracy"]

Apply = Callable[[PyTree, Array], Array]


def cross_entropy(
    logits: Float[Array, "*batch classes"], labels: Int[ArrayLike, "*batch"]
) -> Float[Array, ""]:
    """Mean softmax cross-entropy of integer ``labels``."""
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, jnp.asarray(labels)))


def ce_loss(
    model: Callable[[Array], Array], xb: Shaped[Array, "batch ..."], yb: Int[Array, " batch"]
) -> Float[Array, ""]:
    """Mean cross-entropy of ``model(xb)``'s logits: the ``loss_fn(model, xb, yb)`` of
    :func:`~terrain_jax.train.fit` for a classifier called on a batch."""
    return cross_entropy(model(xb), yb)


@eqx.filter_jit
def masked_accuracy(
    model: Callable[..., Array],
    x: Shaped[Array, "n ..."],
    y: Int[Array, " n"],
    masks: Bool[Array, "masks depth"],
) -> Float[Array, " masks"]:
    """Accuracy of ``model(x, mask=m)`` for each row ``m`` of ``masks`` (which layers of a
    depth net to keep), one compiled ``lax.map`` over masks: a lesion study's scores."""

    def one(m):
        pred = jnp.argmax(model(x, mask=m), axis=-1)
        return jnp.mean((pred == y).astype(jnp.float32))

    return jax.lax.map(one, masks)


@eqx.filter_jit
def _count_correct(
    model: PyTree, xb: Array, yb: Array, mask: Array, apply: Apply
) -> Int[Array, ""]:
    def one(inp):
        xi, yi, mi = inp
        pred = jnp.argmax(apply(model, xi), axis=-1)
        return jnp.sum((pred == yi) & mi)

    return jnp.sum(jax.lax.map(one, (xb, yb, mask)))


def accuracy(
    model: PyTree,
    x: Shaped[ArrayLike, "n ..."],
    y: Int[ArrayLike, " n"],
    *,
    batch_size: int = 1024,
    apply: Apply | None = None,
) -> float:
    """Fraction of rows whose ``argmax`` logit equals the label, in batches of
    ``batch_size`` (one compiled ``lax.map``). The model is called on a batch,
    ``model(xb)``, as every net in terrain_jax is; pass ``apply(model, xb)`` otherwise
    (e.g. ``lambda m, xb: jax.vmap(m)(xb)`` for a per-example module)."""
    x, y = jnp.asarray(x), jnp.asarray(y)
    n = x.shape[0]
    if n == 0:
        raise ValueError("accuracy of an empty set is undefined.")
    bs = max(1, min(int(batch_size), n))
    nb = -(-n // bs)
    pad = nb * bs - n
    xp = jnp.concatenate([x, jnp.zeros((pad,) + x.shape[1:], x.dtype)])
    yp = jnp.concatenate([y, jnp.zeros((pad,), y.dtype)])
    mask = jnp.arange(nb * bs) < n
    shape = (nb, bs)
    correct = _count_correct(
        model,
        xp.reshape(shape + x.shape[1:]),
        yp.reshape(shape),
        mask.reshape(shape),
        apply if apply is not None else _call,
    )
    return float(correct) / n


def _call(model: Callable[[Array], Array], xb: Array) -> Array:
    return model(xb)
