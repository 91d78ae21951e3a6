"""Vector fields ``f(t, y, args) -> dy/dt``.

Every field here is an ``eqx.Module`` with that call signature, so it plugs into
:func:`terrain_jax.integrate` (and straight into diffrax). Any plain callable with the
same signature works too; these classes cover the cases the rest of the library needs:
learned fields, linear fields with closed-form flows, gradient flows of a potential,
(damped) Hamiltonian flows, and Flax NNX modules.
"""

import itertools
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

__all__ = [
    "ACTIVATION_LIPSCHITZ",
    "ConvField",
    "MLPField",
    "LinearField",
    "GradientField",
    "HamiltonianField",
    "NNXField",
    "PiecewiseConstantField",
]

_ACTIVATIONS: dict[str, Callable[[Array], Array]] = {
    "tanh": jnp.tanh,
    "relu": jax.nn.relu,
    "softplus": jax.nn.softplus,
    "gelu": jax.nn.gelu,
    "silu": jax.nn.silu,
    "sigmoid": jax.nn.sigmoid,
    "identity": lambda x: x,
}


# Lipschitz constant sup |σ'| of each activation in _ACTIVATIONS,
# rounded up. gelu (tanh approximation, jax's default): max σ' = 1.12899 at x ≈ 1.41
# (exact erf form: 1.12890); silu: max σ' = 1.09984 at x ≈ 2.40; sigmoid: σ'(0) = 1/4.
# Measured on a grid of [-20, 20]; tests/test_spectra.py re-checks every entry.
ACTIVATION_LIPSCHITZ: dict[str, float] = {
    "tanh": 1.0,
    "relu": 1.0,
    "softplus": 1.0,
    "gelu": 1.13,
    "silu": 1.1,
    "sigmoid": 0.25,
    "identity": 1.0,
}


def _activation(name: str) -> Callable[[Array], Array]:
    try:
        return _ACTIVATIONS[name]
    except KeyError:
        valid = ", ".join(sorted(_ACTIVATIONS))
        raise ValueError(f"Unknown activation {name!r}; valid names are: {valid}.") from None


_INITS = ("uniform", "he", "lecun", "orthogonal")


def _init_weight(key: PRNGKeyArray, shape: tuple[int, ...], fan_in: int, init: str) -> Array:
    """A weight of ``shape`` (output axis first) under a named initialisation.

    ``uniform``: U(±1/√fan_in) (PyTorch's default); ``he``: N(0, 2/fan_in), for ReLU;
    ``lecun``: N(0, 1/fan_in); ``orthogonal``: orthogonal rows/columns of the
    ``(out, fan_in)`` matrix, gain 1.
    """
    if init == "uniform":
        lim = 1.0 / jnp.sqrt(fan_in)
        return jax.random.uniform(key, shape, minval=-lim, maxval=lim)
    if init == "he":
        return jax.random.normal(key, shape) * jnp.sqrt(2.0 / fan_in)
    if init == "lecun":
        return jax.random.normal(key, shape) * jnp.sqrt(1.0 / fan_in)
    if init == "orthogonal":
        flat = jax.nn.initializers.orthogonal()(key, (shape[0], fan_in))
        return flat.reshape(shape)
    raise ValueError(f"Unknown init {init!r}; valid names are: {', '.join(_INITS)}.")


class MLPField(eqx.Module):
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
        key: PRNGKeyArray,
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
        _activation(activation)
        if init not in _INITS:
            raise ValueError(f"Unknown init {init!r}; valid names are: {', '.join(_INITS)}.")
        sizes = [width + int(time)] + [hidden] * depth + [width]
        keys = jax.random.split(key, len(sizes) - 1)
        self.weights, self.biases = [], []
        for i, (k, n_in, n_out) in enumerate(zip(keys, sizes[:-1], sizes[1:], strict=True)):
            last = i == len(sizes) - 2
            w = _init_weight(k, (n_out, n_in), n_in, init)
            if last and zero_last:
                w = jnp.zeros_like(w)
            self.weights.append(w)
            self.biases.append(jnp.zeros((n_out,)))
        self.activation = activation
        self.time = time

    def __call__(self, t: Any, y: Float[Array, "*batch width"], args: Any = None) -> Array:
        act = _activation(self.activation)
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


