"""The spine of the project: a residual net is explicit Euler on its field, forward and
backward, tied or untied; an ODE block with Euler is that residual net; adaptive ODE
blocks converge to the fine-step solution; jitted forwards do not recompile. Also: the one
ODE-solve configuration of the ODE layers, how depth nets are built, and the classifier."""

import chex
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from terrain_jax import MLPField, ODEBlock, PiecewiseConstantField, ResidualNet, integrate
from terrain_jax.nets import (
    Classifier,
    DEQNet,
    Gate,
    HighwayNet,
    ODENet,
    ODESolve,
    PlainNet,
    ScaledResidualNet,
    layer_gradient_norms,
    make_blocks,
    make_gates,
)
from terrain_jax.train import cross_entropy

WIDTH, HIDDEN, DEPTH, T = 3, 8, 6, 2.0


def _net(key, *, tied: bool, time: bool) -> ResidualNet:
    if not time:
        return ResidualNet(WIDTH, HIDDEN, DEPTH, key=key, T=T, tied=tied)
    if tied:
        blocks = MLPField(WIDTH, HIDDEN, key=key, time=True)
    else:
        keys = jax.random.split(key, DEPTH)
        blocks = eqx.filter_vmap(lambda k: MLPField(WIDTH, HIDDEN, key=k, time=True))(keys)
    return ResidualNet(WIDTH, HIDDEN, DEPTH, key=key, T=T, tied=tied, blocks=blocks)


def _loss(y):
    return jnp.sum(jnp.sin(y) * jnp.arange(1.0, WIDTH + 1))


@eqx.filter_jit
def _net_value_and_grad(net, x):
    def loss(n):
        y = n(x)
        return _loss(y), y

    return eqx.filter_value_and_grad(loss, has_aux=True)(net)


@eqx.filter_jit
def _euler_value_and_grad(field, x):
    def loss(f):
        y = integrate(f, x, t1=T, solver="euler", steps=DEPTH).y1
        return _loss(y), y

    return eqx.filter_value_and_grad(loss, has_aux=True)(field)


