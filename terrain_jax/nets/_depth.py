"""Depth families: ``depth`` blocks run with ``lax.scan``, one update rule per family.

``ResidualNet`` applies ``x ← x + h·f_k(x)`` for ``k = 0 … N-1`` with ``h = T/N``: exactly
``N`` explicit Euler steps of the field ``f`` (tied weights) or of the piecewise-constant
field whose piece ``k`` is ``f_k`` (untied). ``ODEBlock`` solves the same kind of field
with any solver; the two agree to float round-off when the solver is Euler.
"""

import abc
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
from jaxtyping import Array, ArrayLike, Bool, Float, PRNGKeyArray, PyTree

from .._typing import Index, Scalar
from ..fields import PiecewiseConstantField
from ._blocks import Gate, depth_blocks, gate_axis, make_gates


def _key(key: PRNGKeyArray | None) -> PRNGKeyArray:
    if key is None:
        raise ValueError("A depth net needs `key` to draw its blocks, or the blocks as `blocks=`.")
    return key


class AbstractDepthNet(eqx.Module):
    """Common interface of the depth families: ``depth`` blocks run with ``lax.scan``.

    ``blocks`` is one pytree whose array leaves carry a leading axis of size ``depth``
    (untied), or a single block used at every layer (``tied``). Concrete families define
    :meth:`layer_time` and :meth:`layer_update`; everything else is shared:

    - ``net(x)``, ``net(x, return_hidden=True)`` (all ``depth + 1`` states);
    - ``net(x, taps=...)``: ``taps`` (stacked like the hidden states, leading axis
      ``depth``) is added to the state after each layer, so ``grad`` w.r.t. zero taps
      gives every layer's ``∂L/∂x_k`` in one backward pass;
    - ``net(x, mask=...)``: a boolean per layer; a layer whose mask is ``False`` is
      deleted (passes its input through), the lesion of Veit et al. 2016;
    - ``net.block(k)`` and ``net.layer_map(k)`` (``x ↦ x_{k+1}``) for Jacobians.

    The constructors draw the blocks from ``key``, or take them as ``blocks=`` (then no
    ``key`` is needed).
    """

    blocks: eqx.AbstractVar[PyTree]
    depth: eqx.AbstractVar[int]
    tied: eqx.AbstractVar[bool]

    @abc.abstractmethod
    def layer_time(self, k: Float[Array, ""]) -> Float[Array, ""]:
        """The time ``t_k`` at which layer ``k`` calls its block."""

    @abc.abstractmethod
    def layer_update(self, block: PyTree, t: Scalar, x: Array) -> Array:
        """``x_{k+1}`` from ``x_k = x`` with layer ``k``'s ``block``, called at ``t = t_k``."""

    def block(self, k: Index) -> PyTree:
        """Block ``k`` as a standalone module."""
        if self.tied:
            return self.blocks
        params, static = eqx.partition(self.blocks, eqx.is_array)
        return eqx.combine(jtu.tree_map(lambda a: a[k], params), static)

    def layer_map(self, k: Index) -> Callable[[Array], Array]:
        """The map ``x_k ↦ x_{k+1}`` of layer ``k``."""
        blk = self.block(k)
        t = self.layer_time(jnp.asarray(k, dtype=float))
        return lambda x: self.layer_update(blk, t, x)

    def __call__(
        self,
        x: Array,
        *,
        return_hidden: bool = False,
        taps: Array | None = None,
        mask: Bool[ArrayLike, " layers"] | None = None,
    ) -> Array | tuple[Array, Array]:
        """Final state; with ``return_hidden``, also the ``depth + 1`` hidden states."""
        params, static = eqx.partition(self.blocks, eqx.is_array)
        ks = jnp.arange(self.depth, dtype=x.dtype)

        def step(y, inp):
            k, p, tap, keep = inp
            blk = self.blocks if self.tied else eqx.combine(p, static)
            new = self.layer_update(blk, self.layer_time(k), y)
            y = new if keep is None else jnp.where(keep, new, y)
            if tap is not None:
                y = y + tap
            return y, (y if return_hidden else None)

        if mask is not None:
            mask = jnp.asarray(mask, dtype=bool)
            if mask.shape != (self.depth,):
                raise ValueError(f"mask must have shape ({self.depth},), got {mask.shape}.")
        xs = (ks, None if self.tied else params, taps, mask)
        y, hs = jax.lax.scan(step, x, xs)
        if return_hidden:
            return y, jnp.concatenate([x[None], hs], axis=0)
        return y


