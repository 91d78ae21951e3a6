"""jaxtyping aliases shared by the library: what a state, a parameter pytree, a key is."""

from collections.abc import Callable
from typing import TypeAlias

from jaxtyping import Array, ArrayLike, Float, Int, PRNGKeyArray, PyTree, Real

__all__ = [
    "Args",
    "Batch",
    "Index",
    "Key",
    "Params",
    "Scalar",
    "ScalarLike",
    "State",
    "Vector",
    "VectorField",
]

State: TypeAlias = PyTree[Array]
"""A dynamical state: any pytree of arrays (one array in most fields)."""
Params: TypeAlias = PyTree[Array]
"""Parameters of a model or a loss: any pytree (an ``eqx.Module`` included)."""
Batch: TypeAlias = PyTree[Array]
"""A batch of data: a pytree of arrays sharing a leading example axis."""
Key: TypeAlias = PRNGKeyArray
Scalar: TypeAlias = Float[Array, ""]
ScalarLike: TypeAlias = float | Real[ArrayLike, ""]
Vector: TypeAlias = Float[Array, " n"]
"""A flat vector (a flattened state or parameter vector)."""
Index: TypeAlias = int | Int[Array, ""]
"""A layer or step index, static or traced."""
Args: TypeAlias = PyTree
"""The ``args`` passed through a solve to the field: any pytree, or ``None``."""
VectorField: TypeAlias = Callable[[ScalarLike, State, Args], State]
"""A field ``f(t, y, args) -> dy/dt``, the signature diffrax expects."""
