"""One jit-compiled training loop over optax, and evaluation helpers.

:func:`fit` trains any ``eqx.Module`` with any ``optax.GradientTransformation`` on a
loss ``loss_fn(model, xb, yb) -> scalar``. The steps run inside ``lax.scan``: one
compiled call for the whole run, or one per ``eval_every`` steps when evaluating, so
there is no Python loop per step. Minibatches come from
:func:`terrain_jax.data.batch_indices` (epochs of permutations, gathered inside the step).
"""

from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, ArrayLike, Float, Int, PRNGKeyArray, Shaped

from .data import batch_indices

__all__ = ["fit", "accuracy", "cross_entropy"]

LossFn = Callable[[Any, Array, Array], Array]


def cross_entropy(
    logits: Float[Array, "*batch classes"], labels: Int[ArrayLike, "*batch"]
) -> Float[Array, ""]:
    """Mean softmax cross-entropy of integer ``labels``."""
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, jnp.asarray(labels)))


@eqx.filter_jit
def _run_chunk(
    params: Any,
    static: Any,
    opt_state: Any,
    x: Array,
    y: Array,
    idx: Int[Array, "steps batch"],
    loss_fn: LossFn,
    optimizer: optax.GradientTransformation,
) -> tuple[Any, Any, Array]:
    """``idx.shape[0]`` optimizer steps in one ``lax.scan``; returns the per-step losses."""

    def step(carry, batch_idx):
        params, opt_state = carry
        model = eqx.combine(params, static)
        loss, grads = eqx.filter_value_and_grad(loss_fn)(model, x[batch_idx], y[batch_idx])
        # optax mixes Python floats with int32 counters, which strict dtype promotion
        # rejects; the user's loss keeps whatever promotion mode is active.
        with jax.numpy_dtype_promotion("standard"):
            updates, opt_state = optimizer.update(
                grads, opt_state, eqx.filter(model, eqx.is_inexact_array)
            )
        model = eqx.apply_updates(model, updates)
        return (eqx.filter(model, eqx.is_array), opt_state), loss

    (params, opt_state), losses = jax.lax.scan(step, (params, opt_state), idx)
    return params, opt_state, losses


@eqx.filter_jit
def _evaluate(model: Any, eval_fn: Callable[[Any], dict[str, Array]]) -> dict[str, Array]:
    return eval_fn(model)


