"""Adapters: a Flax NNX module as a field, and untied blocks as one piecewise-constant,
time-dependent field."""

import equinox as eqx
import jax.numpy as jnp
import jax.tree_util as jtu
from jaxtyping import Array, Float, PyTree

from .._typing import Args, ScalarLike, State
from ._base import AbstractField, no_lipschitz_bound


class NNXField(AbstractField):
    """Adapter: a Flax NNX module as a field.

    The module is split once into a static graph definition and a pytree of state, so
    the field is a pure pytree that ``jit``, ``vmap`` and ``grad`` see through (gradients
    flow to the module's parameters in ``state``). The module is called as ``module(y)``,
    or ``module(t, y)`` when ``time=True``.
    """

    graphdef: object = eqx.field(static=True)  # an nnx.GraphDef
    state: PyTree  # an nnx.State
    time: bool = eqx.field(static=True, default=False)

    def __init__(self, module: object, *, time: bool = False):
        from flax import nnx

        self.graphdef, self.state = nnx.split(module)
        self.time = time

    @property
    def module(self) -> object:
        """The Flax module rebuilt from the current state."""
        from flax import nnx

        return nnx.merge(self.graphdef, self.state)

    def __call__(self, t: ScalarLike, y: State, args: Args = None) -> State:
        m = self.module
        return m(t, y) if self.time else m(y)

    def lipschitz_bound(self, **kwargs: object) -> Float[Array, "*blocks"]:
        """Not available: an arbitrary Flax module has no structural bound."""
        raise no_lipschitz_bound(self)


class PiecewiseConstantField(AbstractField):
    """Blocks ``f_0 … f_{N-1}`` (one stacked pytree) as one time-dependent field.

    On ``[t0 + k h, t0 + (k+1) h)`` with ``h = (t1 - t0)/N`` the field is block ``k``: an
    untied residual net is explicit Euler with ``N`` steps on exactly this field.
    """

    stacked: PyTree  # a field whose array leaves carry a leading block axis
    num_blocks: int = eqx.field(static=True)
    t0: float = eqx.field(static=True, default=0.0)
    t1: float = eqx.field(static=True, default=1.0)

    def __call__(self, t: ScalarLike, y: State, args: Args = None) -> State:
        h = (self.t1 - self.t0) / self.num_blocks
        # The small offset puts grid points t0 + k h (where Euler evaluates) in block k
        # despite round-off in t.
        k = jnp.floor((t - self.t0) / h + 1e-4).astype(jnp.int32)
        k = jnp.clip(k, 0, self.num_blocks - 1)
        params, static = eqx.partition(self.stacked, eqx.is_array)
        block = eqx.combine(jtu.tree_map(lambda a: a[k], params), static)
        return block(t, y, args)

    def lipschitz_bound(self, **kwargs: object) -> Float[Array, "*blocks"]:
        """Not available here: take the bound of the stacked blocks themselves
        (``lipschitz_upper_bound(field.stacked)``, one per block)."""
        raise no_lipschitz_bound(self)
