"""Training to a loss: :func:`fit` in chunks until the full-data loss falls below a threshold.

Minima are only comparable at the same loss (near zero the cross-entropy Hessian shrinks
with the loss), so curvature studies train each run *to* a loss, not for a fixed budget.
"""

from collections.abc import Callable

import equinox as eqx
import jax
import numpy as np
import optax
from jaxtyping import Array, ArrayLike, PRNGKeyArray, PyTree, Shaped

from ._fit import fit

__all__ = ["fit_until"]


@eqx.filter_jit
def _full_loss(model: PyTree, loss_fn: Callable[..., Array], x: Array, y: Array) -> Array:
    return loss_fn(model, x, y)


def fit_until(
    model: PyTree,
    loss_fn: Callable[..., Array],
    optimizer: optax.GradientTransformation,
    x: Shaped[ArrayLike, "n ..."],
    y: Shaped[ArrayLike, "n ..."],
    *,
    threshold: float,
    check_every: int,
    max_steps: int,
    key: PRNGKeyArray,
    batch_size: int | None = None,
) -> tuple[PyTree, int, np.ndarray]:
    """Train with :func:`fit` until ``loss_fn(model, x, y) < threshold`` on all of ``(x, y)``.

    The loss is checked after every ``check_every`` steps; each chunk is one compiled
    ``fit`` call (compiled once, with the optimizer state restarted per chunk: pass a
    stateless optimizer such as ``optax.sgd`` for one uninterrupted run) whose minibatch
    order comes from ``jax.random.fold_in(key, steps_done)``. Stops at the first check
    below the threshold or once ``max_steps`` steps are done (rounded up to a whole chunk).

    Returns the model, the number of steps taken and the full-data loss at every check
    (``hist[-1] < threshold`` exactly when the run converged).
    """
    steps, hist = 0, []
    while steps < max_steps:
        model, _ = fit(
            model,
            loss_fn,
            optimizer,
            x,
            y,
            steps=check_every,
            batch_size=batch_size,
            key=jax.random.fold_in(key, steps),
        )
        steps += check_every
        hist.append(float(_full_loss(model, loss_fn, x, y)))
        if hist[-1] < threshold:
            break
    return model, steps, np.asarray(hist)
