"""The spine of the project: a residual net is explicit Euler on its field, forward and
backward, tied or untied; an ODE block with Euler is that residual net; adaptive ODE
blocks converge to the fine-step solution; jitted forwards do not recompile."""

import chex
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from terrain_jax import MLPField, ODEBlock, PiecewiseConstantField, ResidualNet, integrate

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
            assert int(tr.status) == 0 and int(tr.num_steps) > 0
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
