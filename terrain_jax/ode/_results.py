"""What became of a solve: :class:`RESULTS`, an enumeration with messages, as diffrax's."""

import equinox as eqx
import jax.numpy as jnp
import jax.tree_util as jtu
import numpy as np
from jaxtyping import Array, ArrayLike, Int


class RESULTS(eqx.Enumeration):
    """How an :func:`~terrain_jax.integrate` solve ended (``Trajectory.result``).

    The members' codes are ``Trajectory.status``: 0 ``successful``, 1
    ``max_steps_reached``, 2 ``diverged``, 3 ``solver_failed``.
    """

    successful = "success"
    max_steps_reached = "max_steps reached: increase `max_steps` or loosen `rtol`/`atol`"
    diverged = "diverged: the state became non-finite (try a smaller step or an implicit solver)"
    solver_failed = "solver failed (an implicit solve did not converge, or the step size collapsed)"


def result_code(result: RESULTS) -> Int[Array, "*batch"] | np.ndarray:
    """The integer code of a :class:`RESULTS` item (batched items give an array)."""
    return jtu.tree_leaves(result)[0]


def as_result(status: Int[ArrayLike, "*batch"]) -> RESULTS:
    """The :class:`RESULTS` item whose code is ``status`` (any shape, e.g. ``vmap``-ed)."""
    return jtu.tree_map(lambda _: jnp.asarray(status, jnp.int32), RESULTS.successful)


_MEMBERS = (
    RESULTS.successful,
    RESULTS.max_steps_reached,
    RESULTS.diverged,
    RESULTS.solver_failed,
)

STATUS: dict[int, str] = {int(result_code(m)): RESULTS[m] for m in _MEMBERS}
"""Status codes of :class:`Trajectory` and what each means (the messages of :class:`RESULTS`)."""
