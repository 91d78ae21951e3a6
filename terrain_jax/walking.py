"""Optimizers as walking styles on a loss terrain, and their continuous-time limits.

A *walking style* is an ``optax.GradientTransformation``; :data:`WALKING_STYLES` names the
usual ones, and any user transformation plugs in instead of a name. :func:`walk` runs one
style from one start as a single ``lax.scan`` under ``jit`` and returns the whole
:class:`Path`; :func:`walk_many` runs many starts and a grid of hyper-parameters in one
compiled call. Hyper-parameters may be JAX arrays (the transformation is built inside the
traced function), so ``vmap`` over a learning-rate grid just works.

The continuous-time limits are fields ``f(t, y, args)`` for
:func:`terrain_jax.integrate`: :func:`gradient_flow` (the ``η → 0`` limit of gradient
descent), :func:`heavy_ball` (momentum: a damped Hamiltonian flow) and
:func:`nesterov_ode` (Su, Boyd & Candès' limit of Nesterov's method).
"""

import inspect
from collections.abc import Callable
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import numpy as np
import optax
from jaxtyping import Array, ArrayLike, Float, PyTree

from .fields import GradientField
from .geometry import mirror_descent, projected_gd

__all__ = [
    "WALKING_STYLES",
    "SIMPLEX_STYLES",
    "get_style",
    "walk",
    "walk_many",
    "Path",
    "gradient_flow",
    "heavy_ball",
    "HeavyBallField",
    "nesterov_ode",
    "NesterovODEField",
]

Hyper = float | Array


# --------------------------------------------------------------------------- styles


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
"""Walking styles of the probability simplex (:mod:`terrain_jax.geometry`): positions are
probability vectors (last axis) and every step stays on the simplex. Kept apart from
:data:`WALKING_STYLES`, whose styles walk all of ``R^n``; :func:`get_style` takes both."""

Style = str | optax.GradientTransformation | Callable[..., optax.GradientTransformation]


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
    if isinstance(style, str):
        try:
            factory = {**WALKING_STYLES, **SIMPLEX_STYLES}[style]
        except KeyError:
            valid = ", ".join([*WALKING_STYLES, *SIMPLEX_STYLES])
            raise ValueError(
                f"Unknown walking style {style!r}; valid names are: {valid} "
                "(or pass any optax.GradientTransformation)."
            ) from None
    elif callable(style):
        factory = style
    else:
        raise ValueError(
            f"style must be a name, a factory or an optax.GradientTransformation, got {style!r}."
        )
    params = inspect.signature(factory).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    unknown = [k for k in hyper if k not in params]
    if unknown and not takes_any:
        raise ValueError(
            f"Unknown hyper-parameter(s) {unknown} for style {style!r}; valid ones are: "
            f"{', '.join(params)}."
        )
    return factory(**hyper)


# --------------------------------------------------------------------------- walks


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
    def diverged(self) -> Array:
        """``True`` where some loss along the walk was non-finite (per batch element)."""
        return jnp.any(~jnp.isfinite(self.losses), axis=-1)

    @property
    def final(self) -> PyTree:
        """Positions after the last step."""
        lead = jnp.ndim(self.losses) - 1
        return jtu.tree_map(lambda a: a[(slice(None),) * lead + (-1,)], self.positions)


def _check_finite(x0: PyTree, what: str) -> PyTree:
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
    loss: Callable[[PyTree], Array],
    style: Style,
    x0: PyTree,
    steps: int,
    hyper: dict,
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
    loss: Callable[[PyTree], Array],
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
    loss: Callable[[PyTree], Array],
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


# --------------------------------------------------------------------------- continuous limits


def gradient_flow(loss: Callable[[PyTree], Array]) -> GradientField:
    """The field ``ẋ = −∇L(x)``: the ``η → 0`` limit of gradient descent.

    Explicit Euler on it with step ``η`` is exactly :func:`walk` with ``"sgd"`` and
    learning rate ``η``; GD stays within ``O(η)`` of this flow at times ``t = kη``.
    """
    return GradientField(loss)


class HeavyBallField(eqx.Module):
    """Damped Hamiltonian flow on ``(x, p)``: ``ẋ = p``, ``ṗ = −γ p − ∇L(x)``.

    The continuous limit of momentum; ``H = ½‖p‖² + L(x)`` (:meth:`energy`) decreases at
    rate ``dH/dt = −γ‖p‖²``.
    """

    loss: Callable
    damping: float | Array

    def __call__(self, t: Any, y: tuple[Any, Any], args: Any = None) -> tuple[Any, Any]:
        x, p = y
        g = jax.grad(self.loss)(x)
        return p, jtu.tree_map(lambda pi, gi: -self.damping * pi - gi, p, g)

    def energy(self, y: tuple[Any, Any]) -> Float[Array, ""]:
        """``H(x, p) = ½‖p‖² + L(x)`` of one state; ``jax.vmap(field.energy)(traj.ys)``
        for a saved trajectory."""
        x, p = y
        kinetic = 0.5 * sum(jnp.sum(a * a) for a in jtu.tree_leaves(p))
        return kinetic + self.loss(x)


def heavy_ball(loss: Callable[[PyTree], Array], damping: float | Array) -> HeavyBallField:
    """The heavy-ball field (see :class:`HeavyBallField`) with friction ``damping = γ``."""
    return HeavyBallField(loss, damping)


class NesterovODEField(eqx.Module):
    """``ẍ + (3/t) ẋ + ∇L(x) = 0`` as a first-order field on ``(x, v)``.

    Su, Boyd & Candès' continuous limit of Nesterov's accelerated gradient. The friction
    ``3/t`` is singular at ``t = 0``: integrate from some ``t0 > 0`` (e.g. ``1e-3`` with
    ``v = 0``); at ``t = 0`` the field returns NaN.
    """

    loss: Callable

    def __call__(self, t: Any, y: tuple[Any, Any], args: Any = None) -> tuple[Any, Any]:
        x, v = y
        g = jax.grad(self.loss)(x)
        return v, jtu.tree_map(lambda vi, gi: -(3.0 / t) * vi - gi, v, g)


def nesterov_ode(loss: Callable[[PyTree], Array]) -> NesterovODEField:
    """The Nesterov ODE field (see :class:`NesterovODEField`); start at ``t0 > 0``."""
    return NesterovODEField(loss)
