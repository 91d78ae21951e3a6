"""Fixed points ``z* = f(z*, args)``: the forward pass of a DEQ layer and its gradients.

:func:`fixed_point` finds ``z*`` by one of the solvers in :data:`FIXED_POINT_SOLVERS`

- ``picard``: damped Banach iteration ``z ← (1 − β) z + β f(z)``, converges at rate
  ``≤ |1 − β + β Lip(f)|^k`` when ``f`` contracts;
- ``anderson``: Anderson acceleration (type II) with a window of the last ``memory``
  iterates; mixing weights ``α`` minimise ``‖Σ α_i (f(z_i) − z_i)‖²`` subject to
  ``Σ α_i = 1`` with Tikhonov regularisation ``1e-4 · max_i ‖f(z_i) − z_i‖²``, then
  ``z ← Σ α_i z_i + β Σ α_i (f(z_i) − z_i)``. Converges on maps where Picard diverges,
  e.g. linear ``f`` with spectral radius > 1 but ``I − A`` invertible;
- ``broyden``: limited-memory Broyden's (good) method for the root of
  ``g(z) = f(z) − z``. The inverse-Jacobian approximation is
  ``H = −I + Σ_i u_i v_iᵀ`` over the last ``memory`` rank-one updates (circular buffer;
  the first step, ``H = −I``, is a Picard step); each step is ``z ← z − β H g(z)`` and
  the good-Broyden update ``H ← H + (s − H y) sᵀH / (sᵀ H y)`` (``s = Δz``, ``y = Δg``)
  is skipped when ``|sᵀ H y|`` is tiny relative to ``‖s‖‖H y‖``. On linear maps it
  terminates in ≤ 2n steps (exact arithmetic, ``memory ≥ 2n``) whatever their spectral
  radius, so it also converges where Picard diverges;

and differentiates it with one of the backward passes in :data:`FIXED_POINT_BACKWARDS`

- ``implicit``: implicit function theorem, ``dz*/dθ = (I − J_f)⁻¹ ∂f/∂θ``; the adjoint
  ``u = g + J_fᵀ u`` is solved matrix-free (``vjp`` of ``f`` at ``z*``, the Jacobian is
  never formed) by the *same* solver and tolerance as the forward pass; the gradient is
  ``vjpθ(u)``. Memory does not grow with the number of forward steps;
- ``jfb``: Jacobian-free backprop (Fung et al. 2022): ``u = g``, i.e. ``(I − J_f)⁻¹ ≈ I``;
- ``phantom``: phantom gradients (Geng et al. 2021): ``phantom_steps`` = k steps of the
  damped iteration ``z ← (1 − τ) z + τ f(z, args)`` (``τ = phantom_damping``) started at
  ``stop_gradient(z*)``, differentiated by plain autodiff. As k → ∞ it tends to the
  implicit gradient (for contractive ``f``); small k is a cheap approximation. The
  returned value is still ``z*`` (only its gradient comes from the k steps);
- ``unroll``: plain reverse-mode autodiff through a ``lax.scan`` of ``max_steps`` steps
  (steps after convergence are frozen by ``where`` and contribute nothing).

``z0`` gets a zero gradient under ``implicit``, ``jfb`` and ``phantom`` (``z*`` does not
depend on it).

The residual reported in :class:`FixedPointInfo` (and compared with ``tol``) is
**relative**: ``‖f(z) − z‖₂ / (‖z‖₂ + 1e-8)`` at the returned ``z`` (per sample when
batched). The returned ``z`` is the last iterate whose residual was evaluated, so
``‖f(z) − z‖ ≤ tol · (‖z‖ + 1e-8)`` whenever ``info.converged``.

Not yet implemented (planned, named in the ValueError): solver ``newton``
(Jacobian-free Newton–Krylov via lineax); ``DEQBlock``; Jacobian regularisation; pytree
(non-array) states; per-sample ``args`` in batched mode (vmap :func:`fixed_point` yourself
for that).
"""

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
from jax import lax
from jaxtyping import Array

__all__ = [
    "FIXED_POINT_SOLVERS",
    "FIXED_POINT_BACKWARDS",
    "PLANNED_SOLVERS",
    "PLANNED_BACKWARDS",
    "FixedPointInfo",
    "fixed_point",
]

