"""One optimizer step of a model, the step that :func:`fit` scans and profiling compiles."""

from collections.abc import Callable

import equinox as eqx
import jax
import optax
from jaxtyping import Array, PyTree

__all__ = ["make_step", "Step"]

Step = Callable[..., tuple]
"""``step(params, opt_state, xb, yb, *extra) -> (params, opt_state, loss[, aux])``."""


def make_step(
    loss_fn: Callable[..., Array | tuple[Array, PyTree]],
    optimizer: optax.GradientTransformation,
    static: PyTree | None = None,
    *,
    has_aux: bool = False,
    jit: bool = True,
) -> Step:
    """The training step ``step(params, opt_state, xb, yb, *extra)``.

    ``params`` are the array leaves of a model (``eqx.partition(model, eqx.is_array)``),
    ``static`` the rest (``None`` when the params are the whole model). The step
    differentiates ``loss_fn(model, xb, yb, *extra)`` with respect to the model's inexact
    arrays (integer arrays ride along unchanged), applies one ``optimizer`` update (which
    sees those arrays as its ``params``) and returns ``(params, opt_state, loss)``, or
    ``(params, opt_state, loss, aux)`` when ``has_aux`` (then ``loss_fn`` returns
    ``(loss, aux)``). ``extra`` carries per-step inputs such as a PRNG key.

    ``jit=True`` returns it under ``jax.jit`` (``step.lower(*args).compile()`` then gives
    the compiled step to measure); ``jit=False`` the plain function, to scan or ``vmap``.
    ``opt_state`` is ``optimizer.init(eqx.filter(model, eqx.is_inexact_array))``.
    """

    def step(params, opt_state, xb, yb, *extra):
        model = params if static is None else eqx.combine(params, static)
        out, grads = eqx.filter_value_and_grad(loss_fn, has_aux=has_aux)(model, xb, yb, *extra)
        # optax mixes Python floats with int32 counters, which strict dtype promotion
        # rejects; the user's loss keeps whatever promotion mode is active.
        with jax.numpy_dtype_promotion("standard"):
            updates, opt_state = optimizer.update(
                grads, opt_state, eqx.filter(params, eqx.is_inexact_array)
            )
        params = eqx.apply_updates(params, updates)
        if has_aux:
            return params, opt_state, out[0], out[1]
        return params, opt_state, out

    return jax.jit(step) if jit else step
