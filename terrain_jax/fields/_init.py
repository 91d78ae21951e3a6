"""Named weight initialisations shared by the learned fields, and the spectral norm their
Lipschitz bounds multiply."""

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from .._typing import Key

INITS = ("uniform", "he", "lecun", "orthogonal")


def check_init(init: str) -> None:
    """Refuse an initialisation name not in :data:`INITS`, listing the valid ones."""
    if init not in INITS:
        raise ValueError(f"Unknown init {init!r}; valid names are: {', '.join(INITS)}.")


def init_weight(key: Key, shape: tuple[int, ...], fan_in: int, init: str) -> Float[Array, "..."]:
    """A weight of ``shape`` (output axis first) under a named initialisation.

    ``uniform``: U(±1/√fan_in) (PyTorch's default); ``he``: N(0, 2/fan_in), for ReLU;
    ``lecun``: N(0, 1/fan_in); ``orthogonal``: orthogonal rows/columns of the
    ``(out, fan_in)`` matrix, gain 1.
    """
    if init == "uniform":
        lim = 1.0 / jnp.sqrt(fan_in)
        return jax.random.uniform(key, shape, minval=-lim, maxval=lim)
    if init == "he":
        return jax.random.normal(key, shape) * jnp.sqrt(2.0 / fan_in)
    if init == "lecun":
        return jax.random.normal(key, shape) * jnp.sqrt(1.0 / fan_in)
    if init == "orthogonal":
        flat = jax.nn.initializers.orthogonal()(key, (shape[0], fan_in))
        return flat.reshape(shape)
    raise ValueError(f"Unknown init {init!r}; valid names are: {', '.join(INITS)}.")


def spectral_norm(w: Float[Array, "*batch m n"]) -> Float[Array, "*batch"]:
    """Largest singular value over the last two axes (batched over leading ones)."""
    return jnp.linalg.svd(w, compute_uv=False)[..., 0]
