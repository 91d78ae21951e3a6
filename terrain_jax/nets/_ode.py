"""ODE layers ``x ↦ y(T)``: the plain block, the augmented one (Dupont et al. 2019) and the
RNODE-regularised one (Finlay et al. 2020), all solved by one :class:`ODESolve`."""

from collections.abc import Callable
from typing import NamedTuple

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray, PyTree

from .._typing import ScalarLike, State
from ..ode import Trajectory
from ._solve import ODESolve


class ODEBlock(eqx.Module):
    """A layer ``x ↦ y(T)`` where ``dy/dt = field(t, y)``, ``y(0) = x``.

    Give ``steps`` for fixed steps or ``rtol``/``atol`` for adaptive ones. ``solver`` and
    ``adjoint`` accept the names :func:`terrain_jax.integrate` accepts. These keywords
    build the block's :class:`ODESolve` (``block.ode``); pass ``ode=`` to give one directly.
    """

    field: Callable[..., State]
    T: float = eqx.field(static=True)
    ode: ODESolve

    def __init__(
        self,
        field: Callable[..., State],
        *,
        solver: str | dfx.AbstractSolver = "euler",
        steps: int | None = None,
        rtol: float | None = None,
        atol: float | None = None,
        T: float = 1.0,
        adjoint: str | dfx.AbstractAdjoint | None = None,
        max_steps: int = 4096,
        ode: ODESolve | None = None,
    ):
        if ode is None:
            ode = ODESolve(solver=solver, steps=steps, rtol=rtol, atol=atol, adjoint=adjoint,
                           max_steps=max_steps)  # fmt: skip
        self.field = field
        self.T = T
        self.ode = ode

    # the settings, read through (``block.steps`` is ``block.ode.steps``)
    solver = property(lambda self: self.ode.solver)
    steps = property(lambda self: self.ode.steps)
    rtol = property(lambda self: self.ode.rtol)
    atol = property(lambda self: self.ode.atol)
    adjoint = property(lambda self: self.ode.adjoint)
    max_steps = property(lambda self: self.ode.max_steps)

    def solve(
        self,
        x: State,
        *,
        saveat: str | Float[ArrayLike, " n"] | dfx.SaveAt | None = None,
        args: PyTree = None,
    ) -> Trajectory:
        """The full :class:`Trajectory` (steps, NFE, status) of the block's solve."""
        return self.ode.integrate(self.field, x, t0=0.0, t1=self.T, saveat=saveat, args=args)

    def solve_with(
        self,
        field: Callable[..., State],
        y0: State,
        *,
        t0: ScalarLike,
        t1: ScalarLike,
        saveat: str | Float[ArrayLike, " n"] | dfx.SaveAt | None = None,
        args: PyTree = None,
        adjoint: str | dfx.AbstractAdjoint | None = None,
    ) -> Trajectory:
        """:func:`~terrain_jax.integrate` of another ``field`` (an augmented or adjoint
        system built from the block's) with the block's solver, steps, tolerances and
        ``max_steps``, and ``adjoint`` (``None``: ``integrate``'s default, not the block's)."""
        return self.ode.replace(adjoint=adjoint).integrate(
            field, y0, t0=t0, t1=t1, saveat=saveat, args=args
        )

    def __call__(self, x: State, args: PyTree = None) -> State:
        return jtu.tree_map(lambda y: y[-1], self.solve(x, args=args).ys)


