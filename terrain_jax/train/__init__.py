"""Training: one step (:func:`make_step`), the scanned loop (:func:`fit`), named recipes,
profiling of compiled steps, and the classification losses and accuracies.

:func:`fit` trains any ``eqx.Module`` with any ``optax.GradientTransformation`` on a loss
``loss_fn(model, xb, yb) -> scalar``, scanning :func:`make_step` in one compiled call per
chunk. :func:`compile_step` / :func:`profile_step` measure the same step on its own
(temporary memory, compile time, time per call). :data:`RECIPES` names optimizers with
their schedule (AdamW with a linear warm-up and cosine decay, :func:`adamw_cosine`).
"""

from ._fit import fit
from ._losses import accuracy, ce_loss, cross_entropy, masked_accuracy
from ._profile import CompiledStep, StepProfile, compile_step, compiled_memory, profile_step
from ._recipes import RECIPES, adam_cosine, adamw_cosine, get_recipe, warmup_cosine
from ._step import Step, make_step

__all__ = [
    "fit",
    "make_step",
    "Step",
    "accuracy",
    "cross_entropy",
    "ce_loss",
    "masked_accuracy",
    "RECIPES",
    "get_recipe",
    "warmup_cosine",
    "adamw_cosine",
    "adam_cosine",
    "CompiledStep",
    "StepProfile",
    "compile_step",
    "compiled_memory",
    "profile_step",
]
