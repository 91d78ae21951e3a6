"""Continuous normalising flows (Chen et al. 2018; FFJORD, Grathwohl et al. 2019).

Data ``x`` at ``t = 0`` flows along ``dz/dt = f(t, z)`` to ``z(T)``, scored under a
standard-normal base. The log-density changes along the flow by the instantaneous
change-of-variables formula ``d log p(z(t))/dt = -tr(∂f/∂z)``, so with
``Δ(t) = -∫_0^t tr(∂f/∂z) ds`` carried as extra state,

    log p(x) = log N(z(T); 0, I) - Δ(T).

The trace is exact (``jacfwd``, ``d`` forward-mode passes: fine for 2-D) or Hutchinson's
unbiased estimate ``εᵀ(∂f/∂z)ε`` with one probe ``ε`` per sample held fixed over the
solve (one VJP per evaluation, any ``d``). Sampling runs the flow backwards from
``z(T) ~ N(0, I)``.
"""

import math
from collections.abc import Callable

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray, PyTree
from matfree import stochtrace

from .._typing import ScalarLike
from ..fields import MLPField
from ..linalg import HUTCHINSON_PROBES
from ..ode import Trajectory
from ._solve import ODESolve

CNF_TRACES = ("exact", "hutchinson")

# εᵀ(Mε) for one probe vector: matfree's Monte-Carlo trace integrand. We call it with our
# own probe rather than through `estimator_monte_carlo`, because FFJORD needs the *same*
# probe at every stage of the solve (the estimator draws from a key per call), one per
# sample of the batch.
_HUTCHINSON = stochtrace.monte_carlo_trace()


def standard_normal_log_prob(z: Float[Array, "*batch d"]) -> Float[Array, "*batch"]:
    """``log N(z; 0, I)`` over the last axis."""
    d = z.shape[-1]
    return -0.5 * jnp.sum(z**2, axis=-1) - 0.5 * d * math.log(2.0 * math.pi)


def _check(name: str, value: str, valid: tuple[str, ...]) -> None:
    if value not in valid:
        raise ValueError(f"Unknown {name} {value!r}; valid names are: {', '.join(valid)}.")


class _CNFDynamics(eqx.Module):
    """``(z, Δ) ↦ (f(t, z), -tr ∂f/∂z)`` row by row; ``args = (probe, field_args)``."""

    field: Callable[..., Array]
    trace: str = eqx.field(static=True)

    def __call__(
        self, t: ScalarLike, state: tuple[Array, Array], args: tuple[Array, PyTree]
    ) -> tuple[Array, Array]:
        z, _ = state
        eps, field_args = args

        def f1(zi):
            return self.field(t, zi, field_args)

        if self.trace == "exact":

            def one(zi):
                jac, fi = jax.jacfwd(lambda u: (f1(u), f1(u)), has_aux=True)(zi)
                return fi, jnp.trace(jac)

            f, tr = jax.vmap(one)(z)
        else:

            def one(zi, ei):
                fi, vjp = jax.vjp(f1, zi)
                # tr(J) = tr(Jᵀ): the estimator εᵀJᵀε needs one VJP, no forward pass
                return fi, _HUTCHINSON(lambda v: vjp(v)[0], ei)

            f, tr = jax.vmap(one)(z, eps)
        return f, -tr


