"""Pytree helpers shared by the directions and the surfaces."""

import equinox as eqx
from jaxtyping import PyTree


def inexact_arrays(params: PyTree) -> PyTree:
    """The part of ``params`` a slice moves: its inexact arrays, ``None`` at every other leaf."""
    return eqx.filter(params, eqx.is_inexact_array)
