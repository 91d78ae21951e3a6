"""The field protocol: ``f(t, y, args) -> dy/dt``, and an upper bound on its Lipschitz
constant in the state where the field's structure gives one."""

import abc

import equinox as eqx
from jaxtyping import Array, Float

from .._typing import Args, Key, ScalarLike, State


class AbstractField(eqx.Module):
    """A vector field ``f(t, y, args) -> dy/dt``, as diffrax expects.

    Any such field plugs into :func:`terrain_jax.integrate` (and straight into diffrax);
    a plain callable with the same signature works too. Subclasses are final.
    """

    @abc.abstractmethod
    def __call__(self, t: ScalarLike, y: State, args: Args = None) -> State:
        """``dy/dt`` at time ``t`` and state ``y``."""

    @abc.abstractmethod
    def lipschitz_bound(
        self,
        *,
        input_shape: tuple[int, ...] | None = None,
        key: Key | None = None,
        iters: int = 200,
    ) -> Float[Array, "*blocks"]:
        """An upper bound on ``Lip(f)`` in ``y`` (one per block for stacked fields).

        ``input_shape``, ``key`` and ``iters`` matter only to fields whose operator norm
        depends on the input size (convolutions); the others ignore them. Fields whose
        structure gives no bound raise ``NotImplementedError``.
        """


def no_lipschitz_bound(field: AbstractField) -> NotImplementedError:
    """The error for a field whose structure gives no Lipschitz bound."""
    return NotImplementedError(
        f"{type(field).__name__} has no structural Lipschitz bound; "
        "lipschitz_lower_bound(field, xs) estimates one from samples, and MLPField, "
        "ConvField and LinearField have upper bounds."
    )
