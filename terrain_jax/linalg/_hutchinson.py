"""Hutchinson estimates: the trace of an operator and the squared Frobenius norm of a
Jacobian, from random probes with ``E[v vᵀ] = I``."""

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax.typing import DTypeLike
from jaxtyping import Array, Float, PRNGKeyArray, PyTree
from matfree import stochtrace

from ._util import resolve_dtype

_SAMPLERS = {"rademacher": stochtrace.sampler_signs, "normal": stochtrace.sampler_normal}
HUTCHINSON_PROBES = tuple(_SAMPLERS)
"""Probe distributions with ``E[v vᵀ] = I``: Rademacher signs and standard normals (one
vocabulary for every Hutchinson estimate in the library: traces, Jacobian norms, CNFs)."""


def hutchinson_probes(probe: str, like: PyTree, num: int) -> Callable[[PRNGKeyArray], PyTree]:
    """A sampler ``key -> num`` probes shaped like the pytree ``like`` (leading axis
    ``num``), Rademacher signs or standard normals (matfree's ``stochtrace.sampler_*``)."""
    if probe not in _SAMPLERS:
        raise ValueError(f"Unknown probe {probe!r}; valid probes: {', '.join(HUTCHINSON_PROBES)}.")
    return _SAMPLERS[probe](like, num=num)


def hutchinson_trace(
    matvec: Callable[[Array], Array],
    dim: int,
    key: PRNGKeyArray,
    num_samples: int,
    *,
    probe: str = "rademacher",
    probe_batch: int | None = None,
    dtype: DTypeLike | None = None,
) -> tuple[Float[Array, ""], Float[Array, ""]]:
    """Hutchinson's estimate of ``tr(A)`` and its standard error, ``(mean, sem)``.

    ``tr(A) = E[vᵀ A v]`` for probes with ``E[v vᵀ] = I`` (``probe`` in
    :data:`HUTCHINSON_PROBES`); ``sem`` is the sample standard deviation (``ddof=1``) over
    ``√num_samples``. Samplers and integrand are matfree's (``stochtrace.sampler_*``,
    ``monte_carlo_trace``); probes run vmapped, or ``lax.map``-ped in chunks of
    ``probe_batch`` to bound memory (matfree's estimator always vmaps all of them).
    """
    if num_samples < 2:
        raise ValueError(f"num_samples must be >= 2 for a standard error; got {num_samples}.")
    dtype = resolve_dtype(matvec, dtype)
    probes = hutchinson_probes(probe, jnp.zeros((dim,), dtype), num_samples)(key)
    integrand = stochtrace.monte_carlo_trace()

    def one(v):
        return integrand(matvec, v)

    if probe_batch is None:
        values = jax.vmap(one)(probes)
    else:
        values = jax.lax.map(one, probes, batch_size=probe_batch)
    return jnp.mean(values), jnp.std(values, ddof=1) / num_samples**0.5


def jacobian_frobenius(
    f: Callable[[PyTree, PyTree], PyTree],
    z: PyTree,
    args: PyTree,
    key: PRNGKeyArray,
    *,
    samples: int = 1,
    probe: str = "rademacher",
) -> Float[Array, ""]:
    """Hutchinson estimate of ``‖∂f/∂z‖_F²`` at ``z`` (one sample), differentiable.

    ``E_v ‖J v‖² = tr(JᵀJ) = ‖J‖_F²`` for probes with ``E[v vᵀ] = I``
    (``probe`` ∈ :data:`HUTCHINSON_PROBES`: Rademacher signs or standard normals); the
    mean over ``samples`` probes is returned. Each probe costs one forward-mode ``jvp``
    (``J v``; ``‖vᵀJ‖²`` via ``vjp`` has the same expectation but needs a reverse pass).
    Built on matfree's ``stochtrace.estimator_monte_carlo`` with its
    ``monte_carlo_frobeniusnorm_squared`` integrand; ``z`` may be a pytree. Use as the
    Jacobian regulariser of DEQ training (Bai et al. 2021) at ``z*``.
    """
    sampler = hutchinson_probes(probe, z, samples)
    if samples < 1:
        raise ValueError(f"samples must be >= 1; got {samples}.")

    def jvp(v):
        return jax.jvp(lambda zz: f(zz, args), (z,), (v,))[1]

    estimate = stochtrace.estimator_monte_carlo(
        stochtrace.monte_carlo_frobeniusnorm_squared(), sampler
    )
    return estimate(jvp, key)
