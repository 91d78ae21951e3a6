"""Networks as discretised flows, and their diagnostics.

- blocks: :func:`make_blocks` (stacked MLP or conv fields, :data:`BLOCK_KINDS`),
  :func:`shared_blocks` (variance-preserving, for plain and residual nets alike),
  the highway :class:`Gate`;
- depth families run with ``lax.scan``: :class:`AbstractDepthNet` with :class:`PlainNet`,
  :class:`ResidualNet` (explicit Euler of its field), :class:`HighwayNet`,
  :class:`ScaledResidualNet`;
- ODE layers sharing one :class:`ODESolve`: :class:`ODEBlock`, :class:`AugmentedODEBlock`,
  RNODE's :class:`RegularisedODEBlock`, the continuous normalising flow :class:`CNF`;
  the continuous adjoint written out (:func:`adjoint_backward`, :func:`adjoint_solve`)
  and NFE counts of a gradient (:func:`nfe_forward_backward`);
- deep equilibrium layers: :class:`DEQBlock` with :class:`DEQCell`,
  :class:`ContractiveConvCell` (contractive by construction, :func:`conv_norm_bound`) or
  :class:`InjectionCell`;
- :class:`Classifier` (stem -> body -> head) with depth-net, ODE (:class:`ODENet`,
  :class:`AdjointODENet`) or DEQ (:class:`DEQNet`) bodies;
- :class:`ResidualLM`: a residual recurrent next-token model, generation as an explicit
  Euler step of its state (and the implicit step of the same equation, solved);
- diagnostics: layer / block / end-to-end Jacobians, per-layer gradient norms, lesion
  masks and their summary, effective receptive fields with their width and central mass,
  Dinh et al.'s function-preserving rescaling.
"""

from ._adjoint import NFECounts, adjoint_backward, adjoint_solve, nfe_forward_backward
from ._blocks import BLOCK_KINDS, Gate, make_blocks, make_gates, shared_blocks
from ._classifier import CLASSIFIER_KINDS, AdjointODENet, Classifier, DEQNet, ODENet
from ._cnf import CNF, CNF_TRACES, standard_normal_log_prob
from ._depth import AbstractDepthNet, HighwayNet, PlainNet, ResidualNet, ScaledResidualNet
from ._deq import ContractiveConvCell, DEQBlock, DEQCell, InjectionCell, conv_norm_bound
from ._diagnostics import (
    GRADIENT_NORM_METHODS,
    block_field_jacobian,
    effective_receptive_field,
    end_to_end_jacobian,
    layer_gradient_norms,
    layer_jacobian,
    lesion_masks,
    lesion_summary,
    per_layer_norms,
    receptive_field_mass,
    receptive_field_width,
    stable_norm,
)
from ._ode import AugmentedODEBlock, ODEBlock, RegularisedField, RegularisedODEBlock, RNODEOutput
from ._recurrent import ResidualLM
from ._rescale import rescale_relu_layer
from ._solve import ODESolve

__all__ = [
    "BLOCK_KINDS",
    "CLASSIFIER_KINDS",
    "CNF",
    "CNF_TRACES",
    "GRADIENT_NORM_METHODS",
    "AbstractDepthNet",
    "AdjointODENet",
    "AugmentedODEBlock",
    "Classifier",
    "ContractiveConvCell",
    "DEQBlock",
    "DEQCell",
    "DEQNet",
    "Gate",
    "HighwayNet",
    "InjectionCell",
    "NFECounts",
    "ODEBlock",
    "ODENet",
    "ODESolve",
    "PlainNet",
    "RNODEOutput",
    "RegularisedField",
    "RegularisedODEBlock",
    "ResidualLM",
    "ResidualNet",
    "ScaledResidualNet",
    "adjoint_backward",
    "adjoint_solve",
    "block_field_jacobian",
    "conv_norm_bound",
    "effective_receptive_field",
    "end_to_end_jacobian",
    "layer_gradient_norms",
    "layer_jacobian",
    "lesion_masks",
    "lesion_summary",
    "make_blocks",
    "make_gates",
    "nfe_forward_backward",
    "per_layer_norms",
    "receptive_field_mass",
    "receptive_field_width",
    "rescale_relu_layer",
    "shared_blocks",
    "stable_norm",
    "standard_normal_log_prob",
]
