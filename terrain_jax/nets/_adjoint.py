"""The continuous adjoint of an :class:`ODEBlock` written out, and NFE counts of gradients.

- :func:`adjoint_backward`: the continuous adjoint of Chen et al. (2018), so its cost is
  visible: one backward solve of the augmented state ``[y, a, g_θ]`` from ``T`` to ``0``
  whose :class:`Trajectory` carries NFE-B.
- :func:`adjoint_solve`: ``block(x)`` whose reverse-mode gradient is :func:`adjoint_backward`
  (nothing of the forward solve is stored), for training with our backward solve.
- :func:`nfe_forward_backward`: NFE-F and NFE-B of one gradient, for the backsolve adjoint
  (measured from the backward solve) and the checkpointed discretise-then-optimise adjoint
  (measured by counting field evaluations and field VJPs while the gradient runs).
"""

import dataclasses
from collections.abc import Callable
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
from jaxtyping import Array, PyTree

from .._typing import ScalarLike, State
from ..ode import Trajectory
from ._ode import ODEBlock

# ---------------------------------------------------------------------------- adjoint


class _AdjointDynamics(eqx.Module):
    """Chen et al.'s augmented dynamics in forward time ``t``, solved from ``T`` to ``0``.

    ``dy/dt = f``, ``da/dt = -aᵀ ∂f/∂y``, ``dg/dt = -aᵀ ∂f/∂θ``. One evaluation is one VJP
    of ``f`` (a forward pass of ``f`` plus its reverse sweep).
    """

    static: PyTree  # the field with its inexact arrays replaced by None; they come in `args`

    def __call__(
        self, t: ScalarLike, state: tuple[State, State, PyTree], args: tuple[PyTree, PyTree]
    ) -> tuple[State, State, PyTree]:
        y, a, _ = state
        params, user_args = args

        def f(yy, pp):
            return eqx.combine(pp, self.static)(t, yy, user_args)

        fy, vjp = jax.vjp(f, y, params)
        a_y, a_p = vjp(a)
        neg = lambda z: -z  # noqa: E731
        return fy, jtu.tree_map(neg, a_y), jtu.tree_map(neg, a_p)


def adjoint_backward(
    block: ODEBlock, x: State, g_y1: State, args: PyTree = None
) -> tuple[State, ODEBlock, Trajectory]:
    """Gradients of ``⟨g_y1, block(x)⟩`` by the continuous adjoint (Chen et al. 2018).

    Solves ``x`` forward to ``y(T)``, then the augmented state ``[y, a, g_θ]`` from ``T``
    back to ``0`` with ``a(T) = g_y1``, ``g_θ(T) = 0``, re-solving ``y`` backwards instead
    of storing it, with the block's solver, steps and ``rtol``/``atol`` (the error control
    covers all of ``[y, a, g_θ]``, as in diffrax's ``BacksolveAdjoint``).

    Returns ``(grads_x, grads_block, backward)``: ``grads_x = a(0)``; ``grads_block`` has
    the structure ``eqx.filter_grad`` gives for ``block`` (``None`` at non-arrays);
    ``backward`` is the backward solve's :class:`Trajectory`, whose ``nfe`` is NFE-B
    (each evaluation is one VJP of the field). Gradients with respect to arrays inside
    ``args`` are not computed.
    """
    y1 = block.solve(x, args=args).y1
    params, static = eqx.partition(block.field, eqx.is_inexact_array)
    g0 = jtu.tree_map(jnp.zeros_like, params)
    state1 = (y1, g_y1, g0)
    back = block.solve_with(
        _AdjointDynamics(static), state1, t0=block.T, t1=0.0, args=(params, args)
    )
    _, grads_x, grads_params = back.y1
    grads_block = eqx.tree_at(lambda b: b.field, block, grads_params, is_leaf=lambda z: z is None)
    return grads_x, grads_block, back


@eqx.filter_custom_vjp
def _adjoint_solve(block_x: tuple[ODEBlock, State], args: PyTree) -> State:
    block, x = block_x
    return block(x, args=args)


