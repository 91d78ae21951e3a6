"""Counting a field's calls at run time: the honest cost of a solve.

``Trajectory.nfe`` counts Runge--Kutta stages; it cannot see Newton iterations of an
implicit solver, steps re-run by checkpointing, or the VJPs of a backward pass. A
:class:`CountedField` reports each call to the host (``jax.debug.callback``), so the
count is what actually ran.
"""

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
from jaxtyping import Array, PyTree

from .._typing import Args, ScalarLike, State, VectorField


class CallCounter:
    """Host-side tallies of a :class:`CountedField`: ``evals`` and ``vjps``.

    Read them after ``jax.block_until_ready`` and ``jax.effects_barrier()``, or let
    :meth:`measure` run a call and do both.
    """

    def __init__(self) -> None:
        self.evals = 0
        self.vjps = 0

    def reset(self) -> None:
        """Set both tallies back to zero."""
        self.evals = 0
        self.vjps = 0

    def measure(self, fn: Callable[..., PyTree], *args: object) -> tuple[PyTree, int]:
        """Reset, run ``fn(*args)`` to completion (its callbacks included) and return its
        output with the evaluations it counted."""
        self.reset()
        out = jax.block_until_ready(fn(*args))
        jax.effects_barrier()
        return out, self.evals

    def add_eval(self, _: Array) -> None:
        self.evals += 1

    def add_vjp(self, _: Array) -> None:
        self.vjps += 1

    def __repr__(self) -> str:
        return f"CallCounter(evals={self.evals}, vjps={self.vjps})"


def _tap(tree: PyTree[Array]) -> Array:
    # the callback takes a scalar of the state so that it depends on the loop carry (a
    # callback without operands is hoisted out of `lax.scan` as loop-invariant)
    return jtu.tree_leaves(tree)[0].ravel()[0]


class CountedField(eqx.Module):
    """``field`` with every run-time call added to ``counter.evals``.

    With ``vjps=True`` each VJP of the field (in a reverse-mode pass) is added to
    ``counter.vjps`` instead of counting as an evaluation: the reverse rule transposes the
    VJP kept from the forward call, as autodiff of the bare field would, with no hidden
    re-evaluation. The callbacks fire once per (batched) call, including calls re-run by
    checkpointing.
    """

    field: VectorField
    counter: CallCounter = eqx.field(static=True)
    vjps: bool = eqx.field(static=True, default=False)

    def __call__(self, t: ScalarLike, y: State, args: Args = None) -> State:
        if not self.vjps:
            jax.debug.callback(self.counter.add_eval, _tap(y))
            return self.field(t, y, args)
        params, static = eqx.partition(self.field, eqx.is_inexact_array)

        def raw(p, tt, yy, aa):
            return eqx.combine(p, static)(tt, yy, aa)

        @jax.custom_vjp
        def counted(p, tt, yy, aa):
            jax.debug.callback(self.counter.add_eval, _tap(yy))
            return raw(p, tt, yy, aa)

        def fwd(p, tt, yy, aa):
            jax.debug.callback(self.counter.add_eval, _tap(yy))
            out, vjp = jax.vjp(lambda p_, y_: raw(p_, tt, y_, aa), p, yy)
            return out, (vjp, tt, aa)

        def bwd(res, ct):
            vjp, tt, aa = res
            jax.debug.callback(self.counter.add_vjp, _tap(ct))
            gp, gy = vjp(ct)
            zeros = lambda z: None if z is None else jnp.zeros_like(z)  # noqa: E731
            return gp, jnp.zeros_like(tt), gy, jtu.tree_map(zeros, aa)

        counted.defvjp(fwd, bwd)
        t = jnp.asarray(t, dtype=jnp.result_type(*jtu.tree_leaves(y)))
        return counted(params, t, y, args)


def count_calls(field: VectorField, *, vjps: bool = False) -> tuple[CountedField, CallCounter]:
    """``field`` wrapped to count its calls, and the fresh :class:`CallCounter` it adds to."""
    counter = CallCounter()
    return CountedField(field, counter, vjps), counter
