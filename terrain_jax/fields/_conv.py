"""A convolutional field on ``(*batch, channels, *space)`` states, 1-D or 2-D."""

import itertools

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from .._typing import Args, Key, ScalarLike
from ..linalg import top_singular_value
from ._activations import activation_lipschitz, get_activation
from ._base import AbstractField
from ._init import check_init, init_weight


def _shift_conv(w: Array, y: Array, dims: int) -> Array:
    """'SAME' stride-1 convolution (cross-correlation) of ``(*batch, C, *space)`` with
    ``(O, C, *k)`` as a sum over kernel offsets of channel matmuls of shifted inputs."""
    k = w.shape[2:]
    space = y.shape[-dims:]
    pad = [(0, 0)] * (y.ndim - dims) + [(ki // 2, ki // 2) for ki in k]
    yp = jnp.pad(y, pad)
    out = 0.0
    for offset in itertools.product(*(range(ki) for ki in k)):
        window = yp[
            (..., slice(None)) + tuple(slice(o, o + n) for o, n in zip(offset, space, strict=True))
        ]
        out = out + jnp.einsum(
            "oc,...c" + "xy"[:dims] + "->...o" + "xy"[:dims],
            w[(slice(None), slice(None)) + offset],
            window,
        )
    return out


def _conv_operator_norm(
    kernel: Array, in_shape: tuple[int, ...], dims: int, key: Key, iters: int
) -> Array:
    """Operator norm of the 'SAME' convolution with ``kernel`` on inputs ``in_shape``, by
    power iteration (from below; :func:`terrain_jax.nets.conv_norm_bound` is an exact
    upper bound through the DFT)."""
    spec = ("NCH", "OIH", "NCH") if dims == 1 else ("NCHW", "OIHW", "NCHW")

    def norm_one(w):
        def conv(z):
            return jax.lax.conv_general_dilated(
                z[None], w, (1,) * dims, "SAME", dimension_numbers=spec
            )[0]

        return top_singular_value(conv, jnp.zeros(in_shape, w.dtype), key=key, iters=iters)

    batch = kernel.shape[: kernel.ndim - dims - 2]
    flat = kernel.reshape((-1,) + kernel.shape[len(batch) :])
    return jax.vmap(norm_one)(flat).reshape(batch)


class ConvField(AbstractField):
    """A convolutional field ``f(y) = K_2 * σ(K_1 * y + b_1) + b_2`` on ``(*batch, C, *space)``.

    1-D (``dims=1``) or 2-D (``dims=2``) 'SAME' convolutions that keep the channel count
    ``channels`` and the spatial shape, so ``y + h f(y)`` is a convolutional residual
    block and ``integrate`` can solve it as an ODE.

    ``impl="matmul"`` (default) computes each convolution as a sum of shifted channel
    matmuls; ``impl="xla"`` calls ``lax.conv_general_dilated``. Same function; the reason
    is speed: on XLA:CPU the gradient of ``conv_general_dilated`` inside the ``lax.scan``
    that runs a depth net was measured ~15-20x slower than the matmul form (16 blocks,
    batch 128, 32 channels, length 40).
    """

    kernels: list[Array]
    biases: list[Array]
    dims: int = eqx.field(static=True)
    activation: str = eqx.field(static=True)
    impl: str = eqx.field(static=True)

    def __init__(
        self,
        channels: int,
        hidden: int,
        *,
        key: Key,
        dims: int = 1,
        kernel_size: int = 3,
        activation: str = "relu",
        zero_last: bool = False,
        init: str = "he",
        impl: str = "matmul",
    ):
        get_activation(activation)
        if impl not in ("matmul", "xla"):
            raise ValueError(f"Unknown impl {impl!r}; valid names are: matmul, xla.")
        if kernel_size % 2 != 1:
            raise ValueError(f"'SAME' convolutions need an odd kernel_size, got {kernel_size}.")
        if dims not in (1, 2):
            raise ValueError(f"ConvField supports dims=1 or dims=2, got {dims!r}.")
        check_init(init)
        k1, k2 = jax.random.split(key)
        ks = (kernel_size,) * dims
        fan1, fan2 = channels * kernel_size**dims, hidden * kernel_size**dims
        w1 = init_weight(k1, (hidden, channels, *ks), fan1, init)
        w2 = init_weight(k2, (channels, hidden, *ks), fan2, init)
        if zero_last:
            w2 = jnp.zeros_like(w2)
        self.kernels = [w1, w2]
        self.biases = [jnp.zeros((hidden,)), jnp.zeros((channels,))]
        self.dims = dims
        self.activation = activation
        self.impl = impl

    def _conv(self, w: Array, b: Array, y: Array) -> Array:
        if self.impl == "matmul":
            return _shift_conv(w, y, self.dims) + b.reshape((-1,) + (1,) * self.dims)
        return self._conv_xla(w, b, y)

    def _conv_xla(self, w: Array, b: Array, y: Array) -> Array:
        batch = y.shape[: y.ndim - self.dims - 1]
        flat = y.reshape((-1,) + y.shape[len(batch) :])
        spec = ("NCH", "OIH", "NCH") if self.dims == 1 else ("NCHW", "OIHW", "NCHW")
        out = jax.lax.conv_general_dilated(
            flat, w, window_strides=(1,) * self.dims, padding="SAME", dimension_numbers=spec
        )
        out = out + b.reshape((-1,) + (1,) * self.dims)
        return out.reshape(batch + out.shape[1:])

    def __call__(self, t: ScalarLike, y: Array, args: Args = None) -> Array:
        h = get_activation(self.activation)(self._conv(self.kernels[0], self.biases[0], y))
        return self._conv(self.kernels[1], self.biases[1], h)

    def lipschitz_bound(
        self,
        *,
        input_shape: tuple[int, ...] | None = None,
        key: Key | None = None,
        iters: int = 200,
    ) -> Float[Array, "*blocks"]:
        """``Lip(σ) ‖K_2‖ ‖K_1‖``, each convolution's operator norm on inputs of
        ``input_shape = (channels, *space)`` (required: it depends on the input size).

        Each norm takes ``iters`` power iterations on the convolution (``key``, default
        ``PRNGKey(0)``), which approach it from below, so this bound is as tight as the
        iteration has converged. Stacked blocks give one bound per block.
        """
        if input_shape is None:
            raise ValueError(
                "lipschitz_upper_bound of a ConvField needs input_shape=(channels, *space): "
                "a convolution's operator norm depends on the input size."
            )
        if len(input_shape) != self.dims + 1:
            raise ValueError(
                f"input_shape must be (channels, *space) with {self.dims} spatial axes; "
                f"got {input_shape}."
            )
        c = activation_lipschitz(self.activation)
        key = jax.random.PRNGKey(0) if key is None else key
        k1, k2 = jax.random.split(key)
        space = tuple(input_shape[1:])
        w1, w2 = self.kernels
        hidden = w1.shape[-self.dims - 2]
        n1 = _conv_operator_norm(w1, tuple(input_shape), self.dims, k1, iters)
        n2 = _conv_operator_norm(w2, (hidden, *space), self.dims, k2, iters)
        return c * n1 * n2
