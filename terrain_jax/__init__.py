"""terrain_jax: the dynamical-systems view of deep learning, executable.

A residual block is an explicit Euler step, a DEQ is a fixed point, an optimizer is a
walk on a loss terrain. This package makes each statement a function you can call.
"""

from . import bench, data, equilibrium, fields, nets, plotting, solvers, spectra, stability, train
from .equilibrium import FixedPointInfo, fixed_point
from .fields import (
    ConvField,
    GradientField,
    HamiltonianField,
    LinearField,
    MLPField,
    NNXField,
    PiecewiseConstantField,
)
from .integrate import STATUS, Trajectory, integrate
from .nets import (
    AbstractDepthNet,
    HighwayNet,
    ODEBlock,
    PlainNet,
    ResidualNet,
    ScaledResidualNet,
)
from .solvers import RK4, SOLVERS, Tableau, get_solver, tableau
from .spectra import (
    block_field_jacobian,
    condition_number,
    end_to_end_jacobian,
    jacobian,
    jacobian_eigenvalues,
    jacobian_singular_values,
    jacobian_singular_values_lanczos,
    layer_gradient_norms,
    layer_jacobian,
    lipschitz_lower_bound,
    lipschitz_upper_bound,
    top_singular_value,
)
from .stability import max_stable_step, real_stability_interval, region, stability_function

__version__ = "0.1.0"

__all__ = [
    "FixedPointInfo",
    "equilibrium",
    "fixed_point",
    "block_field_jacobian",
    "condition_number",
    "end_to_end_jacobian",
    "jacobian",
    "jacobian_eigenvalues",
    "jacobian_singular_values",
    "jacobian_singular_values_lanczos",
    "layer_gradient_norms",
    "layer_jacobian",
    "lipschitz_lower_bound",
    "lipschitz_upper_bound",
    "top_singular_value",
    "spectra",
    "AbstractDepthNet",
    "ConvField",
    "HighwayNet",
    "PlainNet",
    "ScaledResidualNet",
    "GradientField",
    "HamiltonianField",
    "LinearField",
    "MLPField",
    "NNXField",
    "ODEBlock",
    "PiecewiseConstantField",
    "RK4",
    "ResidualNet",
    "SOLVERS",
    "STATUS",
    "Tableau",
    "Trajectory",
    "bench",
    "data",
    "fields",
    "get_solver",
    "integrate",
    "max_stable_step",
    "nets",
    "plotting",
    "real_stability_interval",
    "region",
    "solvers",
    "stability",
    "stability_function",
    "tableau",
    "train",
]
