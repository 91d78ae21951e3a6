"""terrain_jax.data: toy sets, digits, MNIST-1D (offline, cached), batching."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from terrain_jax import data

TOYS = {
    "moons": lambda n, key, **kw: data.moons(n, key=key, **kw),
    "spirals": lambda n, key, **kw: data.spirals(n, key=key, **kw),
    "gaussian_mixture": lambda n, key, **kw: data.gaussian_mixture(n, key=key, **kw),
}


@pytest.mark.parametrize("name", TOYS)
def test_toy_shapes_dtypes_balance_and_determinism(name, getkey):
    make = TOYS[name]
    key = getkey()
    x, y = make(101, key)
    assert x.shape == (101, 2) and x.dtype == jnp.float32
    assert y.shape == (101,) and y.dtype == jnp.int32
    assert bool(jnp.all(jnp.isfinite(x)))
    counts = np.bincount(np.asarray(y))
    assert counts.max() - counts.min() <= 1 and counts.sum() == 101
    x2, y2 = make(101, key)
    np.testing.assert_array_equal(np.asarray(x), np.asarray(x2))
    np.testing.assert_array_equal(np.asarray(y), np.asarray(y2))
    x3, _ = make(101, getkey())
    assert not np.allclose(np.asarray(x), np.asarray(x3))
    # rows are shuffled: labels are not sorted or alternating
    ys = np.asarray(y)
    assert not np.all(np.diff(ys) >= 0) and not np.array_equal(ys, np.arange(101) % len(counts))


def test_moons_without_noise_lie_on_their_arcs(getkey):
    x, y = data.moons(200, noise=0.0, key=getkey())
    x, y = np.asarray(x), np.asarray(y)
    up, lo = x[y == 0], x[y == 1]
    np.testing.assert_allclose(np.hypot(up[:, 0], up[:, 1]), 1.0, atol=1e-5)
    assert np.all(up[:, 1] >= -1e-6)
    np.testing.assert_allclose(np.hypot(lo[:, 0] - 1.0, lo[:, 1] - 0.5), 1.0, atol=1e-5)
    assert np.all(lo[:, 1] <= 0.5 + 1e-6)


def test_spirals_without_noise_are_rotated_copies(getkey):
    turns = 1.5
    x, y = data.spirals(300, turns=turns, noise=0.0, key=getkey())
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y)
    r = np.hypot(x[:, 0], x[:, 1])
    assert np.all(r <= 1.0 + 1e-6)
    expected = 2 * np.pi * turns * r + np.pi * y
    diff = np.angle(np.exp(1j * (np.arctan2(x[:, 1], x[:, 0]) - expected)))
    assert np.max(np.abs(diff)) < 1e-3


def test_gaussian_mixture_centres_and_validation(getkey):
    centres = jnp.array([[-3.0, 0.0], [3.0, 0.0], [0.0, 4.0]])
    x, y = data.gaussian_mixture(3000, centers=centres, std=0.1, key=getkey())
    x, y = np.asarray(x), np.asarray(y)
    for k in range(3):
        np.testing.assert_allclose(x[y == k].mean(0), np.asarray(centres[k]), atol=0.02)
        np.testing.assert_allclose(x[y == k].std(0), 0.1, rtol=0.1)
    # refused by our check, or earlier by jaxtyping's runtime check (a TypeError) in tests
    with pytest.raises((ValueError, TypeError)):
        data.gaussian_mixture(10, centers=jnp.zeros((3, 3)), key=getkey())
    with pytest.raises(ValueError, match="n"):
        data.gaussian_mixture(2, centers=3, key=getkey())


def test_digits_shapes_and_train_statistics():
    d = data.digits(seed=0)
    assert d.num_classes == 10
    assert d.x_train.shape[1] == d.x_test.shape[1] == 64
    assert d.x_train.shape[0] + d.x_test.shape[0] == 1797
    assert d.x_test.shape[0] == pytest.approx(0.2 * 1797, abs=1)
    assert d.x_train.dtype == np.float32 and d.y_train.dtype == np.int32
    assert d.y_test.dtype == np.int32 and set(np.unique(d.y_test)) == set(range(10))
    # standardised with *train* statistics: train columns have mean 0 and std 1 (or 0
    # for pixels constant on the train set) ...
    np.testing.assert_allclose(d.x_train.mean(0), 0.0, atol=1e-5)
    sd = d.x_train.std(0)
    assert np.all((np.abs(sd - 1) < 1e-4) | (sd < 1e-6)) and np.sum(sd > 0.5) > 50
    # ... so the test columns, and the whole set, are not exactly centred
    assert np.max(np.abs(d.x_test.mean(0))) > 0.05
    whole = np.concatenate([d.x_train, d.x_test])
    assert np.max(np.abs(whole.mean(0))) > 0.01


def test_digits_split_is_seeded_and_stratified():
    a, b, c = data.digits(seed=1), data.digits(seed=1), data.digits(seed=2)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    np.testing.assert_array_equal(a.y_test, b.y_test)
    assert not np.array_equal(a.y_test, c.y_test)
    frac = np.bincount(a.y_test, minlength=10) / np.bincount(
        np.concatenate([a.y_train, a.y_test]), minlength=10
    )
    np.testing.assert_allclose(frac, 0.2, atol=0.02)
    with pytest.raises(ValueError, match="test_fraction"):
        data.digits(test_fraction=1.5, seed=0)


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """A private cache dir, and any attempt to download fails the test."""
    monkeypatch.setenv("TERRAIN_JAX_CACHE", str(tmp_path))

    def no_network(*a, **k):
        raise AssertionError("mnist1d tried to download")

    import requests

    monkeypatch.setattr(requests, "get", no_network)
    return tmp_path


def test_mnist1d_generates_offline_with_sizes_and_cache(offline, monkeypatch):
    d = data.mnist1d(seed=3, num_train=80, num_test=20)
    assert d.x_train.shape == (80, 40) and d.x_test.shape == (20, 40)
    assert d.x_train.dtype == np.float32 and d.y_train.dtype == np.int32
    assert d.num_classes == 10
    np.testing.assert_array_equal(np.bincount(np.concatenate([d.y_train, d.y_test])), [10] * 10)
    files = list(offline.glob("mnist1d_*.npz"))
    assert len(files) == 1
    assert not list(offline.glob("*.tmp*"))  # atomic write left no temp file

    # the second call reads the cache: generating again would fail here
    def boom(args):
        raise AssertionError("regenerated despite the cache")

    monkeypatch.setattr(data, "_generate_mnist1d", boom)
    d2 = data.mnist1d(seed=3, num_train=80, num_test=20)
    np.testing.assert_array_equal(d.x_train, d2.x_train)
    np.testing.assert_array_equal(d.y_test, d2.y_test)
    # other args are another cache entry
    with pytest.raises(AssertionError, match="regenerated"):
        data.mnist1d(seed=4, num_train=80, num_test=20)


def test_mnist1d_matches_the_package_generator_and_respects_seed_and_length(offline):
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples, args.seed = 100, 7
    ref = make_dataset(args)  # train_split 0.8: 80 / 20
    d = data.mnist1d(seed=7, num_train=80, num_test=20, cache=False)
    np.testing.assert_allclose(d.x_train, ref["x"], atol=1e-6)
    np.testing.assert_allclose(d.x_test, ref["x_test"], atol=1e-6)
    np.testing.assert_array_equal(d.y_test, ref["y_test"])
    other = data.mnist1d(seed=8, num_train=80, num_test=20, cache=False)
    assert not np.allclose(d.x_train, other.x_train)
    assert data.mnist1d(
        seed=7, num_train=40, num_test=10, length=24, cache=False
    ).x_train.shape == (
        40,
        24,
    )
    assert not list(offline.iterdir())  # cache=False writes nothing


def test_mnist1d_restores_global_rngs_and_validates(offline):
    import random

    np.random.seed(123)  # noqa: NPY002
    random.seed(123)
    expect_np = np.random.RandomState(123).rand()
    expect_py = random.Random(123).random()
    data.mnist1d(seed=0, num_train=40, num_test=10, cache=False)
    assert np.random.rand() == expect_np  # noqa: NPY002
    assert random.random() == expect_py
    with pytest.raises(ValueError, match="divisible by 10"):
        data.mnist1d(seed=0, num_train=41, num_test=10)


def test_batch_indices_are_epochs_of_permutations(getkey):
    key = getkey()
    idx = np.asarray(data.batch_indices(10, 3, 7, key=key))
    assert idx.shape == (7, 3) and idx.dtype == np.int32
    # 3 batches per epoch (the last row of each permutation is dropped)
    for e in range(2):
        epoch = idx[3 * e : 3 * e + 3].ravel()
        assert len(set(epoch.tolist())) == 9 and epoch.max() < 10
    assert not np.array_equal(idx[:3], idx[3:6])
    np.testing.assert_array_equal(idx, np.asarray(data.batch_indices(10, 3, 7, key=key)))
    with pytest.raises(ValueError, match="batch_size"):
        data.batch_indices(10, 11, 1, key=key)


def test_batches_iterates_one_shuffled_epoch(getkey):
    x = jnp.arange(20, dtype=jnp.float32).reshape(10, 2)
    y = jnp.arange(10, dtype=jnp.int32)
    out = list(data.batches(x, y, 4, key=getkey()))
    assert [b[0].shape for b in out] == [(4, 2), (4, 2)]
    ys = np.concatenate([np.asarray(b[1]) for b in out])
    assert len(set(ys.tolist())) == 8
    for xb, yb in out:  # rows stay paired
        np.testing.assert_array_equal(np.asarray(xb[:, 0]), 2 * np.asarray(yb))
    full = list(data.batches(x, y, 4, key=getkey(), drop_last=False))
    assert sorted(np.concatenate([np.asarray(b[1]) for b in full]).tolist()) == list(range(10))
    assert jax.tree_util.tree_structure(full[0]) == jax.tree_util.tree_structure((x, y))


def test_load_dataset_by_name():
    got, want = data.load_dataset("digits", seed=3), data.digits(seed=3)
    for a, b in zip(got, want, strict=True):
        np.testing.assert_array_equal(a, b)
    assert set(data.REAL_DATASETS) == {"digits", "mnist1d"}
    with pytest.raises(ValueError, match="digits, mnist1d"):
        data.load_dataset("cifar10", seed=0)


def test_fibonacci_mod_follows_its_recursion():
    """The closed form agrees with ``x_{t+1} = (x_t + x_{t−1}) mod V`` run step by step."""
    first = np.array([[0, 1], [3, 4], [2, 2], [6, 0]])
    got = data.fibonacci_mod(first, 20, 7)
    assert got.shape == (4, 20)
    for row, (a, b) in zip(got, first, strict=True):
        want = [a, b]
        while len(want) < 20:
            want.append((want[-1] + want[-2]) % 7)
        np.testing.assert_array_equal(row, want)


def test_standardise_uses_train_statistics_only():
    rng = np.random.default_rng(0)
    x_train = rng.normal(3.0, 2.0, size=(50, 3))
    x_train[:, 2] = 7.0  # constant on the train set: only centred
    x_test = rng.normal(size=(20, 3))
    tr, te = data.standardise(x_train, x_test)
    assert tr.dtype == te.dtype == np.float32
    np.testing.assert_allclose(tr[:, :2].mean(0), 0.0, atol=1e-6)
    np.testing.assert_allclose(tr[:, :2].std(0), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(tr[:, 2], 0.0)
    mu, sd = x_train.mean(0), np.where(x_train.std(0) > 0, x_train.std(0), 1.0)
    np.testing.assert_allclose(te, (x_test - mu) / sd, rtol=1e-6)
