"""A learned multilayer-perceptron field acting on the last axis of the state."""

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from .._typing import Args, Key, ScalarLike
from ._activations import activation_lipschitz, get_activation
from ._base import AbstractField
from ._init import check_init, init_weight, spectral_norm


class MLPField(AbstractField):
    """A learned field ``f(t, y) = W_L σ(... σ(W_1 [y, t] + b_1) ...) + b_L``.

    Acts on the last axis of ``y``, so a batch ``(..., width)`` is one batched matmul per
    layer, exactly what a hand-written residual block does. With ``time=True`` the time
    ``t`` is appended to the input (a non-autonomous field).
    """

    weights: list[Float[Array, "out in"]]
    biases: list[Float[Array, " out"]]
    activation: str = eqx.field(static=True)
    time: bool = eqx.field(static=True)

    def __init__(
        self,
        width: int,
        hidden: int,
        depth: int = 1,
        *,
        key: Key,
        activation: str = "tanh",
        time: bool = False,
        zero_last: bool = False,
        init: str = "uniform",
    ):
        """``depth`` hidden layers of size ``hidden`` map ``width -> width``.

        ``init`` names the weight initialisation (``uniform``, ``he``, ``lecun``,
        ``orthogonal``); biases start at zero. ``zero_last`` starts the output layer at
        zero (the field, and so each residual block, starts as the identity map).
        """
        get_activation(activation)
        check_init(init)
        sizes = [width + int(time)] + [hidden] * depth + [width]
        keys = jax.random.split(key, len(sizes) - 1)
        self.weights, self.biases = [], []
        for i, (k, n_in, n_out) in enumerate(zip(keys, sizes[:-1], sizes[1:], strict=True)):
            last = i == len(sizes) - 2
            w = init_weight(k, (n_out, n_in), n_in, init)
            if last and zero_last:
                w = jnp.zeros_like(w)
            self.weights.append(w)
            self.biases.append(jnp.zeros((n_out,)))
        self.activation = activation
        self.time = time

    def __call__(
        self, t: ScalarLike, y: Float[Array, "*batch width"], args: Args = None
    ) -> Float[Array, "*batch width"]:
        act = get_activation(self.activation)
        h = y
        if self.time:
            tt = jnp.broadcast_to(jnp.asarray(t, y.dtype), y.shape[:-1] + (1,))
            h = jnp.concatenate([h, tt], axis=-1)
        n = len(self.weights)
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            h = h @ w.T + b
            if i < n - 1:
                h = act(h)
        return h

    def lipschitz_bound(
        self,
        *,
        input_shape: tuple[int, ...] | None = None,
        key: Key | None = None,
        iters: int = 200,
    ) -> Float[Array, "*blocks"]:
        """``Π ‖W_i‖₂ · Lip(σ)^(#σ)``: exact spectral norms (SVD) of the weights, times the
        activation's constant once per hidden layer.

        With ``time=True`` only the state columns of the first weight count. Stacked
        blocks (leading axes on every weight) give one bound per block.
        """
        c = activation_lipschitz(self.activation)
        ws = list(self.weights)
        if self.time:
            width = ws[-1].shape[-2]
            ws[0] = ws[0][..., :width]
        bound = c ** (len(ws) - 1)
        for w in ws:
            bound = bound * spectral_norm(w)
        return bound