@_adjoint_solve.def_fwd
def _adjoint_solve_fwd(
    perturbed: PyTree, block_x: tuple[ODEBlock, State], args: PyTree
) -> tuple[State, None]:
    block, x = block_x
    return block(x, args=args), None  # nothing of the forward solve is kept


@_adjoint_solve.def_bwd
def _adjoint_solve_bwd(
    residuals: None, g: State, perturbed: PyTree, block_x: tuple[ODEBlock, State], args: PyTree
) -> tuple[ODEBlock, State]:
    block, x = block_x
    grads_x, grads_block, _ = adjoint_backward(block, x, g, args)
    return grads_block, grads_x


def adjoint_solve(block: ODEBlock, x: State, args: PyTree = None) -> State:
    """``block(x, args=args)``, differentiated by :func:`adjoint_backward`.

    The forward solve stores nothing; the backward pass re-solves the state backwards with
    its adjoint (Chen et al. 2018) using the block's own solver and tolerances, whatever
    ``block.adjoint`` says. Gradients flow to ``x`` and to the block's field; ``args`` is
    treated as a constant (its gradient is not computed).
    """
    return _adjoint_solve((block, x), args)


# ---------------------------------------------------------------------------- NFE counts


class NFECounts(NamedTuple):
    """Field evaluations of one forward solve and one gradient (Python ints).

    NFE-B counts forward evaluations of the field ``f`` during the backward pass; each
    backward evaluation is followed by (at most) one reverse sweep of ``f``, its VJP,
    counted separately where it differs.

    - ``forward``: NFE-F of the forward solve (``Trajectory.nfe``).
    - ``backsolve``: NFE-B of :func:`adjoint_backward`, the ``Trajectory.nfe`` of its
      backward solve; each evaluation is one ``f`` forward plus one VJP.
    - ``backsolve_diffrax``: ``f`` evaluations counted in the backward pass of diffrax's
      ``BacksolveAdjoint`` for the same gradient (cross-check of ``backsolve``); ``-1``
      for fixed-step blocks (not counted there; ``integrate`` runs fixed-step backsolve
      with a constant step since diffrax cannot reverse a ``StepTo`` grid).
    - ``checkpoint``: ``f`` evaluations re-run during the backward pass of the
      checkpointed (discretise-then-optimise) gradient: re-runs from diffrax's binomial
      step checkpoints (adaptive steps) and from its checkpointed Runge--Kutta stage loop
      (every solver with more than one stage, also for fixed steps).
    - ``checkpoint_vjp``: reverse sweeps (VJPs) of ``f`` in that backward pass, one per
      stage evaluation of the forward solve.
    - ``forward_counted``: ``f`` evaluations counted in the forward solve alone (equals
      ``forward``; it checks the counter).
    """

    forward: int
    backsolve: int
    backsolve_diffrax: int
    checkpoint: int
    checkpoint_vjp: int
    forward_counted: int


class _Counted(eqx.Module):
    """A field that reports each evaluation (``on_eval``) and each VJP (``on_vjp``).

    The callbacks run on the host via ``jax.debug.callback``: they fire once per
    (batched) field call, including calls re-run by checkpointing, and the reverse rule
    recomputes the field silently so a VJP is not also counted as an evaluation.
    """

    field: Callable[..., State]
    on_eval: Callable[[Array], None] = eqx.field(static=True)
    on_vjp: Callable[[Array], None] = eqx.field(static=True)

    def __call__(self, t: ScalarLike, y: State, args: PyTree = None) -> State:
        params, static = eqx.partition(self.field, eqx.is_inexact_array)

        def raw(p, tt, yy, aa):
            return eqx.combine(p, static)(tt, yy, aa)

        # the callbacks take a scalar of the state so that they depend on the loop carry
        # (a callback without operands is hoisted out of `lax.scan` as loop-invariant)
        def tap(yy):
            return jtu.tree_leaves(yy)[0].ravel()[0]

        @jax.custom_vjp
        def counted(p, tt, yy, aa):
            jax.debug.callback(self.on_eval, tap(yy))
            return raw(p, tt, yy, aa)

        def fwd(p, tt, yy, aa):
            jax.debug.callback(self.on_eval, tap(yy))
            # keep the VJP's residuals, as autodiff of the bare field would: the reverse
            # rule is a pure transpose, no hidden re-evaluation
            out, vjp = jax.vjp(lambda p_, y_: raw(p_, tt, y_, aa), p, yy)
            return out, (vjp, tt, aa)

        def bwd(res, ct):
            vjp, tt, aa = res
            jax.debug.callback(self.on_vjp, tap(ct))
            gp, gy = vjp(ct)
            zeros = lambda z: None if z is None else jnp.zeros_like(z)  # noqa: E731
            return gp, jnp.zeros_like(tt), gy, jtu.tree_map(zeros, aa)

        counted.defvjp(fwd, bwd)
        t = jnp.asarray(t, dtype=jnp.result_type(*jtu.tree_leaves(y)))
        return counted(params, t, y, args)


