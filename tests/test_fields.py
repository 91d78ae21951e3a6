"""Vector fields: learned MLP fields on vectors and batches, linear (against its exact
flow), gradient, Hamiltonian, Van der Pol, piecewise-constant fields, the activation table,
and the Flax NNX adapter against an equal equinox field."""

import chex
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import numpy as np
import pytest
import scipy.linalg
from flax import nnx

from terrain_jax import (
    GradientField,
    HamiltonianField,
    LinearField,
    MLPField,
    NNXField,
    PiecewiseConstantField,
    integrate,
)
from terrain_jax.fields import (
    ACTIVATION_LIPSCHITZ,
    ACTIVATIONS,
    AbstractField,
    VanDerPolField,
    activation_lipschitz,
    get_activation,
)

_NP_ACTIVATIONS = {
    "tanh": np.tanh,
    "relu": lambda x: np.maximum(x, 0.0),
    "softplus": lambda x: np.log1p(np.exp(x)),
    "sigmoid": lambda x: 1.0 / (1.0 + np.exp(-x)),
    "identity": lambda x: x,
    "silu": lambda x: x / (1.0 + np.exp(-x)),
}


def _np_mlp(field: MLPField, y: np.ndarray, t: float | None = None, act=np.tanh) -> np.ndarray:
    """Reference forward pass in numpy: h ↦ act(W h + b), last layer linear."""
    h = np.asarray(y, np.float64)
    if t is not None:
        h = np.concatenate([h, np.full(h.shape[:-1] + (1,), t)], axis=-1)
    n = len(field.weights)
    for i, (w, b) in enumerate(zip(field.weights, field.biases, strict=True)):
        h = h @ np.asarray(w, np.float64).T + np.asarray(b, np.float64)
        if i < n - 1:
            h = act(h)
    return h


# ---------------------------------------------------------------------------- MLPField


