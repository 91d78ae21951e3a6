"""``optim``: styles against closed forms and optax's own updates, the GD stability bound,
GD against its gradient-flow limit, the heavy-ball energy, the Nesterov ODE's Bessel
solution, batching over starts × learning rates, Path helpers, and input validation."""

import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import numpy as np
import optax
import pytest
import scipy.special
from helpers import tree_allclose

from terrain_jax.ode import integrate
from terrain_jax.optim import (
    SIMPLEX_STYLES,
    WALKING_STYLES,
    Path,
    get_style,
    gradient_flow,
    heavy_ball,
    nesterov_ode,
    walk,
    walk_many,
)

DIAG = jnp.array([1.0, 3.0])


def bowl(x):
    """Convex quadratic ½ xᵀ diag(1, 3) x, minimum 0 at the origin."""
    return 0.5 * jnp.sum(DIAG * x**2)


def rosenbrock(x):
    """The book's variant (1 − a)² + 10 (b − a²)², minimum at (1, 1)."""
    return (1.0 - x[0]) ** 2 + 10.0 * (x[1] - x[0] ** 2) ** 2


def _slope(hs, errs) -> float:
    return float(np.polyfit(np.log(np.asarray(hs)), np.log(np.asarray(errs)), 1)[0])


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


# ----------------------------------------------------------------- closed forms, stability


def test_sgd_is_geometric_on_a_parabola():
    lam, eta, th0, k = 4.0, 0.1, 1.5, 30
    path = walk(
        lambda th: 0.5 * lam * th**2, "sgd", jnp.array(th0), k, hyper={"learning_rate": eta}
    )
    exact = th0 * (1.0 - eta * lam) ** np.arange(k + 1)
    assert isinstance(path, Path)
    np.testing.assert_allclose(path.positions, exact, rtol=1e-5, atol=1e-12)
    np.testing.assert_allclose(path.losses, 0.5 * lam * exact**2, rtol=1e-5, atol=1e-12)
    np.testing.assert_allclose(path.grad_norms, lam * np.abs(exact), rtol=1e-5, atol=1e-12)


def test_sgd_converges_iff_eta_below_two_over_lambda():
    lam, steps = 4.0, 200
    etas = np.linspace(-0.1, 1.0, 111)
    etas = etas[np.abs(etas - 2.0 / lam) > 0.02]  # |1 − ηλ|^200 is undecided right at 2/λ
    etas = etas[np.abs(etas) > 0.02]
    path = walk_many(
        lambda th: 0.5 * lam * th**2,
        "sgd",
        jnp.array([1.0]),
        steps,
        hyper_grid={"learning_rate": jnp.asarray(etas, dtype=jnp.float32)},
    )
    assert path.losses.shape == (len(etas), 1, steps + 1)
    final = np.abs(np.asarray(path.positions[:, 0, -1]))
    converged = final < 1e-2
    predicted = (etas > 0) & (etas < 2.0 / lam)
    np.testing.assert_array_equal(converged, predicted)
    # far past the bound the loss λθ²/2 overflows float32: divergence shows in the path
    with np.errstate(divide="ignore"):  # η = 1/λ lands on 0 in one step
        log_loss = np.log(0.5 * lam) + 2.0 * steps * np.log(np.abs(1.0 - etas * lam))
    overflow = log_loss > np.log(np.finfo(np.float32).max)
    assert overflow.any()
    np.testing.assert_array_equal(np.asarray(path.diverged[:, 0]), overflow)


# ----------------------------------------------------------------- continuous limits


def _smooth(x):
    """A non-quadratic terrain, so that Euler's O(η) error is not zero."""
    return 0.25 * (x[0] ** 2 - 1.0) ** 2 + 0.5 * x[1] ** 2 + 0.3 * x[0] * x[1]


def test_gd_tracks_gradient_flow_to_first_order(x64):
    x0, horizon = jnp.array([1.2, -1.0]), 2.0
    etas = [0.04, 0.02, 0.01, 0.005]
    # one accurate flow on the finest grid; every coarser grid t = kη is a subset of it
    fine = etas[-1] * jnp.arange(round(horizon / etas[-1]) + 1, dtype=x0.dtype)
    flow = integrate(
        gradient_flow(_smooth), x0, t1=horizon, solver="tsit5", rtol=1e-11, atol=1e-11,
        saveat=fine,
    )  # fmt: skip
    assert bool(flow.ok)
    errs = []
    for eta in etas:
        path = walk(_smooth, "sgd", x0, round(horizon / eta), hyper={"learning_rate": eta})
        every = round(eta / etas[-1])
        errs.append(float(jnp.max(jnp.abs(path.positions - flow.ys[::every]))))
    ratios = np.array(errs[:-1]) / np.array(errs[1:])
    assert np.all((ratios > 1.8) & (ratios < 2.2)), (errs, ratios)
    assert abs(_slope(etas, errs) - 1.0) < 0.05, errs
    assert errs[0] < 0.1  # within O(η): the constant is moderate