# time=True also checks that block k is called at t_k = k h; the default (autonomous,
# constructor-built) tied net is covered by test_ode_block_with_euler_is_the_residual_net.
@pytest.mark.parametrize(("tied", "time"), [(False, False), (True, True), (False, True)])
def test_residual_net_is_euler_forward_and_backward(getkey, tied, time):
    net = _net(getkey(), tied=tied, time=time)
    x = jax.random.normal(getkey(), (4, WIDTH))
    field = net.as_field()
    if tied:
        assert field is net.blocks
    else:
        assert isinstance(field, PiecewiseConstantField)
        assert field.num_blocks == DEPTH and field.t1 == T

    (loss_n, y_n), g_net = _net_value_and_grad(net, x)
    (loss_f, y_f), g_field = _euler_value_and_grad(field, x)

    chex.assert_shape(y_n, (4, WIDTH))
    # the net actually moves x: the identity would make the comparison vacuous
    assert float(jnp.max(jnp.abs(y_n - x))) > 1e-2
    np.testing.assert_allclose(y_f, y_n, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(loss_f, loss_n, rtol=1e-5)
    # gradients w.r.t. every parameter: the blocks, or the stacked blocks of the field
    g_blocks = g_field if tied else g_field.stacked
    assert float(jnp.max(jnp.abs(g_net.blocks.weights[0]))) > 1e-3
    chex.assert_trees_all_close(g_blocks, g_net.blocks, rtol=1e-4, atol=1e-6)


def test_untied_blocks_are_distinct_and_used_in_order(getkey):
    net = _net(getkey(), tied=False, time=False)
    assert net.blocks.weights[0].shape == (DEPTH, HIDDEN, WIDTH)
    assert float(jnp.max(jnp.abs(net.blocks.weights[0][0] - net.blocks.weights[0][1]))) > 0
    # a hand-written loop over the blocks
    x = jax.random.normal(getkey(), (WIDTH,))
    params, static = eqx.partition(net.blocks, eqx.is_array)
    y = x
    for k in range(DEPTH):
        block = eqx.combine(jax.tree_util.tree_map(lambda a, k=k: a[k], params), static)
        y = y + net.h * block(k * net.h, y)
    np.testing.assert_allclose(net(x), y, rtol=1e-5, atol=1e-6)
    assert net.h == T / DEPTH


def test_return_hidden_matches_saveat_steps(getkey):
    net = _net(getkey(), tied=False, time=True)
    x = jax.random.normal(getkey(), (4, WIDTH))
    y, hs = eqx.filter_jit(lambda n, x: n(x, return_hidden=True))(net, x)
    chex.assert_shape(hs, (DEPTH + 1, 4, WIDTH))
    np.testing.assert_array_equal(hs[0], x)
    np.testing.assert_array_equal(hs[-1], y)
    tr = eqx.filter_jit(integrate)(
        net.as_field(), x, t1=T, solver="euler", steps=DEPTH, saveat="steps"
    )
    np.testing.assert_allclose(tr.ys, hs, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(tr.ts, np.linspace(0.0, T, DEPTH + 1), rtol=1e-6)


@pytest.mark.parametrize("tied", [True, False])
def test_ode_block_with_euler_is_the_residual_net(getkey, tied):
    net = _net(getkey(), tied=tied, time=False)
    block = ODEBlock(net.as_field(), solver="euler", steps=DEPTH, T=T)
    x = jax.random.normal(getkey(), (4, WIDTH))
    y_block = eqx.filter_jit(lambda b, x: b(x))(block, x)
    np.testing.assert_allclose(y_block, net(x), rtol=1e-5, atol=1e-6)


def test_ode_block_needs_steps_or_tolerances(getkey):
    with pytest.raises(ValueError, match="steps"):
        ODEBlock(MLPField(WIDTH, HIDDEN, key=getkey()))


def test_adaptive_ode_block_converges_to_fine_rk4(getkey):
    field32 = MLPField(WIDTH, HIDDEN, key=getkey(), time=True)
    with jax.enable_x64(True):
        field = jax.tree_util.tree_map(lambda a: a.astype(jnp.float64), field32)
        x = jax.random.normal(getkey(), (4, WIDTH), dtype=jnp.float64)
        assert field.weights[0].dtype == jnp.float64
        # rk4 with h = 1/200: global error O(h⁴) ≈ 1e-9 times a field-dependent constant
        ref = eqx.filter_jit(ODEBlock(field, solver="rk4", steps=200, T=T))(x)
        errs = []
        for tol in (1e-5, 1e-8):
            block = ODEBlock(field, solver="tsit5", rtol=tol, atol=tol, T=T)
            tr = eqx.filter_jit(lambda b, x: b.solve(x))(block, x)
            assert bool(tr.ok) and int(tr.num_steps) > 0
            y = tr.ys[-1]
            errs.append(float(jnp.max(jnp.abs(y - ref))))
            assert errs[-1] < 10 * tol, (tol, errs[-1])
        # converges: a 1000x tighter tolerance gives a much smaller error
        assert errs[1] < errs[0] / 30


def test_zero_last_net_is_the_identity(getkey):
    for tied in (True, False):
        net = ResidualNet(WIDTH, HIDDEN, DEPTH, key=getkey(), tied=tied, zero_last=True)
        x = jax.random.normal(getkey(), (4, WIDTH))
        np.testing.assert_array_equal(net(x), x)


def test_batched_forward_equals_vmap(getkey):
    net = _net(getkey(), tied=False, time=True)
    x = jax.random.normal(getkey(), (4, WIDTH))
    np.testing.assert_allclose(net(x), jax.vmap(net)(x), rtol=1e-6, atol=1e-7)


def test_jitted_forward_does_not_recompile(getkey):
    @eqx.filter_jit
    @eqx.debug.assert_max_traces(max_traces=1)
    def forward(net, x):
        return net(x)

    net = _net(getkey(), tied=False, time=False)
    other = _net(getkey(), tied=False, time=False)  # new weights, same shapes
    x = jax.random.normal(getkey(), (4, WIDTH))
    y1 = forward(net, x)
    y2 = forward(other, x + 1.0)
    np.testing.assert_allclose(y1, net(x), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(y2, other(x + 1.0), rtol=1e-6, atol=1e-7)
    # the guard is live: a new input shape retraces, which it reports
    with pytest.raises(RuntimeError, match="traced"):
        forward(net, jnp.zeros((5, WIDTH)))


# --------------------------------------------------------------- one ODE-solve configuration


@eqx.filter_jit
def _solve_and_grad(block, x):
    def loss(b):
        return _loss(b(x))

    return block.solve(x), eqx.filter_grad(loss)(block)


def test_ode_solve_configuration_gives_what_the_per_block_settings_gave(getkey):
    """``ODEBlock``'s keywords build one :class:`ODESolve`; the solve is the
    ``integrate`` call the block made with its own fields, bit for bit, forward and
    backward, and ``ode=`` is the same block."""
    field = MLPField(WIDTH, HIDDEN, key=getkey(), time=True)
    x = jax.random.normal(getkey(), (4, WIDTH))
    kw = dict(solver="tsit5", rtol=1e-4, atol=1e-6, adjoint="backsolve", max_steps=64)
    block = ODEBlock(field, T=T, **kw)
    assert block.ode == ODESolve(**kw)
    # the settings read through, as the block's own fields did
    assert (block.solver, block.rtol, block.atol) == ("tsit5", 1e-4, 1e-6)
    assert (block.steps, block.adjoint, block.max_steps) == (None, "backsolve", 64)
    same = ODEBlock(field, T=T, ode=ODESolve(**kw))
    assert eqx.tree_equal(block, same)

    traj, grads = _solve_and_grad(block, x)

    @eqx.filter_jit
    def by_hand(f, x):
        def loss(ff):
            return _loss(integrate(ff, x, t0=0.0, t1=T, **kw).ys[-1])

        return integrate(f, x, t0=0.0, t1=T, **kw), eqx.filter_grad(loss)(f)

    ref, g_ref = by_hand(field, x)
    assert int(traj.nfe) == int(ref.nfe) and int(traj.num_steps) > 1
    np.testing.assert_array_equal(traj.ys, ref.ys)
    chex.assert_trees_all_equal(grads.field, g_ref)
    # solve_with keeps its meaning: the block's settings with integrate's default adjoint
    other = block.solve_with(field, x, t0=T, t1=0.0)
    back = integrate(field, x, t0=T, t1=0.0, **{**kw, "adjoint": None})
    np.testing.assert_array_equal(other.ys, back.ys)


def test_cnf_and_wrapped_blocks_share_the_configuration(getkey):
    from terrain_jax.nets import CNF, RegularisedODEBlock

    cnf = CNF(2, 8, key=getkey())
    assert cnf.ode == ODESolve("tsit5", rtol=1e-5, atol=1e-5)  # the adaptive default
    fixed = CNF(2, field=cnf.field, solver="heun", steps=5)
    given = CNF(2, field=cnf.field, ode=ODESolve("heun", steps=5))
    assert eqx.tree_equal(fixed, given)
    x = jax.random.normal(getkey(), (6, 2))
    np.testing.assert_array_equal(fixed.log_prob(x), given.log_prob(x))
    # RNODE integrates with its block's configuration: y(T) is the block's output
    field = MLPField(WIDTH, HIDDEN, key=getkey())
    block = ODEBlock(field, solver="heun", steps=6, T=T)
    out = RegularisedODEBlock(block)(jax.random.normal(getkey(), (4, WIDTH)), key=getkey())
    assert int(out.trajectory.nfe) == int(block.solve(out.y1).nfe)


def test_ode_solve_refuses_no_steps_and_no_tolerances():
    with pytest.raises(ValueError, match="steps"):
        ODESolve("tsit5")
    assert ODESolve("euler", steps=3).replace(adjoint="backsolve").adjoint == "backsolve"


# ------------------------------------------------------------- depth-net construction


@pytest.mark.parametrize("tied", [False, True])
def test_depth_nets_are_their_blocks_whatever_the_construction(getkey, tied):
    """A built net holds exactly the blocks :func:`make_blocks` (or one block) draws from
    its key, whichever family and keyword order; given ``blocks=`` the key is unused."""
    key = getkey()
    made = make_blocks("mlp", WIDTH, HIDDEN, DEPTH, key=key, activation="relu")
    if tied:
        made = MLPField(WIDTH, HIDDEN, key=key, activation="relu")
    plain = PlainNet(WIDTH, HIDDEN, DEPTH, key=key, activation="relu", tied=tied)
    resid = ResidualNet(WIDTH, HIDDEN, DEPTH, tied=tied, activation="relu", h=0.5, key=key)
    scaled = ScaledResidualNet(WIDTH, HIDDEN, DEPTH, key=key, activation="relu", tied=tied)
    for net in (plain, resid, scaled):
        assert eqx.tree_equal(net.blocks, made), type(net).__name__
        assert (net.depth, net.tied) == (DEPTH, tied)
        again = type(net)(WIDTH, HIDDEN, DEPTH, key=getkey(), tied=tied, blocks=made,
                          **({"h": 0.5} if net is resid else {}))  # fmt: skip
        assert eqx.tree_equal(again, net)
        keyless = type(net)(WIDTH, HIDDEN, DEPTH, tied=tied, blocks=made,
                            **({"h": 0.5} if net is resid else {}))  # fmt: skip
        assert eqx.tree_equal(keyless, net)
        with pytest.raises(ValueError, match="key"):
            type(net)(WIDTH, HIDDEN, DEPTH, tied=tied)
    assert resid.T == 0.5 * DEPTH
    # the highway net: fields from the first half of the key, gates from the second
    hw = HighwayNet(WIDTH, HIDDEN, DEPTH, key=key, activation="relu", tied=tied, gate_bias=-2.0)
    kf, kg = jax.random.split(key)
    if tied:
        fields = MLPField(WIDTH, HIDDEN, key=kf, activation="relu")
        gates = Gate(WIDTH, key=kg, bias=-2.0)
    else:
        fields = make_blocks("mlp", WIDTH, HIDDEN, DEPTH, key=kf, activation="relu")
        gates = eqx.filter_vmap(lambda k: Gate(WIDTH, key=k, bias=-2.0))(
            jax.random.split(kg, DEPTH)
        )
        assert eqx.tree_equal(make_gates(WIDTH, DEPTH, key=kg, bias=-2.0), gates)
    assert eqx.tree_equal(hw.blocks, (fields, gates))
    assert eqx.tree_equal(HighwayNet(WIDTH, HIDDEN, DEPTH, tied=tied, blocks=hw.blocks), hw)
    with pytest.raises(ValueError, match="key"):
        HighwayNet(WIDTH, HIDDEN, DEPTH, tied=tied)


# ------------------------------------------------------------------------- classifier


@pytest.mark.parametrize("kind", ["mlp", "conv1d"])
def test_classifier_is_stem_then_body_then_head(getkey, kind):
    features, width, classes, depth = 12, 4, 3, 3
    block = "mlp" if kind == "mlp" else "conv1d"
    body = ResidualNet(width, 6, depth, key=getkey(), h=1.0, block=block)
    model = Classifier(body, features, width, classes, key=getkey(), kind=kind, stem_kernel=3)
    x = jax.random.normal(getkey(), (5, features))
    xn = np.asarray(x, np.float64)
    w, b = np.asarray(model.stem_w, np.float64), np.asarray(model.stem_b, np.float64)
    if kind == "mlp":
        x0 = xn @ w.T + b
    else:  # 'SAME' cross-correlation of each signal with each stem filter, by hand
        pad = np.pad(xn, ((0, 0), (1, 1)))
        x0 = np.stack([sum(w[c, 0, j] * pad[:, j : j + features] for j in range(3)) + b[c]
                       for c in range(width)], axis=1)  # fmt: skip
    np.testing.assert_allclose(model.embed(x), x0, rtol=1e-5, atol=1e-5)
    z = body(jnp.asarray(x0, jnp.float32))
    zn = np.asarray(z, np.float64)
    if kind == "conv1d":
        zn = zn.mean(axis=-1)
    logits = zn @ np.asarray(model.out_w, np.float64).T + np.asarray(model.out_b, np.float64)
    np.testing.assert_allclose(model(x), logits, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(model(x), model.head(body(model.embed(x))))
    mask = jnp.array([True, False, True])
    np.testing.assert_array_equal(model(x, mask=mask), model.head(body(model.embed(x), mask=mask)))
    assert model.hidden(x).shape[0] == depth + 1
    with pytest.raises(ValueError, match="kind"):
        Classifier(body, features, width, classes, key=getkey(), kind="conv2d")


def test_classifier_gradient_norms_are_the_bodys_under_the_composed_loss(getkey):
    # those of the body under the composed loss, and the last state norm is the plain
    # gradient of the loss at x_L
    features, width, classes = 5, WIDTH, 4
    body = ResidualNet(width, HIDDEN, DEPTH, key=getkey(), h=0.5)
    drawn = Classifier(body, features, width, classes, key=getkey())
    x = jax.random.normal(getkey(), (7, features))
    y = jnp.arange(7) % classes
    out = eqx.filter_jit(lambda m: m.gradient_norms(cross_entropy, x, y))(drawn)
    ref = layer_gradient_norms(body, lambda z, yy: cross_entropy(drawn.head(z), yy),
                               drawn.embed(x), y)  # fmt: skip
    for k in ("loss", "state_grad_norms", "param_grad_norms"):
        np.testing.assert_allclose(out[k], ref[k], rtol=1e-6)
    g = jax.grad(lambda z: cross_entropy(drawn.head(z), y))(body(drawn.embed(x)))
    np.testing.assert_allclose(out["state_grad_norms"][-1], jnp.linalg.norm(g), rtol=1e-5)
    np.testing.assert_allclose(out["loss"], cross_entropy(drawn(x), y), rtol=1e-6)


@pytest.mark.parametrize("tied", [False, True])
def test_highway_gate_values_are_the_gates_on_the_trajectory(getkey, tied):
    hw = HighwayNet(WIDTH, HIDDEN, DEPTH, key=getkey(), tied=tied)
    x = jax.random.normal(getkey(), (4, WIDTH))
    t = hw.gate_values(x)
    assert t.shape == (DEPTH, 4, WIDTH)
    z = x
    for k in range(DEPTH):  # layer by layer: T_k(x_k), then x_{k+1}
        gate = hw.blocks[1] if tied else hw.block(k)[1]
        np.testing.assert_allclose(t[k], gate(z), rtol=1e-6)
        z = hw.layer_map(k)(z)
    np.testing.assert_allclose(z, hw(x), rtol=1e-5, atol=1e-6)


def test_implicit_bodies_refuse_masks(getkey):
    field = MLPField(WIDTH, HIDDEN, key=getkey())
    x = jax.random.normal(getkey(), (2, WIDTH))
    for body in (ODENet(ODEBlock(field, steps=2)), DEQNet(field, max_steps=3)):
        with pytest.raises(ValueError, match="mask"):
            body(x, mask=jnp.ones(1, bool))
