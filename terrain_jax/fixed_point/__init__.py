"""Fixed points ``z* = f(z*, args)``: the forward pass of a DEQ layer and its gradients.

:func:`fixed_point` finds ``z*`` with a solver, an :class:`AbstractFixedPointSolver`
(``init`` / ``step`` / ``terminate``) or its name in :data:`FIXED_POINT_SOLVERS`:
:class:`Picard` (``"picard"``), :class:`Anderson` (``"anderson"``), :class:`Broyden`
(``"broyden"``) and :class:`NewtonKrylov` (``"newton"``); each class says what it
converges on. It differentiates ``z*`` with a backward pass, an :class:`AbstractBackward`
or its name in :data:`FIXED_POINT_BACKWARDS`: :class:`Implicit` (the implicit function
theorem, memory flat in the number of steps), :class:`JFB`, :class:`Unroll` and
:class:`Phantom`.

States may be any pytree of floating arrays (one dtype): they are flattened with
``jax.flatten_util.ravel_pytree`` internally and returned in ``z0``'s structure. With
``batched=True`` every leaf carries a leading batch axis and each sample runs its own
solve (``vmap``); ``args_axes`` (``vmap``'s ``in_axes`` for ``args``) makes ``args``
per-sample too, e.g. the injected input ``x`` of a DEQ layer. No dense Jacobian (of a
sample or of the batch) is ever formed.

The residual reported in :class:`FixedPointInfo` (and compared with ``tol``) is
**relative**: ``‖f(z) − z‖₂ / (‖z‖₂ + 1e-8)`` at the returned ``z`` (per sample when
batched). The returned ``z`` is the last iterate whose residual was evaluated, so
``‖f(z) − z‖ ≤ tol · (‖z‖ + 1e-8)`` whenever ``info.converged``; ``info.result`` (a
:class:`FixedPointResult`) says why a solve stopped.

:func:`iterate` returns a plain Picard trajectory and :func:`asymptotic_rate` the
geometric rate of a trace's tail.
"""

from ._anderson import Anderson
from ._backward import JFB, AbstractBackward, Implicit, Phantom, Unroll
from ._base import AbstractFixedPointSolver, FixedPointInfo, FixedPointResult
from ._broyden import Broyden
from ._iterate import asymptotic_rate, iterate
from ._newton import NewtonKrylov
from ._picard import Picard
from ._solve import FIXED_POINT_BACKWARDS, FIXED_POINT_SOLVERS, fixed_point

__all__ = [
    "FIXED_POINT_SOLVERS",
    "FIXED_POINT_BACKWARDS",
    "AbstractFixedPointSolver",
    "Picard",
    "Anderson",
    "Broyden",
    "NewtonKrylov",
    "AbstractBackward",
    "Implicit",
    "JFB",
    "Unroll",
    "Phantom",
    "FixedPointResult",
    "FixedPointInfo",
    "fixed_point",
    "iterate",
    "asymptotic_rate",
]
