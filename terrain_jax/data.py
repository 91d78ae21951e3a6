"""Datasets, all generated or shipped with a package: nothing is downloaded.

- 2-D toy sets (:func:`moons`, :func:`spirals`, :func:`gaussian_mixture`) drawn with
  ``jax.random`` from an explicit key; classes are balanced and the rows shuffled.
- :func:`fibonacci_mod`: token sequences of a next-token task that needs memory.
- :func:`standardise`: per-feature standardisation with train statistics only.
- :func:`digits`: scikit-learn's 1,797 8×8 handwritten digits (shipped with sklearn),
  split with a seed and standardised with train statistics only.
- :func:`mnist1d`: MNIST-1D from the ``mnist1d`` package's offline generator (never its
  download path), cached on disk under :func:`cache_dir`, keyed by the generation args.
- :func:`load_dataset`: either real set by name (:data:`REAL_DATASETS`).
- :func:`batch_indices` (index arrays for ``lax.scan`` loops) and :func:`batches` (a
  Python iterator over minibatches).
"""

import hashlib
import json
import os
import random
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import numpy as np
from jaxtyping import Array, ArrayLike, Float, Int, PRNGKeyArray, Shaped

__all__ = [
    "Dataset",
    "moons",
    "spirals",
    "gaussian_mixture",
    "fibonacci_mod",
    "standardise",
    "digits",
    "mnist1d",
    "REAL_DATASETS",
    "load_dataset",
    "cache_dir",
    "batch_indices",
    "batches",
    "num_examples",
    "split_batches",
]