@pytest.mark.parametrize("time", [False, True])
def test_mlp_field_batch_equals_vmap(getkey, time):
    f = MLPField(3, 8, depth=2, key=getkey(), time=time)
    Y = jax.random.normal(getkey(), (4, 3))
    Y2 = jax.random.normal(getkey(), (2, 4, 3))  # two batch axes

    @eqx.filter_jit
    def compare(f, Y, Y2):
        one = lambda y: f(0.7, y)
        return f(0.7, Y), jax.vmap(one)(Y), one(Y[2]), f(0.7, Y2), jax.vmap(jax.vmap(one))(Y2)

    out, ref, row2, out2, ref2 = compare(f, Y, Y2)
    chex.assert_shape([out, out2], [(4, 3), (2, 4, 3)])
    np.testing.assert_allclose(out, ref, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(out[2], row2, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(out2, ref2, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("activation", sorted(_NP_ACTIVATIONS))
def test_mlp_field_matches_numpy_forward(getkey, activation):
    f = MLPField(3, 8, depth=2, key=getkey(), activation=activation)
    # MLPField starts with zero biases; give them values so they are exercised too
    f = eqx.tree_at(lambda m: m.biases, f, [jax.random.normal(getkey(), b.shape) for b in f.biases])
    y = jax.random.normal(getkey(), (4, 3))
    ref = _np_mlp(f, np.asarray(y), act=_NP_ACTIVATIONS[activation])
    np.testing.assert_allclose(f(0.0, y), ref, rtol=1e-5, atol=1e-6)


def test_mlp_field_shapes_and_init(getkey):
    f = MLPField(3, 8, depth=2, key=getkey())
    chex.assert_shape(f.weights, [(8, 3), (8, 8), (3, 8)])
    chex.assert_shape(f.biases, [(8,), (8,), (3,)])
    for w in f.weights:
        # uniform in ±1/sqrt(fan_in)
        assert float(jnp.max(jnp.abs(w))) <= 1 / np.sqrt(w.shape[1])
    ft = MLPField(3, 8, depth=2, key=getkey(), time=True)
    chex.assert_shape(ft.weights[0], (8, 4))


def test_mlp_field_time_dependence(getkey):
    f = MLPField(3, 8, depth=2, key=getkey(), time=True)
    y = jax.random.normal(getkey(), (3,))
    a, b = f(0.0, y), f(1.0, y)
    assert float(jnp.max(jnp.abs(a - b))) > 1e-3
    for t in (0.0, 0.3, 1.0):
        np.testing.assert_allclose(f(t, y), _np_mlp(f, np.asarray(y), t=t), rtol=1e-5, atol=1e-6)
    # batched: t is broadcast to every row
    Y = jax.random.normal(getkey(), (4, 3))
    np.testing.assert_allclose(f(0.3, Y), _np_mlp(f, np.asarray(Y), t=0.3), rtol=1e-5, atol=1e-6)
    # an autonomous field ignores t
    g = MLPField(3, 8, depth=2, key=getkey())
    np.testing.assert_array_equal(g(0.0, y), g(5.0, y))


def test_mlp_field_zero_last_is_zero(getkey):
    f = MLPField(3, 8, depth=2, key=getkey(), zero_last=True)
    y = jax.random.normal(getkey(), (4, 3))
    np.testing.assert_array_equal(f(0.0, y), 0.0)
    assert float(jnp.max(jnp.abs(f.weights[0]))) > 0  # only the last layer is zeroed


def test_unknown_activation_lists_valid_names(getkey):
    with pytest.raises(ValueError, match="valid names") as info:
        MLPField(3, 8, key=getkey(), activation="swishy")
    for name in ACTIVATIONS:
        assert name in str(info.value)


def test_activation_accessors_read_one_table():
    assert set(ACTIVATION_LIPSCHITZ) == set(ACTIVATIONS)
    z = jnp.linspace(-3.0, 3.0, 7)
    for name, act in ACTIVATIONS.items():
        assert get_activation(name) is act.fn
        assert activation_lipschitz(name) == act.lipschitz == ACTIVATION_LIPSCHITZ[name]
        chex.assert_shape(get_activation(name)(z), (7,))
    for call, words in ((get_activation, "valid names"), (activation_lipschitz, "known")):
        with pytest.raises(ValueError, match=words) as info:
            call("swishy")
        for name in ACTIVATIONS:
            assert name in str(info.value)


def test_every_field_is_an_abstract_field(getkey):
    fields = [
        MLPField(3, 4, key=getkey()),
        LinearField(jnp.eye(2)),
        GradientField(lambda y: jnp.sum(y**2)),
        HamiltonianField(lambda q, p: q**2 + p**2),
        VanDerPolField(1.0),
    ]
    for f in fields:
        assert isinstance(f, AbstractField)
    with pytest.raises(TypeError):
        AbstractField()  # abstract: __call__ and lipschitz_bound are not implemented


# ------------------------------------------------------------------- analytic fields


def test_linear_field_matches_matmul(getkey):
    A = jax.random.normal(getkey(), (3, 3))
    f = LinearField(A)
    y = jax.random.normal(getkey(), (3,))
    np.testing.assert_allclose(f(0.0, y), A @ y, rtol=1e-5, atol=1e-6)
    Y = jax.random.normal(getkey(), (4, 3))
    np.testing.assert_allclose(f(0.0, Y), (A @ Y.T).T, rtol=1e-5, atol=1e-6)
    # numpy input is accepted and stored as a jax array
    g = LinearField(np.asarray(A))
    assert isinstance(g.A, jax.Array)
    np.testing.assert_allclose(g(1.0, y), A @ y, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("t", [0.0, 0.3, 2.0])
def test_linear_field_exact_flow_is_expm_and_matches_integrate(t):
    A = np.array([[-0.5, 2.0], [-2.0, -0.5]])
    y0 = np.array([[1.0, 0.5], [-0.3, 2.0]])
    with jax.enable_x64(True):
        f = LinearField(jnp.asarray(A))
        exact = f.exact_flow(t, jnp.asarray(y0))
        np.testing.assert_allclose(exact, y0 @ scipy.linalg.expm(t * A).T, rtol=1e-12)
        np.testing.assert_allclose(f.exact_flow(t, jnp.asarray(y0[1])), exact[1], rtol=1e-14)
        if t > 0:
            tr = integrate(f, jnp.asarray(y0), t1=t, solver="dopri8", rtol=1e-12, atol=1e-12)
            assert bool(tr.ok)
            np.testing.assert_allclose(tr.y1, exact, rtol=1e-10, atol=1e-12)
        else:
            np.testing.assert_array_equal(exact, y0)


def test_van_der_pol_field_and_its_jacobian(getkey):
    mu = 3.0
    f = VanDerPolField(mu)
    y = jax.random.normal(getkey(), (5, 2))
    dy = f(0.0, y)
    np.testing.assert_allclose(dy[:, 0], y[:, 1], rtol=1e-6)
    np.testing.assert_allclose(
        dy[:, 1], mu * (1 - y[:, 0] ** 2) * y[:, 1] - y[:, 0], rtol=1e-5, atol=1e-6
    )
    # one state and a batch agree; the analytic Jacobian is jacfwd's
    np.testing.assert_allclose(f(0.0, y[2]), dy[2], rtol=1e-6)
    J = f.jacobian(y)
    chex.assert_shape(J, (5, 2, 2))
    J_ad = jax.vmap(jax.jacfwd(lambda z: f(0.0, z)))(y)
    np.testing.assert_allclose(J, J_ad, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(f.jacobian(y[2]), J[2], rtol=1e-6)
    with pytest.raises(NotImplementedError, match="lipschitz_lower_bound"):
        f.lipschitz_bound()


def test_gradient_field_is_minus_gradient_on_pytrees():
    def L(th):
        return jnp.sum(th["a"] ** 2) + jnp.sin(th["b"][0]) * th["b"][1]

    th = {"a": jnp.array([1.0, -2.0]), "b": jnp.array([0.5, 3.0])}
    out = GradientField(L)(0.0, th)
    np.testing.assert_allclose(out["a"], [-2.0, 4.0], rtol=1e-6)
    np.testing.assert_allclose(out["b"], [-np.cos(0.5) * 3.0, -np.sin(0.5)], rtol=1e-6)
    # with args
    f = GradientField(lambda th, c: c * jnp.sum(th**2), takes_args=True)
    np.testing.assert_allclose(f(0.0, jnp.array([1.0, 2.0]), 3.0), [-6.0, -12.0], rtol=1e-6)


def test_hamiltonian_field_equations():
    # a non-separable H: H = ½ p²(1 + q²) + q⁴/4 (scalars q, p)
    H = lambda q, p: 0.5 * p**2 * (1 + q**2) + q**4 / 4
    q, p, gamma = jnp.array(0.7), jnp.array(-1.3), 0.4
    dHdq = float(p**2 * q + q**3)
    dHdp = float(p * (1 + q**2))
    dq, dp = HamiltonianField(H)(0.0, (q, p))
    np.testing.assert_allclose(dq, dHdp, rtol=1e-6)
    np.testing.assert_allclose(dp, -dHdq, rtol=1e-6)
    dq, dp = HamiltonianField(H, damping=gamma)(0.0, (q, p))
    np.testing.assert_allclose(dq, dHdp, rtol=1e-6)
    np.testing.assert_allclose(dp, -dHdq - gamma * dHdp, rtol=1e-6)
    # energy decays at rate γ |∂H/∂p|² along the flow: dH/dt = ∂H/∂q q' + ∂H/∂p p'
    np.testing.assert_allclose(dHdq * dq + dHdp * dp, -gamma * dHdp**2, rtol=1e-5)


def test_piecewise_constant_field_selects_blocks():
    n, t0, t1 = 4, 0.5, 2.5
    h = (t1 - t0) / n
    # block k multiplies by (k + 1)
    stacked = eqx.filter_vmap(lambda c: LinearField(c * jnp.eye(2)))(jnp.arange(1.0, n + 1))
    f = PiecewiseConstantField(stacked, n, t0, t1)
    y = jnp.array([1.0, -2.0])
    for k in range(n):
        for t in (t0 + k * h, t0 + (k + 0.5) * h, t0 + (k + 1) * h - 1e-3):
            np.testing.assert_allclose(f(jnp.asarray(t), y), (k + 1) * y, err_msg=f"t={t}")
        # a grid point that round-off puts just below t0 + k h still belongs to block k
        t_grid = jnp.float32(t0 + k * h - 1e-6 * h)
        assert k == 0 or float(t_grid) < t0 + k * h
        np.testing.assert_allclose(f(t_grid, y), (k + 1) * y)
    # t1 and beyond: the last block; before t0: the first
    np.testing.assert_allclose(f(jnp.asarray(t1), y), n * y)
    np.testing.assert_allclose(f(jnp.asarray(t0 - 0.1), y), y)


# ------------------------------------------------------------------------ NNX adapter


class _NNXMLP(nnx.Module):
    """The same architecture as MLPField: Linear layers with tanh between them."""

    def __init__(self, width, hidden, depth, *, rngs, time=False):
        sizes = [width + int(time)] + [hidden] * depth + [width]
        # zero init: the weights are overwritten by _matching_pair anyway
        zeros = nnx.initializers.zeros_init()
        self.layers = nnx.List(
            [
                nnx.Linear(i, o, rngs=rngs, kernel_init=zeros)
                for i, o in zip(sizes[:-1], sizes[1:], strict=True)
            ]
        )
        self.time = time

    def _forward(self, h):
        for i, layer in enumerate(self.layers):
            h = layer(h)
            if i < len(self.layers) - 1:
                h = jnp.tanh(h)
        return h

    def __call__(self, *inputs):
        if self.time:
            t, y = inputs
            tt = jnp.broadcast_to(jnp.asarray(t, y.dtype), y.shape[:-1] + (1,))
            return self._forward(jnp.concatenate([y, tt], axis=-1))
        (y,) = inputs
        return self._forward(y)


def _matching_pair(key, *, time=False):
    """An equinox MLPField and an NNX module carrying the same weights.

    MLPField stores W as (out, in) and computes h @ W.T + b; nnx.Linear's kernel is
    (in, out) and computes h @ kernel + b, so kernel = W.T.
    """
    eqx_field = MLPField(3, 8, depth=2, key=key, time=time)
    eqx_field = eqx.tree_at(
        lambda m: m.biases,
        eqx_field,
        [0.1 * jnp.arange(b.size, dtype=b.dtype) - 0.2 for b in eqx_field.biases],
    )
    module = _NNXMLP(3, 8, 2, rngs=nnx.Rngs(0), time=time)
    for layer, w, b in zip(module.layers, eqx_field.weights, eqx_field.biases, strict=True):
        layer.kernel.set_value(w.T)
        layer.bias.set_value(b)
    return eqx_field, NNXField(module, time=time)


@pytest.mark.parametrize("time", [False, True])
def test_nnx_field_evaluates_like_mlp_field(getkey, time):
    eqx_field, nnx_field = _matching_pair(getkey(), time=time)
    Y = jax.random.normal(getkey(), (4, 3))
    for t in (0.0, 0.6):
        np.testing.assert_allclose(nnx_field(t, Y), eqx_field(t, Y), rtol=1e-6, atol=1e-7)
    if time:
        assert float(jnp.max(jnp.abs(nnx_field(0.0, Y) - nnx_field(0.6, Y)))) > 1e-3
    # the module round-trips through split/merge
    assert isinstance(nnx_field.module, _NNXMLP)


def test_nnx_field_integrates_and_differentiates_like_mlp_field(getkey):
    eqx_field, nnx_field = _matching_pair(getkey())
    x = jax.random.normal(getkey(), (4, 3))

    @eqx.filter_jit
    def solve_and_grad(field):
        def loss(f):
            tr = integrate(f, x, solver="rk4", steps=8, saveat="steps")
            return jnp.sum(jnp.sin(tr.ys)), tr.ys

        return eqx.filter_value_and_grad(loss, has_aux=True)(field)

    (loss_e, ys_e), g_e = solve_and_grad(eqx_field)
    (loss_n, ys_n), g_n = solve_and_grad(nnx_field)
    chex.assert_shape(ys_e, (9, 4, 3))
    chex.assert_trees_all_close(ys_n, ys_e, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(loss_n, loss_e, rtol=1e-5)
    # map the NNX gradient (kernel is W.T) onto the equinox one
    layers = g_n.state["layers"]
    for i, (gw, gb) in enumerate(zip(g_e.weights, g_e.biases, strict=True)):
        assert float(jnp.max(jnp.abs(gw))) > 1e-3
        np.testing.assert_allclose(layers[i]["kernel"].get_value().T, gw, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(layers[i]["bias"].get_value(), gb, rtol=1e-4, atol=1e-6)
    n_nnx = len(jtu.tree_leaves(g_n.state))
    assert n_nnx == len(g_e.weights) + len(g_e.biases)


@pytest.mark.parametrize(("dims", "kernel_size"), [(1, 3), (1, 5), (2, 3)])
def test_conv_field_matmul_impl_equals_xla_conv(getkey, dims, kernel_size):
    """The default shifted-matmul convolution is the same function as lax's convolution,
    forward and gradient, on batched and unbatched inputs."""
    from terrain_jax import ConvField

    key = getkey()
    a = ConvField(4, 6, key=key, dims=dims, kernel_size=kernel_size)
    b = ConvField(4, 6, key=key, dims=dims, kernel_size=kernel_size, impl="xla")
    x = jax.random.normal(getkey(), (3, 4) + (9,) * dims)
    np.testing.assert_allclose(a(0.0, x), b(0.0, x), atol=1e-5)
    np.testing.assert_allclose(a(0.0, x[0]), b(0.0, x[0]), atol=1e-5)
    ga = jax.grad(lambda f: jnp.sum(f(0.0, x) ** 2))(a)
    gb = jax.grad(lambda f: jnp.sum(f(0.0, x) ** 2))(b)
    for u, v in zip(jtu.tree_leaves(ga), jtu.tree_leaves(gb), strict=True):
        np.testing.assert_allclose(u, v, rtol=1e-4, atol=1e-4)
    # 'SAME' keeps the spatial shape; a centred delta input reveals the flipped-free kernel
    delta = jnp.zeros((4,) + (9,) * dims).at[(0,) + (4,) * dims].set(1.0)
    lin = ConvField(4, 6, key=key, dims=dims, kernel_size=kernel_size, activation="identity")
    out = lin._conv(lin.kernels[0], jnp.zeros(6), delta)
    c = kernel_size // 2
    window = out[(slice(None),) + tuple(slice(4 - c, 4 + c + 1) for _ in range(dims))]
    flipped = lin.kernels[0][(slice(None), 0) + (slice(None, None, -1),) * dims]
    np.testing.assert_allclose(window, flipped, atol=1e-6)


def test_conv_field_refuses_even_kernels_and_unknown_impl(getkey):
    from terrain_jax import ConvField

    with pytest.raises(ValueError, match="odd"):
        ConvField(2, 2, key=getkey(), kernel_size=4)
    with pytest.raises(ValueError, match="matmul, xla"):
        ConvField(2, 2, key=getkey(), impl="fft")
