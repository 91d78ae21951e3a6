"""Analytic loss terrains with their known critical points.

Each terrain is a :class:`Terrain`: a scalar ``value(theta)`` that composes with ``jit``,
``vmap`` and ``grad``, a plotting ``domain`` and its ``minima``, ``saddles`` and ``maxima``
as ``(n, dim)`` arrays, so walking styles and basin maps can be scored against the truth.
Closed forms are used where they exist; otherwise the critical points are found at
construction by Newton's method on the gradient in float64 from a grid of starts,
deduplicated and classified by the Hessian's eigenvalues (tolerance ``1e-10`` on ``‖∇L‖``).
"""

from collections.abc import Callable

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from .attractors import critical_points, start_grid  # Newton on ∇L; re-exported here

__all__ = ["Terrain", "TERRAINS", "get_terrain", "critical_points"]

Domain = tuple[tuple[float, float], ...]


class Terrain(eqx.Module):
    """A loss terrain ``L(theta)`` and its critical points.

    ``fn(theta, **params)`` is a module-level function, ``params`` are pytree leaves (so a
    terrain can be vmapped over, e.g., its condition number). ``degenerate`` marks terrains
    whose listed critical points have singular Hessians (monkey saddle, the ring's circle of
    minima): there the classification rests on higher-order terms, not on the Hessian.
    """

    name: str = eqx.field(static=True)
    fn: Callable[..., Array] = eqx.field(static=True)
    params: dict[str, float | Array]
    domain: Domain = eqx.field(static=True)
    minima: Float[Array, "m dim"]
    saddles: Float[Array, "s dim"]
    maxima: Float[Array, "k dim"]
    degenerate: bool = eqx.field(static=True, default=False)
    note: str = eqx.field(static=True, default="")

    @property
    def dim(self) -> int:
        return len(self.domain)

    def value(self, theta: Float[Array, " dim"]) -> Float[Array, ""]:
        return self.fn(theta, **self.params)

    def __call__(self, theta: Float[Array, " dim"]) -> Float[Array, ""]:
        return self.value(theta)


def _points(points: ArrayLike | list, dim: int = 2) -> Float[Array, "n dim"]:
    """Critical points as a default-dtype ``(n, dim)`` array (``(0, dim)`` when empty)."""
    arr = np.asarray(points, dtype=np.float64).reshape(-1, dim)
    return jnp.asarray(arr, dtype=jnp.zeros(()).dtype)


# --- value functions (module level, so `Terrain.fn` is a stable static field) ---------------


def _bowl(theta: Float[Array, " 2"]) -> Float[Array, ""]:
    return theta[0] ** 2 + 3.0 * theta[1] ** 2


def _ravine(theta: Float[Array, " 2"], kappa: float | Array) -> Float[Array, ""]:
    return 0.5 * (theta[0] ** 2 + kappa * theta[1] ** 2)


def _rosenbrock(theta: Float[Array, " 2"], a: float | Array, b: float | Array) -> Float[Array, ""]:
    return (a - theta[0]) ** 2 + b * (theta[1] - theta[0] ** 2) ** 2


def _beale(theta: Float[Array, " 2"]) -> Float[Array, ""]:
    x, y = theta[0], theta[1]
    return (1.5 - x + x * y) ** 2 + (2.25 - x + x * y**2) ** 2 + (2.625 - x + x * y**3) ** 2


def _himmelblau(theta: Float[Array, " 2"]) -> Float[Array, ""]:
    x, y = theta[0], theta[1]
    return (x**2 + y - 11.0) ** 2 + (x + y**2 - 7.0) ** 2


def _saddle(theta: Float[Array, " 2"]) -> Float[Array, ""]:
    return theta[0] ** 2 - theta[1] ** 2


def _monkey_saddle(theta: Float[Array, " 2"]) -> Float[Array, ""]:
    return theta[0] ** 3 - 3.0 * theta[0] * theta[1] ** 2


def _double_well(theta: Float[Array, " 2"]) -> Float[Array, ""]:
    return (theta[0] ** 2 - 1.0) ** 2 + theta[1] ** 2


def _ring(theta: Float[Array, " 2"]) -> Float[Array, ""]:
    return (theta[0] ** 2 + theta[1] ** 2 - 1.0) ** 2


