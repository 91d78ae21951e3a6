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
- ``newton``: Jacobian-free Newton–Krylov. Each step solves ``(J_f − I) δ = −(f(z) − z)``
  with lineax GMRES on the matrix-free operator ``v ↦ J_f v − v`` (``jax.linearize`` of
  ``f`` at ``z``, one jvp per Krylov vector; restart ``min(20, n)``, at most 10 restart
  cycles) to the relative tolerance ``η = clip(residual, max(tol/100, 100 ε), 0.1)``
  (an Eisenstat–Walker-type forcing term, so convergence is quadratic near ``z*``), then
  ``z ← z + β δ``. Converges wherever Newton does (``J_f − I`` invertible near ``z*``),
  including expanding maps;

and differentiates it with one of the backward passes in :data:`FIXED_POINT_BACKWARDS`

- ``implicit``: implicit function theorem, ``dz*/dθ = (I − J_f)⁻¹ ∂f/∂θ``; the adjoint
  ``u = g + J_fᵀ u`` is solved matrix-free (``vjp`` of ``f`` at ``z*``, the Jacobian is
  never formed) by the *same* solver and tolerance as the forward pass (for ``newton``,
  whose adjoint equation is linear, by one lineax GMRES solve of ``(I − J_fᵀ) u = g`` to
  relative tolerance ``tol``); the gradient is ``vjpθ(u)``. Memory does not grow with the
  number of forward steps;
- ``jfb``: Jacobian-free backprop (Fung et al. 2022): ``u = g``, i.e. ``(I − J_f)⁻¹ ≈ I``;
  exact when ``J_f(z*) = 0``, otherwise a descent-direction approximation;
- ``phantom``: phantom gradients (Geng et al. 2021): ``phantom_steps`` = k steps of the
  damped iteration ``z ← (1 − τ) z + τ f(z, args)`` (``τ = phantom_damping``) started at
  ``stop_gradient(z*)``, differentiated by plain autodiff. As k → ∞ it tends to the
  implicit gradient (for contractive ``f``); small k is a cheap approximation. The
  returned value is still ``z*`` (only its gradient comes from the k steps);
- ``unroll``: plain reverse-mode autodiff through a ``lax.scan`` of ``max_steps`` steps
  (steps after convergence are frozen by ``where`` and contribute nothing).

``z0`` gets a zero gradient under ``implicit``, ``jfb`` and ``phantom`` (``z*`` does not
depend on it).

