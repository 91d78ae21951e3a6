"""Classifiers ``head(body(stem(x)))`` whose body is a depth net, an ODE block or a DEQ.

A :class:`Classifier` lifts the input to ``width`` features (a linear map for MLP bodies,
a 1-D convolution for ``conv1d`` ones, after reshaping a length-``L`` signal to ``(1, L)``
channels-first), runs its body ``net`` (a depth family, whose ``mask=`` deletes layers and
``return_hidden=True`` exposes the states, or one of the implicit bodies below), and reads
out with a linear map (after global average pooling over positions for conv states).
"""

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float, PRNGKeyArray, PyTree

from ..fixed_point import FixedPointInfo, fixed_point
from ..ode import Trajectory
from ._adjoint import adjoint_solve
from ._deq import DEQBlock, InjectionCell
from ._diagnostics import layer_gradient_norms
from ._ode import ODEBlock

CLASSIFIER_KINDS = ("mlp", "conv1d")


def _conv1d(w: Array, b: Array, x: Array, stride: int = 1) -> Array:
    """'SAME' 1-D convolution of ``(B, C_in, L)`` with ``(C_out, C_in, k)`` + bias."""
    out = jax.lax.conv_general_dilated(
        x, w, window_strides=(stride,), padding="SAME", dimension_numbers=("NCH", "OIH", "NCH")
    )
    return out + b[:, None]


class Classifier(eqx.Module):
    """``head(net(embed(x)))`` for a batch ``x`` of shape ``(B, features)``.

    ``kind="mlp"``: the stem is ``x W_s^T + b_s`` (``features -> width``), the net acts on
    ``(B, width)``. ``kind="conv1d"``: ``x`` is read as ``(B, 1, features)``, the stem is a
    1-D convolution to ``width`` channels (kernel ``stem_kernel``, stride ``stem_stride``),
    the net acts on ``(B, width, features / stem_stride)``, and the readout averages over
    positions first. The stem is ``N(0, 1/fan_in)``, the readout ``U(±1/√width)``, biases
    zero.
    """

    stem_w: Array
    stem_b: Array
    net: Callable[..., Array]
    out_w: Float[Array, "classes width"]
    out_b: Float[Array, " classes"]
    kind: str = eqx.field(static=True)
    stem_stride: int = eqx.field(static=True)

    def __init__(
        self,
        net: Callable[..., Array],
        features: int,
        width: int,
        classes: int,
        *,
        key: PRNGKeyArray,
        kind: str = "mlp",
        stem_kernel: int = 5,
        stem_stride: int = 1,
    ):
        if kind not in CLASSIFIER_KINDS:
            valid = ", ".join(CLASSIFIER_KINDS)
            raise ValueError(f"Unknown classifier kind {kind!r}; valid: {valid}.")
        k_s, k_o = jax.random.split(key)
        if kind == "mlp":
            fan = features
            self.stem_w = jax.random.normal(k_s, (width, features)) / np.sqrt(fan)
        else:
            fan = stem_kernel
            self.stem_w = jax.random.normal(k_s, (width, 1, stem_kernel)) / np.sqrt(fan)
        self.stem_b = jnp.zeros((width,))
        lim = 1.0 / np.sqrt(width)
        self.out_w = jax.random.uniform(k_o, (classes, width), minval=-lim, maxval=lim)
        self.out_b = jnp.zeros((classes,))
        self.net = net
        self.kind = kind
        self.stem_stride = stem_stride

    def embed(self, x: Float[Array, "batch features"]) -> Array:
        """The stem: the initial state ``x_0`` of the body."""
        if self.kind == "mlp":
            return x @ self.stem_w.T + self.stem_b
        return _conv1d(self.stem_w, self.stem_b, x[:, None, :], self.stem_stride)

    def head(self, z: Array) -> Float[Array, "batch classes"]:
        """The readout of a final state (pooling over positions for conv states)."""
        if self.kind == "conv1d":
            z = jnp.mean(z, axis=-1)
        return z @ self.out_w.T + self.out_b

    def __call__(
        self, x: Float[Array, "batch features"], *, mask: Bool[ArrayLike, " layers"] | None = None
    ) -> Float[Array, "batch classes"]:
        return self.head(self.net(self.embed(x), mask=mask))

    def hidden(self, x: Float[Array, "batch features"]) -> Array:
        """All ``depth + 1`` states of a depth-net body, ``(depth + 1, B, ...)``."""
        _, hs = self.net(self.embed(x), return_hidden=True)
        return hs

    def gradient_norms(
        self,
        loss_fn: Callable[[Array, PyTree], Array],
        x: Float[Array, "batch features"],
        y: PyTree,
        *,
        method: str = "sweep",
    ) -> dict[str, Array]:
        """:func:`layer_gradient_norms` of ``loss_fn(head(x_L), y)`` through a depth-net body
        from ``x_0 = embed(x)``: ``‖∂L/∂x_k‖`` per state and ``‖∂L/∂θ_k‖`` per block."""
        return layer_gradient_norms(
            self.net, lambda z, yy: loss_fn(self.head(z), yy), self.embed(x), y, method=method
        )