FIXED_POINT_SOLVERS = ("picard", "anderson", "broyden")
FIXED_POINT_BACKWARDS = ("implicit", "jfb", "unroll", "phantom")
PLANNED_SOLVERS = ("newton",)
PLANNED_BACKWARDS = ()

_RES_EPS = 1e-8
_ANDERSON_REG = 1e-4
_BROYDEN_SKIP = 1e-10


class FixedPointInfo(NamedTuple):
    """Diagnostics of a fixed-point solve (leading batch axis when ``batched=True``).

    - ``steps``: number of solver updates taken (``0`` if ``z0`` already met ``tol``);
    - ``residual``: final relative residual ``‖f(z) − z‖ / (‖z‖ + 1e-8)``;
    - ``trace``: residual after each update, length ``max_steps``, ``nan`` after
      termination;
    - ``converged``: ``residual ≤ tol`` (and finite).
    """

    steps: Array
    residual: Array
    trace: Array
    converged: Array


# --------------------------------------------------------------------------- solvers


class _Picard(NamedTuple):
    damping: float

    def init(self, z: Array, fz: Array) -> Any:
        return ()

    def step(self, z: Array, fz: Array, state: Any) -> tuple[Array, Any]:
        return z + self.damping * (fz - z), state


class _Anderson(NamedTuple):
    damping: float
    memory: int
    reg: float = _ANDERSON_REG

    def init(self, z: Array, fz: Array) -> Any:
        m, n = self.memory, z.size
        return (
            jnp.zeros((m, n), z.dtype),
            jnp.zeros((m, n), z.dtype),
            jnp.zeros((), jnp.int32),
        )

    def step(self, z: Array, fz: Array, state: Any) -> tuple[Array, Any]:
        X, G, count = state
        m, dtype = self.memory, z.dtype
        i = count % m
        X = X.at[i].set(z)
        G = G.at[i].set(fz - z)
        count = count + 1
        mask = (jnp.arange(m, dtype=jnp.int32) < count).astype(dtype)
        GG = (G @ G.T) * mask[:, None] * mask[None, :]
        # Normalise so the regulariser is relative: α is invariant to scaling GGᵀ.
        scale = jnp.maximum(jnp.max(jnp.diagonal(GG)), jnp.finfo(dtype).tiny)
        A = GG / scale + jnp.diag(self.reg * mask + (1 - mask))
        H = jnp.zeros((m + 1, m + 1), dtype)
        H = H.at[0, 1:].set(mask).at[1:, 0].set(mask).at[1:, 1:].set(A)
        rhs = jnp.zeros((m + 1,), dtype).at[0].set(1)
        alpha = jnp.linalg.solve(H, rhs)[1:]
        z_new = alpha @ X + self.damping * (alpha @ G)
        return z_new, (X, G, count)


class _Broyden(NamedTuple):
    """Limited-memory good Broyden on ``g = f − z``; ``H = −I + Uᵀ V`` (rows ``u_i, v_i``)."""

    damping: float
    memory: int
    skip: float = _BROYDEN_SKIP

    def init(self, z: Array, fz: Array) -> Any:
        m, n = self.memory, z.size
        return (
            jnp.zeros((m, n), z.dtype),  # U
            jnp.zeros((m, n), z.dtype),  # V
            z,  # previous z
            fz - z,  # previous g
            jnp.zeros((), jnp.int32),  # number of updates stored so far
            jnp.zeros((), jnp.bool_),  # previous (z, g) is a real iterate
        )

    def step(self, z: Array, fz: Array, state: Any) -> tuple[Array, Any]:
        U, V, z_prev, g_prev, count, has_prev = state
        g = fz - z

        def H(x):  # H x = −x + Σ u_i (v_i · x); unused slots are zero rows
            return -x + U.T @ (V @ x)

        def HT(x):
            return -x + V.T @ (U @ x)

        s, y = z - z_prev, g - g_prev
        Hy = H(y)
        denom = jnp.vdot(s, Hy)
        ok = (
            has_prev
            & (jnp.abs(denom) > self.skip * jnp.linalg.norm(s) * jnp.linalg.norm(Hy))
            & jnp.isfinite(denom)
        )
        safe = jnp.where(ok, denom, 1)
        u = jnp.where(ok, (s - Hy) / safe, 0)
        v = jnp.where(ok, HT(s), 0)
        i = count % self.memory
        U = jnp.where(ok, U.at[i].set(u), U)
        V = jnp.where(ok, V.at[i].set(v), V)
        count = count + ok.astype(count.dtype)
        z_new = z - self.damping * (-g + U.T @ (V @ g))
        return z_new, (U, V, z, g, count, jnp.ones((), jnp.bool_))