def _rastrigin(theta: Float[Array, " 2"], A: float | Array) -> Float[Array, ""]:
    return A * theta.shape[0] + jnp.sum(theta**2 - A * jnp.cos(2.0 * jnp.pi * theta))


def _ch03_field(theta: Float[Array, " 2"]) -> Float[Array, ""]:
    x, y = theta[0], theta[1]
    return x**2 + 2.0 * y**2 + 1.5 * jnp.sin(1.8 * x) * jnp.cos(1.8 * y)


def _quartic(theta: Float[Array, " 1"]) -> Float[Array, ""]:
    x = theta[0]
    return 0.25 * x**4 - 2.0 * x**2 + x + 6.0


# --- factories ----------------------------------------------------------------------------


def bowl() -> Terrain:
    """Quadratic bowl ``θ1² + 3θ2²``: one minimum at the origin, Hessian ``diag(2, 6)``."""
    return Terrain(
        "bowl", _bowl, {}, ((-3.0, 3.0), (-3.0, 3.0)), _points([0, 0]), _points([]), _points([])
    )


def ravine(kappa: float | Array = 100.0) -> Terrain:
    """Ill-conditioned ravine ``½(θ1² + κθ2²)``: Hessian ``diag(1, κ)``, condition number κ."""
    return Terrain(
        "ravine",
        _ravine,
        {"kappa": kappa},
        ((-3.0, 3.0), (-1.0, 1.0)),
        _points([0, 0]),
        _points([]),
        _points([]),
    )


def rosenbrock(b: float | Array = 10.0, a: float | Array = 1.0) -> Terrain:
    """Rosenbrock ``(a − θ1)² + b(θ2 − θ1²)²``; ``b = 10`` is the book's, 100 the classic.

    Its only critical point is the minimum ``(a, a²)`` with value 0.
    """
    return _rosenbrock_terrain("rosenbrock", a, b)


def rosenbrock_classic(b: float | Array = 100.0, a: float | Array = 1.0) -> Terrain:
    """The classic Rosenbrock, ``b = 100``."""
    return _rosenbrock_terrain("rosenbrock_classic", a, b)


def _rosenbrock_terrain(name: str, a: float | Array, b: float | Array) -> Terrain:
    minimum = jnp.stack([jnp.asarray(a), jnp.asarray(a) ** 2])[None]
    return Terrain(
        name,
        _rosenbrock,
        {"a": a, "b": b},
        ((-2.0, 2.0), (-1.0, 3.0)),
        minimum,
        _points([]),
        _points([]),
    )


def beale() -> Terrain:
    """Beale's function: global minimum 0 at ``(3, 0.5)``; other critical points by Newton."""
    domain = ((-4.5, 4.5), (-4.5, 4.5))
    minima, saddles, maxima = critical_points(_beale, start_grid(domain, 41), domain)
    return Terrain("beale", _beale, {}, domain, _points(minima), _points(saddles), _points(maxima))


def himmelblau() -> Terrain:
    """Himmelblau's function: four minima (value 0), one maximum, four saddles.

    All nine are found by Newton in float64 (the literature gives them to ~6 digits only).
    """
    domain = ((-5.0, 5.0), (-5.0, 5.0))
    minima, saddles, maxima = critical_points(_himmelblau, start_grid(domain, 41), domain)
    return Terrain(
        "himmelblau", _himmelblau, {}, domain, _points(minima), _points(saddles), _points(maxima)
    )


def saddle() -> Terrain:
    """Saddle ``θ1² − θ2²``: one non-degenerate saddle at the origin, no minimum."""
    return Terrain(
        "saddle", _saddle, {}, ((-2.0, 2.0), (-2.0, 2.0)), _points([]), _points([0, 0]), _points([])
    )


def monkey_saddle() -> Terrain:
    """Monkey saddle ``θ1³ − 3θ1θ2²``: a saddle at the origin with a zero Hessian.

    Three valleys, three ridges; gradient and Hessian both vanish, so it escapes any
    second-order classification.
    """
    return Terrain(
        "monkey_saddle",
        _monkey_saddle,
        {},
        ((-1.5, 1.5), (-1.5, 1.5)),
        _points([]),
        _points([0, 0]),
        _points([]),
        degenerate=True,
    )


