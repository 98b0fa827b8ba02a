"""Adaptive design: which runs to do next so that the target's calibrated interval narrows most.

The planner is a pure function of the runs already done: it fits the Chinchilla law on them
(the one form whose Jacobian the criterion below knows), calibrates it by nested backtests
(fits.extrapolation.assess), takes the calibration's kappa, and then scores candidate runs
by an analytic design criterion instead of simulating their outcomes:

- Parameter variance (delta method). theta = (log A, log B, log E, alpha, beta). Each run
  contributes J J^T / sigma^2 to the Gauss-Newton information, J = d log L / d theta at its
  (N, D). sigma^2 is the variance of the Huber (delta = 1e-3, in effect least-absolute)
  estimator per run: pi/2 times the squared robust (MAD) scale of the log residuals. A weak
  prior (PRIOR_SD) keeps directions the runs cannot see finite and large. The target's log
  loss then has variance g^T Sigma g, g its gradient in theta.
- The law's own interval half-width in log loss, sqrt(z^2 g^T Sigma g + r^2), with r the
  level-quantile of the runs' |log residual| (a question about one run keeps its scatter), as
  the Study's draws-times-residual interval does.
- Calibration (box): each side moved out by max_k kappa_k d_k(target), d_k = decades outside the
  runs' box in log C, log N, log D (fits.extrapolation.BoxCalibration.extra). A run beyond the
  box moves it toward the target and shrinks d_k.

The relative width of the target's interval is then 2 sinh(h) for half-width h. A candidate's
value is the drop in width per unit cost when it is added (its J enters the information by
Sherman-Morrison, its (N, D) the box); a round is chosen greedily: the best candidate, then
the best given that one, and so on. A size the runs already pin down adds almost no
information and no distance, so it loses to one that does; a large run has to buy
proportionally more. Nothing is random, candidates are taken in a stable order (cost, N, D,
then input order), so the same runs in give the same picks out.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from statistics import NormalDist
from typing import Any

import numpy as np
import pandas as pd

from fits import ChinchillaLaw, FitError, compute_optimal_allocation
from fits.chinchilla import theta_jacobian, theta_loss, theta_to_params
from fits.errors import UnidentifiedFit
from fits.extrapolation import COORDS, BoxCalibration, assess, decades_outside, widening
from fits.laws import refit_predict, training_compute
from scaling.errors import ScalingError
from scaling.sweeps.rounds import RoundPlan, Target, greedy_round

# The forms whose Jacobian the design criterion knows. Not "auto": the Study's auto is the
# average of every form, which the criterion cannot differentiate.
DESIGN_LAWS = ("chinchilla",)
PRIOR_SD = np.array([10.0, 10.0, 10.0, 1.0, 1.0])  # weak prior on (log A, log B, log E, a, b)
STEP = 1e-6  # central-difference step in theta for the gradient of the target
LEVEL = 0.90  # the interval the design narrows


@dataclass(frozen=True)
class LawState:
    """What the design criterion needs from a fit: theta, run noise and the calibration."""

    model: ChinchillaLaw
    form: str
    sigma: float  # per-run standard deviation of the estimator's log-loss residual
    scatter: float  # level-quantile of |log residual|: the in-data half-width of one run
    kappa: np.ndarray  # calibration: kappa_k per decade outside, in COORDS order (0: none)
    calibrated: bool

    def describe(self) -> str:
        along = "/".join(f"{k:.3g}" for k in self.kappa)
        kappa = f"kappa C/N/D {along} per decade" if self.calibrated else "not calibrated"
        return f"law {self.form} ({kappa})"

    def to_record(self) -> dict[str, Any]:
        """JSON-ready: the law's own record, and theta itself beside it (a reload derives
        theta from the params, which can move its last bits)."""
        design = {"form": self.form, "theta": self.model.theta_.tolist(), "sigma": self.sigma,
                  "scatter": self.scatter, "kappa": self.kappa.tolist(),
                  "calibrated": self.calibrated}  # fmt: skip
        return {**self.model.to_dict(), "design": design}

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> LawState:
        """Inverse of to_record: the same numbers, bit for bit."""
        design = record["design"]
        model = ChinchillaLaw.from_dict(record)
        model.theta_ = np.array(design["theta"], dtype=float)
        return cls(model, str(design["form"]), float(design["sigma"]),
                   float(design["scatter"]), np.array(design["kappa"], dtype=float),
                   bool(design["calibrated"]))  # fmt: skip


def fit_law(
    runs: pd.DataFrame,
    law: str = "chinchilla",
    level: float = LEVEL,
    warm: Sequence[ChinchillaLaw] = (),
) -> LawState:
    """Fit the loss law on runs (columns N, D, loss) and calibrate it, without bootstrap.

    warm: start from these fits' local optima (a quick refit) instead of the full grid, for
    replays that refit many times; the planner in a sweep always fits from the grid.
    """
    if law not in DESIGN_LAWS:
        raise ScalingError(f"adaptive design supports law {' or '.join(DESIGN_LAWS)}, got {law!r}")
    if runs.empty:
        raise ScalingError(
            "cannot fit the law: no run of the sweep finished with a loss (diverged and failed "
            "runs have none)"
        )
    runs = runs.reset_index(drop=True)
    runs = runs.assign(C=training_compute(runs.N, runs.D))
    try:
        if warm:
            model = _starts_of(warm).quick_refit(runs)
        else:
            model = ChinchillaLaw(n_bootstrap=0, level=level).fit_frame(runs)
    except FitError as exc:  # a sweep offers no --force: say only why
        why = "; ".join(exc.problems) if isinstance(exc, UnidentifiedFit) else str(exc)
        raise ScalingError(f"cannot fit the law: {why}") from exc
    _, _, calibration = assess(runs, {law: partial(refit_predict, model)}, level)
    resid = np.log(runs.loss.to_numpy()) - np.log(model.predict_frame(runs))
    mad = float(np.median(np.abs(resid - np.median(resid)))) * 1.4826
    kappa = _kappa(calibration)
    return LawState(
        model,
        law,
        sigma=math.sqrt(math.pi / 2) * max(mad, 1e-6),
        scatter=float(np.quantile(np.abs(resid), level)),
        kappa=kappa,
        calibrated=calibration is not None and math.isfinite(calibration.kappa),
    )


def plan_round(
    runs: pd.DataFrame,
    candidates: pd.DataFrame,
    target: Target,
    law: str | LawState = "chinchilla",
    round_size: int = 4,
    budget: float = math.inf,
    level: float = LEVEL,
) -> RoundPlan:
    """The next round: up to round_size candidates, greedy on width reduction per unit cost.

    runs: the runs done (N, D, loss); candidates: runs one could do (N, D, cost), not among
    them; budget: cost left (picks stop when no candidate fits in it, or none narrows the
    width). A LawState (from fit_law) may be given instead of a law name to skip the fit.
    """
    if target.on_lr_law:
        raise ScalingError("an lr target is planned on the LR law (scaling.sweeps.adaptive_lr)")
    state = law if isinstance(law, LawState) else fit_law(runs, law, level)
    design = _Design(state, runs, target, level)
    width_now = design.width()
    picks = greedy_round(design, candidates, round_size, budget)
    return RoundPlan(picks, width_now, design.estimate(), state)


def expected_width(
    runs: pd.DataFrame, target: Target, law: LawState, level: float = LEVEL
) -> float:
    """The target's relative interval width (hi - lo) / estimate by the design criterion."""
    return _Design(law, runs, target, level).width()


