"""Activations by name, each with its Lipschitz constant ``sup |σ'|``: one table."""

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array


class Activation(NamedTuple):
    """An activation function and its Lipschitz constant ``sup |σ'|`` (rounded up)."""

    fn: Callable[[Array], Array]
    lipschitz: float


# gelu (tanh approximation, jax's default): max σ' = 1.12899 at x ≈ 1.41 (exact erf form:
# 1.12890); silu: max σ' = 1.09984 at x ≈ 2.40; sigmoid: σ'(0) = 1/4. Measured on a grid
# of [-20, 20]; tests/test_fields.py re-checks every entry.
ACTIVATIONS: dict[str, Activation] = {
    "tanh": Activation(jnp.tanh, 1.0),
    "relu": Activation(jax.nn.relu, 1.0),
    "softplus": Activation(jax.nn.softplus, 1.0),
    "gelu": Activation(jax.nn.gelu, 1.13),
    "silu": Activation(jax.nn.silu, 1.1),
    "sigmoid": Activation(jax.nn.sigmoid, 0.25),
    "identity": Activation(lambda x: x, 1.0),
}
"""Activation names accepted everywhere an ``activation=`` argument is taken."""

ACTIVATION_LIPSCHITZ: dict[str, float] = {n: a.lipschitz for n, a in ACTIVATIONS.items()}
"""The Lipschitz constant of each activation in :data:`ACTIVATIONS`, by name."""


def get_activation(name: str) -> Callable[[Array], Array]:
    """The activation function called ``name`` (a key of :data:`ACTIVATIONS`)."""
    try:
        return ACTIVATIONS[name].fn
    except KeyError:
        valid = ", ".join(sorted(ACTIVATIONS))
        raise ValueError(f"Unknown activation {name!r}; valid names are: {valid}.") from None


def activation_lipschitz(name: str) -> float:
    """The Lipschitz constant of the activation called ``name``."""
    try:
        return ACTIVATIONS[name].lipschitz
    except KeyError:
        valid = ", ".join(sorted(ACTIVATIONS))
        raise ValueError(
            f"No Lipschitz constant for activation {name!r}; known activations: {valid}."
        ) from None