class AugmentedODEBlock(eqx.Module):
    """Augmented neural ODE (Dupont et al. 2019): ``x ↦ y(T)`` with ``y(0) = [x, 0]``.

    ``extra`` zero dimensions (or channels, with ``axis`` pointing at the channel axis of
    a convolutional state) are appended along ``axis`` before the solve, so the flow lives
    in ``d + extra`` dimensions and can realise maps a ``d``-dimensional flow cannot
    (flows are homeomorphisms: a 1-D flow is monotone). ``block.field`` must act on the
    augmented width. The output keeps all ``d + extra`` dimensions (read by a linear head).
    """

    block: ODEBlock
    extra: int = eqx.field(static=True)
    axis: int = eqx.field(static=True)

    def __init__(self, block: ODEBlock, extra: int, *, axis: int = -1):
        if not isinstance(extra, int) or extra < 0:
            raise ValueError(f"`extra` must be a non-negative integer, got {extra!r}.")
        self.block = block
        self.extra = extra
        self.axis = axis

    def augment(self, x: Float[Array, "..."]) -> Float[Array, "..."]:
        """``x`` with ``extra`` zeros appended along ``axis``."""
        pad = [(0, 0)] * x.ndim
        pad[self.axis] = (0, self.extra)
        return jnp.pad(x, pad)

    def solve(
        self,
        x: Float[Array, "..."],
        *,
        saveat: str | Float[ArrayLike, " n"] | dfx.SaveAt | None = None,
        args: PyTree = None,
    ) -> Trajectory:
        """The :class:`Trajectory` of the augmented solve."""
        return self.block.solve(self.augment(x), saveat=saveat, args=args)

    def __call__(self, x: Float[Array, "..."], args: PyTree = None) -> Float[Array, "..."]:
        return self.block(self.augment(x), args)


class RegularisedField(eqx.Module):
    """RNODE (Finlay et al. 2020): ``field`` plus its two regularisers as extra state.

    On the state ``(y, E, B)`` with ``args = (ε, field_args)``:
    ``dy/dt = f``, ``dE/dt = ‖f‖²``, ``dB/dt = ‖εᵀ ∂f/∂y‖²``, norms over the last
    ``event_ndim`` axes (one value per sample of a batch). ``ε`` is a probe held fixed for
    the whole solve; ``E_ε‖εᵀJ‖² = ‖J‖_F²`` for ``ε ~ N(0, I)``, so ``B(T)`` is an unbiased
    estimate of ``∫‖∂f/∂y‖_F² dt``. One evaluation costs one VJP of the field: with a batch
    the VJP of the batched field gives every sample's ``εᵢᵀJᵢ`` at once (samples do not
    interact), which is why this is not routed through ``matfree``'s per-vector estimator.
    """

    field: Callable[..., Array]
    event_ndim: int = eqx.field(static=True, default=1)

    def __call__(
        self, t: ScalarLike, state: tuple[Array, Array, Array], args: tuple[Array, PyTree]
    ) -> tuple[Array, Array, Array]:
        y, _, _ = state
        eps, field_args = args
        f, vjp = jax.vjp(lambda yy: self.field(t, yy, field_args), y)
        (eps_j,) = vjp(eps)
        axes = tuple(range(-self.event_ndim, 0))
        return f, jnp.sum(f**2, axis=axes), jnp.sum(eps_j**2, axis=axes)


class RNODEOutput(NamedTuple):
    """``y(T)``, kinetic energy ``∫‖f‖² dt`` and the Jacobian-Frobenius estimate
    ``∫‖εᵀ∂f/∂y‖² dt`` (per sample), and the solve's :class:`Trajectory`."""

    y1: Array
    kinetic: Array
    jacobian: Array
    trajectory: Trajectory


class RegularisedODEBlock(eqx.Module):
    """An :class:`ODEBlock` whose solve also integrates the RNODE regularisers.

    ``event_ndim``: trailing axes of one sample (1 for vectors ``(..., width)``, 2 for
    ``(C, L)`` feature maps, 3 for ``(C, H, W)``). Each call draws one Gaussian probe of the
    state's shape from ``key``.
    """

    block: ODEBlock
    event_ndim: int = eqx.field(static=True)

    def __init__(self, block: ODEBlock, *, event_ndim: int = 1):
        if not isinstance(event_ndim, int) or event_ndim < 1:
            raise ValueError(f"`event_ndim` must be a positive integer, got {event_ndim!r}.")
        self.block = block
        self.event_ndim = event_ndim

    def __call__(
        self, x: Float[Array, "..."], *, key: PRNGKeyArray, args: PyTree = None
    ) -> RNODEOutput:
        batch = x.shape[: x.ndim - self.event_ndim]
        zeros = jnp.zeros(batch, x.dtype)
        eps = jax.random.normal(key, x.shape, x.dtype)
        field = RegularisedField(self.block.field, self.event_ndim)
        traj = self.block.ode.integrate(
            field, (x, zeros, zeros), t0=0.0, t1=self.block.T, args=(eps, args)
        )
        y1, kinetic, jac = traj.y1
        return RNODEOutput(y1, kinetic, jac, traj)