def _count_gradient(
    block: ODEBlock, x: State, loss: Callable[[State], Array], adjoint: str, args: PyTree
) -> tuple[int, int]:
    """(field evaluations, field VJPs) counted while ``grad`` of ``loss(block(x))`` runs
    with ``adjoint``; evaluations include the forward solve."""
    counts = {"eval": 0, "vjp": 0}

    def on_eval(_):
        counts["eval"] += 1

    def on_vjp(_):
        counts["vjp"] += 1

    counted = dataclasses.replace(
        block, field=_Counted(block.field, on_eval, on_vjp), ode=block.ode.replace(adjoint=adjoint)
    )
    grad = eqx.filter_jit(eqx.filter_grad(lambda b, xx: loss(b(xx, args))))
    jax.block_until_ready(grad(counted, x))
    jax.effects_barrier()
    return counts["eval"], counts["vjp"]


def nfe_forward_backward(
    block: ODEBlock, x: State, loss: Callable[[State], Array], *, args: PyTree = None
) -> NFECounts:
    """NFE-F and NFE-B of one gradient of ``loss(block(x))`` with respect to ``block``.

    ``loss`` maps the block output to a scalar. ``backsolve`` is read from the backward
    solve of :func:`adjoint_backward`. The checkpointed adjoint (reverse-mode through the
    solver's steps; diffrax's binomial checkpointing for adaptive steps) has no backward
    solve to read a count from, so it is measured: the field is wrapped to count, on the
    host, every evaluation and every VJP while the jitted gradient runs (the wrapper keeps
    the VJP residuals autodiff would keep, so it adds no evaluations). Call outside
    ``jit``; each call compiles afresh (a few seconds per adaptive solver).
    """
    forward = eqx.filter_jit(lambda b, xx: b.solve(xx, args=args))(block, x)
    y1 = jtu.tree_map(lambda y: y[-1], forward.ys)
    g_y1 = jax.grad(loss)(y1)
    _, _, back = eqx.filter_jit(adjoint_backward)(block, x, g_y1, args)
    n_fwd = int(forward.nfe)
    cp_eval, cp_vjp = _count_gradient(block, x, loss, "checkpoint", args)
    if block.ode.steps is None:
        bs_eval = _count_gradient(block, x, loss, "backsolve", args)[0] - n_fwd
    else:
        bs_eval = -1
    return NFECounts(
        forward=n_fwd,
        backsolve=int(back.nfe),
        backsolve_diffrax=bs_eval,
        checkpoint=cp_eval - n_fwd,
        checkpoint_vjp=cp_vjp,
        forward_counted=_count_forward(block, x, args),
    )


def _count_forward(block: ODEBlock, x: State, args: PyTree) -> int:
    counts = {"eval": 0}

    def on_eval(_):
        counts["eval"] += 1

    counted = dataclasses.replace(block, field=_Counted(block.field, on_eval, on_eval))
    jax.block_until_ready(eqx.filter_jit(lambda b, xx: b(xx, args))(counted, x))
    jax.effects_barrier()
    return counts["eval"]