class ConvField(eqx.Module):
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
        key: PRNGKeyArray,
        dims: int = 1,
        kernel_size: int = 3,
        activation: str = "relu",
        zero_last: bool = False,
        init: str = "he",
        impl: str = "matmul",
    ):
        _activation(activation)
        if impl not in ("matmul", "xla"):
            raise ValueError(f"Unknown impl {impl!r}; valid names are: matmul, xla.")
        if kernel_size % 2 != 1:
            raise ValueError(f"'SAME' convolutions need an odd kernel_size, got {kernel_size}.")
        if dims not in (1, 2):
            raise ValueError(f"ConvField supports dims=1 or dims=2, got {dims!r}.")
        if init not in _INITS:
            raise ValueError(f"Unknown init {init!r}; valid names are: {', '.join(_INITS)}.")
        k1, k2 = jax.random.split(key)
        ks = (kernel_size,) * dims
        fan1, fan2 = channels * kernel_size**dims, hidden * kernel_size**dims
        w1 = _init_weight(k1, (hidden, channels, *ks), fan1, init)
        w2 = _init_weight(k2, (channels, hidden, *ks), fan2, init)
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

    def __call__(self, t: Any, y: Array, args: Any = None) -> Array:
        h = _activation(self.activation)(self._conv(self.kernels[0], self.biases[0], y))
        return self._conv(self.kernels[1], self.biases[1], h)


class LinearField(eqx.Module):
    """``f(t, y) = A y``: the flow is ``expm(tA) y0``, the reference for every solver test."""

    A: Float[Array, "n n"]

    def __init__(self, A: Float[ArrayLike, "n n"]):
        self.A = jnp.asarray(A)

    def __call__(self, t: Any, y: Float[Array, "*batch n"], args: Any = None) -> Array:
        return y @ self.A.T


class GradientField(eqx.Module):
    """Gradient flow ``f(t, y) = -∇L(y)`` of a scalar potential ``L`` over any pytree ``y``.

    Explicit Euler on this field with step ``η`` is gradient descent with learning rate ``η``.
    ``potential`` is called as ``potential(y)``, or ``potential(y, args)`` when
    ``takes_args=True``.
    """

    potential: Callable  # a pytree: a Terrain (an eqx.Module holding arrays) is fine
    takes_args: bool = eqx.field(static=True, default=False)

    def __call__(self, t: Any, y: Any, args: Any = None) -> Any:
        fn = (lambda z: self.potential(z, args)) if self.takes_args else self.potential
        return jtu.tree_map(jnp.negative, jax.grad(fn)(y))


class HamiltonianField(eqx.Module):
    """Hamilton's equations for ``H(q, p)`` on the state ``(q, p)``, with optional damping.

    ``dq/dt = ∂H/∂p``, ``dp/dt = -∂H/∂q - γ ∂H/∂p``. With ``H = ½‖p‖² + L(q)`` and
    ``γ > 0`` this is the heavy-ball flow: energy ``H`` decreases at rate ``γ‖p‖²``.
    """

    hamiltonian: Callable
    damping: float | Array = 0.0

    def __call__(self, t: Any, y: tuple[Any, Any], args: Any = None) -> tuple[Any, Any]:
        q, p = y
        dHdq, dHdp = jax.grad(self.hamiltonian, argnums=(0, 1))(q, p)
        dq = dHdp
        dp = jtu.tree_map(lambda a, b: -a - self.damping * b, dHdq, dHdp)
        return dq, dp


class NNXField(eqx.Module):
    """Adapter: a Flax NNX module as a field.

    The module is split once into a static graph definition and a pytree of state, so
    the field is a pure pytree that ``jit``, ``vmap`` and ``grad`` see through (gradients
    flow to the module's parameters in ``state``). The module is called as ``module(y)``,
    or ``module(t, y)`` when ``time=True``.
    """

    graphdef: Any = eqx.field(static=True)
    state: Any
    time: bool = eqx.field(static=True, default=False)

    def __init__(self, module: Any, *, time: bool = False):
        from flax import nnx

        self.graphdef, self.state = nnx.split(module)
        self.time = time

    @property
    def module(self) -> Any:
        """The Flax module rebuilt from the current state."""
        from flax import nnx

        return nnx.merge(self.graphdef, self.state)

    def __call__(self, t: Any, y: Any, args: Any = None) -> Any:
        m = self.module
        return m(t, y) if self.time else m(y)


class PiecewiseConstantField(eqx.Module):
    """Blocks ``f_0 … f_{N-1}`` (one stacked pytree) as one time-dependent field.

    On ``[t0 + k h, t0 + (k+1) h)`` with ``h = (t1 - t0)/N`` the field is block ``k``: an
    untied residual net is explicit Euler with ``N`` steps on exactly this field.
    """

    stacked: Any
    num_blocks: int = eqx.field(static=True)
    t0: float = eqx.field(static=True, default=0.0)
    t1: float = eqx.field(static=True, default=1.0)

    def __call__(self, t: Any, y: Any, args: Any = None) -> Any:
        h = (self.t1 - self.t0) / self.num_blocks
        # The small offset puts grid points t0 + k h (where Euler evaluates) in block k
        # despite round-off in t.
        k = jnp.floor((t - self.t0) / h + 1e-4).astype(jnp.int32)
        k = jnp.clip(k, 0, self.num_blocks - 1)
        params, static = eqx.partition(self.stacked, eqx.is_array)
        block = eqx.combine(jtu.tree_map(lambda a: a[k], params), static)
        return block(t, y, args)
