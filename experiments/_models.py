"""Classifiers for the real-data depth experiments: stem → depth-family net → readout.

A :class:`Classifier` lifts the input to ``width`` features (a linear map for MLP blocks,
a 1-D convolution for ``conv1d`` blocks, after reshaping a length-``L`` signal to
``(1, L)`` channels-first), runs one of the depth families of :mod:`terrain_jax.nets`
(whose ``mask=`` deletes layers and ``return_hidden=True`` exposes the states), and reads
out with a linear map (after global average pooling over positions for conv blocks).

:func:`shared_blocks` builds one stacked set of blocks that a :class:`~terrain_jax.PlainNet`
and a :class:`~terrain_jax.ResidualNet` can both take (``blocks=``), so the two nets start
from identical parameters and differ only by the identity path.
"""

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from terrain_jax.nets import make_blocks
from terrain_jax.train import cross_entropy

__all__ = [
    "Classifier",
    "shared_blocks",
    "ce_loss",
    "masked_accuracy",
]


def _conv1d(w: Array, b: Array, x: Array, stride: int = 1) -> Array:
    """'SAME' 1-D convolution of ``(B, C_in, L)`` with ``(C_out, C_in, k)`` + bias."""
    out = jax.lax.conv_general_dilated(
        x, w, window_strides=(stride,), padding="SAME", dimension_numbers=("NCH", "OIH", "NCH")
    )
    return out + b[:, None]


class Classifier(eqx.Module):
    """``readout(net(stem(x)))`` for a batch ``x`` of shape ``(B, features)``.

    ``kind="mlp"``: the stem is ``x W_s^T + b_s`` (``features -> width``), the net acts on
    ``(B, width)``. ``kind="conv1d"``: ``x`` is read as ``(B, 1, features)``, the stem is a
    1-D convolution to ``width`` channels (kernel ``stem_kernel``, stride ``stem_stride``),
    the net acts on ``(B, width, features / stem_stride)``, and the readout averages over
    positions first.
    """

    stem_w: Array
    stem_b: Array
    net: Any
    out_w: Float[Array, "classes width"]
    out_b: Float[Array, " classes"]
    kind: str = eqx.field(static=True)
    stem_stride: int = eqx.field(static=True)

    def __init__(
        self,
        net: Any,
        features: int,
        width: int,
        classes: int,
        *,
        key: PRNGKeyArray,
        kind: str = "mlp",
        stem_kernel: int = 5,
        stem_stride: int = 1,
    ):
        if kind not in ("mlp", "conv1d"):
            raise ValueError(f"Unknown classifier kind {kind!r}; valid: mlp, conv1d.")
        k_s, k_o = jax.random.split(key)
        if kind == "mlp":
            fan = features
            self.stem_w = jax.random.normal(k_s, (width, features)) / np.sqrt(fan)
        else:
            fan = stem_kernel
            self.stem_w = jax.random.normal(k_s, (width, 1, stem_kernel)) / np.sqrt(fan)
        self.stem_b = jnp.zeros((width,))
        lim = 1.0 / np.sqrt(width)
        self.out_w = jax.random.uniform(k_o, (classes, width), minval=-lim, maxval=lim)
        self.out_b = jnp.zeros((classes,))
        self.net = net
        self.kind = kind
        self.stem_stride = stem_stride

    def embed(self, x: Array) -> Array:
        """The stem: the initial state ``x_0`` of the depth net."""
        if self.kind == "mlp":
            return x @ self.stem_w.T + self.stem_b
        return _conv1d(self.stem_w, self.stem_b, x[:, None, :], self.stem_stride)

    def head(self, z: Array) -> Array:
        """The readout of a final state (pooling over positions for conv states)."""
        if self.kind == "conv1d":
            z = jnp.mean(z, axis=-1)
        return z @ self.out_w.T + self.out_b

    def __call__(self, x: Array, *, mask: Array | None = None) -> Array:
        return self.head(self.net(self.embed(x), mask=mask))

    def hidden(self, x: Array) -> Array:
        """All ``depth + 1`` states of the depth net, ``(depth + 1, B, ...)``."""
        _, hs = self.net(self.embed(x), return_hidden=True)
        return hs


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
) -> Any:
    """Stacked blocks ``f(x) = W_2 σ(W_1 x + b_1) + b_2`` (MLP or conv), Gaussian weights of
    variance ``gains[i] / fan_in``: He (``2``) before the ReLU, LeCun (``1``) after it, so
    that one block maps a unit-variance input to a unit-variance output. That is the
    variance-preserving choice for the plain net ``x ← f(x)``; both nets get the same
    arrays."""
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


def ce_loss(model: Classifier, xb: Array, yb: Array) -> Array:
    """Mean cross-entropy of the classifier's logits."""
    return cross_entropy(model(xb), yb)


@eqx.filter_jit
def masked_accuracy(model: Classifier, x: Array, y: Array, masks: Array) -> Array:
    """Test accuracy under each row of ``masks`` (``(M, depth)`` booleans), one compiled
    ``lax.map`` over masks."""

    def one(m):
        pred = jnp.argmax(model(x, mask=m), axis=-1)
        return jnp.mean((pred == y).astype(jnp.float32))

    return jax.lax.map(one, masks)
