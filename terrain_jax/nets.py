"""Networks as discretised flows: residual nets (explicit Euler steps) and ODE blocks.

``ResidualNet`` applies ``x ← x + h·f_k(x)`` for ``k = 0 … N-1`` with ``h = T/N``: exactly
``N`` explicit Euler steps of the field ``f`` (tied weights) or of the piecewise-constant
field whose piece ``k`` is ``f_k`` (untied). ``ODEBlock`` solves the same kind of field
with any solver. The two agree to float round-off when the solver is Euler; that
identity is the spine of the project and is tested.
"""

from typing import Any

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
from jaxtyping import Array, Float, PRNGKeyArray

from .equilibrium import FixedPointInfo, fixed_point, jacobian_frobenius, spectral_radius
from .fields import ACTIVATION_LIPSCHITZ, ConvField, MLPField, PiecewiseConstantField, _activation
from .integrate import Trajectory, integrate

__all__ = [
    "AbstractDepthNet",
    "PlainNet",
    "ResidualNet",
    "HighwayNet",
    "ScaledResidualNet",
    "Gate",
    "ODEBlock",
    "DEQBlock",
    "DEQCell",
    "ContractiveConvCell",
    "conv_norm_bound",
    "make_blocks",
    "BLOCK_KINDS",
]

BLOCK_KINDS = ("mlp", "conv1d", "conv2d")


def _make_block(
    kind: str,
    width: int,
    hidden: int,
    key: PRNGKeyArray,
    *,
    activation: str,
    init: str,
    zero_last: bool,
    kernel_size: int,
) -> Any:
    if kind == "mlp":
        return MLPField(
            width, hidden, key=key, activation=activation, init=init, zero_last=zero_last
        )
    if kind in ("conv1d", "conv2d"):
        return ConvField(
            width,
            hidden,
            key=key,
            dims=1 if kind == "conv1d" else 2,
            kernel_size=kernel_size,
            activation=activation,
            init=init,
            zero_last=zero_last,
        )
    raise ValueError(f"Unknown block kind {kind!r}; valid names are: {', '.join(BLOCK_KINDS)}.")


def make_blocks(
    kind: str,
    width: int,
    hidden: int,
    depth: int,
    *,
    key: PRNGKeyArray,
    activation: str = "tanh",
    init: str = "uniform",
    zero_last: bool = False,
    kernel_size: int = 3,
) -> Any:
    """``depth`` independent blocks stacked into one pytree (leading axis ``depth``).

    ``kind`` is ``mlp`` (an :class:`MLPField` ``width -> hidden -> width``), ``conv1d``
    or ``conv2d`` (a :class:`ConvField` with ``width`` channels and ``hidden`` hidden
    channels). Stacked blocks are what lets a net run its layers with ``lax.scan``:
    compile time does not grow with depth.
    """
    kw = dict(activation=activation, init=init, zero_last=zero_last, kernel_size=kernel_size)
    return eqx.filter_vmap(lambda k: _make_block(kind, width, hidden, k, **kw))(
        jax.random.split(key, depth)
    )


class Gate(eqx.Module):
    """Highway transform gate ``T(x) = sigmoid(W x + b)`` along the feature axis.

    For MLP blocks the feature axis is the last one; for convolutional blocks it is the
    channel axis (a 1×1 convolution), ``axis = -(dims + 1)``.
    """

    weight: Float[Array, "width width"]
    bias: Float[Array, " width"]
    axis: int = eqx.field(static=True)

    def __init__(self, width: int, *, key: PRNGKeyArray, bias: float = -1.0, axis: int = -1):
        lim = 1.0 / jnp.sqrt(width)
        self.weight = jax.random.uniform(key, (width, width), minval=-lim, maxval=lim)
        self.bias = jnp.full((width,), bias, dtype=jnp.result_type(float))
        self.axis = axis

    def __call__(self, x: Array) -> Array:
        z = jnp.moveaxis(x, self.axis, -1)
        z = jax.nn.sigmoid(z @ self.weight.T + self.bias)
        return jnp.moveaxis(z, -1, self.axis)