States may be any pytree of floating arrays (one dtype): they are flattened with
``jax.flatten_util.ravel_pytree`` internally and returned in ``z0``'s structure. With
``batched=True`` every leaf carries a leading batch axis and each sample runs its own
solve (``vmap``); ``args_axes`` (``vmap``'s ``in_axes`` for ``args``) makes ``args``
per-sample too, e.g. the injected input ``x`` of a DEQ layer. No dense Jacobian (of a
sample or of the batch) is ever formed.

The residual reported in :class:`FixedPointInfo` (and compared with ``tol``) is
**relative**: ``‖f(z) − z‖₂ / (‖z‖₂ + 1e-8)`` at the returned ``z`` (per sample when
batched). The returned ``z`` is the last iterate whose residual was evaluated, so
``‖f(z) − z‖ ≤ tol · (‖z‖ + 1e-8)`` whenever ``info.converged``.

Diagnostics of ``J_f`` at a point (e.g. ``z*``): :func:`jacobian_frobenius`, a
differentiable Hutchinson estimate of ``‖J_f‖_F²`` (the Jacobian regulariser of Bai et al.
2021), and :func:`spectral_radius`, an Arnoldi estimate of ``ρ(J_f)``.
"""

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import lineax as lx
from jax import lax
from jax.flatten_util import ravel_pytree
from jaxtyping import Array, Float, PRNGKeyArray
from matfree import stochtrace

__all__ = [
    "FIXED_POINT_SOLVERS",
    "FIXED_POINT_BACKWARDS",
    "PLANNED_SOLVERS",
    "PLANNED_BACKWARDS",
    "HUTCHINSON_PROBES",
    "FixedPointInfo",
    "fixed_point",
    "jacobian_frobenius",
    "spectral_radius",
]

FIXED_POINT_SOLVERS = ("picard", "anderson", "broyden", "newton")
FIXED_POINT_BACKWARDS = ("implicit", "jfb", "unroll", "phantom")
PLANNED_SOLVERS = ()
PLANNED_BACKWARDS = ()
_HUTCHINSON_SAMPLERS = {"rademacher": stochtrace.sampler_signs, "normal": stochtrace.sampler_normal}
HUTCHINSON_PROBES = tuple(_HUTCHINSON_SAMPLERS)

_RES_EPS = 1e-8
_ANDERSON_REG = 1e-4
_BROYDEN_SKIP = 1e-10
_GMRES_RESTART = 20
_GMRES_CYCLES = 10
_NEWTON_ETA_MAX = 0.1


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
# Protocol: ``init(z, fz) -> state``; ``step(F, z, fz, state) -> (z_new, state)`` where
# ``F`` is the flat map ``z ↦ f(z, args)`` (only Newton calls it, to linearise).


class _Picard(NamedTuple):
    damping: float

    def init(self, z: Array, fz: Array) -> Any:
        return ()

    def step(self, F: Callable, z: Array, fz: Array, state: Any) -> tuple[Array, Any]:
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

    def step(self, F: Callable, z: Array, fz: Array, state: Any) -> tuple[Array, Any]:
        X, G, count = state
        m, dtype = self.memory, z.dtype
        # write slot `count % m` by a one-hot select: under vmap the slot differs per
        # sample, and a select is far cheaper than the scatter `.at[i].set` becomes
        slot = (jnp.arange(m, dtype=jnp.int32) == count % m)[:, None]
        X = jnp.where(slot, z[None], X)
        G = jnp.where(slot, (fz - z)[None], G)
        count = count + 1
        mask = (jnp.arange(m, dtype=jnp.int32) < count).astype(dtype)
        GG = (G @ G.T) * mask[:, None] * mask[None, :]
        # Normalise so the regulariser is relative: α is invariant to scaling GGᵀ.
        scale = jnp.maximum(jnp.max(jnp.diagonal(GG)), jnp.finfo(dtype).tiny)
        A = GG / scale + jnp.diag(self.reg * mask + (1 - mask))
        # min αᵀAα subject to Σα = 1 gives α = A⁻¹1 / (1ᵀA⁻¹1) over the used slots
        y = _spd_solve_ones(A) * mask
        alpha = y / jnp.sum(y)
        z_new = alpha @ X + self.damping * (alpha @ G)
        return z_new, (X, G, count)


def _spd_solve_ones(A: Array) -> Array:
    """``A⁻¹ 1`` for a small symmetric positive-definite ``A`` by Gaussian elimination
    without pivoting, unrolled over the (static) size: a few vector operations, which
    batch well under ``vmap`` where a LAPACK call per sample does not."""
    m = A.shape[0]
    b = jnp.ones((m,), A.dtype)
    for i in range(m):
        fac = (A[:, i] / A[i, i]).at[i].set(0)
        A = A - fac[:, None] * A[i][None, :]
        b = b - fac * b[i]
    return b / jnp.diagonal(A)


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

    def step(self, F: Callable, z: Array, fz: Array, state: Any) -> tuple[Array, Any]:
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


def _gmres(operator: lx.AbstractLinearOperator, b: Array, rtol: Any, restart_cycles: int):
    """``A x = b`` by lineax GMRES to ``‖A x − b‖_∞ ≲ rtol ‖b‖_∞`` (no throw: best effort)."""
    rtol = lax.stop_gradient(rtol)
    atol = rtol * lax.stop_gradient(jnp.max(jnp.abs(b)))
    solver = lx.GMRES(
        rtol=rtol,
        atol=atol,
        restart=min(_GMRES_RESTART, b.size),
        max_steps=restart_cycles,
        stagnation_iters=2,
    )
    return lx.linear_solve(operator, b, solver, throw=False).value


class _Newton(NamedTuple):
    """Jacobian-free Newton–Krylov: ``(J_f − I) δ = −(f(z) − z)`` by GMRES, ``z += β δ``."""

    damping: float
    eta_min: float

    def init(self, z: Array, fz: Array) -> Any:
        return ()

    def step(self, F: Callable, z: Array, fz: Array, state: Any) -> tuple[Array, Any]:
        g = fz - z
        _, jvp = jax.linearize(F, z)
        op = lx.FunctionLinearOperator(lambda v: jvp(v) - v, jax.ShapeDtypeStruct(z.shape, z.dtype))
        eta = jnp.clip(_residual(z, fz), self.eta_min, _NEWTON_ETA_MAX)
        delta = _gmres(op, -g, eta, _GMRES_CYCLES)
        # a failed Krylov solve (non-finite) falls back to a Picard step
        delta = jnp.where(jnp.all(jnp.isfinite(delta)), delta, g)
        return z + self.damping * delta, state


_Solver = _Picard | _Anderson | _Broyden | _Newton


def _make_solver(solver: str, damping: float, memory: int, tol: float, dtype: Any) -> _Solver:
    if solver == "picard":
        return _Picard(damping)
    if solver in ("anderson", "broyden"):
        if memory < 1:
            raise ValueError(f"memory must be >= 1; got {memory}.")
        return _Anderson(damping, memory) if solver == "anderson" else _Broyden(damping, memory)
    if solver == "newton":
        eps = float(jnp.finfo(dtype).eps)
        return _Newton(damping, max(tol / 100, 100 * eps))
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
        z_new, s = solver.step(F, z, fz, s)
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
        if isinstance(spec.solver, _Newton):  # linear adjoint: one Krylov solve
            op = lx.FunctionLinearOperator(
                lambda v: v - vjp_z(v)[0], jax.ShapeDtypeStruct(z.shape, z.dtype)
            )
            rtol = max(spec.tol, spec.solver.eta_min)
            u = _gmres(op, g, jnp.asarray(rtol, g.dtype), max(spec.max_steps, 1))
        else:

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
    _check_output(f, z0, args)
    z0flat, unravel = ravel_pytree(z0)
    f_conv, consts = jax.closure_convert(f, z0, args)

    def fn(zflat, ext):
        a, cs = ext
        return ravel_pytree(f_conv(unravel(zflat), a, *cs))[0]

    ext = (args, tuple(consts))
    if backward == "unroll":
        z, info = _run(spec, fn, z0flat, ext, unroll=True)
    elif backward == "phantom":
        z, info = _run(spec, fn, z0flat, lax.stop_gradient(ext), unroll=False)
        z = _phantom(fn, z, ext, phantom_steps, phantom_damping)
    else:
        z, info = _fp_custom(spec, fn, backward == "jfb", z0flat, ext)
    return unravel(z), info


def _check_state(z0: Any, batched: bool, args_axes: Any) -> Any:
    """Floating leaves of one dtype, with a common leading axis when batched."""
    z0 = jtu.tree_map(jnp.asarray, z0)
    leaves = jtu.tree_leaves(z0)
    if not leaves:
        raise ValueError("z0 has no array leaves.")
    dtypes = sorted({str(leaf.dtype) for leaf in leaves})
    if len(dtypes) > 1 or not jnp.issubdtype(leaves[0].dtype, jnp.inexact):
        raise ValueError(f"z0 must be floating point, all leaves one dtype; got {dtypes}.")
    if batched:
        sizes = {leaf.shape[0] if leaf.ndim else None for leaf in leaves}
        if len(sizes) != 1 or None in sizes:
            raise ValueError(
                "batched=True needs a common leading batch axis on every leaf of z0; got "
                f"shapes {[leaf.shape for leaf in leaves]}."
            )
    elif args_axes is not None:
        raise ValueError("args_axes (per-sample args) needs batched=True.")
    return z0


def _check_output(f: Callable, z: Any, args: Any) -> None:
    """``f`` must map a sample's state to a state of the same structure and shapes."""
    want = jtu.tree_map(jnp.shape, z)
    got = jtu.tree_map(lambda a: a.shape, jax.eval_shape(f, z, args))
    if jtu.tree_structure(got) != jtu.tree_structure(want) or got != want:
        raise ValueError(
            f"f(z, args) must return a state of z's structure and shapes: z is {want}, "
            f"f returned {got}."
        )


def fixed_point(
    f: Callable[[Any, Any], Any],
    z0: Any,
    args: Any = None,
    *,
    solver: str = "anderson",
    tol: float = 1e-5,
    max_steps: int = 100,
    backward: str = "implicit",
    damping: float = 1.0,
    memory: int = 5,
    batched: bool = False,
    args_axes: Any = None,
    throw: bool = False,
    phantom_steps: int = 5,
    phantom_damping: float = 0.5,
) -> tuple[Any, FixedPointInfo]:
    """Solve ``z = f(z, args)`` from ``z0``; returns ``(z, info)``.

    ``f`` maps a state of ``z0``'s structure (one sample; any pytree of floating arrays)
    to the same structure. With ``batched=True`` the leading axis of every leaf of ``z0``
    is a batch: each sample runs its own solve (``vmap`` of the single-sample solver),
    stops at its own tolerance and has its own ``info`` entries; ``args`` are shared
    unless ``args_axes`` (``vmap``'s ``in_axes`` for ``args``: ``0`` or a pytree prefix)
    maps them per sample. ``solver`` ∈ :data:`FIXED_POINT_SOLVERS`, ``backward`` ∈
    :data:`FIXED_POINT_BACKWARDS`; ``damping`` is β of all solvers, ``memory`` Anderson's
    window / Broyden's number of stored rank-one updates. ``phantom_steps`` (k) and
    ``phantom_damping`` (τ) configure ``backward="phantom"``. Gradients flow to ``args``
    and to arrays ``f`` closes over. Non-convergence is reported in ``info.converged``;
    with ``throw=True`` it raises (``eqx.error_if``; the message names the residual).
    """
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
    z0 = _check_state(z0, batched, args_axes)
    dtype = jtu.tree_leaves(z0)[0].dtype
    spec = _Spec(_make_solver(solver, damping, memory, tol, dtype), tol, max_steps)

    single = functools.partial(
        _fixed_point_single,
        f,
        spec=spec,
        backward=backward,
        phantom_steps=phantom_steps,
        phantom_damping=phantom_damping,
    )
    if batched:
        z, info = jax.vmap(single, in_axes=(0, args_axes))(z0, args)
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


# --------------------------------------------------------------------------- diagnostics


def jacobian_frobenius(
    f: Callable[[Any, Any], Any],
    z: Any,
    args: Any,
    key: PRNGKeyArray,
    *,
    samples: int = 1,
    probe: str = "rademacher",
) -> Float[Array, ""]:
    """Hutchinson estimate of ``‖∂f/∂z‖_F²`` at ``z`` (one sample), differentiable.

    ``E_v ‖J v‖² = tr(JᵀJ) = ‖J‖_F²`` for probes with ``E[v vᵀ] = I``
    (``probe`` ∈ :data:`HUTCHINSON_PROBES`: Rademacher signs or standard normals); the
    mean over ``samples`` probes is returned. Each probe costs one forward-mode ``jvp``
    (``J v``; ``‖vᵀJ‖²`` via ``vjp`` has the same expectation but needs a reverse pass).
    Built on matfree's ``stochtrace.estimator_monte_carlo`` with its
    ``monte_carlo_frobeniusnorm_squared`` integrand; ``z`` may be a pytree. Use as the
    Jacobian regulariser of DEQ training (Bai et al. 2021) at ``z*``.
    """
    if probe not in _HUTCHINSON_SAMPLERS:
        raise ValueError(f"Unknown probe {probe!r}; valid probes: {HUTCHINSON_PROBES}.")
    if samples < 1:
        raise ValueError(f"samples must be >= 1; got {samples}.")

    def jvp(v):
        return jax.jvp(lambda zz: f(zz, args), (z,), (v,))[1]

    estimate = stochtrace.estimator_monte_carlo(
        stochtrace.monte_carlo_frobeniusnorm_squared(), _HUTCHINSON_SAMPLERS[probe](z, num=samples)
    )
    return estimate(jvp, key)


def spectral_radius(
    f: Callable[[Any, Any], Any],
    z: Any,
    args: Any = None,
    *,
    iters: int = 20,
    key: PRNGKeyArray | None = None,
) -> Float[Array, ""]:
    """Estimate of ``ρ(J_f(z)) = max |λ(∂f/∂z)|`` at ``z`` (one sample), matrix-free.

    ``k = min(iters, n)`` steps of Arnoldi (``jvp``s of ``f``, Gram–Schmidt done twice)
    build the Krylov Hessenberg matrix ``H_k``; the estimate is ``max |eig(H_k)|``, the
    largest Ritz value. Power iteration would return ``|λ_max|`` only for a real dominant
    eigenvalue and oscillates for a complex pair; Ritz values handle both, and at
    ``k = n`` they are the eigenvalues (up to round-off). ``key`` draws the start vector
    (default ``PRNGKey(0)``). ``jnp.linalg.eigvals`` of the small ``H_k`` runs on CPU.
    """
    if iters < 1:
        raise ValueError(f"iters must be >= 1; got {iters}.")
    zflat, unravel = ravel_pytree(z)
    n = zflat.size
    k = min(iters, n)
    dtype = zflat.dtype

    def flat_f(zz):
        return ravel_pytree(f(unravel(zz), args))[0].astype(dtype)

    _, mv = jax.linearize(flat_f, zflat)
    key = jax.random.PRNGKey(0) if key is None else key
    v0 = jax.random.normal(key, (n,), dtype)
    V = jnp.zeros((k + 1, n), dtype).at[0].set(v0 / jnp.linalg.norm(v0))
    H = jnp.zeros((k + 1, k), dtype)
    tiny = 1e3 * jnp.finfo(dtype).eps

    def body(j, carry):
        V, H = carry
        w = mv(V[j])
        scale = jnp.linalg.norm(w)
        mask = (jnp.arange(k + 1) <= j).astype(dtype)
        h = (V @ w) * mask
        w = w - h @ V
        h2 = (V @ w) * mask  # second Gram–Schmidt pass
        w = w - h2 @ V
        beta = jnp.linalg.norm(w)
        ok = beta > tiny * scale  # breakdown: the Krylov space is invariant, stop growing
        V = V.at[j + 1].set(jnp.where(ok, w / jnp.where(ok, beta, 1), 0))
        H = H.at[:, j].set((h + h2).at[j + 1].set(jnp.where(ok, beta, 0)))
        return V, H

    _, H = lax.fori_loop(0, k, body, (V, H))
    return jnp.max(jnp.abs(jnp.linalg.eigvals(H[:k, :k])))
