import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from terrain_jax.terrains import TERRAINS, critical_points, get_terrain

NAMES = tuple(TERRAINS)
EPS32 = float(np.finfo(np.float32).eps)


@functools.cache
def _terrain(name):
    return get_terrain(name)


def _kinds(terrain):
    return {"minima": terrain.minima, "saddles": terrain.saddles, "maxima": terrain.maxima}


@eqx.filter_jit
def _hessian_eigs(terrain, points):
    return jax.vmap(lambda p: jnp.linalg.eigvalsh(jax.hessian(terrain.value)(p)))(points)


@eqx.filter_jit
def _local(terrain, points, dirs):
    """∇L, Hessian eigenvalues and L(p + r u) − L(p) (r = 1e-2) at each point."""
    g = jax.vmap(jax.grad(terrain.value))(points)
    around = jax.vmap(lambda q: jax.vmap(lambda u: terrain.value(q + 1e-2 * u))(dirs))(points)
    return g, _hessian_eigs(terrain, points), around - jax.vmap(terrain.value)(points)[:, None]


@functools.cache
def _analysis(name):
    """Per kind of critical point: (points, ∇L, eigenvalues, rise on a circle), in float64.

    float64 at the stored float32 points: the only gradient residual left is ‖H‖·(rounding).
    """
    t = _terrain(name)
    kinds = _kinds(t)
    sizes = [len(v) for v in kinds.values()]
    if t.dim == 2:
        angle = np.linspace(0.0, 2 * np.pi, 64, endpoint=False)
        dirs = np.stack([np.cos(angle), np.sin(angle)], 1)
    else:
        dirs = np.array([[-1.0], [1.0]])
    with jax.enable_x64(True):
        p = jnp.asarray(np.concatenate([np.asarray(v, dtype=np.float64) for v in kinds.values()]))
        out = [np.asarray(x) for x in (p, *_local(t, p, jnp.asarray(dirs)))]
    split = np.cumsum(sizes)[:-1]
    return {k: [np.split(x, split)[i] for x in out] for i, k in enumerate(kinds)}


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match="valid names are") as info:
        get_terrain("everest")
    for name in TERRAINS:
        assert name in str(info.value)


@pytest.mark.parametrize("name", NAMES)
def test_points_have_dim_and_lie_in_domain(name):
    t = _terrain(name)
    assert t.name == name
    assert len(t.minima) + len(t.saddles) + len(t.maxima) > 0
    for pts in _kinds(t).values():
        assert pts.shape[1] == t.dim
        for k, (lo, hi) in enumerate(t.domain):
            assert lo < hi
            assert bool(jnp.all((pts[:, k] >= lo) & (pts[:, k] <= hi)))


@pytest.mark.parametrize("name", NAMES)
def test_gradient_vanishes_at_critical_points(name):
    dim = _terrain(name).dim
    for p, g, eig, _ in _analysis(name).values():
        hnorm = np.max(np.abs(eig), axis=1, initial=0.0)
        bound = 2 * EPS32 * dim * hnorm * np.max(np.abs(p), axis=1, initial=0.0) + 1e-12
        assert np.all(np.linalg.norm(g, axis=1) <= bound), (g, bound)


@pytest.mark.parametrize("name", NAMES)
def test_hessian_signature(name):
    if _terrain(name).degenerate:
        pytest.skip("singular Hessians: covered by test_monkey_saddle / test_ring")
    for kind, (_, _, eig, _) in _analysis(name).items():
        scale = 1e-6 * (1.0 + np.max(np.abs(eig), initial=0.0))
        if kind == "minima":
            assert np.all(eig > scale), eig
        elif kind == "maxima":
            assert np.all(eig < -scale), eig
        else:
            assert np.all((eig.min(axis=1) < -scale) & (eig.max(axis=1) > scale))


@pytest.mark.parametrize("name", NAMES)
def test_local_character_on_a_small_circle(name):
    # Independent of the Hessian (so it covers the degenerate ones): around a minimum L rises in
    # every direction, around a maximum it falls, around a saddle it does both.
    for kind, (_, _, _, diff) in _analysis(name).items():
        if kind == "minima":
            assert np.all(diff > 0)
        elif kind == "maxima":
            assert np.all(diff < 0)
        else:
            assert np.all((diff.min(axis=1) < 0) & (diff.max(axis=1) > 0))


GLOBAL_MINIMA = {  # closed forms / literature
    "bowl": ([0.0, 0.0], 0.0),
    "ravine": ([0.0, 0.0], 0.0),
    "rosenbrock": ([1.0, 1.0], 0.0),
    "rosenbrock_classic": ([1.0, 1.0], 0.0),
    "beale": ([3.0, 0.5], 0.0),
    "himmelblau": ([3.0, 2.0], 0.0),
    "double_well": ([1.0, 0.0], 0.0),
    "ring": ([1.0, 0.0], 0.0),
    "rastrigin": ([0.0, 0.0], 0.0),
}


@pytest.mark.parametrize("name", tuple(GLOBAL_MINIMA))
def test_known_global_minimum_is_listed(name):
    t = _terrain(name)
    point, value = GLOBAL_MINIMA[name]
    dist = jnp.max(jnp.abs(t.minima - jnp.asarray(point)), axis=1)
    assert float(dist.min()) < 1e-6
    assert float(t.value(jnp.asarray(point))) == pytest.approx(value, abs=1e-12)
    assert float(jnp.min(jax.vmap(t.value)(t.minima))) == pytest.approx(value, abs=1e-5)