_Solver = _Picard | _Anderson | _Broyden


def _make_solver(solver: str, damping: float, memory: int) -> _Solver:
    if solver == "picard":
        return _Picard(damping)
    if solver in ("anderson", "broyden"):
        if memory < 1:
            raise ValueError(f"memory must be >= 1; got {memory}.")
        return _Anderson(damping, memory) if solver == "anderson" else _Broyden(damping, memory)
    if solver in PLANNED_SOLVERS:
        raise ValueError(
            f"Solver {solver!r} is planned but not yet implemented; valid solvers: "
            f"{FIXED_POINT_SOLVERS} (planned: {PLANNED_SOLVERS})."
        )
    raise ValueError(
        f"Unknown solver {solver!r}; valid solvers: {FIXED_POINT_SOLVERS} "
        f"(planned: {PLANNED_SOLVERS})."
    )


# --------------------------------------------------------------------------- loop


class _Spec(NamedTuple):
    solver: _Solver
    tol: float
    max_steps: int


def _residual(z: Array, fz: Array) -> Array:
    z, fz = lax.stop_gradient(z), lax.stop_gradient(fz)
    return jnp.linalg.norm(fz - z) / (jnp.linalg.norm(z) + _RES_EPS)


def _run(
    spec: _Spec, fn: Callable[[Array, Any], Array], z0: Array, args: Any, unroll: bool
) -> tuple[Array, FixedPointInfo]:
    """Iterate on a flat state ``z0`` until ``residual ≤ tol`` or ``max_steps``."""
    solver, tol, max_steps = spec

    def F(z):
        return fn(z, args).astype(z.dtype)

    fz0 = F(z0)
    res0 = _residual(z0, fz0)
    trace0 = jnp.full((max_steps,), jnp.nan, res0.dtype)
    state0 = (jnp.zeros((), jnp.int32), z0, fz0, res0, trace0, solver.init(z0, fz0))

    def active(state):
        k, _, _, res, _, _ = state
        return (k < max_steps) & (res > tol) & jnp.isfinite(res)

    def body(state):
        k, z, fz, _, trace, s = state
        z_new, s = solver.step(z, fz, s)
        fz_new = F(z_new)
        res_new = _residual(z_new, fz_new)
        return (k + 1, z_new, fz_new, res_new, trace.at[k].set(res_new), s)

    if unroll:

        def scan_body(state, _):
            act = active(state)
            new = body(state)
            return jtu.tree_map(lambda a, b: jnp.where(act, a, b), new, state), None

        state, _ = lax.scan(scan_body, state0, None, length=max_steps)
    else:
        state = lax.while_loop(active, body, state0)
    k, z, _, res, trace, _ = state
    converged = (res <= tol) & jnp.isfinite(res)
    return z, FixedPointInfo(steps=k, residual=res, trace=trace, converged=converged)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2))
def _fp_custom(spec: _Spec, fn: Callable, jfb: bool, z0: Array, args: Any):
    return _run(spec, fn, z0, args, unroll=False)


def _fp_custom_fwd(spec, fn, jfb, z0, args):
    z, info = _run(spec, fn, z0, args, unroll=False)
    return (z, info), (z, args)


def _fp_custom_bwd(spec, fn, jfb, residuals, cotangents):
    z, args = residuals
    g = cotangents[0]
    if jfb:
        u = g
    else:
        _, vjp_z = jax.vjp(lambda zz: fn(zz, args), z)

        def adjoint(u, _):
            return g + vjp_z(u)[0]

        u, _ = _run(spec, adjoint, g, None, unroll=False)
    _, vjp_args = jax.vjp(lambda a: fn(z, a), args)
    (g_args,) = vjp_args(u)
    return jnp.zeros_like(z), g_args


_fp_custom.defvjp(_fp_custom_fwd, _fp_custom_bwd)


def _phantom(fn, z_star, ext, steps: int, tau: float) -> Array:
    """``z*`` in value; gradient of ``steps`` damped iterations started at ``sg(z*)``."""
    z_star = lax.stop_gradient(z_star)

    def body(z, _):
        return (1 - tau) * z + tau * fn(z, ext).astype(z.dtype), None

    z_k, _ = lax.scan(body, z_star, None, length=steps)
    return z_star + (z_k - lax.stop_gradient(z_k))