class _Design:
    """The information matrix and box of a set of runs, and the target's width given them."""

    def __init__(self, law: LawState, runs: pd.DataFrame, target: Target, level: float) -> None:
        self.law = law
        self.theta = law.model.theta_
        self.z = NormalDist().inv_cdf(0.5 + level / 2)
        self.target_n, self.target_d = _target_points(self.theta, target)
        self.target_x = _log_coords(self.target_n, self.target_d)  # (3, T)
        self.g = _target_gradient(self.theta, target).mean(axis=0)  # (5,): of the mean
        self.scatter = law.scatter / math.sqrt(self.target_n.size)  # a mean of T runs
        J = theta_jacobian(self.theta, runs.N.to_numpy(float), runs.D.to_numpy(float))
        info = J.T @ J / law.sigma**2 + np.diag(PRIOR_SD**-2.0)
        self.cov = np.linalg.inv(info)
        x = _log_coords(runs.N.to_numpy(float), runs.D.to_numpy(float))
        self.lo, self.hi = x.min(axis=1), x.max(axis=1)

    def estimate(self) -> float:
        loss = theta_loss(self.theta, self.target_n, self.target_d)
        return float(np.mean(loss))

    def _width(self, var: np.ndarray, extra: np.ndarray) -> np.ndarray:
        """2 sinh(half-width in log loss); extra: each target point's widening (axis 0),
        averaged."""
        h = np.sqrt(self.z**2 * np.maximum(var, 0.0) + self.scatter**2)
        return 2.0 * np.sinh(h + extra.mean(axis=0))

    def width(self) -> float:
        var = self.g @ self.cov @ self.g
        extra = widening(self.law.kappa, decades_outside(self.target_x, self.lo[:, None],
                                                         self.hi[:, None]))  # fmt: skip
        return float(self._width(np.asarray(var), extra))

    def widths_with(self, N: np.ndarray, D: np.ndarray) -> np.ndarray:
        """Width after adding each candidate alone: Sherman-Morrison and the stretched box."""
        J = theta_jacobian(self.theta, N, D)  # (M, 5)
        cJ = J @ self.cov  # (M, 5)
        q = np.einsum("mi,mi->m", cJ, J)
        var = self.g @ self.cov @ self.g - (cJ @ self.g) ** 2 / (self.law.sigma**2 + q)
        x = _log_coords(N, D)  # (3, M)
        lo = np.minimum(self.lo[:, None], x)[:, None, :]  # (3, 1, M)
        hi = np.maximum(self.hi[:, None], x)[:, None, :]
        extra = widening(self.law.kappa, decades_outside(self.target_x[:, :, None], lo, hi))
        return self._width(var, extra)

    def add(self, N: float, D: float) -> None:
        j = theta_jacobian(self.theta, np.array([N]), np.array([D]))[0]
        cj = self.cov @ j
        self.cov = self.cov - np.outer(cj, cj) / (self.law.sigma**2 + j @ cj)
        x = _log_coords(np.array([N]), np.array([D]))[:, 0]
        self.lo, self.hi = np.minimum(self.lo, x), np.maximum(self.hi, x)


