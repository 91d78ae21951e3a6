"""``fixed_point(f, z0, args, solver=..., backward=...)``: names, checks, pytrees, batches."""

import dataclasses
import functools
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
from jax.flatten_util import ravel_pytree
from jaxtyping import PyTree

from .._typing import State
from ._anderson import Anderson
from ._backward import JFB, AbstractBackward, Implicit, Phantom, Unroll
from ._base import AbstractFixedPointSolver, FixedPointInfo
from ._broyden import Broyden
from ._newton import NewtonKrylov
from ._picard import Picard

_SOLVERS: dict[str, type[AbstractFixedPointSolver]] = {
    "picard": Picard,
    "anderson": Anderson,
    "broyden": Broyden,
    "newton": NewtonKrylov,
}
_BACKWARDS: dict[str, type[AbstractBackward]] = {
    "implicit": Implicit,
    "jfb": JFB,
    "unroll": Unroll,
    "phantom": Phantom,
}
FIXED_POINT_SOLVERS = tuple(_SOLVERS)
FIXED_POINT_BACKWARDS = tuple(_BACKWARDS)


def _from_name(kind: str, table: dict, base: type, name: object, keywords: dict) -> object:
    """``table[name]`` built with the given ``keywords`` (``{keyword: (field, value)}``,
    ``None`` values not given) that it has as fields; an object of ``base`` is returned as
    it is, and refuses any given keyword."""
    given = {kw: fv for kw, fv in keywords.items() if fv[1] is not None}
    if isinstance(name, base):
        if given:
            raise ValueError(
                f"{', '.join(f'{kw}=' for kw in given)}: these keywords only override the "
                f"settings of a {kind} given by name; with the {kind} object {name!r}, set "
                f"them on the object instead ({type(name).__name__}(...))."
            )
        return name
    if not isinstance(name, str) or name not in table:
        raise ValueError(
            f"Unknown {kind} {name!r}; valid {kind}s: {tuple(table)} (names) or an "
            f"instance of {base.__name__}."
        )
    cls = table[name]
    fields = {field.name for field in dataclasses.fields(cls)}
    return cls(**{f: v for f, v in given.values() if f in fields})


def _check_state(z0: PyTree, batched: bool, args_axes: PyTree) -> PyTree:
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


def _check_output(f: Callable, z: PyTree, args: PyTree) -> None:
    """``f`` must map a sample's state to a state of the same structure and shapes."""
    want = jtu.tree_map(jnp.shape, z)
    got = jtu.tree_map(lambda a: a.shape, jax.eval_shape(f, z, args))
    if jtu.tree_structure(got) != jtu.tree_structure(want) or got != want:
        raise ValueError(
            f"f(z, args) must return a state of z's structure and shapes: z is {want}, "
            f"f returned {got}."
        )


def _fixed_point_single(f, z0, args, solver, backward, tol, max_steps):
    _check_output(f, z0, args)
    z0flat, unravel = ravel_pytree(z0)
    f_conv, consts = jax.closure_convert(f, z0, args)

    def fn(zflat, ext):
        a, cs = ext
        return ravel_pytree(f_conv(unravel(zflat), a, *cs))[0]

    ext = (args, tuple(consts))
    z, info = backward.solve(solver, tol, max_steps, fn, z0flat, ext)
    return unravel(z), info


def fixed_point(
    f: Callable[[State, PyTree], State],
    z0: State,
    args: PyTree = None,
    *,
    solver: str | AbstractFixedPointSolver = "anderson",
    tol: float = 1e-5,
    max_steps: int = 100,
    backward: str | AbstractBackward = "implicit",
    damping: float | None = None,
    memory: int | None = None,
    batched: bool = False,
    args_axes: PyTree = None,
    throw: bool = False,
    phantom_steps: int | None = None,
    phantom_damping: float | None = None,
) -> tuple[State, FixedPointInfo]:
    """Solve ``z = f(z, args)`` from ``z0``; returns ``(z, info)``.

    ``f`` maps a state of ``z0``'s structure (one sample; any pytree of floating arrays)
    to the same structure. With ``batched=True`` the leading axis of every leaf of ``z0``
    is a batch: each sample runs its own solve (``vmap`` of the single-sample solver),
    stops at its own tolerance and has its own ``info`` entries; ``args`` are shared
    unless ``args_axes`` (``vmap``'s ``in_axes`` for ``args``: ``0`` or a pytree prefix)
    maps them per sample.

    ``solver`` is an :class:`AbstractFixedPointSolver` (:class:`Picard`,
    :class:`Anderson`, :class:`Broyden`, :class:`NewtonKrylov`) or its name in
    :data:`FIXED_POINT_SOLVERS`; ``backward`` an :class:`AbstractBackward`
    (:class:`Implicit`, :class:`JFB`, :class:`Unroll`, :class:`Phantom`) or its name in
    :data:`FIXED_POINT_BACKWARDS`. With names, ``damping`` (β) and ``memory`` (window /
    stored updates) override the named solver's defaults where it has them, and
    ``phantom_steps`` / ``phantom_damping`` those of ``"phantom"``; with objects they are
    refused (set them on the object). Gradients flow to ``args`` and to arrays ``f``
    closes over. The residual compared with ``tol`` is relative,
    ``‖f(z) − z‖₂ / (‖z‖₂ + 1e-8)`` at the returned ``z`` (the last iterate evaluated).
    Non-convergence is reported in ``info.converged`` and ``info.result``; with
    ``throw=True`` it raises (``eqx.error_if``; the message names the residual).
    """
    solver_obj = _from_name(
        "solver",
        _SOLVERS,
        AbstractFixedPointSolver,
        solver,
        {"damping": ("damping", damping), "memory": ("memory", memory)},
    )
    backward_obj = _from_name(
        "backward",
        _BACKWARDS,
        AbstractBackward,
        backward,
        {
            "phantom_steps": ("steps", phantom_steps),
            "phantom_damping": ("damping", phantom_damping),
        },
    )
    if max_steps < 1:
        raise ValueError(f"max_steps must be >= 1; got {max_steps}.")
    z0 = _check_state(z0, batched, args_axes)
    single = functools.partial(
        _fixed_point_single,
        f,
        solver=solver_obj,
        backward=backward_obj,
        tol=tol,
        max_steps=max_steps,
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
