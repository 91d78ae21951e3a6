"""Vector fields ``f(t, y, args) -> dy/dt``.

Every field here is an ``eqx.Module`` with that call signature, so it plugs into
:func:`terrain_jax.integrate` (and straight into diffrax). Any plain callable with the
same signature works too; these classes cover the cases the rest of the library needs:
learned fields, linear fields with closed-form flows, gradient flows of a potential,
(damped) Hamiltonian flows, and Flax NNX modules.
"""

from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

__all__ = [
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


def _activation(name: str) -> Callable[[Array], Array]:
    try:
        return _ACTIVATIONS[name]
    except KeyError:
        valid = ", ".join(sorted(_ACTIVATIONS))
        raise ValueError(f"Unknown activation {name!r}; valid names are: {valid}.") from None


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
    ):
        """``depth`` hidden layers of size ``hidden`` map ``width -> width``.

        ``zero_last`` starts the output layer at zero (the field, and so each residual
        block, starts as the identity map).
        """
        _activation(activation)
        sizes = [width + int(time)] + [hidden] * depth + [width]
        keys = jax.random.split(key, len(sizes) - 1)
        self.weights, self.biases = [], []
        for i, (k, n_in, n_out) in enumerate(zip(keys, sizes[:-1], sizes[1:], strict=True)):
            last = i == len(sizes) - 2
            lim = 1.0 / jnp.sqrt(n_in)
            w = jax.random.uniform(k, (n_out, n_in), minval=-lim, maxval=lim)
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

    potential: Callable = eqx.field(static=True)
    takes_args: bool = eqx.field(static=True, default=False)

    def __call__(self, t: Any, y: Any, args: Any = None) -> Any:
        fn = (lambda z: self.potential(z, args)) if self.takes_args else self.potential
        return jtu.tree_map(jnp.negative, jax.grad(fn)(y))


class HamiltonianField(eqx.Module):
    """Hamilton's equations for ``H(q, p)`` on the state ``(q, p)``, with optional damping.

    ``dq/dt = ∂H/∂p``, ``dp/dt = -∂H/∂q - γ ∂H/∂p``. With ``H = ½‖p‖² + L(q)`` and
    ``γ > 0`` this is the heavy-ball flow: energy ``H`` decreases at rate ``γ‖p‖²``.
    """

    hamiltonian: Callable = eqx.field(static=True)
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