def test_himmelblau_four_minima_one_maximum_four_saddles():
    t = _terrain("himmelblau")
    assert (len(t.minima), len(t.saddles), len(t.maxima)) == (4, 4, 1)
    assert bool(jnp.all(jnp.abs(jax.vmap(t.value)(t.minima)) < 1e-5))
    # Literature values (6 decimals) of the three non-integer minima and the maximum.
    literature = np.array([[-2.805118, 3.131312], [-3.779310, -3.283186], [3.584428, -1.848126]])
    for q in literature:
        assert float(jnp.min(jnp.max(jnp.abs(t.minima - q), axis=1))) < 1e-5
    assert np.allclose(np.asarray(t.maxima[0]), [-0.270845, -0.923039], atol=1e-5)
    assert float(t.value(t.maxima[0])) == pytest.approx(181.617, abs=1e-3)


def test_monkey_saddle_is_degenerate():
    t = _terrain("monkey_saddle")
    origin = t.saddles[0]
    assert bool(jnp.all(jax.grad(t.value)(origin) == 0))
    assert bool(jnp.all(jax.hessian(t.value)(origin) == 0))
    third = jax.jit(jax.jacfwd(jax.hessian(t.value)))(origin)  # ∂³L: 6 at (0,0,0), −6 at (0,1,1)...
    assert float(third[0, 0, 0]) == pytest.approx(6.0)
    assert float(third[0, 1, 1]) == pytest.approx(-6.0)


def test_ring_minima_are_the_unit_circle_with_rank_one_hessian():
    t = _terrain("ring")
    assert np.allclose(np.linalg.norm(np.asarray(t.minima), axis=1), 1.0, atol=1e-6)
    eig = _hessian_eigs(t, t.minima)  # 8θθᵀ: eigenvalues {0, 8}
    assert np.allclose(np.asarray(eig), [[0.0, 8.0]] * len(t.minima), atol=1e-4)
    assert np.allclose(np.asarray(_hessian_eigs(t, t.maxima)), [[-4.0, -4.0]], atol=1e-5)


def test_rastrigin_critical_points_form_a_product_grid():
    t = _terrain("rastrigin")
    assert (len(t.minima), len(t.saddles), len(t.maxima)) == (121, 220, 100)
    m = np.asarray(t.minima)
    assert np.all(np.abs(m - np.round(m)) < 0.05)  # minima sit near integers, pulled inward
    assert np.all(np.abs(m) <= np.abs(np.round(m)) + 1e-6)


def test_quartic_critical_points_are_roots_of_the_cubic():
    t = _terrain("quartic")
    assert t.dim == 1
    for pts in (t.minima, t.maxima):
        x = np.asarray(pts[:, 0], dtype=np.float64)
        assert np.allclose(x**3 - 4 * x + 1, 0.0, atol=1e-5)
    values = jax.vmap(t.value)(t.minima)
    assert float(values[0]) < float(values[1])  # the left well is the global one
    assert float(t.minima[0, 0]) < float(t.maxima[0, 0]) < float(t.minima[1, 0])


def test_ch03_field_minimum_is_the_grid_minimum():
    t = _terrain("ch03_field")
    (lo_x, hi_x), (lo_y, hi_y) = t.domain
    x, y = jnp.meshgrid(jnp.linspace(lo_x, hi_x, 301), jnp.linspace(lo_y, hi_y, 301))
    grid = jnp.stack([x.ravel(), y.ravel()], 1)
    values = jax.vmap(t.value)(grid)
    best = jnp.min(jax.vmap(t.value)(t.minima))
    assert float(best) <= float(values.min()) + 1e-6
    assert float(jnp.max(jnp.abs(grid[jnp.argmin(values)] - t.minima[0]))) <= 0.02


def test_critical_points_finds_the_bowl_and_saddle():
    domain = ((-1.0, 1.0), (-1.0, 1.0))
    starts = np.array([[0.5, -0.3], [-0.2, 0.9]])
    mins, sads, maxs = critical_points(lambda p: p[0] ** 2 - p[1] ** 2, starts, domain)
    assert mins.shape == (0, 2) and maxs.shape == (0, 2)
    assert np.allclose(sads, [[0.0, 0.0]], atol=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_value_under_jit_and_vmap(name, getkey):
    t = _terrain(name)
    lo = jnp.array([d[0] for d in t.domain])
    hi = jnp.array([d[1] for d in t.domain])
    pts = jax.random.uniform(getkey(), (5, t.dim), minval=lo, maxval=hi)
    batched = eqx.filter_jit(lambda terr, p: jax.vmap(terr.value)(p))(t, pts)
    single = jnp.stack([t(p) for p in pts])
    assert batched.shape == (5,)
    assert np.allclose(np.asarray(batched), np.asarray(single), rtol=1e-6, atol=1e-5)
    grads = jax.jit(jax.vmap(jax.grad(t.value)))(pts)
    assert grads.shape == (5, t.dim) and bool(jnp.all(jnp.isfinite(grads)))


def test_ravine_vmaps_over_its_condition_number():
    kappas = jnp.array([1.0, 10.0, 1000.0])
    hess = jax.jit(
        jax.vmap(lambda k: jax.hessian(get_terrain("ravine", kappa=k).value)(jnp.zeros(2)))
    )(kappas)
    expected = jax.vmap(lambda k: jnp.diag(jnp.stack([jnp.ones(()), k])))(kappas)
    assert np.allclose(np.asarray(hess), np.asarray(expected))


def test_rosenbrock_b_parameter():
    book, classic = get_terrain("rosenbrock"), get_terrain("rosenbrock", b=100.0)
    p = jnp.array([0.0, 1.0])
    assert float(book(p)) == pytest.approx(1.0 + 10.0)
    assert float(classic(p)) == pytest.approx(1.0 + 100.0)
    assert float(_terrain("rosenbrock_classic")(p)) == pytest.approx(101.0)
