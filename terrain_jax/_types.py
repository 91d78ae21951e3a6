"""Shared jaxtyping aliases (private)."""

from collections.abc import Callable
from typing import Any

from jaxtyping import Array, ArrayLike, Float, PyTree

PyTreeState = PyTree[Float[Array, "..."]]
Scalar = Float[ArrayLike, ""]
FieldFn = Callable[[Any, Any, Any], Any]  # f(t, y, args) -> dy/dt

__all__ = ["Array", "ArrayLike", "Float", "PyTree", "PyTreeState", "Scalar", "FieldFn"]