def test_heavy_ball_energy_decreases_at_rate_gamma_p2(x64):
    gamma = 0.5
    field = heavy_ball(rosenbrock, gamma)
    y0 = (jnp.array([-1.0, 1.5]), jnp.array([0.5, 0.0]))
    ts = jnp.linspace(0.0, 8.0, 4001)
    traj = integrate(field, y0, t1=8.0, solver="tsit5", rtol=1e-10, atol=1e-10, saveat=ts)
    assert bool(traj.ok)
    energy = np.asarray(jax.vmap(field.energy)(traj.ys))
    assert energy[0] == pytest.approx(0.125 + float(rosenbrock(y0[0])))
    assert np.all(np.diff(energy) <= 1e-9)  # monotone, up to the solver's tolerance
    assert energy[-1] < 0.5 * energy[0]
    # dH/dt = −γ‖p‖²: the total drop equals the dissipated work (trapezoid, O(h²))
    p2 = np.sum(np.asarray(traj.ys[1]) ** 2, axis=1)
    work = gamma * np.trapezoid(p2, np.asarray(ts))
    assert energy[0] - energy[-1] == pytest.approx(work, rel=1e-4)


def test_nesterov_ode_matches_bessel_solution(x64):
    # On L = ½‖x‖² with ẋ(0) = 0 the solution is x(t) = x0 · 2 J1(t) / t (Su, Boyd, Candès);
    # start at t0 > 0 on that solution: d/dt (2 J1(t)/t) = −2 J2(t)/t.
    x0, t0, t1 = np.array([1.0, -2.0]), 0.5, 12.0

    def exact(t):
        return x0 * 2.0 * scipy.special.jv(1, t) / t

    v0 = x0 * (-2.0 * scipy.special.jv(2, t0) / t0)
    ts = np.linspace(t0, t1, 50)
    traj = integrate(
        nesterov_ode(lambda x: 0.5 * jnp.sum(x**2)),
        (jnp.asarray(exact(t0)), jnp.asarray(v0)),
        t0=t0, t1=t1, solver="tsit5", rtol=1e-10, atol=1e-10, saveat=ts,
    )  # fmt: skip
    assert bool(traj.ok)
    ref = np.stack([exact(t) for t in ts])
    np.testing.assert_allclose(np.asarray(traj.ys[0]), ref, atol=1e-7)


# ----------------------------------------------------------------- the registry


@pytest.mark.parametrize("name", list(WALKING_STYLES))
def test_every_style_descends_a_convex_bowl(name):
    # Adagrad's effective step shrinks like 1/√k, so its natural learning rate is larger
    lr = 0.5 if name == "adagrad" else 0.05
    path = walk(bowl, name, jnp.array([1.0, -2.0]), 150, hyper={"learning_rate": lr})
    assert path.losses[-1] < 0.1 * path.losses[0]
    assert not bool(path.diverged)


REFERENCES = {
    "sgd": lambda lr: optax.sgd(lr),
    "momentum": lambda lr: optax.sgd(lr, momentum=0.9),
    "nesterov": lambda lr: optax.sgd(lr, momentum=0.9, nesterov=True),
    "adagrad": lambda lr: optax.adagrad(lr),
    "rmsprop": lambda lr: optax.rmsprop(lr),
    "adam": lambda lr: optax.adam(lr),
    "adamw": lambda lr: optax.adamw(lr),
    "lion": lambda lr: optax.lion(lr, weight_decay=0.0),
    "signsgd": lambda lr: optax.chain(optax.scale_by_sign(), optax.scale(-lr)),
}


def _optax_loop(tx, loss, x, steps):
    with jax.numpy_dtype_promotion("standard"):
        state = tx.init(x)
        xs = [x]
        for _ in range(steps):
            upd, state = tx.update(jax.grad(loss)(x), state, x)
            x = optax.apply_updates(x, upd)
            xs.append(x)
    return jnp.stack(xs)


def test_registry_is_covered_by_references():
    assert set(REFERENCES) == set(WALKING_STYLES)


@pytest.mark.parametrize("name", list(WALKING_STYLES))
def test_style_matches_optax_update(name):
    x0, lr = jnp.array([0.3, -0.8]), 0.01
    path = walk(rosenbrock, name, x0, 3, hyper={"learning_rate": lr})
    ref = _optax_loop(REFERENCES[name](lr), rosenbrock, x0, 3)
    np.testing.assert_allclose(path.positions, ref, rtol=1e-6, atol=1e-7)