def _fixed_point_single(
    f, z0, args, spec: _Spec, backward: str, phantom_steps: int = 5, phantom_damping=0.5
):
    shape = z0.shape
    f_conv, consts = jax.closure_convert(f, z0, args)

    def fn(zflat, ext):
        a, cs = ext
        return jnp.ravel(f_conv(zflat.reshape(shape), a, *cs))

    ext = (args, tuple(consts))
    z0flat = jnp.ravel(z0)
    if backward == "unroll":
        z, info = _run(spec, fn, z0flat, ext, unroll=True)
    elif backward == "phantom":
        z, info = _run(spec, fn, z0flat, lax.stop_gradient(ext), unroll=False)
        z = _phantom(fn, z, ext, phantom_steps, phantom_damping)
    else:
        z, info = _fp_custom(spec, fn, backward == "jfb", z0flat, ext)
    return z.reshape(shape), info


def fixed_point(
    f: Callable[[Array, Any], Array],
    z0: Array,
    args: Any = None,
    *,
    solver: str = "anderson",
    tol: float = 1e-5,
    max_steps: int = 100,
    backward: str = "implicit",
    damping: float = 1.0,
    memory: int = 5,
    batched: bool = False,
    throw: bool = False,
    phantom_steps: int = 5,
    phantom_damping: float = 0.5,
) -> tuple[Array, FixedPointInfo]:
    """Solve ``z = f(z, args)`` from ``z0``; returns ``(z, info)``.

    ``f`` maps an array of ``z0``'s shape (one sample) to the same shape. With
    ``batched=True`` the leading axis of ``z0`` is a batch: each sample runs its own
    solve (``vmap`` of the single-sample solver, ``args`` shared), stops at its own
    tolerance and has its own ``info`` entries. ``solver`` ∈ :data:`FIXED_POINT_SOLVERS`,
    ``backward`` ∈ :data:`FIXED_POINT_BACKWARDS`; ``damping`` is β of all solvers,
    ``memory`` Anderson's window / Broyden's number of stored rank-one updates.
    ``phantom_steps`` (k) and ``phantom_damping`` (τ) configure ``backward="phantom"``.
    Gradients flow to ``args`` and to arrays ``f`` closes over. Non-convergence is
    reported in ``info.converged``; with ``throw=True`` it raises (``eqx.error_if``; the
    message names the residual).
    """
    spec = _Spec(_make_solver(solver, damping, memory), tol, max_steps)
    if backward not in FIXED_POINT_BACKWARDS:
        kind = " (planned, not yet implemented)" if backward in PLANNED_BACKWARDS else ""
        raise ValueError(
            f"Unknown backward {backward!r}{kind}; valid backwards: {FIXED_POINT_BACKWARDS} "
            f"(planned: {PLANNED_BACKWARDS})."
        )
    if max_steps < 1:
        raise ValueError(f"max_steps must be >= 1; got {max_steps}.")
    if backward == "phantom":
        if phantom_steps < 1:
            raise ValueError(f"phantom_steps must be >= 1; got {phantom_steps}.")
        if not phantom_damping > 0:
            raise ValueError(f"phantom_damping must be > 0; got {phantom_damping}.")
    z0 = jnp.asarray(z0)
    if not jnp.issubdtype(z0.dtype, jnp.inexact):
        raise ValueError(f"z0 must be floating point; got dtype {z0.dtype}.")

    single = functools.partial(
        _fixed_point_single,
        f,
        spec=spec,
        backward=backward,
        phantom_steps=phantom_steps,
        phantom_damping=phantom_damping,
    )
    if batched:
        z, info = jax.vmap(single, in_axes=(0, None))(z0, args)
    else:
        z, info = single(z0, args)

    if throw:
        msg = (
            f"fixed_point({solver!r}) did not converge: residual > tol={tol} "
            f"after max_steps={max_steps} (relative residual ‖f(z)−z‖/(‖z‖+1e-8))"
        )
        if not isinstance(info.residual, jax.core.Tracer):
            msg += f"; final residual = {jnp.max(info.residual)!s}"
        z = eqx.error_if(z, jnp.logical_not(info.converged), msg)
    return z, info