class AbstractDepthNet(eqx.Module):
    """Common interface of the depth families: ``depth`` blocks run with ``lax.scan``.

    ``blocks`` is one pytree whose array leaves carry a leading axis of size ``depth``
    (untied), or a single block used at every layer (``tied``). Concrete families define
    ``_update(block, t, x) -> x_next``; everything else is shared:

    - ``net(x)``, ``net(x, return_hidden=True)`` (all ``depth + 1`` states);
    - ``net(x, taps=...)``: ``taps`` (stacked like the hidden states, leading axis
      ``depth``) is added to the state after each layer, so ``grad`` w.r.t. zero taps
      gives every layer's ``∂L/∂x_k`` in one backward pass;
    - ``net(x, mask=...)``: a boolean per layer; a layer whose mask is ``False`` is
      deleted (passes its input through), the lesion of Veit et al. 2016;
    - ``net.block(k)`` and ``net.layer_map(k)`` (``x ↦ x_{k+1}``) for Jacobians.
    """

    blocks: eqx.AbstractVar[Any]
    depth: eqx.AbstractVar[int]
    tied: eqx.AbstractVar[bool]

    def _update(self, block: Any, t: Array, x: Array) -> Array:
        raise NotImplementedError

    def _time(self, k: Array) -> Array:
        return k

    def block(self, k: int | Array) -> Any:
        """Block ``k`` as a standalone module."""
        if self.tied:
            return self.blocks
        params, static = eqx.partition(self.blocks, eqx.is_array)
        return eqx.combine(jtu.tree_map(lambda a: a[k], params), static)

    def layer_map(self, k: int | Array):
        """The map ``x_k ↦ x_{k+1}`` of layer ``k``."""
        blk = self.block(k)
        t = self._time(jnp.asarray(k, dtype=float))
        return lambda x: self._update(blk, t, x)

    def __call__(
        self,
        x: Array,
        *,
        return_hidden: bool = False,
        taps: Array | None = None,
        mask: Array | None = None,
    ) -> Array | tuple[Array, Array]:
        """Final state; with ``return_hidden``, also the ``depth + 1`` hidden states."""
        params, static = eqx.partition(self.blocks, eqx.is_array)
        ks = jnp.arange(self.depth, dtype=x.dtype)

        def step(y, inp):
            k, p, tap, keep = inp
            blk = self.blocks if self.tied else eqx.combine(p, static)
            new = self._update(blk, self._time(k), y)
            y = new if keep is None else jnp.where(keep, new, y)
            if tap is not None:
                y = y + tap
            return y, (y if return_hidden else None)

        if mask is not None:
            mask = jnp.asarray(mask, dtype=bool)
            if mask.shape != (self.depth,):
                raise ValueError(f"mask must have shape ({self.depth},), got {mask.shape}.")
        xs = (ks, None if self.tied else params, taps, mask)
        y, hs = jax.lax.scan(step, x, xs)
        if return_hidden:
            return y, jnp.concatenate([x[None], hs], axis=0)
        return y


def _init_common(self, width, hidden, depth, key, tied, blocks, block, **kw):
    self.depth = depth
    self.tied = tied
    if blocks is not None:
        self.blocks = blocks
    elif tied:
        self.blocks = _make_block(block, width, hidden, key, **kw)
    else:
        self.blocks = make_blocks(block, width, hidden, depth, key=key, **kw)


class PlainNet(AbstractDepthNet):
    """``x ← f_k(x)``: the same blocks as :class:`ResidualNet` without the identity path."""

    blocks: Any
    depth: int = eqx.field(static=True)
    tied: bool = eqx.field(static=True)

    def __init__(
        self,
        width: int,
        hidden: int,
        depth: int,
        *,
        key: PRNGKeyArray,
        block: str = "mlp",
        activation: str = "tanh",
        init: str = "uniform",
        kernel_size: int = 3,
        tied: bool = False,
        blocks: Any = None,
    ):
        _init_common(
            self,
            width,
            hidden,
            depth,
            key,
            tied,
            blocks,
            block,
            activation=activation,
            init=init,
            zero_last=False,
            kernel_size=kernel_size,
        )

    def _update(self, block, t, x):
        return block(t, x, None)


