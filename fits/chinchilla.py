"""Chinchilla law L(N, D) = E + A / N^alpha + B / D^beta, fitted as Hoffmann et al. approach 3.

The published procedure (Hoffmann et al. 2022, as reproduced by Besiroglu et al. 2024):
with A = e^a, B = e^b, E = e^e, minimise over theta = (a, b, e, alpha, beta)

    sum_i  Huber_delta( LSE(a - alpha log N_i, b - beta log D_i, e) - log L_i ),  delta = 1e-3,

by L-BFGS from every point of a 4,500-point grid (alpha, beta in 0..2 step 0.5; e in -1..1
step 0.5; a, b in 0..25 step 5), and keep the best. Here all starts run together in the
batched L-BFGS of fits.lbfgs with the analytic gradient, stopping on the L-BFGS-B default
criteria; the best end point is then polished with tight tolerances.

Bootstrap (intervals on parameters and on anything derived from them): each resample is a
vector of integer weights on the points. Refitting every resample from all 4,500 grid points
would cost 1,000 full fits, so each resample instead starts from the full-data optimum and the
next best distinct local optima found on the full grid (`n_local_optima` starts in all). A
resample perturbs the objective only a little, so its optimum lies in one of those basins;
the test suite checks this against full-grid refits of individual resamples.
"""

from __future__ import annotations

import itertools
import math
from typing import ClassVar

import numpy as np

from fits.gridfit import GridLaw, Problem, standardize
from fits.laws import TERM_SHARE
from fits.objective_blocks import mask_nonfinite, start_blocks, start_weights

PARAM_NAMES = ("E", "A", "B", "alpha", "beta")
DERIVED_NAMES = ("a", "b", "G")

# Starts per objective evaluation block: keeps the (starts x points) temporaries in cache
# (fits.objective_blocks.start_blocks bounds them on large sets).
_CHUNK = 96


def starting_grid() -> np.ndarray:
    """The published 4,500-point starting grid as rows of theta = (a, b, e, alpha, beta)."""
    exps = np.arange(0.0, 2.0 + 1e-9, 0.5)
    es = np.arange(-1.0, 1.0 + 1e-9, 0.5)
    coefs = np.arange(0.0, 25.0 + 1e-9, 5.0)
    grid = itertools.product(exps, exps, es, coefs, coefs)
    return np.array([(a, b, e, alpha, beta) for alpha, beta, e, a, b in grid])


def theta_to_params(theta: np.ndarray) -> np.ndarray:
    """(a, b, e, alpha, beta) rows -> (E, A, B, alpha, beta) rows."""
    theta = np.asarray(theta, dtype=float)
    with np.errstate(over="ignore"):  # a degenerate bootstrap refit may overflow to inf
        scales = np.exp(theta[..., [2, 0, 1]])
    return np.concatenate([scales, theta[..., 3:5]], axis=-1)


def params_to_theta(params: np.ndarray) -> np.ndarray:
    """(E, A, B, alpha, beta) rows -> (a, b, e, alpha, beta) rows. An E that underflowed to 0
    (e far below -708) maps to the log of the smallest positive float, not -inf: a refit
    started from -inf computes inf - inf and that start is lost."""
    params = np.asarray(params, dtype=float)
    return np.stack(
        [
            np.log(params[..., 1]),
            np.log(params[..., 2]),
            np.log(np.maximum(params[..., 0], np.finfo(float).tiny)),
            params[..., 3],
            params[..., 4],
        ],
        axis=-1,
    )


def chinchilla_loss(params: np.ndarray, N: np.ndarray, D: np.ndarray) -> np.ndarray:
    """E + A/N^alpha + B/D^beta for params rows (..., 5) against N, D (flattened, broadcast)."""
    N = np.asarray(N, dtype=float).reshape(-1)
    D = np.asarray(D, dtype=float).reshape(-1)
    return _loss(params, N, D)