def _target_points(theta: np.ndarray, target: Target) -> tuple[np.ndarray, np.ndarray]:
    """(N, D) of the question: the given points, or the compute-optimal allocation."""
    if not target.at_compute:
        return np.array(target.N), np.array(target.D)
    assert target.compute is not None
    n_opt, d_opt = compute_optimal_allocation(theta_to_params(theta), np.array([target.compute]))
    return np.ravel(n_opt), np.ravel(d_opt)


def _target_gradient(theta: np.ndarray, target: Target) -> np.ndarray:
    """d log L(target) / d theta per target point, (T, 5); the optimum moves with theta."""
    if not target.at_compute:
        return theta_jacobian(theta, np.array(target.N), np.array(target.D))
    grad = np.empty((1, 5))
    for i in range(5):
        step = np.zeros(5)
        step[i] = STEP
        up = np.log(theta_loss(theta + step, *_target_points(theta + step, target)))
        down = np.log(theta_loss(theta - step, *_target_points(theta - step, target)))
        grad[0, i] = (up[0] - down[0]) / (2 * STEP)
    return grad


def _log_coords(N: np.ndarray, D: np.ndarray) -> np.ndarray:
    """log10 of C = 6 N D, N and D as rows in COORDS order: (3, M)."""
    x = {"C": np.log10(training_compute(N, D)), "N": np.log10(N), "D": np.log10(D)}
    return np.stack([x[c] for c in COORDS])


def _starts_of(models: Sequence[ChinchillaLaw]) -> ChinchillaLaw:
    """The first fit, carrying the local optima of all of them as starts for a quick refit."""
    model = copy.copy(models[0])
    model.local_optima_ = np.vstack([m.local_optima_ for m in models])
    return model


def _kappa(calibration: BoxCalibration | None) -> np.ndarray:
    """The calibration's kappa_k in COORDS order; 0 where none could be measured (the width
    is then the law's)."""
    if calibration is None:
        return np.zeros(len(COORDS))
    kappa = np.array([calibration.along[c] for c in COORDS])
    return np.where(np.isfinite(kappa), kappa, 0.0)
