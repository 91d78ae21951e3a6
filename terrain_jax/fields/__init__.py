"""Vector fields ``f(t, y, args) -> dy/dt``.

Every field here is an :class:`AbstractField` (an ``eqx.Module`` with that call signature),
so it plugs into :func:`terrain_jax.integrate` (and straight into diffrax). Any plain
callable with the same signature works too; these classes cover the cases the rest of the
library needs:

- learned fields: :class:`MLPField`, :class:`ConvField`, with activations by name
  (:data:`ACTIVATIONS`, each with its Lipschitz constant);
- analytic fields: :class:`LinearField` (with its exact flow), :class:`GradientField`,
  :class:`HamiltonianField`, :class:`VanDerPolField`;
- adapters: :class:`NNXField` (Flax NNX modules), :class:`PiecewiseConstantField`
  (untied blocks as one time-dependent field);
- Lipschitz constants in the state: ``field.lipschitz_bound()`` (an upper bound from the
  structure), :func:`lipschitz_upper_bound`, :func:`lipschitz_lower_bound` (sampled).
"""

from ._activations import (
    ACTIVATION_LIPSCHITZ,
    ACTIVATIONS,
    Activation,
    activation_lipschitz,
    get_activation,
)
from ._adapters import NNXField, PiecewiseConstantField
from ._analytic import GradientField, HamiltonianField, LinearField, VanDerPolField
from ._base import AbstractField
from ._conv import ConvField
from ._init import INITS
from ._lipschitz import lipschitz_lower_bound, lipschitz_upper_bound
from ._mlp import MLPField

__all__ = [
    "ACTIVATIONS",
    "ACTIVATION_LIPSCHITZ",
    "INITS",
    "AbstractField",
    "Activation",
    "ConvField",
    "GradientField",
    "HamiltonianField",
    "LinearField",
    "MLPField",
    "NNXField",
    "PiecewiseConstantField",
    "VanDerPolField",
    "activation_lipschitz",
    "get_activation",
    "lipschitz_lower_bound",
    "lipschitz_upper_bound",
]
