"""The training loop: :func:`make_step` scanned over minibatches, one compiled call a chunk.

The steps run inside ``lax.scan``: one compiled call for the whole run, or one per
``eval_every`` steps when evaluating, so there is no Python loop per step. Minibatches
come from :func:`terrain_jax.data.batch_indices` (epochs of permutations, gathered inside
the step) unless the caller gives its own order.
"""

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, ArrayLike, Int, PRNGKeyArray, PyTree, Shaped

from ..data import batch_indices
from ._step import make_step

__all__ = ["fit"]

LossFn = Callable[..., Array]
EvalFn = Callable[[PyTree], dict[str, Array]]


@eqx.filter_jit
def _run_chunk(
    params: PyTree,
    static: PyTree,
    opt_state: PyTree,
    x: Array,
    y: Array,
    idx: Int[Array, "steps batch"],
    step_inputs: tuple[PyTree, ...],
    loss_fn: LossFn,
    optimizer: optax.GradientTransformation,
) -> tuple[PyTree, PyTree, Array]:
    """``idx.shape[0]`` optimizer steps in one ``lax.scan``; returns the per-step losses."""
    step = make_step(loss_fn, optimizer, static, jit=False)

    def body(carry, inputs):
        params, opt_state = carry
        batch_idx, extra = inputs
        params, opt_state, loss = step(params, opt_state, x[batch_idx], y[batch_idx], *extra)
        return (params, opt_state), loss

    (params, opt_state), losses = jax.lax.scan(body, (params, opt_state), (idx, step_inputs))
    return params, opt_state, losses


@eqx.filter_jit
def _evaluate(model: PyTree, eval_fn: EvalFn) -> dict[str, Array]:
    return eval_fn(model)


def fit(
    model: PyTree,
    loss_fn: LossFn,
    optimizer: optax.GradientTransformation,
    x: Shaped[ArrayLike, "n ..."],
    y: Shaped[ArrayLike, "n ..."],
    *,
    steps: int,
    batch_size: int | None = None,
    key: PRNGKeyArray | None = None,
    indices: Int[ArrayLike, "steps batch"] | None = None,
    step_inputs: tuple[PyTree, ...] = (),
    eval_every: int | None = None,
    eval_fn: EvalFn | None = None,
) -> tuple[PyTree, dict[str, np.ndarray]]:
    """Train ``model`` for ``steps`` optimizer steps on minibatches of ``(x, y)``.

    - ``loss_fn(model, xb, yb, *inputs) -> scalar``; gradients flow to the model's inexact
      arrays (one :func:`make_step` per minibatch).
    - ``batch_size=None`` (or ``>= len(x)``) trains full-batch; ``key`` shuffles batches.
      ``indices`` (``(steps, batch)`` row indices) gives the minibatch order instead, so
      runs can share one order or compare two.
    - ``step_inputs``: pytrees whose leaves have a leading axis of length ``steps``; step
      ``k`` passes their ``k``-th slices as ``inputs`` (e.g. a PRNG key per step for a
      stochastic loss: ``step_inputs=(jax.random.split(key, steps),)``).
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
    if indices is not None:
        idx = jnp.asarray(indices)
        if idx.ndim != 2 or idx.shape[0] != steps:
            raise ValueError(f"`indices` must have shape (steps={steps}, batch), got {idx.shape}.")
    elif key is None:
        raise ValueError("fit needs `key` to shuffle the minibatches (or `indices`).")
    else:
        bs = n if batch_size is None else min(int(batch_size), n)
        idx = batch_indices(n, bs, int(steps), key=key)
    step_inputs = tuple(step_inputs)
    lengths = {int(a.shape[0]) for a in jax.tree.leaves(step_inputs)}
    if lengths - {int(steps)}:
        raise ValueError(
            f"every leaf of `step_inputs` needs a leading axis of length steps={steps}; "
            f"got lengths {sorted(lengths)}."
        )
    if step_inputs and eval_every is not None and eval_fn is None:
        raise ValueError("with `step_inputs`, pass an `eval_fn` to evaluate every chunk.")

    params, static = eqx.partition(model, eqx.is_array)
    with jax.numpy_dtype_promotion("standard"):
        opt_state = optimizer.init(eqx.filter(model, eqx.is_inexact_array))
    if eval_fn is None:

        def eval_fn(m):
            return {"train_loss": loss_fn(m, x, y)}

    chunk = int(steps) if eval_every is None else int(eval_every)
    losses, evals, eval_steps = [], [], []
    for start in range(0, int(steps), chunk):
        part = slice(start, start + chunk)
        params, opt_state, chunk_losses = _run_chunk(
            params,
            static,
            opt_state,
            x,
            y,
            idx[part],
            jax.tree.map(lambda a, part=part: a[part], step_inputs),
            loss_fn,
            optimizer,
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