class PlainNet(AbstractDepthNet):
    """``x ← f_k(x)``: the same blocks as :class:`ResidualNet` without the identity path."""

    blocks: PyTree
    depth: int = eqx.field(static=True)
    tied: bool = eqx.field(static=True)

    def __init__(
        self,
        width: int,
        hidden: int,
        depth: int,
        *,
        key: PRNGKeyArray | None = None,
        block: str = "mlp",
        activation: str = "tanh",
        init: str = "uniform",
        kernel_size: int = 3,
        tied: bool = False,
        blocks: PyTree = None,
    ):
        if blocks is None:
            blocks = depth_blocks(block, width, hidden, depth, key=_key(key), tied=tied,
                                  activation=activation, init=init, zero_last=False,
                                  kernel_size=kernel_size)  # fmt: skip
        self.blocks = blocks
        self.depth = depth
        self.tied = tied

    def layer_time(self, k: Float[Array, ""]) -> Float[Array, ""]:
        return k

    def layer_update(self, block: PyTree, t: Scalar, x: Array) -> Array:
        return block(t, x, None)


class ResidualNet(AbstractDepthNet):
    """``x ← x + h·f_k(x)``, ``h = T/N``: ``N`` explicit Euler steps of the field.

    Block ``k`` is called at time ``t_k = k h``, so time-dependent fields see the Euler
    grid. ``as_field()`` is the field this net integrates: the tied block, or the
    piecewise-constant field of the untied ones. Give ``h`` instead of ``T`` for a fixed
    step (``h = 1`` is the classic ResNet ``x + f(x)``).
    """

    blocks: PyTree
    depth: int = eqx.field(static=True)
    T: float = eqx.field(static=True)
    tied: bool = eqx.field(static=True)

    def __init__(
        self,
        width: int,
        hidden: int,
        depth: int,
        *,
        key: PRNGKeyArray | None = None,
        T: float = 1.0,
        h: float | None = None,
        tied: bool = False,
        block: str = "mlp",
        activation: str = "tanh",
        init: str = "uniform",
        zero_last: bool = False,
        kernel_size: int = 3,
        blocks: PyTree = None,
    ):
        """Build ``depth`` blocks ``width -> hidden -> width`` (or pass ``blocks``)."""
        if blocks is None:
            blocks = depth_blocks(block, width, hidden, depth, key=_key(key), tied=tied,
                                  activation=activation, init=init, zero_last=zero_last,
                                  kernel_size=kernel_size)  # fmt: skip
        self.blocks = blocks
        self.depth = depth
        self.T = float(h * depth) if h is not None else float(T)
        self.tied = tied

    @property
    def h(self) -> float:
        """The step size ``T/N``."""
        return self.T / self.depth

    def layer_time(self, k: Float[Array, ""]) -> Float[Array, ""]:
        return k * self.h

    def layer_update(self, block: PyTree, t: Scalar, x: Array) -> Array:
        return x + self.h * block(t, x, None)

    def as_field(self) -> PyTree:
        """The field this net integrates with Euler: tied block, or piecewise constant."""
        if self.tied:
            return self.blocks
        return PiecewiseConstantField(self.blocks, self.depth, 0.0, self.T)