class ResidualNet(AbstractDepthNet):
    """``x ← x + h·f_k(x)``, ``h = T/N``: ``N`` explicit Euler steps of the field.

    Block ``k`` is called at time ``t_k = k h``, so time-dependent fields see the Euler
    grid. ``as_field()`` is the field this net integrates: the tied block, or the
    piecewise-constant field of the untied ones. Give ``h`` instead of ``T`` for a fixed
    step (``h = 1`` is the classic ResNet ``x + f(x)``).
    """

    blocks: Any
    depth: int = eqx.field(static=True)
    T: float = eqx.field(static=True)
    tied: bool = eqx.field(static=True)

    def __init__(
        self,
        width: int,
        hidden: int,
        depth: int,
        *,
        key: PRNGKeyArray,
        T: float = 1.0,
        h: float | None = None,
        tied: bool = False,
        block: str = "mlp",
        activation: str = "tanh",
        init: str = "uniform",
        zero_last: bool = False,
        kernel_size: int = 3,
        blocks: Any = None,
    ):
        """Build ``depth`` blocks ``width -> hidden -> width`` (or pass ``blocks``)."""
        _init_common(
            self,
            width,
            hidden,
            depth,
            key,
            tied,
            blocks,
            block,
            activation=activation,
            init=init,
            zero_last=zero_last,
            kernel_size=kernel_size,
        )
        self.T = float(h * depth) if h is not None else float(T)

    @property
    def h(self) -> float:
        """The step size ``T/N``."""
        return self.T / self.depth

    def _time(self, k):
        return k * self.h

    def _update(self, block, t, x):
        return x + self.h * block(t, x, None)

    def as_field(self) -> Any:
        """The field this net integrates with Euler: tied block, or piecewise constant."""
        if self.tied:
            return self.blocks
        return PiecewiseConstantField(self.blocks, self.depth, 0.0, self.T)


class HighwayNet(AbstractDepthNet):
    """``x ← x + T_k(x) ⊙ (f_k(x) − x)``, gate ``T_k = sigmoid(W x + b)`` (Srivastava 2015).

    ``T → 0`` carries ``x`` through unchanged; ``T → 1`` closes the identity path and
    leaves the plain net ``x ← f_k(x)``. ``gate_bias`` sets where the gates start
    (negative: mostly carry, as Srivastava et al. recommend).
    """

    blocks: tuple[Any, Gate]
    depth: int = eqx.field(static=True)
    tied: bool = eqx.field(static=True)

    def __init__(
        self,
        width: int,
        hidden: int,
        depth: int,
        *,
        key: PRNGKeyArray,
        gate_bias: float = -1.0,
        block: str = "mlp",
        activation: str = "tanh",
        init: str = "uniform",
        kernel_size: int = 3,
        tied: bool = False,
        blocks: Any = None,
    ):
        kf, kg = jax.random.split(key)
        self.depth = depth
        self.tied = tied
        if blocks is not None:
            self.blocks = blocks
            return
        _init_common(self, width, hidden, depth, kf, tied, None, block, activation=activation,
                     init=init, zero_last=False, kernel_size=kernel_size)  # fmt: skip
        axis = -1 if block == "mlp" else -(2 if block == "conv1d" else 3)
        if tied:
            self.blocks = (self.blocks, Gate(width, key=kg, bias=gate_bias, axis=axis))
        else:
            gates = eqx.filter_vmap(lambda k: Gate(width, key=k, bias=gate_bias, axis=axis))(
                jax.random.split(kg, depth)
            )
            self.blocks = (self.blocks, gates)

    def _update(self, block, t, x):
        f, gate = block
        g = gate(x)
        return x + g * (f(t, x, None) - x)