# ----------------------------------------------------------------------------- implicit bodies


class ODENet(eqx.Module):
    """An :class:`ODEBlock` as the body of a :class:`Classifier`.

    The whole batch is one state of the solve (one adaptive step size for the batch), so
    ``solve(x).nfe`` is the number of field evaluations the batch costs. Layer deletion
    (``mask``) has no meaning for a continuous block and is refused.
    """

    block: ODEBlock

    def solve(self, x: Array) -> Trajectory:
        """The block's :class:`~terrain_jax.Trajectory` from ``x``."""
        return self.block.solve(x)

    def __call__(self, x: Array, *, mask: Array | None = None) -> Array:
        if mask is not None:
            raise ValueError("ODENet has no layers to mask; call it without `mask`.")
        return self.block(x)


class AdjointODENet(eqx.Module):
    """An :class:`ODEBlock` body differentiated by the continuous adjoint of Chen et al.
    2018 (:func:`adjoint_solve`): the backward pass re-solves the state backwards together
    with its adjoint, storing nothing of the forward solve. Its backward solve is ours, so
    its cost is visible (:func:`adjoint_backward` returns the backward
    :class:`~terrain_jax.Trajectory`)."""

    block: ODEBlock

    def solve(self, x: Array) -> Trajectory:
        """The block's :class:`~terrain_jax.Trajectory` from ``x``."""
        return self.block.solve(x)

    def __call__(self, x: Array, *, mask: Array | None = None) -> Array:
        if mask is not None:
            raise ValueError("AdjointODENet has no layers to mask; call it without `mask`.")
        return adjoint_solve(self.block, x)


class DEQNet(eqx.Module):
    """A :class:`DEQBlock` with an :class:`InjectionCell` as the body of a
    :class:`Classifier`: ``z* = x + f(z*)`` per sample from ``z0 = 0``, gradients by
    ``backward`` (``implicit``: the implicit function theorem)."""

    block: DEQBlock

    def __init__(
        self,
        field: Callable[..., Array],
        *,
        solver: str = "anderson",
        tol: float = 1e-4,
        max_steps: int = 50,
        backward: str = "implicit",
        memory: int = 5,
    ):
        self.block = DEQBlock(
            InjectionCell(field),
            solver=solver,
            tol=tol,
            max_steps=max_steps,
            backward=backward,
            memory=memory,
        )

    def solve(self, x: Array) -> tuple[Array, FixedPointInfo]:
        """``(z*, info)`` for a batch ``x``; ``info`` fields carry the batch axis."""
        return self.block.solve(x)

    def jacobian_penalty(self, x: Array, z: Array, key: PRNGKeyArray) -> Float[Array, ""]:
        """Batch mean of the Hutchinson estimate of ``‖∂cell/∂z‖_F² / n`` at ``z``
        (``n`` the per-sample state size), the Jacobian regulariser of Bai et al. 2021."""
        return self.block.jacobian_penalty(x, z, key) / (z.size // z.shape[0])

    def adjoint_steps(self, x: Array, g: Array) -> FixedPointInfo:
        """The backward solve of ``implicit``: ``u = g + J_fᵀ u`` at ``z*`` per sample, by
        the forward's solver and tolerance; returns its :class:`FixedPointInfo` (its
        ``steps`` + 1 is the number of vector-Jacobian products the backward pass costs)."""
        blk = self.block
        z, _ = self.solve(x)
        z = jax.lax.stop_gradient(z)

        def one(zi, xi, gi):
            _, vjp = jax.vjp(lambda zz: blk.cell(zz, xi), zi)
            return fixed_point(
                lambda u, a: gi + vjp(u)[0],
                gi,
                None,
                solver=blk.solver,
                tol=blk.tol,
                max_steps=blk.max_steps,
                backward="jfb",
                damping=blk.damping,
                memory=blk.memory,
            )[1]

        return jax.vmap(one)(z, x, g)

    def __call__(self, x: Array, *, mask: Array | None = None) -> Array:
        if mask is not None:
            raise ValueError("DEQNet has no layers to mask; call it without `mask`.")
        return self.solve(x)[0]
