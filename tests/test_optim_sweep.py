"""``optim`` sweeps: one style over a hyper-parameter grid, its default and best grid
points, the registry's defaults, and ``Path.distances``."""

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from terrain_jax.optim import Sweep, default_hyper, sweep, walk, walk_many


def parabola(x):
    return 0.5 * 4.0 * jnp.sum(x**2)


def test_default_hyper_reads_the_factory_defaults():
    assert default_hyper("adam") == {"learning_rate": 0.01, "b1": 0.9, "b2": 0.999, "eps": 1e-8}
    assert default_hyper("sgd") == {"learning_rate": 0.1}
    assert default_hyper("momentum")["momentum"] == 0.9
    assert default_hyper(lambda learning_rate=0.5: optax.sgd(learning_rate)) == {
        "learning_rate": 0.5
    }
    assert default_hyper(optax.sgd(0.1)) == {}
    with pytest.raises(ValueError, match="valid names"):
        default_hyper("adamm")


def test_sweep_is_walk_many_over_the_grid_and_finds_the_exact_rate():
    # GD on 2θ² (λ = 4) lands on 0 in one step at η = 1/λ = 0.25: the best rate on the grid
    lrs = jnp.asarray([0.01, 0.1, 0.25, 0.4, 0.6])
    x0s = jnp.asarray([[1.0], [-2.0]])
    sw = sweep(parabola, "sgd", x0s, 5, lrs)
    ref = walk_many(parabola, "sgd", x0s, 5, hyper_grid={"learning_rate": lrs})
    np.testing.assert_array_equal(np.asarray(sw.path.losses), np.asarray(ref.losses))
    assert isinstance(sw, Sweep) and sw.values.dtype == np.float32
    final = np.median(np.asarray(sw.path.losses[..., -1]), axis=1)
    assert sw.best(final) == 2
    assert sw.index() == 1  # sgd's default η = 0.1
    assert sw.index(0.4) == 3
    with pytest.raises(ValueError, match="not on the grid"):
        sw.index(0.3)
    with pytest.raises((ValueError, TypeError)):  # TypeError: the shape annotation in tests
        sw.best(np.asarray(sw.path.losses[..., -1]))


def test_sweep_best_breaks_ties_by_the_second_score_then_the_first_index():
    sw = Sweep("sgd", "learning_rate", np.array([0.1, 0.2, 0.3, 0.4]), None)
    inf = np.inf
    assert sw.best(np.full(4, inf), np.array([3.0, 1.0, np.nan, 1.0])) == 1
    assert sw.best(np.array([2.0, 1.0, 1.0, np.nan])) == 1
    assert sw.best(np.array([np.nan, 5.0, inf, 5.0])) == 1


def test_sweep_index_of_a_style_without_that_default():
    sw = Sweep(optax.sgd(0.1), "learning_rate", np.array([0.1]), None)
    with pytest.raises(ValueError, match="no default"):
        sw.index()


def test_path_distances_are_inf_on_diverged_walks():
    # η = 0.75 > 2/λ diverges (|1 − 3| = 2 per step, overflowing float32 in 200 steps)
    path = walk_many(parabola, "sgd", jnp.asarray([[1.0, 0.0]]), 200,
                     hyper_grid={"learning_rate": jnp.asarray([0.1, 0.75])})  # fmt: skip
    d = path.distances(np.array([0.0, 0.0]))
    assert d.shape == (2, 1, 201) and d.dtype == np.float64
    np.testing.assert_allclose(d[0, 0], 0.6 ** np.arange(201), rtol=1e-5, atol=1e-30)
    assert np.all(np.isinf(d[1]))
    with pytest.raises(TypeError, match="array positions"):
        walk(lambda t: jnp.sum(t["a"] ** 2), "sgd", {"a": jnp.ones(2)}, 2).distances(np.zeros(2))
