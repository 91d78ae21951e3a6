"""Training: one step (:func:`make_step`), the scanned loop (:func:`fit`), named recipes,
profiling of compiled steps, and the classification losses and accuracies.

:func:`fit` trains any ``eqx.Module`` with any ``optax.GradientTransformation`` on a loss
``loss_fn(model, xb, yb) -> scalar``, scanning :func:`make_step` in one compiled call per
chunk. :func:`compile_step` / :func:`profile_step` measure the same step on its own
(temporary memory, compile time, time per call), and :func:`fit_timed` trains with that
compiled step, timing each epoch. :data:`RECIPES` names optimizers with
their schedule (AdamW with a linear warm-up and cosine decay, :func:`adamw_cosine`).
:func:`fit_until` trains to a loss threshold; :func:`gd_with_sharpness` runs full-batch GD
with the sharpness tracked inside its scan.
"""

from ._fit import fit
from ._losses import accuracy, ce_loss, cross_entropy, masked_accuracy
from ._profile import (
    CompiledStep,
    StepProfile,
    TimedFit,
    compile_step,
    compiled_memory,
    fit_timed,
    profile_step,
)
from ._recipes import RECIPES, adam_cosine, adamw_cosine, get_recipe, warmup_cosine
from ._sharpness import gd_with_sharpness
from ._step import Step, make_step
from ._until import fit_until

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
    "TimedFit",
    "fit_timed",
    "gd_with_sharpness",
    "fit_until",
]
