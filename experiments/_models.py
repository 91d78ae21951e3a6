"""Classifiers for the real-data depth experiments: stem → depth-family net → readout.

A :class:`Classifier` lifts the input to ``width`` features (a linear map for MLP blocks,
a 1-D convolution for ``conv1d`` blocks, after reshaping a length-``L`` signal to
``(1, L)`` channels-first), runs one of the depth families of :mod:`terrain_jax.nets`
(whose ``mask=`` deletes layers and ``return_hidden=True`` exposes the states), and reads
out with a linear map (after global average pooling over positions for conv blocks).

:func:`shared_blocks` builds one stacked set of blocks that a :class:`~terrain_jax.PlainNet`
and a :class:`~terrain_jax.ResidualNet` can both take (``blocks=``), so the two nets start
from identical parameters and differ only by the identity path.
"""

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from terrain_jax.nets import make_blocks
from terrain_jax.node import adjoint_solve
from terrain_jax.train import cross_entropy

__all__ = [
    "Classifier",
    "shared_blocks",
    "ce_loss",
    "masked_accuracy",
    "ODENet",
    "AdjointODENet",
    "DEQNet",
    "InjectionCell",
    "train_step_fn",
    "step_temp_bytes",
]


def _conv1d(w: Array, b: Array, x: Array, stride: int = 1) -> Array:
    """'SAME' 1-D convolution of ``(B, C_in, L)`` with ``(C_out, C_in, k)`` + bias."""
    out = jax.lax.conv_general_dilated(
        x, w, window_strides=(stride,), padding="SAME", dimension_numbers=("NCH", "OIH", "NCH")
    )
    return out + b[:, None]


class Classifier(eqx.Module):
    """``readout(net(stem(x)))`` for a batch ``x`` of shape ``(B, features)``.

    ``kind="mlp"``: the stem is ``x W_s^T + b_s`` (``features -> width``), the net acts on
    ``(B, width)``. ``kind="conv1d"``: ``x`` is read as ``(B, 1, features)``, the stem is a
    1-D convolution to ``width`` channels (kernel ``stem_kernel``, stride ``stem_stride``),
    the net acts on ``(B, width, features / stem_stride)``, and the readout averages over
    positions first.
    """

    stem_w: Array
    stem_b: Array
    net: Any
    out_w: Float[Array, "classes width"]
    out_b: Float[Array, " classes"]
    kind: str = eqx.field(static=True)
    stem_stride: int = eqx.field(static=True)

    def __init__(
        self,
        net: Any,
        features: int,
        width: int,
        classes: int,
        *,
        key: PRNGKeyArray,
        kind: str = "mlp",
        stem_kernel: int = 5,
        stem_stride: int = 1,
    ):
        if kind not in ("mlp", "conv1d"):
            raise ValueError(f"Unknown classifier kind {kind!r}; valid: mlp, conv1d.")
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

    def embed(self, x: Array) -> Array:
        """The stem: the initial state ``x_0`` of the depth net."""
        if self.kind == "mlp":
            return x @ self.stem_w.T + self.stem_b
        return _conv1d(self.stem_w, self.stem_b, x[:, None, :], self.stem_stride)

    def head(self, z: Array) -> Array:
        """The readout of a final state (pooling over positions for conv states)."""
        if self.kind == "conv1d":
            z = jnp.mean(z, axis=-1)
        return z @ self.out_w.T + self.out_b

    def __call__(self, x: Array, *, mask: Array | None = None) -> Array:
        return self.head(self.net(self.embed(x), mask=mask))

    def hidden(self, x: Array) -> Array:
        """All ``depth + 1`` states of the depth net, ``(depth + 1, B, ...)``."""
        _, hs = self.net(self.embed(x), return_hidden=True)
        return hs


def shared_blocks(
    kind: str,
    width: int,
    hidden: int,
    depth: int,
    *,
    key: PRNGKeyArray,
    activation: str = "relu",
    kernel_size: int = 3,
    gains: tuple[float, float] = (2.0, 1.0),
) -> Any:
    """Stacked blocks ``f(x) = W_2 σ(W_1 x + b_1) + b_2`` (MLP or conv), Gaussian weights of
    variance ``gains[i] / fan_in``: He (``2``) before the ReLU, LeCun (``1``) after it, so
    that one block maps a unit-variance input to a unit-variance output. That is the
    variance-preserving choice for the plain net ``x ← f(x)``; both nets get the same
    arrays."""
    blocks = make_blocks(
        kind,
        width,
        hidden,
        depth,
        key=key,
        activation=activation,
        init="lecun",
        kernel_size=kernel_size,
    )
    # lecun = N(0, 1/fan_in); rescale each weight layer to the requested gain
    leaves_name = "weights" if kind == "mlp" else "kernels"
    ws = getattr(blocks, leaves_name)
    new = [w * np.sqrt(g) for w, g in zip(ws, gains, strict=True)]
    return eqx.tree_at(lambda b: getattr(b, leaves_name), blocks, new)


def ce_loss(model: Classifier, xb: Array, yb: Array) -> Array:
    """Mean cross-entropy of the classifier's logits."""
    return cross_entropy(model(xb), yb)