class ScaledResidualNet(AbstractDepthNet):
    """``x ← (1 − β) x + α f_k(x)``: non-expansive when ``α ≤ β / Lip(f)``.

    The layer's Jacobian is ``(1 − β) I + α J_f``, whose norm is at most
    ``1 − β + α Lip(f)``; with ``α ≤ β/Lip(f)`` that is ``≤ 1``.
    """

    blocks: Any
    alpha: float | Array
    beta: float | Array
    depth: int = eqx.field(static=True)
    tied: bool = eqx.field(static=True)

    def __init__(
        self,
        width: int,
        hidden: int,
        depth: int,
        *,
        key: PRNGKeyArray,
        alpha: float | Array = 0.1,
        beta: float | Array = 0.1,
        block: str = "mlp",
        activation: str = "tanh",
        init: str = "uniform",
        kernel_size: int = 3,
        tied: bool = False,
        blocks: Any = None,
    ):
        _init_common(
            self,
            width,
            hidden,
            depth,
            key,
            tied,
            blocks,
            block,
            activation=activation,
            init=init,
            zero_last=False,
            kernel_size=kernel_size,
        )
        self.alpha = alpha
        self.beta = beta

    def _update(self, block, t, x):
        return (1.0 - self.beta) * x + self.alpha * block(t, x, None)


class ODEBlock(eqx.Module):
    """A layer ``x ↦ y(T)`` where ``dy/dt = field(t, y)``, ``y(0) = x``.

    Give ``steps`` for fixed steps or ``rtol``/``atol`` for adaptive ones. ``solver`` and
    ``adjoint`` accept the names :func:`terrain_jax.integrate` accepts.
    """

    field: Any
    solver: str | dfx.AbstractSolver = eqx.field(static=True)
    steps: int | None = eqx.field(static=True)
    rtol: float | None = eqx.field(static=True)
    atol: float | None = eqx.field(static=True)
    T: float = eqx.field(static=True)
    adjoint: Any = eqx.field(static=True)
    max_steps: int = eqx.field(static=True)

    def __init__(
        self,
        field: Any,
        *,
        solver: str | dfx.AbstractSolver = "euler",
        steps: int | None = None,
        rtol: float | None = None,
        atol: float | None = None,
        T: float = 1.0,
        adjoint: Any = None,
        max_steps: int = 4096,
    ):
        if steps is None and rtol is None and atol is None:
            raise ValueError("ODEBlock needs `steps=N` (fixed) or `rtol`/`atol` (adaptive).")
        self.field = field
        self.solver = solver
        self.steps = steps
        self.rtol = rtol
        self.atol = atol
        self.T = T
        self.adjoint = adjoint
        self.max_steps = max_steps

    def solve(self, x: Any, *, saveat: Any = None, args: Any = None) -> Trajectory:
        """The full :class:`Trajectory` (steps, NFE, status) of the block's solve."""
        return self.solve_with(
            self.field, x, t0=0.0, t1=self.T, saveat=saveat, args=args, adjoint=self.adjoint
        )

    def solve_with(
        self,
        field: Any,
        y0: Any,
        *,
        t0: float,
        t1: float,
        saveat: Any = None,
        args: Any = None,
        adjoint: Any = None,
    ) -> Trajectory:
        """:func:`~terrain_jax.integrate` of another ``field`` (an augmented or adjoint
        system built from the block's) with the block's solver, steps, tolerances and
        ``max_steps``."""
        return integrate(
            field,
            y0,
            t0=t0,
            t1=t1,
            solver=self.solver,
            steps=self.steps,
            rtol=self.rtol,
            atol=self.atol,
            saveat=saveat,
            args=args,
            adjoint=adjoint,
            max_steps=self.max_steps,
        )

    def __call__(self, x: Any, args: Any = None) -> Any:
        return jtu.tree_map(lambda y: y[-1], self.solve(x, args=args).ys)


