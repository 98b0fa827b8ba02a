"""Batched L-BFGS against closed forms and scipy's L-BFGS-B."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import minimize, rosen, rosen_der

from fits.lbfgs import minimize_batched


def rosenbrock(X: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.array([rosen(x) for x in X]), np.array([rosen_der(x) for x in X])


def test_rosenbrock_every_start_reaches_the_minimum():
    starts = np.array([[-1.2, 1.0, -0.5], [2.0, 2.0, 2.0], [0.0, 0.0, 0.0], [-2.0, 3.0, 1.0]])
    res = minimize_batched(rosenbrock, starts, gtol=1e-10, ftol=0.0, max_iter=2000)
    assert res.converged.all()
    np.testing.assert_allclose(res.x, 1.0, atol=1e-6)
    assert (res.fun < 1e-12).all()


def test_matches_scipy_lbfgsb_on_rosenbrock():
    x0 = np.array([-1.2, 1.0, 0.7, -0.3])
    ref = minimize(
        rosen,
        x0,
        jac=rosen_der,
        method="L-BFGS-B",
        options={"ftol": 1e-15, "gtol": 1e-12, "maxiter": 5000},
    )
    res = minimize_batched(rosenbrock, x0[None, :], gtol=1e-12, ftol=0.0, max_iter=5000)
    np.testing.assert_allclose(res.x[0], ref.x, atol=1e-6)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), dim=st.integers(1, 6))
def test_random_quadratics_solved_exactly(seed, dim):
    """f_k(x) = x'H_k x / 2 - b_k'x, one SPD H_k per row: minimiser H_k^-1 b_k."""
    rng = np.random.default_rng(seed)
    k = 7
    M = rng.normal(size=(k, dim, dim))
    H = M @ np.swapaxes(M, 1, 2) + 0.5 * np.eye(dim)
    b = rng.normal(size=(k, dim))

    def quad(X, rows):
        Hx = np.einsum("kij,kj->ki", H[rows], X)
        return 0.5 * np.einsum("ki,ki->k", X, Hx) - np.einsum("ki,ki->k", b[rows], X), Hx - b[rows]

    res = minimize_batched(quad, rng.normal(size=(k, dim)), gtol=1e-10, ftol=0.0, max_iter=500)
    np.testing.assert_allclose(res.x, np.linalg.solve(H, b[..., None])[..., 0], atol=1e-7)


def test_rows_are_independent_of_the_batch():
    starts = np.array([[-1.2, 1.0], [3.0, -2.0], [0.5, 0.5]])
    batch = minimize_batched(rosenbrock, starts)
    for i, x0 in enumerate(starts):
        alone = minimize_batched(rosenbrock, x0[None, :])
        np.testing.assert_allclose(alone.x[0], batch.x[i], rtol=1e-12, atol=1e-14)
        assert alone.n_iter[0] == batch.n_iter[i]


def test_iteration_cap_reports_not_converged():
    res = minimize_batched(rosenbrock, np.array([[-1.2, 1.0]]), max_iter=3, gtol=0.0, ftol=0.0)
    assert res.n_iter[0] == 3
    assert not res.converged[0]
    assert res.fun[0] < rosen(np.array([-1.2, 1.0]))  # but it did descend


def test_infinite_objective_outside_domain_is_avoided():
    """f = 10 x - log x (min at x = 0.1) is +inf for x <= 0; from x = 0.5 the first trial
    step (length 1 along -g) lands at x = -0.5 and must be cut back."""
    calls = []

    def f(X, rows):
        x = X[:, 0]
        calls.append(x.copy())
        with np.errstate(divide="ignore", invalid="ignore"):
            val = np.where(x > 0, 10.0 * x - np.log(np.where(x > 0, x, 1.0)), np.inf)
        return val, (10.0 - 1.0 / x)[:, None]

    res = minimize_batched(f, np.array([[0.5], [0.01]]), gtol=1e-10, ftol=0.0)
    assert any((x <= 0).any() for x in calls)  # the infeasible trial did happen
    np.testing.assert_allclose(res.x[:, 0], 0.1, atol=1e-9)


def test_start_already_at_the_minimum_takes_no_step():
    res = minimize_batched(rosenbrock, np.array([[1.0, 1.0]]))
    assert res.n_iter[0] == 0 and res.converged[0]
    np.testing.assert_array_equal(res.x[0], [1.0, 1.0])


@pytest.mark.parametrize("memory", [1, 3, 10])
def test_any_memory_length_converges(memory):
    res = minimize_batched(
        rosenbrock, np.array([[-1.2, 1.0]]), memory=memory, gtol=1e-9, ftol=0.0, max_iter=5000
    )
    np.testing.assert_allclose(res.x[0], 1.0, atol=1e-5)