class Dataset(NamedTuple):
    """A train/test split: float32 features, int32 labels (numpy arrays)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int


# ----------------------------------------------------------------------------- 2-D toys


def _balanced_labels(n: int, k: int) -> Int[Array, " n"]:
    """``0 … k-1`` repeated: class sizes differ by at most one."""
    return jnp.arange(n, dtype=jnp.int32) % k


def _shuffle(
    key: PRNGKeyArray, x: Float[Array, "n 2"], y: Int[Array, " n"]
) -> tuple[Float[Array, "n 2"], Int[Array, " n"]]:
    perm = jax.random.permutation(key, x.shape[0])
    return x[perm], y[perm]


def _check_n(n: int, k: int) -> None:
    if not isinstance(n, int | np.integer) or n < k:
        raise ValueError(f"`n` must be an integer >= {k} (one point per class), got {n!r}.")


def moons(
    n: int, *, noise: float = 0.1, key: PRNGKeyArray
) -> tuple[Float[Array, "n 2"], Int[Array, " n"]]:
    """Two interleaving half circles (as ``sklearn.datasets.make_moons``), Gaussian noise.

    Class 0 is the upper arc ``(cos θ, sin θ)``, class 1 the lower ``(1 - cos θ,
    ½ - sin θ)``, ``θ ~ U[0, π]``; sizes ``⌈n/2⌉`` and ``⌊n/2⌋``.
    """
    _check_n(n, 2)
    k_theta, k_noise, k_perm = jax.random.split(key, 3)
    y = _balanced_labels(n, 2)
    theta = jax.random.uniform(k_theta, (n,), maxval=jnp.pi)
    upper = jnp.stack([jnp.cos(theta), jnp.sin(theta)], axis=-1)
    lower = jnp.stack([1.0 - jnp.cos(theta), 0.5 - jnp.sin(theta)], axis=-1)
    x = jnp.where((y == 0)[:, None], upper, lower)
    x = x + noise * jax.random.normal(k_noise, x.shape)
    return _shuffle(k_perm, x.astype(jnp.float32), y)


def spirals(
    n: int, *, turns: float = 1.5, noise: float = 0.05, key: PRNGKeyArray
) -> tuple[Float[Array, "n 2"], Int[Array, " n"]]:
    """Two interleaved Archimedean spirals of radius ≤ 1, one per class.

    A point at parameter ``s ~ √U[0, 1]`` (roughly uniform along the arc) sits at radius
    ``s`` and angle ``2π·turns·s``; class 1 is class 0 rotated by ``π``.
    """
    _check_n(n, 2)
    k_s, k_noise, k_perm = jax.random.split(key, 3)
    y = _balanced_labels(n, 2)
    s = jnp.sqrt(jax.random.uniform(k_s, (n,)))
    angle = 2.0 * jnp.pi * turns * s + jnp.pi * y.astype(jnp.float32)
    x = s[:, None] * jnp.stack([jnp.cos(angle), jnp.sin(angle)], axis=-1)
    x = x + noise * jax.random.normal(k_noise, x.shape)
    return _shuffle(k_perm, x.astype(jnp.float32), y)


def gaussian_mixture(
    n: int,
    *,
    centers: int | Float[ArrayLike, "k 2"] = 4,
    std: float = 0.25,
    key: PRNGKeyArray,
) -> tuple[Float[Array, "n 2"], Int[Array, " n"]]:
    """Isotropic Gaussian blobs, one class per centre, balanced.

    ``centers``: an integer ``k`` (centres equally spaced on the unit circle) or a
    ``(k, 2)`` array of centres.
    """
    if isinstance(centers, int | np.integer):
        if centers < 1:
            raise ValueError(f"`centers` must be >= 1, got {centers}.")
        phi = 2.0 * jnp.pi * jnp.arange(centers, dtype=jnp.float32) / centers
        c = jnp.stack([jnp.cos(phi), jnp.sin(phi)], axis=-1)
    else:
        c = jnp.asarray(centers, dtype=jnp.float32)
        if c.ndim != 2 or c.shape[1] != 2 or c.shape[0] < 1:
            raise ValueError(f"`centers` must have shape (k, 2), got {c.shape}.")
    k = c.shape[0]
    _check_n(n, k)
    k_noise, k_perm = jax.random.split(key)
    y = _balanced_labels(n, k)
    x = c[y] + std * jax.random.normal(k_noise, (n, 2))
    return _shuffle(k_perm, x.astype(jnp.float32), y)


# ----------------------------------------------------------------------------- sequences


def fibonacci_mod(
    first: Int[ArrayLike, "n 2"], length: int, vocab: int
) -> Int[np.ndarray, "n length"]:
    """Token sequences ``x_{t+1} = (x_t + x_{t−1}) mod vocab`` from their first two tokens.

    A next-token task whose state must carry memory (two tokens back). Closed form
    ``x_t = (φ_{t−1} x_0 + φ_t x_1) mod vocab`` with the Fibonacci numbers ``φ`` (mod
    ``vocab``), vectorised over the ``n`` sequences; NumPy integers.
    """
    phi = [1, 0]  # φ_{−1}, φ_0
    for _ in range(length):  # `length` scalar coefficients, not a per-sample loop
        phi.append((phi[-1] + phi[-2]) % vocab)
    c0, c1 = np.asarray(phi[:length]), np.asarray(phi[1 : length + 1])
    first = np.asarray(first)
    return (first[:, :1] * c0 + first[:, 1:] * c1) % vocab


# ----------------------------------------------------------------------------- digits


def standardise(
    x_train: Float[np.ndarray, "n ..."], x_test: Float[np.ndarray, "m ..."]
) -> tuple[Float[np.ndarray, "n ..."], Float[np.ndarray, "m ..."]]:
    """Per-feature ``(x - μ)/σ`` of both splits with the *train* ``μ, σ`` (no test
    statistics leak in), as float32; features constant on the train set get ``σ = 1``."""
    mu = x_train.mean(axis=0)
    sd = x_train.std(axis=0)
    sd = np.where(sd > 0, sd, 1.0)
    return (
        ((x_train - mu) / sd).astype(np.float32),
        ((x_test - mu) / sd).astype(np.float32),
    )


def digits(*, test_fraction: float = 0.2, seed: int) -> Dataset:
    """scikit-learn's 8×8 digits (64 features, 10 classes), stratified split by ``seed``.

    Features are standardised per pixel with the *train* mean and std (pixels constant
    on the train set are only centred).
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"`test_fraction` must be in (0, 1), got {test_fraction}.")
    d = load_digits()
    x = d.data.astype(np.float64)
    y = d.target.astype(np.int32)
    x_tr, x_te, y_tr, y_te = train_test_split(
        x, y, test_size=test_fraction, random_state=seed, stratify=y
    )
    x_tr, x_te = standardise(x_tr, x_te)
    return Dataset(x_tr, y_tr.astype(np.int32), x_te, y_te.astype(np.int32), 10)