def double_well() -> Terrain:
    """Double well ``(θ1² − 1)² + θ2²``: minima ``(±1, 0)``, saddle at the origin."""
    return Terrain(
        "double_well",
        _double_well,
        {},
        ((-2.0, 2.0), (-1.5, 1.5)),
        _points([[-1, 0], [1, 0]]),
        _points([0, 0]),
        _points([]),
    )


def ring(n: int = 16) -> Terrain:
    """Ring ``(θ1² + θ2² − 1)²``: the whole unit circle is minimal, the origin a maximum.

    ``minima`` holds ``n`` evenly spaced samples of the circle (Hessian ``8θθᵀ``: rank one).
    """
    angle = np.linspace(0.0, 2.0 * np.pi, n, endpoint=False)
    circle = np.stack([np.cos(angle), np.sin(angle)], axis=1)
    return Terrain(
        "ring",
        _ring,
        {},
        ((-1.6, 1.6), (-1.6, 1.6)),
        _points(circle),
        _points([]),
        _points([0, 0]),
        degenerate=True,
        note="minima are samples of the unit circle",
    )


def rastrigin(A: float = 10.0) -> Terrain:
    """2-D Rastrigin ``2A + Σ θi² − A cos 2πθi``: global minimum 0 at the origin.

    Separable, so its critical points are products of the 1-D ones of ``x² − A cos 2πx``
    (found by Newton): min×min are minima, max×max maxima, mixed pairs saddles.
    """
    lim = 5.12
    g = lambda x: x[0] ** 2 - A * jnp.cos(2.0 * jnp.pi * x[0])  # noqa: E731
    starts = np.linspace(-lim, lim, 409)[:, None]
    mins1, _, maxs1 = critical_points(g, starts, ((-lim, lim),))
    mins1, maxs1 = mins1[:, 0], maxs1[:, 0]

    def product(u: np.ndarray, v: np.ndarray) -> np.ndarray:
        return np.stack(np.meshgrid(u, v, indexing="ij"), axis=-1).reshape(-1, 2)

    saddles = np.concatenate([product(mins1, maxs1), product(maxs1, mins1)])
    return Terrain(
        "rastrigin",
        _rastrigin,
        {"A": A},
        ((-lim, lim), (-lim, lim)),
        _points(product(mins1, mins1)),
        _points(saddles),
        _points(product(maxs1, maxs1)),
    )


def ch03_field() -> Terrain:
    """The book's ch03 field ``θ1² + 2θ2² + 1.5 sin(1.8θ1) cos(1.8θ2)``.

    No closed form: its critical points come from Newton in float64 over a grid of starts.
    """
    domain = ((-3.0, 3.0), (-3.0, 3.0))
    minima, saddles, maxima = critical_points(_ch03_field, start_grid(domain, 41), domain)
    return Terrain(
        "ch03_field", _ch03_field, {}, domain, _points(minima), _points(saddles), _points(maxima)
    )


def quartic() -> Terrain:
    """1-D quartic ``0.25θ⁴ − 2θ² + θ + 6`` (book ch03); critical points: roots of θ³ − 4θ + 1.

    Two minima (the left one global) and one maximum between them.
    """
    roots = np.sort(np.real(np.roots([1.0, 0.0, -4.0, 1.0])))
    return Terrain(
        "quartic",
        _quartic,
        {},
        ((-3.5, 3.5),),
        _points(roots[[0, 2]], 1),
        _points([], 1),
        _points(roots[[1]], 1),
    )


TERRAINS: dict[str, Callable[..., Terrain]] = {
    "bowl": bowl,
    "ravine": ravine,
    "rosenbrock": rosenbrock,
    "rosenbrock_classic": rosenbrock_classic,
    "beale": beale,
    "himmelblau": himmelblau,
    "saddle": saddle,
    "monkey_saddle": monkey_saddle,
    "double_well": double_well,
    "ring": ring,
    "rastrigin": rastrigin,
    "ch03_field": ch03_field,
    "quartic": quartic,
}


def get_terrain(name: str, **params: float | Array) -> Terrain:
    """The terrain called ``name``, built with ``params`` (e.g. ``kappa=``, ``b=``)."""
    try:
        factory = TERRAINS[name]
    except KeyError:
        valid = ", ".join(sorted(TERRAINS))
        raise ValueError(f"Unknown terrain {name!r}; valid names are: {valid}.") from None
    return factory(**params)
