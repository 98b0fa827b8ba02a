"""fits.lad against references that do not solve a linear program: the weighted median, and
every fit that passes exactly through k of the points (a least-absolute fit is one of them)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from fits.lad import least_absolute


def cost(X: np.ndarray, y: np.ndarray, w: np.ndarray, beta: np.ndarray) -> float:
    return float((w * np.abs(y - X @ beta)).sum())


def best_exact_fit(X: np.ndarray, y: np.ndarray, w: np.ndarray, simplex: bool) -> float:
    """The least cost among the fits through k points (unconstrained), or among the simplex's
    corners and the fits with one residual 0 along each edge (k = 2 on the simplex)."""
    k = X.shape[1]
    if simplex:  # beta = (a, 1 - a): the cost is piecewise linear in a, with kinks where r_i = 0
        slope, at_0 = X[:, 0] - X[:, 1], y - X[:, 1]
        kinks = at_0[slope != 0] / slope[slope != 0]
        grid = np.concatenate([[0.0, 1.0], kinks[(kinks > 0) & (kinks < 1)]])
        return min(cost(X, y, w, np.array([a, 1 - a])) for a in grid)
    costs = []
    for rows in itertools.combinations(range(len(y)), k):
        A = X[list(rows)]
        if abs(np.linalg.det(A)) > 1e-9:
            costs.append(cost(X, y, w, np.linalg.solve(A, y[list(rows)])))
    return min(costs)


def test_one_unknown_is_the_weighted_median():
    rng = np.random.default_rng(0)
    y, w = rng.normal(size=15), rng.random(15) + 0.1
    order = np.argsort(y)
    cumulative = np.cumsum(w[order])
    median = y[order][np.searchsorted(cumulative, w.sum() / 2)]
    assert least_absolute(np.ones((15, 1)), y, w)[0] == pytest.approx(median, abs=1e-12)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("simplex", [False, True])
def test_the_minimum_is_the_best_fit_through_points(seed, simplex):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(14, 2)).round(1 if seed % 2 else 6)  # rounded: ties and degeneracy
    y = (X @ rng.normal(size=2) + rng.standard_t(3, 14)).round(1 if seed % 2 else 6)
    w = rng.random(14) + 0.1
    beta = least_absolute(X, y, w, simplex=simplex)
    if simplex:
        assert beta.min() >= -1e-12 and beta.sum() == pytest.approx(1.0)
    assert cost(X, y, w, beta) == pytest.approx(best_exact_fit(X, y, w, simplex), rel=1e-10)
