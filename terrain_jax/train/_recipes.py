"""Named training recipes: an optimizer and its learning-rate schedule, built from a few numbers.

The experiments train with one schedule, a linear warm-up from zero over the first
``warmup_frac`` of the steps to the peak rate ``lr``, then a cosine decay to
``final_frac · lr`` at the last step. :data:`RECIPES` names the optimizers built on it;
:func:`get_recipe` builds one by name.
"""

from collections.abc import Callable

import optax

__all__ = ["warmup_cosine", "adamw_cosine", "adam_cosine", "RECIPES", "get_recipe"]


def warmup_cosine(
    lr: float, steps: int, *, warmup_frac: float = 0.05, final_frac: float = 0.01
) -> optax.Schedule:
    """Linear warm-up ``0 → lr`` over ``max(1, ⌊steps · warmup_frac⌋)`` steps, then cosine
    decay to ``lr · final_frac`` at step ``steps`` (``optax.warmup_cosine_decay_schedule``)."""
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"`steps` must be a positive integer, got {steps!r}.")
    warmup = max(1, int(steps * warmup_frac))
    return optax.warmup_cosine_decay_schedule(0.0, lr, warmup, steps, lr * final_frac)


def adamw_cosine(
    lr: float,
    steps: int,
    *,
    weight_decay: float,
    warmup_frac: float = 0.05,
    final_frac: float = 0.01,
) -> optax.GradientTransformation:
    """AdamW (decoupled ``weight_decay``, optax's default moments) on :func:`warmup_cosine`."""
    sched = warmup_cosine(lr, steps, warmup_frac=warmup_frac, final_frac=final_frac)
    return optax.adamw(sched, weight_decay=weight_decay)


def adam_cosine(
    lr: float, steps: int, *, warmup_frac: float = 0.05, final_frac: float = 0.01
) -> optax.GradientTransformation:
    """Adam (optax's default moments) on :func:`warmup_cosine`."""
    return optax.adam(warmup_cosine(lr, steps, warmup_frac=warmup_frac, final_frac=final_frac))


RECIPES: dict[str, Callable[..., optax.GradientTransformation]] = {
    "adamw_cosine": adamw_cosine,
    "adam_cosine": adam_cosine,
}
"""Recipe factories by name: ``RECIPES[name](lr, steps, **options)``."""


def get_recipe(name: str, lr: float, steps: int, **options: float) -> optax.GradientTransformation:
    """The optimizer of recipe ``name`` for peak rate ``lr`` over ``steps`` steps; unknown
    names raise ``ValueError`` listing the valid ones."""
    try:
        factory = RECIPES[name]
    except KeyError:
        raise ValueError(
            f"Unknown recipe {name!r}; valid names are: {', '.join(RECIPES)}."
        ) from None
    return factory(lr, steps, **options)
