"""Networks as discretised flows: residual nets (explicit Euler steps) and ODE blocks.

``ResidualNet`` applies ``x ← x + h·f_k(x)`` for ``k = 0 … N-1`` with ``h = T/N``: exactly
``N`` explicit Euler steps of the field ``f`` (tied weights) or of the piecewise-constant
field whose piece ``k`` is ``f_k`` (untied). ``ODEBlock`` solves the same kind of field
with any solver. The two agree to float round-off when the solver is Euler; that
identity is the spine of the project and is tested.
"""

from typing import Any

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
from jaxtyping import Array, Float, PRNGKeyArray

from .fields import MLPField, PiecewiseConstantField
from .integrate import Trajectory, integrate

__all__ = ["ResidualNet", "ODEBlock"]


class ResidualNet(eqx.Module):
    """``N`` residual blocks ``x ← x + h·f_k(x)``, ``h = T/N``, run with ``lax.scan``.

    ``blocks`` is one field whose array leaves carry a leading axis of size ``N``
    (untied weights), or a single field used at every step (``tied=True``). Block ``k``
    is called at time ``t_k = k h`` so time-dependent fields see the Euler grid.
    """

    blocks: Any
    depth: int = eqx.field(static=True)
    T: float = eqx.field(static=True)
    tied: bool = eqx.field(static=True)

    def __init__(
        self,
        width: int,
        hidden: int,
        depth: int,
        *,
        key: PRNGKeyArray,
        T: float = 1.0,
        tied: bool = False,
        activation: str = "tanh",
        zero_last: bool = False,
        blocks: Any = None,
    ):
        """Build ``depth`` MLP blocks ``width -> hidden -> width`` (or pass ``blocks``)."""
        self.depth = depth
        self.T = T
        self.tied = tied
        if blocks is not None:
            self.blocks = blocks
        elif tied:
            self.blocks = MLPField(
                width, hidden, key=key, activation=activation, zero_last=zero_last
            )
        else:
            keys = jax.random.split(key, depth)
            self.blocks = eqx.filter_vmap(
                lambda k: MLPField(width, hidden, key=k, activation=activation, zero_last=zero_last)
            )(keys)

    @property
    def h(self) -> float:
        """The step size ``T/N``."""
        return self.T / self.depth

    def as_field(self) -> Any:
        """The field this net integrates with Euler: tied block, or piecewise constant."""
        if self.tied:
            return self.blocks
        return PiecewiseConstantField(self.blocks, self.depth, 0.0, self.T)

    def __call__(
        self, x: Float[Array, "*batch width"], *, return_hidden: bool = False
    ) -> Array | tuple[Array, Array]:
        """Final state; with ``return_hidden``, also the ``N + 1`` hidden states."""
        params, static = eqx.partition(self.blocks, eqx.is_array)
        h = self.h

        def step(y, inp):
            k, p = inp
            block = eqx.combine(p, static) if not self.tied else self.blocks
            y = y + h * block(k * h, y, None)
            return y, (y if return_hidden else None)

        ks = jnp.arange(self.depth, dtype=x.dtype)
        xs = (ks, None if self.tied else params)
        y, hs = jax.lax.scan(step, x, xs)
        if return_hidden:
            return y, jnp.concatenate([x[None], hs], axis=0)
        return y


class ODEBlock(eqx.Module):
    """A layer ``x ↦ y(T)`` where ``dy/dt = field(t, y)``, ``y(0) = x``.

    Give ``steps`` for fixed steps or ``rtol``/``atol`` for adaptive ones. ``solver`` and
    ``adjoint`` accept the names :func:`terrain_jax.integrate` accepts.
    """

    field: Any
    solver: str | dfx.AbstractSolver = eqx.field(static=True)
    steps: int | None = eqx.field(static=True)
    rtol: float | None = eqx.field(static=True)
    atol: float | None = eqx.field(static=True)
    T: float = eqx.field(static=True)
    adjoint: Any = eqx.field(static=True)
    max_steps: int = eqx.field(static=True)

    def __init__(
        self,
        field: Any,
        *,
        solver: str | dfx.AbstractSolver = "euler",
        steps: int | None = None,
        rtol: float | None = None,
        atol: float | None = None,
        T: float = 1.0,
        adjoint: Any = None,
        max_steps: int = 4096,
    ):
        if steps is None and rtol is None and atol is None:
            raise ValueError("ODEBlock needs `steps=N` (fixed) or `rtol`/`atol` (adaptive).")
        self.field = field
        self.solver = solver
        self.steps = steps
        self.rtol = rtol
        self.atol = atol
        self.T = T
        self.adjoint = adjoint
        self.max_steps = max_steps

    def solve(self, x: Any, *, saveat: Any = None, args: Any = None) -> Trajectory:
        """The full :class:`Trajectory` (steps, NFE, status) of the block's solve."""
        return integrate(
            self.field,
            x,
            t0=0.0,
            t1=self.T,
            solver=self.solver,
            steps=self.steps,
            rtol=self.rtol,
            atol=self.atol,
            saveat=saveat,
            args=args,
            adjoint=self.adjoint,
            max_steps=self.max_steps,
        )

    def __call__(self, x: Any, args: Any = None) -> Any:
        return jtu.tree_map(lambda y: y[-1], self.solve(x, args=args).ys)
