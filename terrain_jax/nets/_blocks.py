"""The blocks a depth net stacks: MLP or convolutional fields, and the highway gate."""

from typing import TypeAlias

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from ..fields import ConvField, MLPField

BLOCK_KINDS = ("mlp", "conv1d", "conv2d")

Block: TypeAlias = MLPField | ConvField
"""One block of a depth net (or a stack of them, array leaves with a leading depth axis)."""


def make_block(
    kind: str,
    width: int,
    hidden: int,
    key: PRNGKeyArray,
    *,
    activation: str = "tanh",
    init: str = "uniform",
    zero_last: bool = False,
    kernel_size: int = 3,
) -> Block:
    """One block ``width -> hidden -> width`` of ``kind`` (see :func:`make_blocks`)."""
    if kind == "mlp":
        return MLPField(
            width, hidden, key=key, activation=activation, init=init, zero_last=zero_last
        )
    if kind in ("conv1d", "conv2d"):
        return ConvField(
            width,
            hidden,
            key=key,
            dims=1 if kind == "conv1d" else 2,
            kernel_size=kernel_size,
            activation=activation,
            init=init,
            zero_last=zero_last,
        )
    raise ValueError(f"Unknown block kind {kind!r}; valid names are: {', '.join(BLOCK_KINDS)}.")


def make_blocks(
    kind: str,
    width: int,
    hidden: int,
    depth: int,
    *,
    key: PRNGKeyArray,
    activation: str = "tanh",
    init: str = "uniform",
    zero_last: bool = False,
    kernel_size: int = 3,
) -> Block:
    """``depth`` independent blocks stacked into one pytree (leading axis ``depth``).

    ``kind`` is ``mlp`` (an :class:`MLPField` ``width -> hidden -> width``), ``conv1d``
    or ``conv2d`` (a :class:`ConvField` with ``width`` channels and ``hidden`` hidden
    channels). Stacked blocks are what lets a net run its layers with ``lax.scan``:
    compile time does not grow with depth.
    """
    kw = dict(activation=activation, init=init, zero_last=zero_last, kernel_size=kernel_size)
    return eqx.filter_vmap(lambda k: make_block(kind, width, hidden, k, **kw))(
        jax.random.split(key, depth)
    )


def depth_blocks(
    kind: str,
    width: int,
    hidden: int,
    depth: int,
    *,
    key: PRNGKeyArray,
    tied: bool,
    activation: str,
    init: str,
    zero_last: bool,
    kernel_size: int,
) -> Block:
    """The blocks of a depth net: one block used at every layer (``tied``) or ``depth``
    stacked ones."""
    kw = dict(activation=activation, init=init, zero_last=zero_last, kernel_size=kernel_size)
    if tied:
        return make_block(kind, width, hidden, key, **kw)
    return make_blocks(kind, width, hidden, depth, key=key, **kw)


def shared_blocks(
    kind: str,
    width: int,
    hidden: int,
    depth: int,
    *,
    key: PRNGKeyArray,
    activation: str = "relu",
    kernel_size: int = 3,
    gains: tuple[float, float] = (2.0, 1.0),
) -> Block:
    """Stacked blocks ``f(x) = W_2 σ(W_1 x + b_1) + b_2`` (MLP or conv), Gaussian weights of
    variance ``gains[i] / fan_in``: He (``2``) before the ReLU, LeCun (``1``) after it, so
    that one block maps a unit-variance input to a unit-variance output.

    That is the variance-preserving choice for the plain net ``x ← f(x)``; pass the same
    arrays to a :class:`PlainNet` and a :class:`ResidualNet` (``blocks=``) and the two nets
    start from identical parameters, differing only by the identity path.
    """
    blocks = make_blocks(
        kind,
        width,
        hidden,
        depth,
        key=key,
        activation=activation,
        init="lecun",
        kernel_size=kernel_size,
    )
    # lecun = N(0, 1/fan_in); rescale each weight layer to the requested gain
    leaves_name = "weights" if kind == "mlp" else "kernels"
    ws = getattr(blocks, leaves_name)
    new = [w * np.sqrt(g) for w, g in zip(ws, gains, strict=True)]
    return eqx.tree_at(lambda b: getattr(b, leaves_name), blocks, new)


def gate_axis(kind: str) -> int:
    """The feature axis a :class:`Gate` acts on for blocks of ``kind``: the last axis for
    MLP blocks, the channel axis ``-(dims + 1)`` for convolutional ones."""
    return -1 if kind == "mlp" else -(2 if kind == "conv1d" else 3)


class Gate(eqx.Module):
    """Highway transform gate ``T(x) = sigmoid(W x + b)`` along the feature axis.

    For MLP blocks the feature axis is the last one; for convolutional blocks it is the
    channel axis (a 1×1 convolution), ``axis = -(dims + 1)``.
    """

    weight: Float[Array, "width width"]
    bias: Float[Array, " width"]
    axis: int = eqx.field(static=True)

    def __init__(self, width: int, *, key: PRNGKeyArray, bias: float = -1.0, axis: int = -1):
        lim = 1.0 / jnp.sqrt(width)
        self.weight = jax.random.uniform(key, (width, width), minval=-lim, maxval=lim)
        self.bias = jnp.full((width,), bias, dtype=jnp.result_type(float))
        self.axis = axis

    def __call__(self, x: Float[Array, "*batch"]) -> Float[Array, "*batch"]:
        z = jnp.moveaxis(x, self.axis, -1)
        z = jax.nn.sigmoid(z @ self.weight.T + self.bias)
        return jnp.moveaxis(z, -1, self.axis)


def make_gates(
    width: int, depth: int, *, key: PRNGKeyArray, bias: float = -1.0, axis: int = -1
) -> Gate:
    """``depth`` independent highway :class:`Gate` s stacked into one pytree (leading axis
    ``depth``), from ``jax.random.split(key, depth)``, as :func:`make_blocks` stacks fields."""
    return eqx.filter_vmap(lambda k: Gate(width, key=k, bias=bias, axis=axis))(
        jax.random.split(key, depth)
    )
