"""Deep equilibrium layers: ``z* = cell(z*, x)`` solved per sample, and cells that
contract by construction (so the fixed point exists, is unique, and Picard finds it)."""

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
from jaxtyping import Array, Float, PRNGKeyArray

from .._typing import State
from ..fields import ACTIVATION_LIPSCHITZ, ConvField, get_activation
from ..fixed_point import AbstractBackward, AbstractFixedPointSolver, FixedPointInfo, fixed_point
from ..linalg import jacobian_frobenius, spectral_radius

Cell = Callable[[State, State], State]
"""A DEQ cell ``(z, x) -> z`` on one sample."""


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
        get_activation(activation)
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

    def prepared(self) -> Cell:
        """``(z, x) ↦ cell(z, x)`` with the normalised ``W`` computed once (the SVD then runs
        once per solve rather than once per solver iteration)."""
        W = self.effective_weight()
        return lambda z, x: self._apply(W, z, x)

    def _apply(self, W: Array, z: Array, x: Array) -> Array:
        return get_activation(self.activation)(W @ z + self.inject @ x + self.bias)

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
    ``kernel``; tight as ``n`` grows. (The power iteration behind a ``ConvField``'s
    ``lipschitz_upper_bound`` approaches the same norm from below.)
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

    def prepared(self) -> Cell:
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
    mean what they mean there (``solver`` and ``backward`` are names or objects, e.g.
    ``Anderson(memory=8)``, ``Phantom(steps=10)``; the loose keywords only go with
    names); ``backward="implicit"`` trains with memory independent of the number of
    solver steps. A :class:`DEQCell` with a ``spectral_bound`` and a
    :class:`ContractiveConvCell` are normalised once per solve (their ``prepared()``).

        cell = DEQCell(64, key=key, spectral_bound=0.9)
        block = DEQBlock(cell)
        z = block(x)                    # x: (batch, 64)
    """

    cell: Cell
    solver: str | AbstractFixedPointSolver = eqx.field(static=True)
    tol: float = eqx.field(static=True)
    max_steps: int = eqx.field(static=True)
    backward: str | AbstractBackward = eqx.field(static=True)
    damping: float | None = eqx.field(static=True)
    memory: int | None = eqx.field(static=True)
    phantom_steps: int | None = eqx.field(static=True)
    phantom_damping: float | None = eqx.field(static=True)

    def __init__(
        self,
        cell: Cell,
        *,
        solver: str | AbstractFixedPointSolver = "anderson",
        tol: float = 1e-4,
        max_steps: int = 50,
        backward: str | AbstractBackward = "implicit",
        damping: float | None = None,
        memory: int | None = None,
        phantom_steps: int | None = None,
        phantom_damping: float | None = None,
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

    def _cell(self) -> Cell:
        if isinstance(self.cell, DEQCell | ContractiveConvCell):
            return self.cell.prepared()
        return self.cell

    def solve(self, x: State, z0: State | None = None) -> tuple[State, FixedPointInfo]:
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

    def __call__(self, x: State, z0: State | None = None) -> State:
        return self.solve(x, z0)[0]

    def jacobian_penalty(
        self, x: State, z: State, key: PRNGKeyArray, *, samples: int = 1
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
        self, x: State, z: State, *, iters: int = 20, key: PRNGKeyArray | None = None
    ) -> Float[Array, " batch"]:
        """Per-sample estimate of ``ρ(∂cell/∂z)`` at ``z`` (Arnoldi, see
        :func:`terrain_jax.linalg.spectral_radius`); ``< 1`` at ``z*`` means the
        fixed point is locally attracting for Picard."""
        cell = self._cell()
        return jax.vmap(
            lambda zi, xi: spectral_radius(lambda zz, a: cell(zz, a), zi, xi, iters=iters,
                                           key=key)
        )(z, x)  # fmt: skip


class InjectionCell(eqx.Module):
    """The DEQ cell ``(z, x) ↦ x + f(z)`` for one sample, ``f`` a block field
    ``f(t, z, args)`` called at ``t = 0``: the weight-tied, infinitely deep residual block
    with input injection of Bai et al. 2019."""

    field: Callable[..., Array]

    def __call__(self, z: Array, x: Array) -> Array:
        return x + self.field(0.0, z, None)
