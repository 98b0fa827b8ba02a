"""Kaplan et al. (2020, eq. 1.5): L(N, D) = [(N_c / N)^(alpha_N / alpha_D) + D_c / D]^alpha_D.

No irreducible term: loss falls to 0 as N and D grow. In log space the law is one
log-sum-exp, log L = alpha_D LSE(r (log N_c - log N), log D_c - log D) with r = alpha_N /
alpha_D, so it is fitted as Chinchilla is (Huber on log loss, delta 1e-3, a grid of batched
L-BFGS starts, bootstrap warm-started from the local optima: fits.gridfit), over theta =
(c, r, d, alpha_D) with c = r log N_c and d = log D_c.

Compute-optimal allocation: L is increasing in the bracket, so at C = 6 N D it is minimal
where (N_c/N)^r + 6 D_c N / C is, which gives N_opt = (r N_c^r C / (6 D_c))^(1/(1+r)) in closed
form: N_opt grows as C^(1/(1+r)) and D_opt as C^(r/(1+r)).
"""

from __future__ import annotations

import itertools
from typing import ClassVar

import numpy as np

from fits.gridfit import GridLaw, Problem, standardize
from fits.objective_blocks import mask_nonfinite, start_weights

PARAM_NAMES = ("N_c", "D_c", "alpha_N", "alpha_D")


def kaplan_loss(params: np.ndarray, N: np.ndarray, D: np.ndarray) -> np.ndarray:
    """[(N_c/N)^(alpha_N/alpha_D) + D_c/D]^alpha_D, params rows (k, 4) against N, D."""
    p = np.asarray(params, dtype=float)
    N_c, D_c, alpha_n, alpha_d = (p[..., i, None] for i in range(4))
    log_n, log_d = np.log(np.asarray(N, dtype=float)), np.log(np.asarray(D, dtype=float))
    with np.errstate(all="ignore"):  # degenerate draws give inf/nan, which intervals leave out
        r = alpha_n / alpha_d
        lse = np.logaddexp(r * (np.log(N_c) - log_n), np.log(D_c) - log_d)
        return np.exp(alpha_d * lse)


class _KaplanProblem:
    """phi = (c - r m_N, r s_N, d - m_D, alpha_D) with log N = m_N + s_N z_N (and D alike)."""

    def __init__(self, log_n: np.ndarray, log_d: np.ndarray) -> None:
        self.m_n, self.s_n, self.z_n = standardize(log_n)
        self.m_d, self.s_d, self.z_d = standardize(log_d)

    def to_phi(self, theta: np.ndarray) -> np.ndarray:
        c, r, d, q = np.moveaxis(np.asarray(theta, dtype=float), -1, 0)
        return np.stack([c - r * self.m_n, r * self.s_n, d - self.m_d, q], axis=-1)

    def to_theta(self, phi: np.ndarray) -> np.ndarray:
        p0, p1, p2, q = np.moveaxis(np.asarray(phi, dtype=float), -1, 0)
        r = p1 / self.s_n
        return np.stack([p0 + r * self.m_n, r, p2 + self.m_d, q], axis=-1)

    def objective(
        self,
        log_loss: np.ndarray,
        delta: float,
        weights: np.ndarray | None = None,
        weight_row: np.ndarray | None = None,
    ) -> _KaplanObjective:
        return _KaplanObjective(self, log_loss, delta, weights, weight_row)


