"""Where walks and flows end: fixed points of fields, orbit fates and basin maps.

- fixed points: :func:`fixed_points` (zeros of a vector field, by Newton from many starts,
  classified by the Jacobian's eigenvalues) and :func:`critical_points` (minima, saddles,
  maxima of a loss: the fixed points of its gradient, classified by the Hessian);
- fates of walks: :func:`nearest_minimum` labels end points by the minimum they reached,
  :func:`orbit_fates` classifies the last iterates of walks (a minimum, a cycle of period
  ``p``, bounded but unsettled, diverged);
- basin maps: :func:`basin_map` walks a grid of starts with a walking style (one compiled
  :func:`terrain_jax.walk_many` call) and labels every start by its attractor.

Labels share one convention: ``i < m`` is minimum ``i`` of the ``m`` given, ``m`` "not
settled", ``m + 1`` diverged (and, for orbit fates, ``m + 2`` a cycle), so labels index a
colour list ``[*minimum_colors, unsettled, diverged]`` directly. Labelling runs on the host
in NumPy, vectorised over starts, in the dtype of its inputs (float64 minima give float64
distances whatever JAX's x64 mode), so labels never depend on the x64 switch.
"""

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, Int, Num

from .optim import walk_many

__all__ = [
    "start_grid",
    "uniform_starts",
    "BasinMap",
    "Fates",
    "FixedPoints",
    "basin_map",
    "critical_points",
    "fixed_points",
    "nearest_minimum",
    "orbit_fates",
]

Domain = tuple[tuple[float, float], ...]


def start_grid(domain: Domain, n: int) -> Float[np.ndarray, "points dim"]:
    """``n`` evenly spaced points per axis of the box ``domain`` (ends included), as
    ``(n**dim, dim)`` starts in C order of the axes: the grid fixed-point searches and basin
    maps start from."""
    axes = [np.linspace(lo, hi, n) for lo, hi in domain]
    return np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, len(domain))


def uniform_starts(key: Array, domain: Domain, n: int) -> Float[Array, "n dim"]:
    """``n`` seeded starts drawn uniformly from the box ``domain`` (one ``(lo, hi)`` per
    coordinate), in the default float dtype: the random counterpart of :func:`start_grid`."""
    lo = jnp.asarray([d[0] for d in domain])
    hi = jnp.asarray([d[1] for d in domain])
    return jax.random.uniform(key, (n, len(domain)), minval=lo, maxval=hi)


FATE_NAMES = ("unsettled", "diverged", "cycle")  # the names of labels m, m + 1, m + 2


def _label_dtype(m: int) -> np.dtype:
    """The smallest signed integer holding labels ``0 … m + 2`` (int8 up to 125 minima)."""
    return np.min_scalar_type(-(m + 2))


def _minima(minima: ArrayLike, dim: int, what: str, hint: str = "") -> np.ndarray:
    mins = np.asarray(minima)
    if mins.ndim != 2 or mins.shape[1] != dim:
        raise ValueError(
            f"`minima` must be an (m, {dim}) array matching the last axis of {what}; got shape "
            f"{mins.shape}.{hint}"
        )
    if not np.all(np.isfinite(mins)):
        raise ValueError("`minima` contains NaN or inf; give the minima as finite points.")
    return mins


# --------------------------------------------------------------------------- fixed points


