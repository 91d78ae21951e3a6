"""Solver registry and Butcher tableaus: names resolve, errors list the valid names, and
every tableau satisfies the Runge--Kutta order conditions of exactly its stated order."""

import diffrax as dfx
import numpy as np
import pytest
from helpers import ALL_SOLVERS, EXPLICIT_SOLVERS, IMPLICIT_SOLVERS
from hypothesis import given
from hypothesis import strategies as st

from terrain_jax.ode import (
    RK4,
    SOLVERS,
    get_solver,
    integrate,
    is_implicit,
    nfe_per_step,
    solver_name,
    tableau,
)

FSAL_SOLVERS = ("bosh3", "tsit5", "dopri5", "dopri8", "kvaerno3", "kvaerno5")


def _order_residuals(A, b, c) -> dict[int, np.ndarray]:
    """Residuals of the Runge--Kutta order conditions, one group per order (rooted trees
    up to order 5; Hairer, Nørsett & Wanner, *Solving ODEs I*, Table II.2.2)."""
    Ac = A @ c
    return {
        1: np.array([b.sum() - 1]),
        2: np.array([b @ c - 1 / 2]),
        3: np.array([b @ c**2 - 1 / 3, b @ Ac - 1 / 6]),
        4: np.array(
            [b @ c**3 - 1 / 4, b @ (c * Ac) - 1 / 8, b @ (A @ c**2) - 1 / 12, b @ (A @ Ac) - 1 / 24]
        ),
        5: np.array(
            [
                b @ c**4 - 1 / 5,
                b @ (c**2 * Ac) - 1 / 10,
                b @ (c * (A @ c**2)) - 1 / 15,
                b @ (c * (A @ Ac)) - 1 / 30,
                b @ (Ac * Ac) - 1 / 20,
                b @ (A @ c**3) - 1 / 20,
                b @ (A @ (c * Ac)) - 1 / 40,
                b @ (A @ (A @ c**2)) - 1 / 60,
                b @ (A @ (A @ Ac)) - 1 / 120,
            ]
        ),
    }


@pytest.mark.parametrize("name", ALL_SOLVERS)
def test_every_name_resolves(name):
    s = get_solver(name)
    assert isinstance(s, dfx.AbstractSolver)
    assert solver_name(s) == name
    assert solver_name(name) == name
    # an instance passes through untouched
    assert get_solver(s) is s


@given(
    name=st.sampled_from(ALL_SOLVERS),
    upper=st.lists(st.booleans(), min_size=8, max_size=8),
)
def test_names_are_case_insensitive(name, upper):
    mixed = "".join(ch.upper() if u else ch for ch, u in zip(name, upper * 2, strict=False))
    assert type(get_solver(mixed)) is type(get_solver(name))
    assert solver_name(mixed) == name


@pytest.mark.parametrize("bad", ["rk5", "eulr", "", "tsit"])
def test_unknown_name_lists_valid_names(bad):
    for call in (get_solver, solver_name, tableau):
        with pytest.raises(ValueError) as info:
            call(bad)
        msg = str(info.value)
        assert repr(bad) in msg
        for name in SOLVERS:
            assert name in msg


def test_unknown_name_refused_by_integrate():
    with pytest.raises(ValueError, match="valid names are"):
        integrate(lambda t, y, a: -y, np.ones(2, np.float32), solver="rk5", steps=2)


@pytest.mark.parametrize("name", ALL_SOLVERS)
def test_tableau_rows_sum_to_c_and_b_to_one(name):
    A, b, c, order = tableau(name)
    k = len(b)
    assert A.shape == (k, k) and c.shape == (k,)
    np.testing.assert_allclose(A.sum(axis=1), c, rtol=0, atol=1e-14)
    np.testing.assert_allclose(b.sum(), 1.0, rtol=0, atol=1e-14)
    # the stated order agrees with diffrax's own claim for the solver
    assert order == get_solver(name).order(dfx.ODETerm(lambda t, y, a: y))


@pytest.mark.parametrize("name", ALL_SOLVERS)
def test_tableau_satisfies_order_conditions_of_exactly_its_order(name):
    A, b, c, order = tableau(name)
    res = _order_residuals(A, b, c)
    for p in range(1, min(order, 5) + 1):
        np.testing.assert_allclose(res[p], 0.0, atol=1e-13, err_msg=f"order {p} condition")
    if order < 5:
        # the next order fails: the stated order is the true one
        assert np.max(np.abs(res[order + 1])) > 1e-3


@pytest.mark.parametrize("name", EXPLICIT_SOLVERS)
def test_explicit_tableaus_are_strictly_lower_triangular(name):
    A = tableau(name).A
    np.testing.assert_array_equal(np.triu(A), 0.0)
    assert not is_implicit(name)


@pytest.mark.parametrize("name", IMPLICIT_SOLVERS)
def test_implicit_tableaus_have_a_diagonal(name):
    A = tableau(name).A
    assert np.any(np.diag(A) != 0.0)
    np.testing.assert_array_equal(np.triu(A, 1), 0.0)  # diagonally implicit
    assert is_implicit(name)


def test_rk4_tableau_is_classical():
    A, b, c, order = tableau("rk4")
    # Kutta (1901): the classical fourth-order method
    expected_A = np.array(
        [
            [0.0, 0.0, 0.0, 0.0],
            [0.5, 0.0, 0.0, 0.0],
            [0.0, 0.5, 0.0, 0.0],
            [0.0, 0.0, 1.0, 0.0],
        ]
    )
    np.testing.assert_array_equal(A, expected_A)
    np.testing.assert_allclose(b, [1 / 6, 1 / 3, 1 / 3, 1 / 6], rtol=0, atol=1e-16)
    np.testing.assert_array_equal(c, [0.0, 0.5, 0.5, 1.0])
    assert order == 4
    assert isinstance(get_solver("rk4"), RK4)


def test_euler_and_implicit_euler_tableaus():
    A, b, c, _ = tableau("euler")
    np.testing.assert_array_equal(A, [[0.0]])
    np.testing.assert_array_equal(b, [1.0])
    np.testing.assert_array_equal(c, [0.0])
    A, b, c, _ = tableau("implicit_euler")
    np.testing.assert_array_equal(A, [[1.0]])
    np.testing.assert_array_equal(b, [1.0])
    np.testing.assert_array_equal(c, [1.0])


def test_tableau_of_a_solver_instance_and_of_a_non_rk_solver():
    A, b, c, order = tableau(dfx.Tsit5())
    np.testing.assert_array_equal(A, tableau("tsit5").A)
    assert order == 5
    with pytest.raises(ValueError, match="Butcher tableau"):
        tableau(dfx.ReversibleHeun())


@pytest.mark.parametrize("name", ALL_SOLVERS)
def test_nfe_per_step(name):
    first, later = nfe_per_step(name)
    k = len(tableau(name).b)
    assert first == k
    assert later == (k - 1 if name in FSAL_SOLVERS else k)