class DEQCell(eqx.Module):
    """The standard DEQ cell ``z ↦ act(W z + U x + b)`` for one sample.

    ``W`` is ``width × width``, ``U`` is ``width × in_size`` (``in_size`` defaults to
    ``width``, so ``z0 = zeros_like(x)`` fits). With ``spectral_bound = c`` the cell uses
    ``W · min(1, c / σ_max(W))`` (exact ``σ_max`` by SVD, differentiable), so
    ``‖W‖₂ ≤ c`` and, for a 1-Lipschitz ``act``, ``Lip(cell) ≤ c``: with ``c < 1`` the
    cell contracts and Picard converges at rate ``≤ c^k`` (Banach).
    """

    weight: Float[Array, "w w"]
    inject: Float[Array, "w d"]
    bias: Float[Array, " w"]
    activation: str = eqx.field(static=True)
    spectral_bound: float | None = eqx.field(static=True)

    def __init__(
        self,
        width: int,
        in_size: int | None = None,
        *,
        key: PRNGKeyArray,
        activation: str = "tanh",
        spectral_bound: float | None = None,
        weight_scale: float = 0.4,
    ):
        """``W`` ~ N(0, weight_scale² / width) (``‖W‖₂ ≈ 2·weight_scale``), ``U`` ~
        N(0, 1 / in_size), ``b = 0``."""
        _activation(activation)
        if spectral_bound is not None and not spectral_bound > 0:
            raise ValueError(f"spectral_bound must be > 0 or None; got {spectral_bound}.")
        in_size = width if in_size is None else in_size
        kw, ku = jax.random.split(key)
        self.weight = weight_scale * jax.random.normal(kw, (width, width)) / jnp.sqrt(width)
        self.inject = jax.random.normal(ku, (width, in_size)) / jnp.sqrt(in_size)
        self.bias = jnp.zeros((width,))
        self.activation = activation
        self.spectral_bound = spectral_bound

    def effective_weight(self) -> Float[Array, "w w"]:
        """``W`` after spectral normalisation (``W`` itself without a bound)."""
        if self.spectral_bound is None:
            return self.weight
        sigma = jnp.linalg.svd(self.weight, compute_uv=False)[0]
        return self.weight * jnp.minimum(1.0, self.spectral_bound / sigma)

    def prepared(self) -> Any:
        """``(z, x) ↦ cell(z, x)`` with the normalised ``W`` computed once (the SVD then runs
        once per solve rather than once per solver iteration)."""
        W = self.effective_weight()
        return lambda z, x: self._apply(W, z, x)

    def _apply(self, W: Array, z: Array, x: Array) -> Array:
        return _activation(self.activation)(W @ z + self.inject @ x + self.bias)

    def __call__(self, z: Float[Array, " w"], x: Float[Array, " d"]) -> Float[Array, " w"]:
        return self._apply(self.effective_weight(), z, x)


# Activations a ContractiveConvCell accepts; their constants come from the shared table
# (fields.ACTIVATION_LIPSCHITZ).
_CONTRACTIVE_ACTIVATIONS = ("relu", "tanh", "softplus", "identity", "sigmoid")


def conv_norm_bound(kernel: Float[Array, "o i *k"], space: tuple[int, ...]) -> Float[Array, ""]:
    """Upper bound on the operator norm (ℓ² → ℓ²) of the stride-1 'SAME' convolution with
    ``kernel`` on inputs of spatial shape ``space`` (1-D or 2-D, odd kernel sizes).

    The zero-padded convolution on ``n`` points is a compression of the circular one on
    ``N = n + k − 1`` points per axis (padding the input with zeros up to ``N`` makes
    wrap-around read only zeros), so its norm is at most the circular one, which the DFT
    block-diagonalises: ``max_ω σ_max(K̂(ω))`` over the ``N``-point frequency grid, ``K̂``
    the FFT of the kernel over its spatial axes. Exact: the top eigenvalue of the Gram
    matrix of the real ``2C × 2C`` form of each block (``eigvalsh``: on XLA:CPU the
    gradient of ``svd`` took seconds where this takes milliseconds), differentiable in
    ``kernel``; tight as ``n`` grows. (``spectra._conv_operator_norm``, behind
    ``lipschitz_upper_bound`` of a ``ConvField``, estimates the same norm from below by
    power iteration.)
    """
    dims = kernel.ndim - 2
    if dims != len(space):
        raise ValueError(f"kernel has {dims} spatial axes but space={space!r}.")
    n_fft = tuple(n + k - 1 for n, k in zip(space, kernel.shape[2:], strict=True))
    axes = tuple(range(2, 2 + dims))
    # real kernel: K̂(−ω) = conj K̂(ω) has the same singular values, so half the grid will do
    khat = jnp.fft.rfftn(kernel, s=n_fft, axes=axes)
    khat = jnp.moveaxis(khat.reshape(kernel.shape[:2] + (-1,)), -1, 0)  # (freq, out, in)
    re, im = jnp.real(khat), jnp.imag(khat)
    real_form = jnp.concatenate(
        [jnp.concatenate([re, -im], axis=2), jnp.concatenate([im, re], axis=2)], axis=1
    )
    gram = jnp.swapaxes(real_form, 1, 2) @ real_form
    return jnp.sqrt(jnp.max(jnp.linalg.eigvalsh(gram)[:, -1]))


