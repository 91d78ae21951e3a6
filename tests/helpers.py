"""Shared test helpers: tree comparisons and the canonical solver lists."""

import itertools

import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import numpy as np

from terrain_jax import SOLVERS
from terrain_jax.fixed_point import Anderson, Broyden, NewtonKrylov, Picard

ALL_SOLVERS = tuple(SOLVERS)
EXPLICIT_SOLVERS = tuple(s for s in SOLVERS if s not in ("implicit_euler", "kvaerno3", "kvaerno5"))
IMPLICIT_SOLVERS = ("implicit_euler", "kvaerno3", "kvaerno5")
ADAPTIVE_SOLVERS = ("heun", "bosh3", "tsit5", "dopri5", "dopri8", "kvaerno3", "kvaerno5")
# one object of every fixed-point solver, in FIXED_POINT_SOLVERS order (default settings)
FIXED_POINT_SOLVER_OBJECTS = (Picard(), Anderson(), Broyden(), NewtonKrylov())


def tree_allclose(x, y, *, rtol=1e-5, atol=1e-8) -> bool:
    """Same structure and every leaf allclose."""
    if jtu.tree_structure(x) != jtu.tree_structure(y):
        return False
    return all(
        bool(jnp.allclose(a, b, rtol=rtol, atol=atol))
        for a, b in zip(jtu.tree_leaves(x), jtu.tree_leaves(y), strict=True)
    )


def tree_max_abs_diff(x, y) -> float:
    return max(
        float(jnp.max(jnp.abs(a - b)))
        for a, b in zip(jtu.tree_leaves(x), jtu.tree_leaves(y), strict=True)
    )


__all__ = [
    "ALL_SOLVERS",
    "EXPLICIT_SOLVERS",
    "IMPLICIT_SOLVERS",
    "ADAPTIVE_SOLVERS",
    "FIXED_POINT_SOLVER_OBJECTS",
    "tree_allclose",
    "tree_max_abs_diff",
    "jax",
]


def normal32(seed, shape, scale=1.0):
    """A float32 standard-normal array from NumPy's generator (no JAX compile)."""
    return jnp.asarray(scale * np.random.default_rng(seed).standard_normal(shape), jnp.float32)


def assert_same_multiset(a, b, atol):
    """Every eigenvalue of ``a`` is close to one of ``b`` and vice versa (complex)."""
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape
    d = np.abs(a[:, None] - b[None, :])
    assert d.min(axis=1).max() < atol and d.min(axis=0).max() < atol, d


def rbg_keys():
    """Fresh rbg keys, deterministic per test: ``k = rbg_keys(); k()``."""
    counter = itertools.count()
    return lambda: jax.random.key(next(counter), impl="rbg")
