"""Chinchilla with one exponent, E + A / N^alpha + B / D^alpha (Gadre et al.'s over-training law).

Fitted as `fits.chinchilla.ChinchillaLaw` (the same objective with beta tied to alpha, from the
published grid without its beta axis).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from fits.chinchilla import (
    ChinchillaLaw,
    HuberLSEObjective,
    _loss,
    compute_optimal_allocation,
    params_to_theta,
    starting_grid,
    theta_to_params,
)
from fits.gridfit import Problem


class _SharedCoordinates:
    """Coordinates of the alpha = beta law: one scale s for log N and log D keeps the tie.

    theta = (a, b, e, alpha); phi = (a - alpha m_N, b - alpha m_D, e, alpha s). The objective
    is the Chinchilla one at phi5 = (phi0, phi1, phi2, phi3, phi3), whose gradient folds back
    by adding the two exponent components.
    """

    def __init__(self, log_n: np.ndarray, log_d: np.ndarray) -> None:
        self.m_n, self.m_d = float(log_n.mean()), float(log_d.mean())
        self.s = float(np.sqrt((log_n.var() + log_d.var()) / 2)) or 1.0
        self.z_n = (log_n - self.m_n) / self.s
        self.z_d = (log_d - self.m_d) / self.s

    def to_phi(self, theta: np.ndarray) -> np.ndarray:
        a, b, e, alpha = np.moveaxis(np.asarray(theta, dtype=float), -1, 0)
        return np.stack([a - alpha * self.m_n, b - alpha * self.m_d, e, alpha * self.s], axis=-1)

    def to_theta(self, phi: np.ndarray) -> np.ndarray:
        p0, p1, e, p3 = np.moveaxis(np.asarray(phi, dtype=float), -1, 0)
        alpha = p3 / self.s
        return np.stack([p0 + alpha * self.m_n, p1 + alpha * self.m_d, e, alpha], axis=-1)

    def objective(
        self,
        log_loss: np.ndarray,
        delta: float,
        weights: np.ndarray | None = None,
        weight_row: np.ndarray | None = None,
    ) -> _TiedObjective:
        return _TiedObjective(
            HuberLSEObjective(self.z_n, self.z_d, log_loss, delta, weights, weight_row)
        )


class _TiedObjective:
    """The Chinchilla objective with beta tied to alpha (phi3 used for both exponents)."""

    def __init__(self, full: HuberLSEObjective) -> None:
        self.full = full

    def __call__(self, phi: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        f, g = self.full(phi[:, [0, 1, 2, 3, 3]], rows)
        tied = g[:, :4].copy()
        tied[:, 3] += g[:, 4]
        return f, tied


class SharedChinchillaLaw(ChinchillaLaw):
    """E + A / N^alpha + B / D^alpha: Chinchilla with one exponent (alpha = beta).

    This is Gadre et al.'s (2024) over-training law L(C, M) = E + (a M^eta + b M^-eta) C^-eta
    in N and D: with C = 6 N D and token multiplier M = D / N, N = (C / 6M)^(1/2), so
    eta = alpha / 2, a = A 6^eta and b = B 6^eta (`gadre_params`, `loss_at_multiplier`).
    One exponent makes the compute-optimal M constant: N_opt and D_opt both grow as C^(1/2).
    The starting grid is the published one without the beta axis (900 starts).
    """

    law = "chinchilla-shared"
    formula = "L(N, D) = E + A / N^alpha + B / D^alpha"
    param_names: ClassVar[tuple[str, ...]] = ("E", "A", "B", "alpha")
    exponents: ClassVar[dict[str, str]] = {"alpha": "N and D"}
    derived_names: ClassVar[tuple[str, ...]] = ("G", "eta", "M_opt")
    allocation_note = (
        "compute-optimal allocation: N_opt = G (C/6)^(1/2), M_opt = D_opt / N_opt; "
        "Gadre et al.'s eta = alpha / 2"
    )

    def starting_grid(self) -> np.ndarray:
        return np.unique(starting_grid()[:, :4], axis=0)

    def problem(self, log_n: np.ndarray, log_d: np.ndarray) -> Problem:
        return _SharedCoordinates(log_n, log_d)

    def theta_to_params(self, theta: np.ndarray) -> np.ndarray:
        return theta_to_params(np.asarray(theta, dtype=float)[..., [0, 1, 2, 3, 3]])[..., :4]

    def params_to_theta(self, params: np.ndarray) -> np.ndarray:
        return params_to_theta(np.asarray(params, dtype=float)[..., [0, 1, 2, 3, 3]])[..., :4]

    def _five(self, params: np.ndarray) -> np.ndarray:
        return _untie(params)

    def loss_of(self, params: np.ndarray, *cols: np.ndarray) -> np.ndarray:
        return _loss(_untie(params), *cols)

    def allocation_of(
        self, params: np.ndarray, C: np.ndarray, flops_per_token: float = 6.0
    ) -> tuple[np.ndarray, np.ndarray]:
        return compute_optimal_allocation(_untie(params), C, flops_per_token)

    def derived_of(self, params: np.ndarray) -> dict[str, np.ndarray]:
        G = super().derived_of(_untie(params))["G"]
        with np.errstate(all="ignore"):
            return {"G": G, "eta": np.asarray(params, float)[:, 3] / 2, "M_opt": G**-2.0}

    def gadre_params(self) -> dict[str, float]:
        """The fit in Gadre et al.'s terms: E, a, b, eta of E + (a M^eta + b M^-eta) C^-eta."""
        E, A, B, alpha = self._params_row()
        eta = alpha / 2
        return {"E": E, "a": A * 6.0**eta, "b": B * 6.0**eta, "eta": eta}

    def loss_at_multiplier(self, C: Any, M: Any) -> np.ndarray:
        """Loss at compute C = 6 N D and token multiplier M = D / N, in Gadre et al.'s form."""
        p = self.gadre_params()
        C, M = np.broadcast_arrays(np.asarray(C, dtype=float), np.asarray(M, dtype=float))
        return p["E"] + (p["a"] * M ** p["eta"] + p["b"] * M ** -p["eta"]) * C ** -p["eta"]


def _untie(params: np.ndarray) -> np.ndarray:
    """(E, A, B, alpha) rows -> (E, A, B, alpha, alpha) rows."""
    return np.asarray(params, dtype=float)[..., [0, 1, 2, 3, 3]]