class ContractiveConvCell(eqx.Module):
    """The DEQ cell ``(z, x) ↦ x + f̃(z)`` with ``f̃`` a :class:`~terrain_jax.fields.ConvField`
    made ``lipschitz``-Lipschitz by construction, for one sample ``z`` of shape
    ``(channels, *space)``.

    ``f̃`` is ``field`` with both kernels scaled by ``s = √min(1, c / (L_σ ‖K_1‖ ‖K_2‖))``
    (``‖K_i‖`` by :func:`conv_norm_bound`, ``L_σ`` the activation's Lipschitz constant),
    so ``Lip(f̃) ≤ c``: with ``c < 1`` the cell contracts in ``z`` for every ``x``, the
    fixed point is unique and Picard converges at rate ``≤ c^k`` (Banach), whatever the
    parameters training reaches. Kernels already within the bound are used as they are.
    Differentiable in the kernels (through the per-frequency ``eigvalsh``);
    :class:`DEQBlock` scales once per solve (:meth:`prepared`).
    """

    field: ConvField
    lipschitz: float = eqx.field(static=True)
    space: tuple[int, ...] = eqx.field(static=True)

    def __init__(self, field: ConvField, *, lipschitz: float, space: tuple[int, ...]):
        if not isinstance(field, ConvField):
            raise TypeError(f"ContractiveConvCell needs a ConvField; got {type(field).__name__}.")
        if field.activation not in _CONTRACTIVE_ACTIVATIONS:
            valid = ", ".join(sorted(_CONTRACTIVE_ACTIVATIONS))
            raise ValueError(
                f"Activation {field.activation!r} is not supported by ContractiveConvCell; "
                f"valid: {valid}."
            )
        if not lipschitz > 0:
            raise ValueError(f"lipschitz must be > 0; got {lipschitz}.")
        if len(space) != field.dims:
            raise ValueError(
                f"space must have {field.dims} entries (the field's dims); got {space}."
            )
        self.field = field
        self.lipschitz = float(lipschitz)
        self.space = tuple(int(n) for n in space)

    def lipschitz_bound(self, field: ConvField | None = None) -> Float[Array, ""]:
        """``L_σ ‖K_1‖ ‖K_2‖`` of ``field`` (default: the raw, unscaled field)."""
        field = self.field if field is None else field
        k1, k2 = field.kernels
        lip_act = ACTIVATION_LIPSCHITZ[field.activation]
        return lip_act * conv_norm_bound(k1, self.space) * conv_norm_bound(k2, self.space)

    def scaled_field(self) -> ConvField:
        """The field with its kernels scaled so that :meth:`lipschitz_bound` ``≤ lipschitz``."""
        s = jnp.sqrt(jnp.minimum(1.0, self.lipschitz / self.lipschitz_bound()))
        return eqx.tree_at(lambda f: f.kernels, self.field, [k * s for k in self.field.kernels])

    def prepared(self) -> Any:
        """``(z, x) ↦ cell(z, x)`` with the scaled kernels computed once."""
        f = self.scaled_field()
        return lambda z, x: x + f(0.0, z, None)

    def __call__(self, z: Float[Array, "*state"], x: Float[Array, "*state"]) -> Array:
        return self.prepared()(z, x)


