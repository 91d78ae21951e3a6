"""The walking-style registry: names → optax factories.

A *walking style* is an ``optax.GradientTransformation``; a name is sugar for a factory
``(**hyper) -> GradientTransformation`` (as optax's aliases are). Every hyper-parameter may
be a JAX array, also a tracer under ``vmap``, because the factory runs inside the traced
walk.
"""

import inspect
from collections.abc import Callable

import optax
from jaxtyping import Array

from ._mirror import mirror_descent, projected_gd

__all__ = ["WALKING_STYLES", "SIMPLEX_STYLES", "get_style", "default_hyper", "Hyper", "Style"]

Hyper = float | Array
"""A hyper-parameter value: a Python float or a (possibly traced) JAX scalar."""


def _sgd(learning_rate: Hyper = 0.1) -> optax.GradientTransformation:
    """Plain gradient descent: ``x ← x − η ∇L`` (explicit Euler on ``−∇L``)."""
    return optax.sgd(learning_rate)


def _momentum(learning_rate: Hyper = 0.1, momentum: Hyper = 0.9) -> optax.GradientTransformation:
    """Heavy ball: ``m ← βm + ∇L``, ``x ← x − ηm``."""
    return optax.sgd(learning_rate, momentum=momentum)


def _nesterov(learning_rate: Hyper = 0.1, momentum: Hyper = 0.9) -> optax.GradientTransformation:
    """Nesterov momentum (look-ahead form, as ``optax.sgd(..., nesterov=True)``)."""
    return optax.sgd(learning_rate, momentum=momentum, nesterov=True)


def _adagrad(
    learning_rate: Hyper = 0.1, initial_accumulator_value: Hyper = 0.1, eps: Hyper = 1e-7
) -> optax.GradientTransformation:
    """Adagrad: step divided by the root of the summed squared gradients."""
    return optax.adagrad(
        learning_rate, initial_accumulator_value=initial_accumulator_value, eps=eps
    )


def _rmsprop(
    learning_rate: Hyper = 0.01, decay: Hyper = 0.9, eps: Hyper = 1e-8
) -> optax.GradientTransformation:
    """RMSprop: step divided by a running RMS of the gradients."""
    return optax.rmsprop(learning_rate, decay=decay, eps=eps)


def _adam(
    learning_rate: Hyper = 0.01, b1: Hyper = 0.9, b2: Hyper = 0.999, eps: Hyper = 1e-8
) -> optax.GradientTransformation:
    """Adam: bias-corrected momentum over bias-corrected RMS."""
    return optax.adam(learning_rate, b1=b1, b2=b2, eps=eps)


def _adamw(
    learning_rate: Hyper = 0.01,
    b1: Hyper = 0.9,
    b2: Hyper = 0.999,
    eps: Hyper = 1e-8,
    weight_decay: Hyper = 1e-4,
) -> optax.GradientTransformation:
    """AdamW: Adam plus decoupled weight decay ``−η λ x``."""
    return optax.adamw(learning_rate, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay)


def _lion(
    learning_rate: Hyper = 1e-3, b1: Hyper = 0.9, b2: Hyper = 0.99, weight_decay: Hyper = 0.0
) -> optax.GradientTransformation:
    """Lion: the sign of an interpolated momentum (every coordinate moves by ``η``)."""
    return optax.lion(learning_rate, b1=b1, b2=b2, weight_decay=weight_decay)


def _signsgd(learning_rate: Hyper = 0.01) -> optax.GradientTransformation:
    """Sign descent: ``x ← x − η sign(∇L)``, steepest descent in the ℓ∞ norm."""
    return optax.chain(optax.scale_by_sign(), optax.scale_by_learning_rate(learning_rate))


WALKING_STYLES: dict[str, Callable[..., optax.GradientTransformation]] = {
    "sgd": _sgd,
    "momentum": _momentum,
    "nesterov": _nesterov,
    "adagrad": _adagrad,
    "rmsprop": _rmsprop,
    "adam": _adam,
    "adamw": _adamw,
    "lion": _lion,
    "signsgd": _signsgd,
}
"""Walking-style factories by name: ``WALKING_STYLES[name](**hyper)`` is an optax
transformation. Every hyper-parameter may be a JAX array (also a tracer under ``vmap``)."""

SIMPLEX_STYLES: dict[str, Callable[..., optax.GradientTransformation]] = {
    "mirror_descent": mirror_descent,
    "projected_gd": projected_gd,
}
"""Walking styles of the probability simplex: positions are probability vectors (last
axis) and every step stays on the simplex. Kept apart from :data:`WALKING_STYLES`, whose
styles walk all of ``R^n``; :func:`get_style` takes both."""

Style = str | optax.GradientTransformation | Callable[..., optax.GradientTransformation]
"""A walking style: a registry name, a factory ``(**hyper) -> GradientTransformation``, or
a ready ``optax.GradientTransformation``."""


def _factory(style: Style) -> Callable[..., optax.GradientTransformation]:
    """The factory behind a name or a factory; ``ValueError`` listing the valid names."""
    if isinstance(style, str):
        try:
            return {**WALKING_STYLES, **SIMPLEX_STYLES}[style]
        except KeyError:
            valid = ", ".join([*WALKING_STYLES, *SIMPLEX_STYLES])
            raise ValueError(
                f"Unknown walking style {style!r}; valid names are: {valid} "
                "(or pass any optax.GradientTransformation)."
            ) from None
    if callable(style) and not isinstance(style, optax.GradientTransformation):
        return style
    raise ValueError(
        f"style must be a name, a factory or an optax.GradientTransformation, got {style!r}."
    )


def default_hyper(style: Style) -> dict[str, Hyper]:
    """The hyper-parameters a style takes by default: its factory's keyword defaults
    (``default_hyper("adam")["learning_rate"] == 0.01``); ``{}`` for a ready optax
    transformation, which has none left to set."""
    if isinstance(style, optax.GradientTransformation):
        return {}
    params = inspect.signature(_factory(style)).parameters.values()
    return {p.name: p.default for p in params if p.default is not inspect.Parameter.empty}


def get_style(style: Style, **hyper: Hyper) -> optax.GradientTransformation:
    """The optax transformation for ``style`` with hyper-parameters ``hyper``.

    ``style`` is a name from :data:`WALKING_STYLES` or :data:`SIMPLEX_STYLES`, a factory
    ``(**hyper) -> GradientTransformation``, or a ready ``optax.GradientTransformation``
    (then ``hyper`` must be empty). Unknown names and hyper-parameters raise ``ValueError``
    listing the valid ones.
    """
    if isinstance(style, optax.GradientTransformation):
        if hyper:
            raise ValueError(
                f"hyper={sorted(hyper)} given with a ready optax transformation; pass a style "
                "name or a factory to set hyper-parameters, or build the transformation with them."
            )
        return style
    factory = _factory(style)
    params = inspect.signature(factory).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    unknown = [k for k in hyper if k not in params]
    if unknown and not takes_any:
        raise ValueError(
            f"Unknown hyper-parameter(s) {unknown} for style {style!r}; valid ones are: "
            f"{', '.join(params)}."
        )
    return factory(**hyper)