def _roots(
    residual: Callable[[Array], Array],
    jacobian: Callable[[Array], Array],
    spectrum: Callable[[Array], Array],
    starts: ArrayLike,
    domain: Domain | None,
    iters: int,
    tol: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Newton on ``residual`` from every start (float64, vmapped, ``lax.fori_loop``); keeps
    points with ``‖residual‖ < tol``, finite, inside ``domain`` and with no eigenvalue of
    modulus ≤ 1e-8; merges duplicates within 1e-6 (max-norm, first start kept); sorts
    lexicographically. Returns the points and ``spectrum(jacobian)`` at each."""
    x = np.asarray(starts, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"`starts` must be an (n, dim) array of points; got shape {x.shape}.")
    if not np.all(np.isfinite(x)):
        raise ValueError("`starts` contains NaN or inf; Newton must start at finite points.")
    if not isinstance(iters, int | np.integer) or iters < 1:
        raise ValueError(f"`iters` must be a positive integer, got {iters!r}.")
    if domain is not None and len(domain) != x.shape[1]:
        raise ValueError(
            f"`domain` has {len(domain)} (lo, hi) pairs but the starts have {x.shape[1]} "
            "coordinates; give one pair per coordinate."
        )
    with jax.enable_x64(True):
        x0 = jnp.asarray(x)

        def newton(x):
            def step(_, x):
                dx = jnp.linalg.solve(jacobian(x), residual(x))
                return jnp.where(jnp.all(jnp.isfinite(dx)), x - dx, x)

            x = jax.lax.fori_loop(0, iters, step, x)
            return x, jnp.linalg.norm(residual(x)), spectrum(jacobian(x))

        xs, rnorm, eigs = jax.jit(jax.vmap(newton))(x0)
        xs, rnorm, eigs = np.asarray(xs), np.asarray(rnorm), np.asarray(eigs)
    ok = (rnorm < tol) & np.all(np.isfinite(xs), 1)
    if domain is not None:
        lo = np.array([d[0] for d in domain])
        hi = np.array([d[1] for d in domain])
        ok &= np.all((xs >= lo) & (xs <= hi), axis=1)
    ok &= np.min(np.abs(eigs), axis=1) > 1e-8
    # merge duplicates: the first remaining point is kept and every point within 1e-6 of it
    # dropped, which is exactly "keep a point iff it is > 1e-6 from every point kept before"
    kept: list[int] = []
    left = np.flatnonzero(ok)
    while left.size:
        kept.append(int(left[0]))
        left = left[np.max(np.abs(xs[left] - xs[left[0]]), axis=1) > 1e-6]
    dim = x.shape[1]
    xs, eigs = xs[kept].reshape(-1, dim), eigs[kept].reshape(-1, dim)
    order = np.lexsort(xs.T[::-1])
    return xs[order], eigs[order]


class FixedPoints(NamedTuple):
    """Zeros of a field and the eigenvalues of its Jacobian there (complex, float64)."""

    points: Float[np.ndarray, "n dim"]
    eigenvalues: Num[np.ndarray, "n dim"]

    @property
    def stable(self) -> np.ndarray:
        """Attracting for ``ẏ = F(y)``: every eigenvalue has negative real part."""
        return np.all(self.eigenvalues.real < 0, axis=1)

    @property
    def unstable(self) -> np.ndarray:
        """Repelling: every eigenvalue has positive real part."""
        return np.all(self.eigenvalues.real > 0, axis=1)

    @property
    def saddle(self) -> np.ndarray:
        """Eigenvalues with real parts of both signs."""
        re = self.eigenvalues.real
        return (re.min(axis=1) < 0) & (re.max(axis=1) > 0)


def fixed_points(
    field: Callable[[Array], Array],
    starts: Float[ArrayLike, "n dim"],
    *,
    jacobian: Callable[[Array], Array] | None = None,
    domain: Domain | None = None,
    iters: int = 60,
    tol: float = 1e-10,
) -> FixedPoints:
    """Zeros of the autonomous field ``field(y) -> (dim,)`` found by Newton from ``starts``.

    For a field ``f(t, y, args)`` of :mod:`terrain_jax.fields` pass
    ``lambda y: f(0.0, y, args)``. ``jacobian(y)`` defaults to ``jax.jacfwd(field)``. Runs in
    float64; keeps converged points (``‖F‖ < tol``), inside ``domain`` if given, without a
    near-zero eigenvalue, merged within 1e-6 and sorted; ``.stable`` / ``.unstable`` /
    ``.saddle`` classify them by the real parts of the Jacobian's eigenvalues.
    """
    jac = jax.jacfwd(field) if jacobian is None else jacobian
    xs, eigs = _roots(field, jac, jnp.linalg.eigvals, starts, domain, iters, tol)
    return FixedPoints(xs, eigs)


def critical_points(
    fn: Callable[[Array], Array],
    starts: ArrayLike,
    domain: Domain,
    *,
    iters: int = 60,
    gtol: float = 1e-10,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Minima, saddles, maxima of ``fn`` reached by Newton on ``∇fn`` from ``starts``.

    The fixed points of ``∇fn`` (as :func:`fixed_points`, with the Hessian ``jax.hessian``
    and its real eigenvalues by ``eigvalsh``): float64, vmapped over starts with a
    ``lax.fori_loop``; keeps converged points (``‖∇fn‖ < gtol``) inside ``domain``, merges
    duplicates within ``1e-6`` and classifies each by the signs of its Hessian eigenvalues.
    Returns float64 numpy arrays of shape ``(n, dim)``. Points with a near-singular Hessian
    are dropped.
    """
    xs, eigs = _roots(
        jax.grad(fn), jax.hessian(fn), jnp.linalg.eigvalsh, starts, domain, iters, gtol
    )
    minima = xs[np.all(eigs > 0, axis=1)]
    maxima = xs[np.all(eigs < 0, axis=1)]
    saddles = xs[(eigs.min(axis=1) < 0) & (eigs.max(axis=1) > 0)]
    return minima, saddles, maxima


# --------------------------------------------------------------------------- fates


def nearest_minimum(
    points: Float[ArrayLike, "*batch dim"],
    minima: Float[ArrayLike, "m dim"],
    radius: float,
    *,
    blowup: float = 1e3,
) -> Int[np.ndarray, "*batch"]:
    """Label of each end point: the index of the nearest minimum if it is within ``radius``
    (Euclidean), ``m`` if none is (not settled), ``m + 1`` if the point is non-finite or
    its norm exceeds ``blowup`` (diverged). Labels are int8 (wider beyond 125 minima)."""
    x = np.asarray(points)
    if x.ndim < 1:
        raise ValueError("`points` must have a last axis of coordinates, shape (..., dim).")
    mins = _minima(minima, x.shape[-1], "`points`")
    if not radius > 0:
        raise ValueError(f"`radius` must be positive, got {radius!r}.")
    m = len(mins)
    with np.errstate(invalid="ignore"):
        if m:
            dist = np.linalg.norm(x[..., None, :] - mins, axis=-1)
            lab = np.where(dist.min(-1) < radius, dist.argmin(-1), m)
        else:
            lab = np.full(x.shape[:-1], m)
        bad = ~np.all(np.isfinite(x), -1) | (np.linalg.norm(x, axis=-1) > blowup)
    return np.where(bad, m + 1, lab).astype(_label_dtype(m))


class Fates(NamedTuple):
    """Fates of walks from :func:`orbit_fates`.

    ``label``: ``i < m`` minimum ``i``, ``m`` unsettled (bounded, neither at a minimum nor
    periodic), ``m + 1`` diverged, ``m + 2`` a cycle; ``period``: 1 at a minimum, the cycle's
    smallest period, 0 otherwise; ``num_minima``: ``m``.
    """

    label: Int[np.ndarray, "*batch"]
    period: Int[np.ndarray, "*batch"]
    num_minima: int

    def names(self, minimum_names: tuple[str, ...] | None = None) -> np.ndarray:
        """The fates as strings: ``minimum_names[i]`` (default ``"min{i}"``), then
        ``"unsettled"``, ``"diverged"``, ``"cycle"``."""
        m = self.num_minima
        mins = tuple(f"min{i}" for i in range(m)) if minimum_names is None else minimum_names
        if len(mins) != m:
            raise ValueError(f"Give {m} minimum names (one per minimum), got {len(mins)}.")
        return np.asarray([*mins, *FATE_NAMES])[self.label]


def orbit_fates(
    tails: Float[ArrayLike, "*batch tail dim"],
    minima: Float[ArrayLike, "m dim"],
    tol: float,
    *,
    blowup: float = 1e6,
    min_period: int = 1,
    max_period: int | None = None,
) -> Fates:
    """Classify walks by their last ``tail`` iterates (one walk per leading index).

    In this order: diverged if any iterate is non-finite or has a coordinate beyond
    ``blowup`` in absolute value; at minimum ``i`` (the first such) if every iterate is within
    ``tol`` of it in every coordinate; a cycle of the smallest period ``p`` in
    ``[min_period, max_period]`` (default ``tail // 2``) with ``|x[k + p] − x[k]| < tol``
    along the whole tail; unsettled otherwise (bounded chaos, or convergence too slow for
    ``tol``). ``min_period=1`` reports a fixed point away from the minima as a cycle of
    period 1; with ``min_period=2`` such a tail is a cycle of period 2. A tail of length 1
    classifies end points (minimum, unsettled or diverged). For 1-D walks pass
    ``tails[..., None]`` and ``minima[:, None]``.
    """
    x = np.asarray(tails)
    hint = " For 1-D walks pass tails[..., None] and minima[:, None]."
    if x.ndim < 2:
        raise ValueError(f"`tails` must have shape (..., tail, dim), got {x.shape}.{hint}")
    mins = _minima(minima, x.shape[-1], "`tails`", hint)
    n = x.shape[-2]
    hi = n // 2 if max_period is None else max_period
    if not isinstance(min_period, int | np.integer) or min_period < 1:
        raise ValueError(f"`min_period` must be a positive integer, got {min_period!r}.")
    if not isinstance(hi, int | np.integer) or hi >= n or hi < 0:
        raise ValueError(
            f"`max_period` must be an integer below the tail length {n}, got {max_period!r}; "
            f"a period p needs at least p + 1 iterates."
        )
    if not tol > 0:
        raise ValueError(f"`tol` must be positive, got {tol!r}.")
    m, batch = len(mins), x.shape[:-2]
    with np.errstate(invalid="ignore", over="ignore"):
        diverged = ~np.all(np.isfinite(x), axis=(-2, -1)) | (
            np.max(np.abs(x), axis=(-2, -1)) > blowup
        )
        d = [np.max(np.abs(x - mi), axis=(-2, -1)) for mi in mins]
        near = np.stack(d, -1) < tol if m else np.zeros((*batch, 0), bool)
        period = np.zeros(batch, np.int64)
        for p in range(hi, min_period - 1, -1):  # the smallest period wins
            same = np.max(np.abs(x[..., p:, :] - x[..., :-p, :]), axis=(-2, -1)) < tol
            period = np.where(same, p, period)
    hit = near.any(-1)
    label = np.where(hit, near.argmax(-1), np.where(period > 0, m + 2, m))
    label = np.where(diverged, m + 1, label).astype(_label_dtype(m))
    period = np.where(diverged, 0, np.where(hit, 1, period))
    return Fates(label, period, m)


# --------------------------------------------------------------------------- basin maps


class BasinMap(NamedTuple):
    """Labels (as :func:`nearest_minimum`) of every start after ``steps`` steps and, when
    checked, after ``2 · steps``; leading axes ``(grid, starts)`` or ``(starts,)``."""

    labels: Int[np.ndarray, "*batch"]
    labels_doubled: Int[np.ndarray, "*batch"] | None

    @property
    def changed(self) -> np.ndarray:
        """Where doubling the steps changed the label (the map had not settled there)."""
        if self.labels_doubled is None:
            raise ValueError("This map was made with check=False; rerun with check=True.")
        return self.labels != self.labels_doubled


def basin_map(
    loss: Callable[[Array], Array],
    style: Any,
    starts: Float[ArrayLike, "starts dim"],
    minima: Float[ArrayLike, "m dim"],
    steps: int,
    *,
    radius: float = 0.05,
    blowup: float = 1e3,
    hyper_grid: dict[str, Float[ArrayLike, " grid"]] | None = None,
    hyper: dict | None = None,
    check: bool = True,
) -> BasinMap:
    """Basin of attraction of every start under a walking style, in any dimension.

    Walks every start ``steps`` steps of ``style`` (a name from
    :data:`terrain_jax.WALKING_STYLES`, a factory or an optax transformation; ``hyper`` and
    ``hyper_grid`` as in :func:`terrain_jax.walk_many`, one compiled call for the whole grid)
    and labels where each ends by :func:`nearest_minimum`. With ``check`` the same walks run
    on to ``2 · steps`` (only start, middle and end are kept), so :attr:`BasinMap.changed`
    measures whether the map had settled. Non-finite starts raise ``ValueError``.
    """
    x0 = jnp.asarray(starts)
    if x0.ndim != 2:
        raise ValueError(
            f"`starts` must be an (n, dim) array of points, got shape {x0.shape}; flatten a "
            "grid of starts with .reshape(-1, dim)."
        )
    _minima(minima, x0.shape[1], "`starts`")
    if not isinstance(steps, int | np.integer) or steps < 1:
        raise ValueError(f"`steps` must be a positive integer, got {steps!r}.")
    path = walk_many(
        loss, style, x0, (2 if check else 1) * steps, hyper_grid=hyper_grid, hyper=hyper,
        every=steps,
    )  # fmt: skip
    pos = np.asarray(path.positions)  # (*batch, 2 or 3, dim): start, steps, 2·steps
    lab = nearest_minimum(pos[..., 1, :], minima, radius, blowup=blowup)
    lab2 = nearest_minimum(pos[..., 2, :], minima, radius, blowup=blowup) if check else None
    return BasinMap(lab, lab2)