class DEQBlock(eqx.Module):
    """A deep equilibrium layer: ``z* = cell(z*, x)`` solved per sample.

    ``cell(z, x) -> z`` acts on one sample (``z`` its state, ``x`` its injected input) and
    holds the parameters (an ``eqx.Module`` or any callable closing over arrays). The
    forward pass is :func:`terrain_jax.fixed_point` (``batched``, ``x`` per sample), so
    ``solver``/``tol``/``max_steps``/``backward``/``damping``/``memory``/``phantom_*``
    mean what they mean there; ``backward="implicit"`` trains with memory independent of
    the number of solver steps. A :class:`DEQCell` with a ``spectral_bound`` and a
    :class:`ContractiveConvCell` are normalised once per solve (their ``prepared()``).

        cell = DEQCell(64, key=key, spectral_bound=0.9)
        block = DEQBlock(cell)
        z = block(x)                    # x: (batch, 64)
    """

    cell: Any
    solver: str = eqx.field(static=True)
    tol: float = eqx.field(static=True)
    max_steps: int = eqx.field(static=True)
    backward: str = eqx.field(static=True)
    damping: float = eqx.field(static=True)
    memory: int = eqx.field(static=True)
    phantom_steps: int = eqx.field(static=True)
    phantom_damping: float = eqx.field(static=True)

    def __init__(
        self,
        cell: Any,
        *,
        solver: str = "anderson",
        tol: float = 1e-4,
        max_steps: int = 50,
        backward: str = "implicit",
        damping: float = 1.0,
        memory: int = 5,
        phantom_steps: int = 5,
        phantom_damping: float = 0.5,
    ):
        self.cell = cell
        self.solver = solver
        self.tol = tol
        self.max_steps = max_steps
        self.backward = backward
        self.damping = damping
        self.memory = memory
        self.phantom_steps = phantom_steps
        self.phantom_damping = phantom_damping

    def _cell(self) -> Any:
        if isinstance(self.cell, DEQCell | ContractiveConvCell):
            return self.cell.prepared()
        return self.cell

    def solve(self, x: Any, z0: Any = None) -> tuple[Any, FixedPointInfo]:
        """``(z*, info)`` for a batch ``x`` (leading axis); ``z0`` defaults to zeros like
        ``x``. ``info`` entries carry the batch axis (each sample stops on its own)."""
        z0 = jtu.tree_map(jnp.zeros_like, x) if z0 is None else z0
        cell = self._cell()
        return fixed_point(
            lambda z, xi: cell(z, xi),
            z0,
            x,
            solver=self.solver,
            tol=self.tol,
            max_steps=self.max_steps,
            backward=self.backward,
            damping=self.damping,
            memory=self.memory,
            batched=True,
            args_axes=0,
            phantom_steps=self.phantom_steps,
            phantom_damping=self.phantom_damping,
        )

    def __call__(self, x: Any, z0: Any = None) -> Any:
        return self.solve(x, z0)[0]

    def jacobian_penalty(
        self, x: Any, z: Any, key: PRNGKeyArray, *, samples: int = 1
    ) -> Float[Array, ""]:
        """Batch mean of the Hutchinson estimate of ``‖∂cell/∂z‖_F²`` at ``z`` (e.g.
        ``z*``): the Jacobian regulariser of Bai et al. 2021; differentiable in the cell's
        parameters (and in ``z``: pass ``stop_gradient(z)`` to penalise parameters only)."""
        cell = self._cell()
        n = jtu.tree_leaves(x)[0].shape[0]
        keys = jax.random.split(key, n)
        per = jax.vmap(
            lambda zi, xi, ki: jacobian_frobenius(lambda zz, a: cell(zz, a), zi, xi, ki,
                                                  samples=samples)
        )(z, x, keys)  # fmt: skip
        return jnp.mean(per)

    def spectral_radius(
        self, x: Any, z: Any, *, iters: int = 20, key: PRNGKeyArray | None = None
    ) -> Float[Array, " batch"]:
        """Per-sample estimate of ``ρ(∂cell/∂z)`` at ``z`` (Arnoldi, see
        :func:`terrain_jax.equilibrium.spectral_radius`); ``< 1`` at ``z*`` means the
        fixed point is locally attracting for Picard."""
        cell = self._cell()
        return jax.vmap(
            lambda zi, xi: spectral_radius(lambda zz, a: cell(zz, a), zi, xi, iters=iters,
                                           key=key)
        )(z, x)  # fmt: skip
