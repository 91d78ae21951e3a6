"""Optimizers as walking styles on a loss terrain, and their continuous-time limits.

A *walking style* is an ``optax.GradientTransformation``; :data:`WALKING_STYLES` names the
usual ones (:data:`SIMPLEX_STYLES` those of the probability simplex), and any user
transformation plugs in instead of a name. :func:`walk` runs one style from one start as a
single ``lax.scan`` under ``jit`` and returns the whole :class:`Path`; :func:`walk_many`
runs many starts and a grid of hyper-parameters in one compiled call; :func:`sweep` does
that over one hyper-parameter and picks grid points (:class:`Sweep`: the style's default,
the best by a score). Step-size stability: :func:`step_matrix`, :func:`linear_rate` and
:func:`linear_edge` (linearised at a minimum), :func:`stability_edge` (measured),
:func:`quadratic_gd_losses` (GD on a quadratic, exactly).

The continuous-time limits are fields ``f(t, y, args)`` for :func:`terrain_jax.integrate`:
:func:`gradient_flow`, :func:`heavy_ball` and :func:`nesterov_ode`. Geometry-aware styles:
:func:`mirror_descent` (exponentiated gradient), :func:`projected_gd` and
:func:`natural_gradient`.
"""

from ._limits import HeavyBallField, NesterovODEField, gradient_flow, heavy_ball, nesterov_ode
from ._mirror import NaturalGradientState, mirror_descent, natural_gradient, projected_gd
from ._stability import (
    linear_edge,
    linear_rate,
    quadratic_gd_losses,
    stability_edge,
    step_matrix,
)
from ._styles import SIMPLEX_STYLES, WALKING_STYLES, Hyper, Style, default_hyper, get_style
from ._sweep import Sweep, sweep
from ._walk import Path, walk, walk_many

__all__ = [
    "WALKING_STYLES",
    "SIMPLEX_STYLES",
    "Hyper",
    "Style",
    "get_style",
    "default_hyper",
    "walk",
    "walk_many",
    "Path",
    "sweep",
    "Sweep",
    "step_matrix",
    "linear_rate",
    "linear_edge",
    "stability_edge",
    "quadratic_gd_losses",
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