def fit(
    model: Any,
    loss_fn: LossFn,
    optimizer: optax.GradientTransformation,
    x: Shaped[ArrayLike, "n ..."],
    y: Shaped[ArrayLike, "n ..."],
    *,
    steps: int,
    batch_size: int | None = None,
    key: PRNGKeyArray,
    eval_every: int | None = None,
    eval_fn: Callable[[Any], dict[str, Array]] | None = None,
) -> tuple[Any, dict[str, np.ndarray]]:
    """Train ``model`` for ``steps`` optimizer steps on minibatches of ``(x, y)``.

    - ``loss_fn(model, xb, yb) -> scalar``; gradients flow to the model's inexact arrays.
    - ``batch_size=None`` (or ``>= len(x)``) trains full-batch; ``key`` shuffles batches.
    - ``eval_every``: run ``eval_fn(model) -> {name: array}`` (default: the loss on the
      whole of ``(x, y)``, as ``"train_loss"``) after every ``eval_every`` steps and at
      the end. Values may be arrays of any fixed shape, e.g. the flattened parameters to
      keep checkpoints of the trajectory. Without it the whole run is one compiled call.

    Returns the trained model and a history of numpy arrays: ``"loss"`` (the minibatch
    loss at each step, before that step's update), and with ``eval_every`` also
    ``"eval_step"`` plus one array per ``eval_fn`` key (evaluations leading). A non-finite
    loss raises.
    """
    if not isinstance(steps, int | np.integer) or steps < 1:
        raise ValueError(f"`steps` must be a positive integer, got {steps!r}.")
    if eval_every is not None and (not isinstance(eval_every, int | np.integer) or eval_every < 1):
        raise ValueError(f"`eval_every` must be a positive integer or None, got {eval_every!r}.")
    x, y = jnp.asarray(x), jnp.asarray(y)
    n = x.shape[0]
    if y.shape[0] != n:
        raise ValueError(f"x and y disagree on the number of rows: {n} vs {y.shape[0]}.")
    bs = n if batch_size is None else min(int(batch_size), n)
    idx = batch_indices(n, bs, int(steps), key=key)

    params, static = eqx.partition(model, eqx.is_array)
    with jax.numpy_dtype_promotion("standard"):
        opt_state = optimizer.init(eqx.filter(model, eqx.is_inexact_array))
    if eval_fn is None:

        def eval_fn(m):
            return {"train_loss": loss_fn(m, x, y)}

    chunk = int(steps) if eval_every is None else int(eval_every)
    losses, evals, eval_steps = [], [], []
    for start in range(0, int(steps), chunk):
        params, opt_state, chunk_losses = _run_chunk(
            params, static, opt_state, x, y, idx[start : start + chunk], loss_fn, optimizer
        )
        losses.append(np.asarray(chunk_losses))
        if eval_every is not None:
            out = _evaluate(eqx.combine(params, static), eval_fn)
            evals.append({k: np.asarray(v) for k, v in out.items()})
            eval_steps.append(min(start + chunk, int(steps)))
    loss = np.concatenate(losses)
    if not np.all(np.isfinite(loss)):
        bad = int(np.argmin(np.isfinite(loss)))
        raise FloatingPointError(
            f"fit: the loss became non-finite at step {bad}; lower the learning rate."
        )
    history: dict[str, np.ndarray] = {"loss": loss}
    if eval_every is not None:
        history["eval_step"] = np.asarray(eval_steps, dtype=np.int64)
        for k in evals[0]:
            history[k] = np.stack([e[k] for e in evals])
    return eqx.combine(params, static), history


@eqx.filter_jit
def _count_correct(
    model: Any, xb: Array, yb: Array, mask: Array, apply: Callable[[Any, Array], Array]
) -> Array:
    def one(inp):
        xi, yi, mi = inp
        pred = jnp.argmax(apply(model, xi), axis=-1)
        return jnp.sum((pred == yi) & mi)

    return jnp.sum(jax.lax.map(one, (xb, yb, mask)))


def accuracy(
    model: Any,
    x: Shaped[ArrayLike, "n ..."],
    y: Int[ArrayLike, " n"],
    *,
    batch_size: int = 1024,
    apply: Callable[[Any, Array], Array] | None = None,
) -> float:
    """Fraction of rows whose ``argmax`` logit equals the label, in batches of
    ``batch_size`` (one compiled ``lax.map``). The model is called on a batch,
    ``model(xb)``, as every net in terrain_jax is; pass ``apply(model, xb)`` otherwise
    (e.g. ``lambda m, xb: jax.vmap(m)(xb)`` for a per-example module)."""
    x, y = jnp.asarray(x), jnp.asarray(y)
    n = x.shape[0]
    if n == 0:
        raise ValueError("accuracy of an empty set is undefined.")
    bs = max(1, min(int(batch_size), n))
    nb = -(-n // bs)
    pad = nb * bs - n
    xp = jnp.concatenate([x, jnp.zeros((pad,) + x.shape[1:], x.dtype)])
    yp = jnp.concatenate([y, jnp.zeros((pad,), y.dtype)])
    mask = jnp.arange(nb * bs) < n
    shape = (nb, bs)
    correct = _count_correct(
        model,
        xp.reshape(shape + x.shape[1:]),
        yp.reshape(shape),
        mask.reshape(shape),
        apply if apply is not None else _call,
    )
    return float(correct) / n


def _call(model: Any, xb: Array) -> Array:
    return model(xb)