def test_first_steps_against_hand_formulas():
    # Adam's first step is lr·g/(|g| + ε) (bias corrections cancel); Lion's and signSGD's
    # are lr·sign(g); SGD's and momentum's are lr·g.
    x0, lr = jnp.array([0.3, -0.8]), 0.01
    g = np.asarray(jax.grad(rosenbrock)(x0))
    expect = {
        "adam": lr * g / (np.abs(g) + 1e-8),
        "lion": lr * np.sign(g),
        "signsgd": lr * np.sign(g),
        "sgd": lr * g,
        "momentum": lr * g,
    }
    for name, step in expect.items():
        path = walk(rosenbrock, name, x0, 1, hyper={"learning_rate": lr})
        np.testing.assert_allclose(path.positions[1], np.asarray(x0) - step, rtol=1e-6)


# ----------------------------------------------------------------- batching, pytrees


def test_walk_many_equals_separate_walks(getkey):
    starts = jax.random.uniform(getkey(), (64, 2), minval=-1.5, maxval=1.5)
    lrs = jnp.array([1e-3, 3e-3, 1e-2, 3e-2])
    steps = 25
    batched = walk_many(rosenbrock, "adam", starts, steps, hyper_grid={"learning_rate": lrs})
    assert batched.positions.shape == (4, 64, steps + 1, 2)
    assert batched.losses.shape == batched.grad_norms.shape == (4, 64, steps + 1)
    # the documented plain-vmap usage gives the same
    vmapped = jax.vmap(
        lambda lr: jax.vmap(
            lambda x: walk(rosenbrock, "adam", x, steps, hyper={"learning_rate": lr})
        )(starts)
    )(lrs)
    assert tree_allclose(tuple(batched), tuple(vmapped), rtol=1e-5, atol=1e-6)
    for i in (0, 3):
        for j in (0, 17, 63):
            one = walk(rosenbrock, "adam", starts[j], steps, hyper={"learning_rate": lrs[i]})
            one_b = jtu.tree_map(lambda a, i=i, j=j: a[i, j], batched)
            assert tree_allclose(tuple(one), tuple(one_b), rtol=1e-5, atol=1e-6)


def test_pytree_positions_match_flat_array():
    def tree_loss(p):
        return rosenbrock(jnp.stack([p["a"], p["b"][0]]))

    flat = walk(rosenbrock, "momentum", jnp.array([-1.0, 1.0]), 40, hyper={"learning_rate": 0.01})
    tree = walk(
        tree_loss, "momentum", {"a": jnp.array(-1.0), "b": jnp.array([1.0])}, 40,
        hyper={"learning_rate": 0.01},
    )  # fmt: skip
    np.testing.assert_allclose(tree.positions["a"], flat.positions[:, 0], rtol=1e-6)
    np.testing.assert_allclose(tree.positions["b"][:, 0], flat.positions[:, 1], rtol=1e-6)
    np.testing.assert_allclose(tree.losses, flat.losses, rtol=1e-6)


def test_custom_optax_transformation_and_factory():
    tx = optax.chain(optax.clip_by_global_norm(1.0), optax.sgd(0.02, momentum=0.5))
    x0 = jnp.array([-1.2, 1.0])
    path = walk(rosenbrock, tx, x0, 10)
    np.testing.assert_allclose(path.positions, _optax_loop(tx, rosenbrock, x0, 10), rtol=1e-6)
    # a factory takes hyper-parameters like a registered name
    fac = walk(rosenbrock, lambda learning_rate: optax.sgd(learning_rate), x0, 5,
               hyper={"learning_rate": 0.01})  # fmt: skip
    ref = walk(rosenbrock, "sgd", x0, 5, hyper={"learning_rate": 0.01})
    assert tree_allclose(tuple(fac), tuple(ref))


def test_errors_say_what_to_do():
    with pytest.raises(ValueError, match="valid names are: sgd, momentum, nesterov") as e:
        get_style("adamm")
    assert all(n in str(e.value) for n in WALKING_STYLES)
    with pytest.raises(ValueError, match="learning_rate, b1, b2, eps"):
        get_style("adam", lr=0.1)
    with pytest.raises(ValueError, match="ready optax transformation"):
        get_style(optax.sgd(0.1), learning_rate=0.2)
    with pytest.raises(ValueError, match="NaN or inf"):
        walk(bowl, "sgd", jnp.array([jnp.nan, 0.0]), 3)
    with pytest.raises(ValueError, match="NaN or inf"):
        walk_many(bowl, "sgd", jnp.array([[0.0, 1.0], [jnp.inf, 0.0]]), 3)
    with pytest.raises(ValueError, match="positive integer"):
        walk(bowl, "sgd", jnp.ones(2), 0)
    with pytest.raises(ValueError, match="common length"):
        walk_many(bowl, "sgd", jnp.ones((2, 2)), 3,
                  hyper_grid={"learning_rate": jnp.ones(3), "momentum": jnp.ones(2)})  # fmt: skip