class HighwayNet(AbstractDepthNet):
    """``x ← x + T_k(x) ⊙ (f_k(x) − x)``, gate ``T_k = sigmoid(W x + b)`` (Srivastava 2015).

    ``T → 0`` carries ``x`` through unchanged; ``T → 1`` closes the identity path and
    leaves the plain net ``x ← f_k(x)``. ``gate_bias`` sets where the gates start
    (negative: mostly carry, as Srivastava et al. recommend). ``blocks`` is the pair
    ``(fields, gates)``.
    """

    blocks: tuple[PyTree, Gate]
    depth: int = eqx.field(static=True)
    tied: bool = eqx.field(static=True)

    def __init__(
        self,
        width: int,
        hidden: int,
        depth: int,
        *,
        key: PRNGKeyArray | None = None,
        gate_bias: float = -1.0,
        block: str = "mlp",
        activation: str = "tanh",
        init: str = "uniform",
        kernel_size: int = 3,
        tied: bool = False,
        blocks: tuple[PyTree, Gate] | None = None,
    ):
        if blocks is None:
            kf, kg = jax.random.split(_key(key))
            fields = depth_blocks(block, width, hidden, depth, key=kf, tied=tied,
                                  activation=activation, init=init, zero_last=False,
                                  kernel_size=kernel_size)  # fmt: skip
            axis = gate_axis(block)
            if tied:
                gates = Gate(width, key=kg, bias=gate_bias, axis=axis)
            else:
                gates = make_gates(width, depth, key=kg, bias=gate_bias, axis=axis)
            blocks = (fields, gates)
        self.blocks = blocks
        self.depth = depth
        self.tied = tied

    def layer_time(self, k: Float[Array, ""]) -> Float[Array, ""]:
        return k

    def layer_update(self, block: tuple[PyTree, Gate], t: Scalar, x: Array) -> Array:
        f, gate = block
        g = gate(x)
        return x + g * (f(t, x, None) - x)

    def gate_values(self, x: Array) -> Array:
        """The transform gates ``T_k(x_k)`` on the forward trajectory from ``x``,
        ``(depth, *x.shape)``: how far each layer has closed its carry path."""
        _, hs = self(x, return_hidden=True)
        gates = self.blocks[1]
        if self.tied:
            return jax.vmap(gates)(hs[:-1])
        return jax.vmap(lambda g, h: g(h))(gates, hs[:-1])


class ScaledResidualNet(AbstractDepthNet):
    """``x ← (1 − β) x + α f_k(x)``: non-expansive when ``α ≤ β / Lip(f)``.

    The layer's Jacobian is ``(1 − β) I + α J_f``, whose norm is at most
    ``1 − β + α Lip(f)``; with ``α ≤ β/Lip(f)`` that is ``≤ 1``.
    """

    blocks: PyTree
    alpha: float | Array
    beta: float | Array
    depth: int = eqx.field(static=True)
    tied: bool = eqx.field(static=True)

    def __init__(
        self,
        width: int,
        hidden: int,
        depth: int,
        *,
        key: PRNGKeyArray | None = None,
        alpha: float | Array = 0.1,
        beta: float | Array = 0.1,
        block: str = "mlp",
        activation: str = "tanh",
        init: str = "uniform",
        kernel_size: int = 3,
        tied: bool = False,
        blocks: PyTree = None,
    ):
        if blocks is None:
            blocks = depth_blocks(block, width, hidden, depth, key=_key(key), tied=tied,
                                  activation=activation, init=init, zero_last=False,
                                  kernel_size=kernel_size)  # fmt: skip
        self.blocks = blocks
        self.alpha = alpha
        self.beta = beta
        self.depth = depth
        self.tied = tied

    def layer_time(self, k: Float[Array, ""]) -> Float[Array, ""]:
        return k

    def layer_update(self, block: PyTree, t: Scalar, x: Array) -> Array:
        return (1.0 - self.beta) * x + self.alpha * block(t, x, None)
