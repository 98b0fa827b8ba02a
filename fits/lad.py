"""Weighted least absolute deviations as a linear program (HiGHS), solved exactly.

Two callers minimise a weighted sum of absolute errors linear in their unknowns: the stacking
weights of the forms (fits.averaging: on the simplex) and the centre of the calibration's
shifts per decade along each direction (fits.calibration: unconstrained).
"""

from __future__ import annotations

import numpy as np
from scipy import sparse
from scipy.optimize import linprog

from fits.errors import FitError


def least_absolute(
    X: np.ndarray, y: np.ndarray, weights: np.ndarray, simplex: bool = False
) -> np.ndarray:
    """beta minimising sum_i weights_i |y_i - X_i . beta| (X: n x k), on the simplex (beta >= 0,
    sum beta = 1) when `simplex`.

    The linear program over (beta, t): minimise weights . t with t_i >= +-(y_i - X_i . beta)."""
    X, y = np.asarray(X, dtype=float), np.asarray(y, dtype=float)
    n, k = X.shape
    eye = sparse.identity(n, format="csr")
    upper = sparse.bmat([[sparse.csr_matrix(X), -eye], [sparse.csr_matrix(-X), -eye]])
    bounds = [(0.0, None) if simplex else (None, None)] * k + [(0.0, None)] * n
    equal = {"A_eq": np.concatenate([np.ones(k), np.zeros(n)])[None, :], "b_eq": [1.0]}
    solved = linprog(np.concatenate([np.zeros(k), weights]), A_ub=upper,
                     b_ub=np.concatenate([y, -y]), bounds=bounds, method="highs",
                     **(equal if simplex else {}))  # fmt: skip
    if not solved.success:
        raise FitError(f"the least-absolute-deviations fit could not be solved: {solved.message}")
    return np.asarray(solved.x[:k], dtype=float)