@pytest.mark.parametrize("name", list(SIMPLEX_STYLES))
def test_simplex_styles_walk_on_the_simplex_to_the_target(name):
    """Mirror descent and projected GD by name through ``walk``: every position is a
    probability vector and the walk reaches the minimiser of ½‖p − t‖² on the simplex."""
    t = jnp.array([0.7, 0.2, 0.1])
    path = walk(lambda p: 0.5 * jnp.sum((p - t) ** 2), name, jnp.full(3, 1 / 3), 300,
                hyper={"learning_rate": 0.5})  # fmt: skip
    P = path.positions
    assert jnp.all(P >= 0) and jnp.allclose(P.sum(-1), 1.0, atol=1e-5)
    assert jnp.allclose(P[-1], t, atol=1e-4), P[-1]


def test_every_keeps_the_strided_states_of_the_full_walk(getkey):
    starts = jax.random.normal(getkey(), (5, 2))
    full = walk_many(rosenbrock, "adam", starts, 60, hyper={"learning_rate": 0.05})
    strided = walk_many(rosenbrock, "adam", starts, 60, hyper={"learning_rate": 0.05}, every=20)
    assert strided.losses.shape == (5, 4)
    for a, b in zip(jtu.tree_leaves(full), jtu.tree_leaves(strided), strict=True):
        np.testing.assert_allclose(a[:, ::20], b, rtol=1e-6, atol=1e-7)
    ends = walk(rosenbrock, "momentum", starts[0], 30, every=30)
    np.testing.assert_allclose(ends.final, walk(rosenbrock, "momentum", starts[0], 30).final)
    with pytest.raises(ValueError, match="dividing"):
        walk(rosenbrock, "sgd", starts[0], 10, every=3)


@pytest.mark.parametrize("name", ["adam", "momentum"])
def test_a_name_and_its_optax_object_walk_the_same(getkey, name):
    """``style="adam"`` is sugar for the optax object: walk and walk_many agree exactly."""
    lr = 1e-2
    obj = REFERENCES[name](lr)
    x0 = jnp.array([-1.2, 1.0])
    by_name = walk(rosenbrock, name, x0, 20, hyper={"learning_rate": lr})
    by_object = walk(rosenbrock, obj, x0, 20)
    for a, b in zip(by_name, by_object, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    starts = jax.random.normal(getkey(), (6, 2))
    many_name = walk_many(rosenbrock, name, starts, 20, hyper={"learning_rate": lr})
    many_object = walk_many(rosenbrock, obj, starts, 20)
    for a, b in zip(many_name, many_object, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_path_steps_to_and_first_exit():
    # GD on λθ²/2 from θ0: the loss ½λθ0²(1 − ηλ)^{2k} first drops below tol at a known k
    lam, eta, th0, steps, tol = 2.0, 0.1, 1.0, 60, 1e-4
    path = walk(lambda th: 0.5 * lam * th**2, "sgd", jnp.array(th0), steps,
                hyper={"learning_rate": eta})  # fmt: skip
    k = np.arange(steps + 1)
    exact_loss = 0.5 * lam * th0**2 * (1 - eta * lam) ** (2 * k)
    assert path.steps_to(tol) == float(np.argmax(exact_loss < tol))
    assert path.steps_to(1e-30) == np.inf  # never settles within the walk
    # the walker leaves |θ| ≤ 0.5 ... never (it moves inwards); it leaves |θ| > 0.5 at once
    assert path.first_exit(lambda x: np.abs(x) <= 1.0) == np.inf
    first_inside = float(np.argmax(th0 * (1 - eta * lam) ** k <= 0.5))
    assert path.first_exit(lambda x: np.abs(x) > 0.5) == first_inside
    # batched: one answer per start
    many = walk_many(bowl, "sgd", jnp.array([[1.0, 0.0], [3.0, 0.0]]), 80)
    np.testing.assert_array_equal(many.first_exit(lambda x: x[..., 0] > 0.5), [7.0, 18.0])
    assert many.steps_to(1e-3).shape == (2,)
    with pytest.raises(ValueError, match="losses' shape"):
        many.first_exit(lambda x: x > 0)
