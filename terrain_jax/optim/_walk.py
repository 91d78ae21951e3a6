"""Walks: one style from one start (:func:`walk`), many starts × a grid (:func:`walk_many`).

A walk is a single ``lax.scan`` under ``jit`` and returns the whole :class:`Path`. The
style is built inside the traced function, so hyper-parameters may be JAX arrays and
``vmap`` over a learning-rate grid just works.
"""

from collections.abc import Callable, Sequence
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import numpy as np
import optax
from jaxtyping import Array, ArrayLike, Bool, Float, PyTree

from .._typing import Params, Scalar
from ..analysis import steps_to_tolerance
from ._styles import Hyper, Style, get_style

__all__ = ["Path", "walk", "walk_many"]

Loss = Callable[[Params], Scalar]


class Path(NamedTuple):
    """A walk: ``positions`` (``steps + 1`` leading), ``losses`` and ``grad_norms`` at each.

    Entry ``k`` is the state after ``k`` steps, entry 0 the start. Under ``vmap`` /
    :func:`walk_many` every field gains the batch axes in front. A diverged walk is visible:
    its losses become non-finite (see :attr:`diverged`).
    """

    positions: PyTree[Float[Array, "..."]]
    losses: Float[Array, "*batch steps_plus_1"]
    grad_norms: Float[Array, "*batch steps_plus_1"]

    @property
    def diverged(self) -> Bool[Array, "*batch"]:
        """``True`` where some loss along the walk was non-finite (per batch element)."""
        return jnp.any(~jnp.isfinite(self.losses), axis=-1)

    @property
    def final(self) -> PyTree[Float[Array, "..."]]:
        """Positions after the last step."""
        lead = jnp.ndim(self.losses) - 1
        return jtu.tree_map(lambda a: a[(slice(None),) * lead + (-1,)], self.positions)

    def distances(
        self, target: Float[ArrayLike, " dim"] | Sequence[float]
    ) -> Float[np.ndarray, "*batch steps_plus_1"]:
        """Euclidean distance of every stored position to ``target`` (last axis), on the
        host in NumPy's promotion of the two dtypes; ``inf`` at every step of a diverged walk
        and wherever the distance is not finite, so a diverged walk is never "close".
        Positions must be one array (not a pytree)."""
        if not isinstance(self.positions, jax.Array | np.ndarray):
            raise TypeError("Path.distances needs array positions, not a pytree of them.")
        with np.errstate(invalid="ignore", over="ignore"):
            d = np.linalg.norm(np.asarray(self.positions) - np.asarray(target), axis=-1)
        bad = np.asarray(self.diverged)[..., None] | ~np.isfinite(d)
        return np.where(bad, np.inf, d)

    def steps_to(self, tol: float) -> Float[np.ndarray, "*batch"]:
        """First step from which the loss stays finite and below ``tol`` (``inf`` if the walk
        never settles), per batch element; :func:`terrain_jax.analysis.steps_to_tolerance`
        of :attr:`losses`. With ``every > 1`` the answer counts stored entries, not steps."""
        return steps_to_tolerance(np.asarray(self.losses), tol)

    def first_exit(
        self, inside: Callable[[PyTree[Array]], Bool[ArrayLike, "*batch steps_plus_1"]]
    ) -> Float[np.ndarray, "*batch"]:
        """First step at which the walker is outside a region (``inf`` if it never leaves).

        ``inside(positions)`` gets all positions at once as NumPy arrays (batch and step
        axes leading, as stored) and returns booleans of the losses' shape, e.g. ``lambda x:
        np.abs(x[..., 1]) <= 1e-2`` for the escape from a saddle's strip.
        """
        out = ~np.asarray(inside(jtu.tree_map(np.asarray, self.positions)), dtype=bool)
        if out.shape != np.shape(self.losses):
            raise ValueError(
                f"inside(positions) must have the losses' shape {np.shape(self.losses)}, "
                f"got {out.shape}."
            )
        return np.where(out.any(axis=-1), np.argmax(out, axis=-1), np.inf).astype(float)


def _check_finite(x0: PyTree[Array], what: str) -> PyTree[Array]:
    leaves = jtu.tree_leaves(x0)
    if not leaves:
        raise ValueError(f"{what} is an empty pytree; give the starting position as arrays.")
    msg = f"{what} contains NaN or inf; a walk must start at a finite position."
    if all(not isinstance(a, jax.core.Tracer) for a in leaves):
        if not all(np.all(np.isfinite(np.asarray(a))) for a in leaves):
            raise ValueError(msg)
        return x0
    bad = jnp.any(jnp.stack([~jnp.all(jnp.isfinite(a)) for a in leaves]))
    return eqx.error_if(x0, bad, msg)