@eqx.filter_jit
def masked_accuracy(model: Classifier, x: Array, y: Array, masks: Array) -> Array:
    """Test accuracy under each row of ``masks`` (``(M, depth)`` booleans), one compiled
    ``lax.map`` over masks."""

    def one(m):
        pred = jnp.argmax(model(x, mask=m), axis=-1)
        return jnp.mean((pred == y).astype(jnp.float32))

    return jax.lax.map(one, masks)


# ----------------------------------------------------------------------------- implicit nets


class ODENet(eqx.Module):
    """An :class:`~terrain_jax.ODEBlock` as the depth net of a :class:`Classifier`.

    The whole batch is one state of the solve (one adaptive step size for the batch), so
    ``solve(x).nfe`` is the number of field evaluations the batch costs. Layer deletion
    (``mask``) has no meaning for a continuous block and is refused.
    """

    block: Any

    def solve(self, x: Array) -> Any:
        """The block's :class:`~terrain_jax.Trajectory` from ``x``."""
        return self.block.solve(x)

    def __call__(self, x: Array, *, mask: Array | None = None) -> Array:
        if mask is not None:
            raise ValueError("ODENet has no layers to mask; call it without `mask`.")
        return self.block(x)


class AdjointODENet(eqx.Module):
    """An :class:`~terrain_jax.ODEBlock` differentiated by the continuous adjoint of Chen
    et al. 2018 (:func:`terrain_jax.node.adjoint_solve`): the backward pass re-solves
    the state backwards together with its adjoint, storing nothing of the forward solve.
    Its backward solve is ours, so its cost is visible (``adjoint_backward`` returns the
    backward :class:`~terrain_jax.Trajectory`)."""

    block: Any

    def solve(self, x: Array) -> Any:
        """The block's :class:`~terrain_jax.Trajectory` from ``x``."""
        return self.block.solve(x)

    def __call__(self, x: Array, *, mask: Array | None = None) -> Array:
        if mask is not None:
            raise ValueError("AdjointODENet has no layers to mask; call it without `mask`.")
        return adjoint_solve(self.block, x)


class InjectionCell(eqx.Module):
    """The DEQ cell ``(z, x) ↦ x + f(z)`` for one sample, ``f`` a block field
    ``f(t, z, args)`` called at ``t = 0``: the weight-tied, infinitely deep residual block
    with input injection of Bai et al. 2019."""

    field: Any

    def __call__(self, z: Array, x: Array) -> Array:
        return x + self.field(0.0, z, None)


class DEQNet(eqx.Module):
    """A :class:`~terrain_jax.nets.DEQBlock` with an :class:`InjectionCell` as the depth net
    of a :class:`Classifier`: ``z* = x + f(z*)`` per sample from ``z0 = 0``, gradients by
    ``backward`` (``implicit``: the implicit function theorem)."""

    block: Any

    def __init__(
        self,
        field: Any,
        *,
        solver: str = "anderson",
        tol: float = 1e-4,
        max_steps: int = 50,
        backward: str = "implicit",
        memory: int = 5,
    ):
        from terrain_jax.nets import DEQBlock

        self.block = DEQBlock(
            InjectionCell(field),
            solver=solver,
            tol=tol,
            max_steps=max_steps,
            backward=backward,
            memory=memory,
        )

    def solve(self, x: Array) -> tuple[Array, Any]:
        """``(z*, info)`` for a batch ``x``; ``info`` fields carry the batch axis."""
        return self.block.solve(x)

    def jacobian_penalty(self, x: Array, z: Array, key: PRNGKeyArray) -> Array:
        """Batch mean of the Hutchinson estimate of ``‖∂cell/∂z‖_F² / n`` at ``z``
        (``n`` the per-sample state size), the Jacobian regulariser of Bai et al. 2021."""
        return self.block.jacobian_penalty(x, z, key) / (z.size // z.shape[0])

    def adjoint_steps(self, x: Array, g: Array) -> Any:
        """The backward solve of ``implicit``: ``u = g + J_fᵀ u`` at ``z*`` per sample, by
        the forward's solver and tolerance; returns its :class:`FixedPointInfo` (its
        ``steps`` + 1 is the number of vector-Jacobian products the backward pass costs)."""
        from terrain_jax.equilibrium import fixed_point

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


def train_step_fn(loss_fn: Any, optimizer: Any, static: Any, *, has_aux: bool = False):
    """``step(params, opt_state, xb, yb, *extra) -> (params, opt_state, loss[, aux])``: one
    optimizer step of ``loss_fn(model, xb, yb, *extra)`` (which returns ``(loss, aux)``
    when ``has_aux``; ``extra`` e.g. a PRNG key), the step :func:`terrain_jax.train.fit`
    scans, written out so that its compiled memory and time can be measured on their
    own."""
    import optax

    def step(params, opt_state, xb, yb, *extra):
        model = eqx.combine(params, static)
        out, grads = eqx.filter_value_and_grad(loss_fn, has_aux=has_aux)(model, xb, yb, *extra)
        with jax.numpy_dtype_promotion("standard"):
            updates, opt_state = optimizer.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        if has_aux:
            return params, opt_state, out[0], out[1]
        return params, opt_state, out

    return step


def step_temp_bytes(step: Any, *args: Any) -> int:
    """Temporary memory XLA allocates for the compiled ``step(*args)`` (bytes)."""
    mem = jax.jit(step).lower(*args).compile().memory_analysis()
    return int(mem.temp_size_in_bytes)