# ----------------------------------------------------------------------------- MNIST-1D


def cache_dir() -> Path:
    """Where generated data is cached: ``$TERRAIN_JAX_CACHE`` or ``~/.cache/terrain_jax``."""
    env = os.environ.get("TERRAIN_JAX_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "terrain_jax"


def _write_npz_atomic(path: Path, arrays: dict[str, np.ndarray]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz")
    os.close(fd)
    try:
        np.savez(tmp, **arrays)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _generate_mnist1d(args: dict) -> dict[str, np.ndarray]:
    """Run the package's generator. It reseeds numpy's and Python's global RNGs, so both
    are saved and restored around the call."""
    from mnist1d.data import get_dataset_args, make_dataset

    gen_args = get_dataset_args()  # ObjectView; its `url` is never used by make_dataset
    for k, v in args.items():
        setattr(gen_args, k, v)
    np_state, py_state = np.random.get_state(), random.getstate()  # noqa: NPY002
    try:
        d = make_dataset(gen_args)
    finally:
        np.random.set_state(np_state)  # noqa: NPY002
        random.setstate(py_state)
    x = np.concatenate([d["x"], d["x_test"]]).astype(np.float32)
    y = np.concatenate([d["y"], d["y_test"]]).astype(np.int32)
    return {"x": x, "y": y}


def mnist1d(
    *,
    seed: int,
    num_train: int = 4000,
    num_test: int = 1000,
    length: int = 40,
    cache: bool = True,
) -> Dataset:
    """MNIST-1D (Greydanus 2020): 10 classes of 1-D signals, ``length`` features.

    Generated offline by ``mnist1d.data.make_dataset`` with the package's default
    transformation args (its default ``seed`` is 42) and ``num_train + num_test``
    samples, a multiple of 10 (equal class counts before the split). The generator
    standardises the whole set with one global mean and std, as the published dataset
    is; that is kept. With ``cache=True`` the arrays are stored as ``.npz`` under
    :func:`cache_dir`, keyed by a hash of the generation args, written atomically.
    """
    total = num_train + num_test
    if num_train < 1 or num_test < 1 or total % 10:
        raise ValueError(
            "`num_train` and `num_test` must be positive with a sum divisible by 10 "
            f"(the generator makes equal counts per class), got {num_train} + {num_test}."
        )
    args = {
        "num_samples": int(total),
        "train_split": 1.0,
        "final_seq_length": int(length),
        "seed": int(seed),
    }
    from mnist1d.data import get_dataset_args

    full = {k: v for k, v in get_dataset_args(as_dict=True).items() if k != "url"}
    full.update(args)
    digest = hashlib.sha256(json.dumps(full, sort_keys=True).encode()).hexdigest()[:16]
    path = cache_dir() / f"mnist1d_{digest}.npz"
    arrays = None
    if cache and path.exists():
        try:
            with np.load(path) as f:
                arrays = {"x": f["x"], "y": f["y"]}
        except (OSError, ValueError, KeyError):
            arrays = None  # corrupt or foreign file: regenerate
    if arrays is None:
        arrays = _generate_mnist1d(args)
        if cache:
            try:
                _write_npz_atomic(path, arrays)
            except OSError:
                pass  # an unwritable cache only costs regeneration time
    x, y = arrays["x"], arrays["y"]
    return Dataset(
        x[:num_train].astype(np.float32),
        y[:num_train].astype(np.int32),
        x[num_train:].astype(np.float32),
        y[num_train:].astype(np.int32),
        10,
    )


REAL_DATASETS = ("digits", "mnist1d")
"""The names :func:`load_dataset` takes: the real (non-toy) train/test splits."""


def load_dataset(name: str, *, seed: int) -> Dataset:
    """A real dataset by name: :func:`digits` or :func:`mnist1d` with their defaults, split
    (digits) or generated (MNIST-1D) from ``seed``."""
    if name == "digits":
        return digits(seed=seed)
    if name == "mnist1d":
        return mnist1d(seed=seed)
    raise ValueError(f"Unknown dataset {name!r}; valid names are: {', '.join(REAL_DATASETS)}.")


# ----------------------------------------------------------------------------- batching


def batch_indices(
    n: int, batch_size: int, steps: int, *, key: PRNGKeyArray
) -> Int[Array, "steps batch"]:
    """Row indices of ``steps`` minibatches: epochs of fresh permutations, the last
    incomplete batch of each epoch dropped, so every row appears at most once per epoch.

    Feed it as ``xs`` to ``lax.scan`` and gather ``x[idx]`` inside the step.
    """
    if batch_size < 1 or batch_size > n:
        raise ValueError(f"`batch_size` must be in [1, n={n}], got {batch_size}.")
    if steps < 1:
        raise ValueError(f"`steps` must be >= 1, got {steps}.")
    per_epoch = n // batch_size
    epochs = -(-steps // per_epoch)
    keys = jax.random.split(key, epochs)
    perms = jax.vmap(lambda k: jax.random.permutation(k, n))(keys)
    idx = perms[:, : per_epoch * batch_size].reshape(epochs * per_epoch, batch_size)
    return idx[:steps].astype(jnp.int32)


def batches(
    x: Shaped[ArrayLike, "n ..."],
    y: Shaped[ArrayLike, "n ..."],
    batch_size: int,
    *,
    key: PRNGKeyArray,
    drop_last: bool = True,
) -> Iterator[tuple[Array, Array]]:
    """One shuffled epoch of ``(xb, yb)`` minibatches (a Python iterator, for eval or
    prototyping; jitted loops should use :func:`batch_indices`)."""
    x, y = jnp.asarray(x), jnp.asarray(y)
    n = x.shape[0]
    if y.shape[0] != n:
        raise ValueError(f"x and y disagree on the number of rows: {n} vs {y.shape[0]}.")
    if batch_size < 1:
        raise ValueError(f"`batch_size` must be >= 1, got {batch_size}.")
    perm = jax.random.permutation(key, n)
    stop = n - n % batch_size if drop_last else n
    for i in range(0, stop, batch_size):
        sel = perm[i : i + batch_size]
        yield x[sel], y[sel]


def num_examples(data: Any) -> int:
    """The common leading (example) axis of every array in ``data``; refuses none or several."""
    sizes = {jnp.shape(leaf)[0] for leaf in jtu.tree_leaves(data)}
    if len(sizes) != 1 or 0 in sizes:
        raise ValueError(
            f"Every `data` array must share one nonzero leading axis (the examples); got "
            f"sizes {sorted(sizes)}."
        )
    return sizes.pop()


def split_batches(data: Any, batch_size: int | None) -> tuple[Any, Any, int, int, int]:
    """``(full, rest, n, batch, n_rest)``: contiguous full batches of ``data`` stacked on a
    leading axis, and the ragged remainder (``None`` when ``batch`` divides ``n``); for
    exact dataset means, ``(batch · Σ full-batch means + n_rest · rest mean) / n``."""
    n = num_examples(data)
    bs = n if batch_size is None else min(int(batch_size), n)
    n_full = n // bs
    full = jtu.tree_map(lambda a: a[: n_full * bs].reshape((n_full, bs) + a.shape[1:]), data)
    n_rest = n - n_full * bs
    rest = jtu.tree_map(lambda a: a[n_full * bs :], data) if n_rest else None
    return full, rest, n, bs, n_rest