class _KaplanObjective:
    """Sum of Huber losses of alpha_D LSE(u1, u2) - log L with its gradient in phi.

    u1 = phi0 - phi1 z_N, u2 = phi2 - s_D z_D; with softmax weights p1, p2 of (u1, u2) the
    prediction's gradient is alpha_D (p1, -p1 z_N, p2) and LSE for alpha_D. Weights as in
    chinchilla.HuberLSEObjective (a matrix of resampling counts with weight_row).
    """

    def __init__(
        self,
        problem: _KaplanProblem,
        log_loss: np.ndarray,
        delta: float,
        weights: np.ndarray | None,
        weight_row: np.ndarray | None,
    ) -> None:
        self.z_n, self.dz = problem.z_n, problem.s_d * problem.z_d
        self.log_loss = np.asarray(log_loss, dtype=float)
        self.delta = float(delta)
        self.weights = None if weights is None else np.asarray(weights, dtype=float)
        self.weight_row = weight_row

    def __call__(self, phi: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with np.errstate(all="ignore"):
            u1 = phi[:, 0, None] - phi[:, 1, None] * self.z_n
            u2 = phi[:, 2, None] - self.dz
            lse = np.logaddexp(u1, u2)
            p1 = np.exp(u1 - lse)
            q = phi[:, 3, None]
            r = q * lse - self.log_loss
            psi = np.clip(r, -self.delta, self.delta)
            w = start_weights(self.weights, self.weight_row, rows)
            if w is None:
                w = np.ones_like(r)
            f = np.einsum("ij,ij->i", w, psi * (r - 0.5 * psi))
            psi = psi * w
            g = np.stack(
                [
                    (q * psi * p1).sum(axis=1),
                    -(q * psi * p1 * self.z_n).sum(axis=1),
                    (q * psi * (1.0 - p1)).sum(axis=1),
                    (psi * lse).sum(axis=1),
                ],
                axis=1,
            )
        return mask_nonfinite(f, g)


class KaplanLaw(GridLaw):
    """L(N, D) = [(N_c / N)^(alpha_N / alpha_D) + D_c / D]^alpha_D (see the module docstring).

    Configuration and fitted attributes: see `GridLaw`. params_ is {N_c, D_c, alpha_N,
    alpha_D}; theta_ is (c, r, d, alpha_D); derived_ holds a, the exponent of N_opt ~ C^a.
    Starting grid: r in {0.25, 0.5, 1, 2, 4}, alpha_D in {0.05, 0.1, 0.2, 0.4}, log N_c and
    log D_c in {10, 17.5, 25, 32.5, 40} (500 starts).
    """

    law = "kaplan"
    formula = "L(N, D) = [(N_c / N)^(alpha_N / alpha_D) + D_c / D]^alpha_D"
    param_names: ClassVar[tuple[str, ...]] = PARAM_NAMES
    exponents: ClassVar[dict[str, str]] = {"alpha_N": "N", "alpha_D": "D"}
    derived_names: ClassVar[tuple[str, ...]] = ("a",)
    allocation_note = (
        "compute-optimal allocation (C = 6 N D): N_opt = (r N_c^r C / (6 D_c))^a, "
        "a = 1 / (1 + r), r = alpha_N / alpha_D"
    )

    def starting_grid(self) -> np.ndarray:
        logs = np.linspace(10.0, 40.0, 5)
        grid = itertools.product((0.25, 0.5, 1.0, 2.0, 4.0), (0.05, 0.1, 0.2, 0.4), logs, logs)
        return np.array([(r * ln, r, ld, q) for r, q, ln, ld in grid])

    def problem(self, log_n: np.ndarray, log_d: np.ndarray) -> Problem:
        return _KaplanProblem(log_n, log_d)

    def theta_to_params(self, theta: np.ndarray) -> np.ndarray:
        c, r, d, q = np.moveaxis(np.asarray(theta, dtype=float), -1, 0)
        with np.errstate(all="ignore"):
            return np.stack([np.exp(c / r), np.exp(d), r * q, q], axis=-1)

    def params_to_theta(self, params: np.ndarray) -> np.ndarray:
        N_c, D_c, alpha_n, alpha_d = np.moveaxis(np.asarray(params, dtype=float), -1, 0)
        r = alpha_n / alpha_d
        return np.stack([r * np.log(N_c), r, np.log(D_c), alpha_d], axis=-1)

    def loss_of(self, params: np.ndarray, *cols: np.ndarray) -> np.ndarray:
        return kaplan_loss(params, *cols)

    def allocation_of(
        self, params: np.ndarray, C: np.ndarray, flops_per_token: float = 6.0
    ) -> tuple[np.ndarray, np.ndarray]:
        p = np.asarray(params, dtype=float)
        N_c, D_c, alpha_n, alpha_d = (p[..., i, None] for i in range(4))
        log_x = np.log(np.asarray(C, dtype=float).reshape(-1) / flops_per_token)
        with np.errstate(all="ignore"):
            r = alpha_n / alpha_d
            log_n = (np.log(r) + r * np.log(N_c) + log_x - np.log(D_c)) / (1.0 + r)
            return np.exp(log_n), np.exp(log_x - log_n)

    def derived_of(self, params: np.ndarray) -> dict[str, np.ndarray]:
        p = np.asarray(params, dtype=float)
        with np.errstate(all="ignore"):
            return {"a": 1.0 / (1.0 + p[:, 2] / p[:, 3])}