def _walk(
    loss: Loss,
    style: Style,
    x0: PyTree[Array],
    steps: int,
    hyper: dict[str, Hyper],
    every: int = 1,
) -> Path:
    """The un-jitted walk: build the style (hyper may be traced) and scan ``steps`` steps,
    keeping the state at every ``every``-th step (an inner scan runs the steps between)."""
    tx = get_style(style, **hyper)
    vg = jax.value_and_grad(loss)

    def step(carry, _):
        x, state = carry
        value, g = vg(x)
        # optax mixes Python floats with int32 counters, which strict dtype promotion
        # rejects; the user's loss keeps whatever promotion mode is active.
        with jax.numpy_dtype_promotion("standard"):
            updates, state = tx.update(g, state, x)
            x_new = optax.apply_updates(x, updates)
        return (x_new, state), (x, value, optax.tree.norm(g))

    def stride(carry, _):
        first = step(carry, None)
        carry, _ = jax.lax.scan(step, first[0], None, length=every - 1)
        return carry, first[1]

    with jax.numpy_dtype_promotion("standard"):
        state0 = tx.init(x0)
    body = step if every == 1 else stride
    (x_end, _), (xs, values, norms) = jax.lax.scan(body, (x0, state0), None, length=steps // every)
    v_end, g_end = vg(x_end)
    cat = lambda a, b: jnp.concatenate([a, jnp.asarray(b, a.dtype)[None]])  # noqa: E731
    return Path(
        positions=jtu.tree_map(cat, xs, x_end),
        losses=cat(values, v_end),
        grad_norms=cat(norms, optax.tree.norm(g_end)),
    )


def _check_steps(steps: int, every: int) -> None:
    if not isinstance(steps, int | np.integer) or steps < 1:
        raise ValueError(f"`steps` must be a positive integer, got {steps!r}.")
    if not isinstance(every, int | np.integer) or every < 1 or steps % every:
        raise ValueError(
            f"`every` must be a positive integer dividing `steps` = {steps}, got {every!r}; "
            f"`every=steps` keeps only the start and the end."
        )


_walk_jit = eqx.filter_jit(_walk)


def walk(
    loss: Loss,
    style: Style,
    x0: PyTree[Float[ArrayLike, "..."]],
    steps: int,
    *,
    hyper: dict[str, Hyper] | None = None,
    every: int = 1,
) -> Path:
    """Walk ``steps`` steps of ``style`` downhill on ``loss`` from ``x0``.

    ``loss(x) -> scalar`` for any pytree ``x``; ``style`` a name from
    :data:`WALKING_STYLES`, a factory, or an ``optax.GradientTransformation``; ``hyper`` the
    factory's hyper-parameters (floats or arrays). One ``lax.scan`` under ``jit``.

    Grids by ``vmap``: ``jax.vmap(lambda lr: walk(loss, "sgd", x0, 50,
    hyper={"learning_rate": lr}))(lrs)``, or :func:`walk_many` for starts × grid.
    ``every`` keeps the state after every ``every``-th step only (``steps // every + 1``
    entries), so long walks from many starts need not store every step; ``every=steps``
    keeps the start and the end.
    Non-finite ``x0`` raises ``ValueError``; divergence shows as non-finite ``losses``.
    """
    _check_steps(steps, every)
    x0 = _check_finite(jtu.tree_map(jnp.asarray, x0), "x0")
    return _walk_jit(loss, style, x0, int(steps), dict(hyper or {}), int(every))


@eqx.filter_jit
def _walk_many_jit(loss, style, x0s, steps, hyper, hyper_grid, every):
    def one(x0, grid_point):
        return _walk(loss, style, x0, steps, {**hyper, **grid_point}, every)

    over_starts = jax.vmap(one, in_axes=(0, None))
    if not hyper_grid:
        return over_starts(x0s, {})
    return jax.vmap(over_starts, in_axes=(None, 0))(x0s, hyper_grid)


def walk_many(
    loss: Loss,
    style: Style,
    x0s: PyTree[Float[ArrayLike, "starts ..."]],
    steps: int,
    *,
    hyper_grid: dict[str, Float[ArrayLike, " grid"]] | None = None,
    hyper: dict[str, Hyper] | None = None,
    every: int = 1,
) -> Path:
    """Many starts (leading axis of every leaf of ``x0s``) × a hyper-parameter grid.

    ``hyper_grid`` maps hyper-parameter names to 1-D arrays of one common length ``G``;
    they are zipped, not crossed (use ``jnp.meshgrid(...)`` + ``ravel`` for a product).
    ``hyper`` fixes the others. Returns a :class:`Path` with leading axes ``(G, starts)``
    (just ``(starts,)`` without a grid). All walks run in one compiled call. ``every`` as in
    :func:`walk` (``every=steps`` for basin maps: only where each start ends).
    """
    _check_steps(steps, every)
    x0s = _check_finite(jtu.tree_map(jnp.asarray, x0s), "x0s")
    grid = {k: jnp.asarray(v) for k, v in (hyper_grid or {}).items()}
    lengths = {k: v.shape[:1] for k, v in grid.items()}
    if any(v.ndim != 1 for v in grid.values()) or len(set(lengths.values())) > 1:
        raise ValueError(
            f"hyper_grid values must be 1-D arrays of one common length; got shapes {lengths}."
        )
    return _walk_many_jit(loss, style, x0s, int(steps), dict(hyper or {}), grid, int(every))