def _loss(params: np.ndarray, N: np.ndarray, D: np.ndarray) -> np.ndarray:
    """E + A/N^alpha + B/D^beta, params rows (k, 5) against N, D of shape (n,) or (k, n)."""
    p = np.asarray(params, dtype=float)
    E, A, B, alpha, beta = (p[..., i, None] for i in range(5))
    with np.errstate(all="ignore"):  # degenerate draws give inf/nan, which intervals leave out
        return E + A / np.asarray(N, dtype=float) ** alpha + B / np.asarray(D, dtype=float) ** beta


def theta_loss(theta: np.ndarray, N: np.ndarray, D: np.ndarray) -> np.ndarray:
    """L = E + A/N^alpha + B/D^beta for theta = (log A, log B, log E, alpha, beta)."""
    a, b, e, alpha, beta = theta
    return np.exp(e) + np.exp(a - alpha * np.log(N)) + np.exp(b - beta * np.log(D))


def theta_jacobian(theta: np.ndarray, N: np.ndarray, D: np.ndarray) -> np.ndarray:
    """d log L / d theta at each (N, D): rows (M, 5)."""
    a, b, e, alpha, beta = theta
    u1, u2 = np.exp(a - alpha * np.log(N)), np.exp(b - beta * np.log(D))
    loss = u1 + u2 + math.exp(e)
    return (
        np.stack([u1, u2, np.full_like(u1, math.exp(e)), -np.log(N) * u1, -np.log(D) * u2], axis=1)
        / loss[:, None]
    )


