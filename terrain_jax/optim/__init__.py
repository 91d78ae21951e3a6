"""Optimizers as walking styles on a loss terrain, and their continuous-time limits.

A *walking style* is an ``optax.GradientTransformation``; :data:`WALKING_STYLES` names the
usual ones (:data:`SIMPLEX_STYLES` those of the probability simplex), and any user
transformation plugs in instead of a name. :func:`walk` runs one style from one start as a
single ``lax.scan`` under ``jit`` and returns the whole :class:`Path`; :func:`walk_many`
runs many starts and a grid of hyper-parameters in one compiled call.

The continuous-time limits are fields ``f(t, y, args)`` for :func:`terrain_jax.integrate`:
:func:`gradient_flow`, :func:`heavy_ball` and :func:`nesterov_ode`. Geometry-aware styles:
:func:`mirror_descent` (exponentiated gradient), :func:`projected_gd` and
:func:`natural_gradient`.
"""

from ._limits import HeavyBallField, NesterovODEField, gradient_flow, heavy_ball, nesterov_ode
from ._mirror import NaturalGradientState, mirror_descent, natural_gradient, projected_gd
from ._styles import SIMPLEX_STYLES, WALKING_STYLES, Hyper, Style, get_style
from ._walk import Path, walk, walk_many

__all__ = [
    "WALKING_STYLES",
    "SIMPLEX_STYLES",
    "Hyper",
    "Style",
    "get_style",
    "walk",
    "walk_many",
    "Path",
    "gradient_flow",
    "heavy_ball",
    "HeavyBallField",
    "nesterov_ode",
    "NesterovODEField",
    "mirror_descent",
    "projected_gd",
    "natural_gradient",
    "NaturalGradientState",
]
