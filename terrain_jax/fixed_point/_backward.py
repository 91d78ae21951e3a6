"""Backward passes of a fixed-point solve: how ``z*`` is differentiated."""

import abc
import functools
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
from jax import lax
from jaxtyping import PyTree

from .._typing import Vector
from ._base import AbstractFixedPointSolver, FixedPointInfo
from ._loop import run_solver
from ._newton import NewtonKrylov, gmres

_FlatMap = Callable[[Vector, PyTree], Vector]


class AbstractBackward(eqx.Module):
    """How :func:`fixed_point` differentiates ``z*``: ``solve`` runs the forward solve of
    the flat map ``fn(z, args)`` so that reverse-mode autodiff of its output ``z`` gives
    this backward pass's gradient (to ``args``, which hold everything ``f`` closes over)."""

    @abc.abstractmethod
    def solve(
        self,
        solver: AbstractFixedPointSolver,
        tol: float,
        max_steps: int,
        fn: _FlatMap,
        z0: Vector,
        args: PyTree,
    ) -> tuple[Vector, FixedPointInfo]:
        """``(z, info)`` with this backward pass's gradient attached to ``z``."""


class Implicit(AbstractBackward):
    """Implicit function theorem: ``dz*/dθ = (I − J_f)⁻¹ ∂f/∂θ``.

    The adjoint ``u = g + J_fᵀ u`` is solved matrix-free (``vjp`` of ``f`` at ``z*``, the
    Jacobian is never formed) by the *same* solver and tolerance as the forward pass (for
    :class:`NewtonKrylov`, whose adjoint equation is linear, by one GMRES solve of
    ``(I − J_fᵀ) u = g`` to relative tolerance ``max(tol, eta_min)``); the gradient is
    ``vjpθ(u)``. Memory does not grow with the number of forward steps; ``z0`` gets a
    zero gradient.
    """

    def solve(self, solver, tol, max_steps, fn, z0, args):
        return _fp_custom(solver, tol, max_steps, fn, False, z0, args)


class JFB(AbstractBackward):
    """Jacobian-free backprop (Fung et al. 2022): ``u = g``, i.e. ``(I − J_f)⁻¹ ≈ I``.

    Exact when ``J_f(z*) = 0``, otherwise a descent-direction approximation at the cost
    of one ``vjp``; ``z0`` gets a zero gradient.
    """

    def solve(self, solver, tol, max_steps, fn, z0, args):
        return _fp_custom(solver, tol, max_steps, fn, True, z0, args)


class Unroll(AbstractBackward):
    """Plain reverse-mode autodiff through a ``lax.scan`` of ``max_steps`` solver steps
    (steps after convergence are frozen by ``where`` and contribute nothing). Exact for
    the iterate returned; memory grows with ``max_steps``."""

    def solve(self, solver, tol, max_steps, fn, z0, args):
        return run_solver(solver, tol, max_steps, fn, z0, args, unroll=True)


class Phantom(AbstractBackward):
    """Phantom gradients (Geng et al. 2021): the gradient of ``steps`` = k steps of the
    damped iteration ``z ← (1 − τ) z + τ f(z, args)`` (``τ = damping``) started at
    ``stop_gradient(z*)``, by plain autodiff.

    As k → ∞ it tends to the implicit gradient (for contractive ``f``); with ``τ = 1`` it
    is the Neumann series of ``(I − J_f)⁻¹`` truncated after k terms; small k is a cheap
    approximation. The returned value is still ``z*`` (only its gradient comes from the
    k steps); ``z0`` gets a zero gradient.
    """

    steps: int = eqx.field(default=5, static=True)
    damping: float = eqx.field(default=0.5, static=True)

    def __check_init__(self):
        if self.steps < 1:
            raise ValueError(f"Phantom steps (phantom_steps) must be >= 1; got {self.steps}.")
        if not self.damping > 0:
            raise ValueError(f"Phantom damping (phantom_damping) must be > 0; got {self.damping}.")

    def solve(self, solver, tol, max_steps, fn, z0, args):
        z, info = run_solver(solver, tol, max_steps, fn, z0, lax.stop_gradient(args))
        return _phantom(fn, z, args, self.steps, self.damping), info


def _phantom(fn: _FlatMap, z_star: Vector, args: PyTree, steps: int, tau: float) -> Vector:
    """``z*`` in value; gradient of ``steps`` damped iterations started at ``sg(z*)``."""
    z_star = lax.stop_gradient(z_star)

    def body(z, _):
        return (1 - tau) * z + tau * fn(z, args).astype(z.dtype), None

    z_k, _ = lax.scan(body, z_star, None, length=steps)
    return z_star + (z_k - lax.stop_gradient(z_k))


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2, 3, 4))
def _fp_custom(solver, tol, max_steps, fn, jfb, z0, args):
    return run_solver(solver, tol, max_steps, fn, z0, args)


def _fp_custom_fwd(solver, tol, max_steps, fn, jfb, z0, args):
    z, info = run_solver(solver, tol, max_steps, fn, z0, args)
    return (z, info), (z, args)


def _fp_custom_bwd(solver, tol, max_steps, fn, jfb, residuals, cotangents):
    z, args = residuals
    g = cotangents[0]
    if jfb:
        u = g
    else:
        _, vjp_z = jax.vjp(lambda zz: fn(zz, args), z)
        if isinstance(solver, NewtonKrylov):  # linear adjoint: one Krylov solve
            op = lx.FunctionLinearOperator(
                lambda v: v - vjp_z(v)[0], jax.ShapeDtypeStruct(z.shape, z.dtype)
            )
            rtol = max(tol, solver.forcing_floor(tol, z.dtype))
            u = gmres(
                op,
                g,
                jnp.asarray(rtol, g.dtype),
                restart=solver.restart,
                restart_cycles=max(max_steps, 1),
            )
        else:

            def adjoint(u, _):
                return g + vjp_z(u)[0]

            u, _ = run_solver(solver, tol, max_steps, adjoint, g, None)
    _, vjp_args = jax.vjp(lambda a: fn(z, a), args)
    (g_args,) = vjp_args(u)
    return jnp.zeros_like(z), g_args


_fp_custom.defvjp(_fp_custom_fwd, _fp_custom_bwd)
