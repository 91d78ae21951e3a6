"""jaxtyping aliases shared by the library: what a state, a parameter pytree, a key is."""

from collections.abc import Callable, Sequence
from typing import TypeAlias

import numpy as np
from jax.typing import DTypeLike
from jaxtyping import Array, ArrayLike, Float, Int, PRNGKeyArray, PyTree, Real

__all__ = [
    "Args",
    "Batch",
    "DType",
    "Index",
    "Key",
    "Params",
    "PlotData",
    "Scalar",
    "ScalarLike",
    "State",
    "Vector",
    "VectorField",
]

State: TypeAlias = PyTree
"""A dynamical state: a pytree of arrays (one array in most fields)."""
Params: TypeAlias = PyTree
"""Parameters of a model or a loss: any pytree, an ``eqx.Module`` included (its non-array
leaves, such as activation functions, ride along undifferentiated)."""
Batch: TypeAlias = PyTree
"""A batch of data: a pytree of arrays sharing a leading example axis."""
DType: TypeAlias = DTypeLike
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
PlotData: TypeAlias = np.ndarray | Array | Sequence | float | int
"""Numbers a figure draws: an array (NumPy or JAX), a list of numbers, or one number."""