def allocation_exponents(alpha: np.ndarray, beta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """N_opt grows as C^a and D_opt as C^b with a = beta/(alpha+beta), b = alpha/(alpha+beta)."""
    return beta / (alpha + beta), alpha / (alpha + beta)


def compute_optimal_allocation(
    params: np.ndarray, C: np.ndarray, flops_per_token: float = 6.0
) -> tuple[np.ndarray, np.ndarray]:
    """Closed-form minimiser of L(N, D) subject to C = k N D (k = flops_per_token).

    Setting dL/dN = 0 on D = C/(kN) gives N_opt = G (C/k)^a, D_opt = G^-1 (C/k)^b with
    G = (alpha A / (beta B))^(1/(alpha+beta)). Rows of params broadcast against C: budgets
    (m,) for every row, or (k, m) a row's own.
    """
    p = np.asarray(params, dtype=float)
    _, A, B, alpha, beta = (p[..., i, None] for i in range(5))
    a, b = allocation_exponents(alpha, beta)
    budgets = np.asarray(C, dtype=float)
    X = (budgets if budgets.ndim == 2 else budgets.reshape(-1)) / flops_per_token
    with np.errstate(all="ignore"):  # degenerate draws give inf/nan, which intervals leave out
        G = (alpha * A / (beta * B)) ** (1.0 / (alpha + beta))
        return G * X**a, X**b / G


class HuberLSEObjective:
    """Sum of Huber losses of LSE(a - alpha log N, b - beta log D, e) - log L, with gradient.

    Called with a batch of theta rows (k, 5) and their start indices. Optional point
    weights: one vector (n,) for every start, or a matrix (R, n) of which start i uses row
    weight_row[i] (the bootstrap: one row of resampling counts per resample).
    The log-sum-exp is evaluated as log(e^u1 + e^u2 + e^u3) without max-shifting: an overflow
    or underflow gives an infinite objective, which the line search simply rejects.
    """

    def __init__(
        self,
        log_n: np.ndarray,
        log_d: np.ndarray,
        log_loss: np.ndarray,
        delta: float,
        weights: np.ndarray | None = None,
        weight_row: np.ndarray | None = None,
    ) -> None:
        self.neg_log_n = -np.asarray(log_n, dtype=float)
        self.neg_log_d = -np.asarray(log_d, dtype=float)
        self.log_loss = np.asarray(log_loss, dtype=float)
        self.delta = float(delta)
        self.weights = None if weights is None else np.asarray(weights, dtype=float)
        self.weight_row = weight_row
        if self.weights is not None and self.weights.ndim == 2 and weight_row is None:
            raise ValueError("a weight matrix needs weight_row: which row each start uses")
        ones = np.ones_like(self.neg_log_n)
        self._design_n = np.stack([ones, self.neg_log_n], axis=1)
        self._design_d = np.stack([ones, self.neg_log_d], axis=1)

    def __call__(self, theta: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Objective (k,) and gradient (k, 5) for theta rows (k, 5)."""
        k = theta.shape[0]
        f = np.empty(k)
        g = np.empty((k, 5))
        with np.errstate(over="ignore", under="ignore", divide="ignore", invalid="ignore"):
            for sl in start_blocks(k, _CHUNK, len(self.log_loss)):
                w = start_weights(self.weights, self.weight_row, rows[sl])
                f[sl], g[sl] = self._block(theta[sl], w)
        return mask_nonfinite(f, g)

    def _block(self, th: np.ndarray, w: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        e1 = th[:, [0, 3]] @ self._design_n.T  # a - alpha log N
        np.exp(e1, out=e1)  # A / N^alpha
        e2 = th[:, [1, 4]] @ self._design_d.T
        np.exp(e2, out=e2)  # B / D^beta
        ee = np.exp(th[:, 2])  # E
        z = np.add(e1, e2)
        z += ee[:, None]  # predicted loss
        r = np.log(z)
        r -= self.log_loss
        psi = np.minimum(r, self.delta)  # Huber derivative: clip(r, -delta, delta)
        np.maximum(psi, -self.delta, out=psi)
        # sum_i w_i huber(r_i) = sum_i w_i (psi_i r_i - psi_i^2 / 2), psi = clip(r)
        if w is None:
            f = np.einsum("ij,ij->i", psi, r) - 0.5 * np.einsum("ij,ij->i", psi, psi)
        else:
            w = np.broadcast_to(w, psi.shape)
            f = np.einsum("ij,ij->i", w, psi * (r - 0.5 * psi))
            psi *= w
        psi /= z  # d objective / d (predicted loss), weighted
        e1 *= psi
        e2 *= psi
        grad = np.empty((th.shape[0], 5))
        grad[:, [0, 3]] = e1 @ self._design_n
        grad[:, [1, 4]] = e2 @ self._design_d
        grad[:, 2] = ee * psi.sum(axis=1)
        return f, grad


class _Coordinates:
    """Optimiser coordinates: theta with log N and log D standardised, and the objective.

    u = a - alpha log N = (a - alpha m) - (alpha s) (log N - m) / s, so the optimiser works on
    phi = (a - alpha m_N, b - beta m_D, e, alpha s_N, beta s_D). It is the same problem and the
    same grid, only better conditioned (a and alpha no longer move together), which saves
    L-BFGS iterations.
    """

    def __init__(self, log_n: np.ndarray, log_d: np.ndarray) -> None:
        self.m_n, self.s_n, self.z_n = standardize(log_n)
        self.m_d, self.s_d, self.z_d = standardize(log_d)

    def to_phi(self, theta: np.ndarray) -> np.ndarray:
        a, b, e, alpha, beta = np.moveaxis(np.asarray(theta, dtype=float), -1, 0)
        return np.stack(
            [a - alpha * self.m_n, b - beta * self.m_d, e, alpha * self.s_n, beta * self.s_d],
            axis=-1,
        )

    def to_theta(self, phi: np.ndarray) -> np.ndarray:
        p0, p1, e, p3, p4 = np.moveaxis(np.asarray(phi, dtype=float), -1, 0)
        alpha, beta = p3 / self.s_n, p4 / self.s_d
        return np.stack([p0 + alpha * self.m_n, p1 + beta * self.m_d, e, alpha, beta], axis=-1)

    def objective(
        self,
        log_loss: np.ndarray,
        delta: float,
        weights: np.ndarray | None = None,
        weight_row: np.ndarray | None = None,
    ) -> HuberLSEObjective:
        return HuberLSEObjective(self.z_n, self.z_d, log_loss, delta, weights, weight_row)


class ChinchillaLaw(GridLaw):
    """L(N, D) = E + A / N^alpha + B / D^beta by Hoffmann et al.'s approach 3 (module doc).

    Configuration and fitted attributes: see `GridLaw`. params_ is {E, A, B, alpha, beta};
    theta_ is (a, b, e, alpha, beta) with A = e^a, B = e^b, E = e^e; derived_ holds the
    allocation exponents a, b and the coefficient G of N_opt = G (C/6)^a.
    """

    law = "chinchilla"
    formula = "L(N, D) = E + A / N^alpha + B / D^beta"
    param_names: ClassVar[tuple[str, ...]] = PARAM_NAMES
    exponents: ClassVar[dict[str, str]] = {"alpha": "N", "beta": "D"}
    derived_names: ClassVar[tuple[str, ...]] = DERIVED_NAMES
    additive_offset = True
    allocation_note = (
        "compute-optimal allocation (C = 6 N D): N_opt = G (C/6)^a, D_opt = (C/6)^b / G"
    )

    def starting_grid(self) -> np.ndarray:
        return starting_grid()

    def problem(self, log_n: np.ndarray, log_d: np.ndarray) -> Problem:
        return _Coordinates(log_n, log_d)

    def theta_to_params(self, theta: np.ndarray) -> np.ndarray:
        return theta_to_params(theta)

    def params_to_theta(self, params: np.ndarray) -> np.ndarray:
        return params_to_theta(params)

    def loss_of(self, params: np.ndarray, *cols: np.ndarray) -> np.ndarray:
        return _loss(params, *cols)

    def allocation_of(
        self, params: np.ndarray, C: np.ndarray, flops_per_token: float = 6.0
    ) -> tuple[np.ndarray, np.ndarray]:
        return compute_optimal_allocation(params, C, flops_per_token)

    def identification_problems(self) -> list[str]:
        """The shared checks, and a term A / N^alpha or B / D^beta that is under TERM_SHARE
        of the loss at every corner of the runs' range: the runs do not show loss falling
        with N (or D), and the allocation would trade against a term they never saw."""
        problems = super().identification_problems()
        if "N" not in self.data_range_:
            return problems
        row = self._five(self._params_row()[None, :])
        _, A, B, alpha, beta = row[0]
        corners = np.array([(n, d) for n in self.data_range_["N"] for d in self.data_range_["D"]])
        loss = _loss(row, corners[:, 0], corners[:, 1])[0]
        with np.errstate(all="ignore"):
            for name, term, column in (
                ("A", A / corners[:, 0] ** alpha, "N"),
                ("B", B / corners[:, 1] ** beta, "D"),
            ):
                if np.all(term / loss < TERM_SHARE):
                    value = A if name == "A" else B
                    problems.append(
                        f"{name} = {value:.3g}: its term is under {TERM_SHARE:.1%} of the loss "
                        f"at every run (loss does not fall with {column} in these runs)"
                    )
        return problems

    def _five(self, params: np.ndarray) -> np.ndarray:
        """Rows of (E, A, B, alpha, beta)."""
        return params

    def derived_of(self, params: np.ndarray) -> dict[str, np.ndarray]:
        """Allocation exponents a, b and the coefficient G for params rows."""
        _, A, B, alpha, beta = np.asarray(params, dtype=float).T
        with np.errstate(all="ignore"):  # degenerate draws: inf/nan, left out of intervals
            a, b = allocation_exponents(alpha, beta)
            G = (alpha * A / (beta * B)) ** (1.0 / (alpha + beta))
        return {"a": a, "b": b, "G": G}