class CNF(eqx.Module):
    """A continuous normalising flow on ``R^dim`` with a standard-normal base at ``t = T``.

    The default field is ``MLPField(dim, hidden, depth, time=True)`` (time appended to the
    input); pass ``field=`` for any ``f(t, z, args)`` acting row-wise on ``(n, dim)``.
    Solver settings as for :class:`~terrain_jax.ODEBlock`: ``steps`` for fixed steps, or
    ``rtol``/``atol`` (default ``1e-5`` each when none is given) for adaptive ones; they
    build the flow's :class:`ODESolve` (``cnf.ode``), or pass ``ode=`` directly.
    """

    field: Callable[..., Array]
    dim: int = eqx.field(static=True)
    T: float = eqx.field(static=True)
    ode: ODESolve

    def __init__(
        self,
        dim: int,
        hidden: int = 64,
        depth: int = 2,
        *,
        key: PRNGKeyArray | None = None,
        field: Callable[..., Array] | None = None,
        activation: str = "tanh",
        T: float = 1.0,
        solver: str | dfx.AbstractSolver = "tsit5",
        steps: int | None = None,
        rtol: float | None = None,
        atol: float | None = None,
        adjoint: str | dfx.AbstractAdjoint | None = None,
        max_steps: int = 4096,
        ode: ODESolve | None = None,
    ):
        if field is None:
            if key is None:
                raise ValueError("CNF needs `key=` to initialise its MLP field (or pass `field=`).")
            field = MLPField(dim, hidden, depth, key=key, activation=activation, time=True)
        if ode is None:
            if steps is None and rtol is None and atol is None:
                rtol = atol = 1e-5
            ode = ODESolve(solver=solver, steps=steps, rtol=rtol, atol=atol, adjoint=adjoint,
                           max_steps=max_steps)  # fmt: skip
        self.field = field
        self.dim = dim
        self.T = T
        self.ode = ode

    def _probe(
        self, key: PRNGKeyArray | None, shape: tuple[int, ...], dtype: jnp.dtype, probe: str
    ) -> Array:
        if key is None:
            raise ValueError("trace='hutchinson' needs `key=` for its probe vectors.")
        if probe == "normal":
            return jax.random.normal(key, shape, dtype)
        return jax.random.rademacher(key, shape, dtype)

    def log_prob_solve(
        self,
        x: Float[Array, "n dim"],
        *,
        trace: str = "exact",
        key: PRNGKeyArray | None = None,
        probe: str = "normal",
        args: PyTree = None,
    ) -> tuple[Float[Array, " n"], Trajectory]:
        """``log p(x)`` per row and the :class:`Trajectory` of the ``[z, Δ]`` solve (NFE)."""
        _check("trace", trace, CNF_TRACES)
        _check("probe", probe, HUTCHINSON_PROBES)
        if trace == "hutchinson":
            eps = self._probe(key, x.shape, x.dtype, probe)
        else:
            eps = jnp.zeros((), x.dtype)
        delta0 = jnp.zeros(x.shape[:-1], x.dtype)
        traj = self.ode.integrate(
            _CNFDynamics(self.field, trace), (x, delta0), t0=0.0, t1=self.T, args=(eps, args)
        )
        z, delta = traj.y1
        return standard_normal_log_prob(z) - delta, traj

    def log_prob(
        self,
        x: Float[Array, "n dim"],
        *,
        trace: str = "exact",
        key: PRNGKeyArray | None = None,
        probe: str = "normal",
        args: PyTree = None,
    ) -> Float[Array, " n"]:
        """``log p(x)`` per row: exact trace, or an unbiased Hutchinson estimate (``key``)."""
        return self.log_prob_solve(x, trace=trace, key=key, probe=probe, args=args)[0]

    def sample(self, key: PRNGKeyArray, n: int, *, args: PyTree = None) -> Float[Array, "n dim"]:
        """``n`` samples: base draws ``z ~ N(0, I)`` flowed from ``t = T`` back to ``0``."""
        z = jax.random.normal(key, (n, self.dim))
        return self.ode.integrate(self.field, z, t0=self.T, t1=0.0, args=args).y1

    def sample_and_log_prob(
        self, key: PRNGKeyArray, n: int, *, args: PyTree = None
    ) -> tuple[Float[Array, "n dim"], Float[Array, " n"]]:
        """Samples with their exact ``log p``, from the one backward ``[z, Δ]`` solve."""
        z = jax.random.normal(key, (n, self.dim))
        delta = jnp.zeros((n,), z.dtype)
        eps = jnp.zeros((), z.dtype)
        traj = self.ode.integrate(
            _CNFDynamics(self.field, "exact"), (z, delta), t0=self.T, t1=0.0, args=(eps, args)
        )
        x, delta0 = traj.y1
        # Δ(T) = 0 here, so Δ(0) = ∫_0^T tr dt = -Δ_forward(T): log p(x) = log N(z) + Δ(0)
        return x, standard_normal_log_prob(z) + delta0
