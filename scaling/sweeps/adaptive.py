"""Adaptive design: which runs to do next so that the target's calibrated interval narrows most.

The planner is a pure function of the runs already done: it fits the Chinchilla law on them
(the one form whose Jacobian the criterion below knows), calibrates it by nested backtests
as every law is calibrated (fits.extrapolation.nested_backtest, fits.calibration.calibrate),
takes the calibration's rates, and then scores candidate runs by an analytic design
criterion instead of simulating their outcomes:

- Parameter variance (delta method). theta = (log A, log B, log E, alpha, beta). Each run
  contributes J J^T / sigma^2 to the Gauss-Newton information, J = d log L / d theta at its
  (N, D). sigma^2 is the variance of the Huber (delta = 1e-3, in effect least-absolute)
  estimator per run: pi/2 times the squared robust (MAD) scale of the log residuals. A weak
  prior (PRIOR_SD) keeps directions the runs cannot see finite and large. The target's log
  loss then has variance g^T Sigma g, g its gradient in theta.
- The law's own interval half-width in log loss, sqrt(z^2 g^T Sigma g + r^2), with r the
  level-quantile of the runs' |log residual| (a question about one run keeps its scatter), as
  the Study's draws-times-residual interval does.
- Calibration: the lower end moved out by |lo_rate| d, the upper by hi_rate d, d the
  target's decades outside the runs' convex hull in (log10 N, log10 D)
  (fits.calibration.Calibration.widen). A run beyond the hull toward the target shrinks d.

The relative width of the target's interval is then e^(h + hi_rate d) - e^(-h + lo_rate d)
for half-width h (2 sinh(h) inside the hull). A candidate's value is the drop in width per
unit cost when it is added (its J enters the information by Sherman-Morrison, its (N, D) the
hull); a round is chosen greedily: the best candidate, then
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

import numpy as np
import pandas as pd

from fits import ChinchillaLaw, FitError, compute_optimal_allocation
from fits.calibration import calibrate, hull_distance, hull_vertices
from fits.chinchilla import theta_jacobian, theta_loss, theta_to_params
from fits.extrapolation import nested_backtest
from fits.laws import refit_predict, training_compute
from scaling.errors import ScalingError
from scaling.sweeps.rounds import RoundPlan, Target, greedy_round

# The forms whose Jacobian the design criterion knows. Not "auto": the Study's auto is the
# average of every form, which the criterion cannot differentiate.
DESIGN_LAWS = ("chinchilla",)
PRIOR_SD = np.array([10.0, 10.0, 10.0, 1.0, 1.0])  # weak prior on (log A, log B, log E, a, b)
STEP = 1e-6  # central-difference step in theta for the gradient of the target


@dataclass(frozen=True)
class LawState:
    """What the design criterion needs from a fit: theta, run noise and the calibration."""

    model: ChinchillaLaw
    form: str
    sigma: float  # per-run standard deviation of the estimator's log-loss residual
    scatter: float  # level-quantile of |log residual|: the in-data half-width of one run
    lo_rate: float  # calibration: log-loss widening per decade outside the hull, below (<= 0)
    hi_rate: float  # and above (>= 0); both 0 when not calibrated
    calibrated: bool

    def describe(self) -> str:
        rates = (f"widened {self.lo_rate:+.3g}/{self.hi_rate:+.3g} per decade outside the runs'"
                 " hull" if self.calibrated else "not calibrated")  # fmt: skip
        return f"law {self.form} ({rates})"


def fit_law(
    runs: pd.DataFrame,
    law: str = "chinchilla",
    level: float = 0.90,
    warm: Sequence[ChinchillaLaw] = (),
) -> LawState:
    """Fit the loss law on runs (columns N, D, loss) and calibrate it, without bootstrap.

    warm: start from these fits' local optima (a quick refit) instead of the full grid, for
    replays that refit many times; the planner in a sweep always fits from the grid.
    """
    if law not in DESIGN_LAWS:
        raise ScalingError(f"adaptive design supports law {' or '.join(DESIGN_LAWS)}, got {law!r}")
    runs = runs.reset_index(drop=True)
    runs = runs.assign(C=training_compute(runs.N, runs.D))
    try:
        if warm:
            model = _starts_of(warm).quick_refit(runs)
        else:
            model = ChinchillaLaw(n_bootstrap=0, level=level).fit_frame(runs)
    except FitError as exc:
        raise ScalingError(f"cannot fit the law: {exc}") from exc
    nested = nested_backtest(runs, partial(refit_predict, model), level)
    calibration = None if nested.empty else calibrate(nested, runs, level)
    rates = (0.0, 0.0) if calibration is None else (calibration.lo_rate, calibration.hi_rate)
    resid = np.log(runs.loss.to_numpy()) - np.log(model.predict_frame(runs))
    mad = float(np.median(np.abs(resid - np.median(resid)))) * 1.4826
    return LawState(
        model,
        law,
        sigma=math.sqrt(math.pi / 2) * max(mad, 1e-6),
        scatter=float(np.quantile(np.abs(resid), level)),
        lo_rate=rates[0] if math.isfinite(rates[0]) else 0.0,
        hi_rate=rates[1] if math.isfinite(rates[1]) else 0.0,
        calibrated=calibration is not None and all(map(math.isfinite, rates)),
    )


def plan_round(
    runs: pd.DataFrame,
    candidates: pd.DataFrame,
    target: Target,
    law: str | LawState = "chinchilla",
    round_size: int = 4,
    budget: float = math.inf,
    level: float = 0.90,
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


def expected_width(runs: pd.DataFrame, target: Target, law: LawState, level: float = 0.90) -> float:
    """The target's relative interval width (hi - lo) / estimate by the design criterion."""
    return _Design(law, runs, target, level).width()


def expected_log_bounds(
    runs: pd.DataFrame, target: Target, law: LawState, level: float = 0.90
) -> tuple[float, float]:
    """The target's interval by the design criterion: log(lo / estimate), log(hi / estimate)."""
    return _Design(law, runs, target, level).log_bounds()


class _Design:
    """The information matrix and hull of a set of runs, and the target's width given them."""

    def __init__(self, law: LawState, runs: pd.DataFrame, target: Target, level: float) -> None:
        self.law = law
        self.theta = law.model.theta_
        self.z = NormalDist().inv_cdf(0.5 + level / 2)
        self.target_n, self.target_d = _target_points(self.theta, target)
        self.target_x = _log_points(self.target_n, self.target_d)  # (T, 2)
        self.g = _target_gradient(self.theta, target).mean(axis=0)  # (5,): of the mean
        self.scatter = law.scatter / math.sqrt(self.target_n.size)  # a mean of T runs
        J = theta_jacobian(self.theta, runs.N.to_numpy(float), runs.D.to_numpy(float))
        info = J.T @ J / law.sigma**2 + np.diag(PRIOR_SD**-2.0)
        self.cov = np.linalg.inv(info)
        self.points = _log_points(runs.N.to_numpy(float), runs.D.to_numpy(float))  # (n, 2)

    def estimate(self) -> float:
        loss = theta_loss(self.theta, self.target_n, self.target_d)
        return float(np.mean(loss))

    def _log_bounds(self, var: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The interval's ends in log loss about the estimate, -h + lo_rate d and
        h + hi_rate d: h the law's half-width, d the target points' mean decades outside."""
        h = np.sqrt(self.z**2 * np.maximum(var, 0.0) + self.scatter**2)
        return -h + self.law.lo_rate * d, h + self.law.hi_rate * d

    def _width(self, var: np.ndarray, d: np.ndarray) -> np.ndarray:
        lo, hi = self._log_bounds(var, d)
        return np.exp(hi) - np.exp(lo)

    def log_bounds(self) -> tuple[float, float]:
        var = np.asarray(self.g @ self.cov @ self.g)
        lo, hi = self._log_bounds(var, np.asarray(self._distance(self.points)))
        return float(lo), float(hi)

    def _distance(self, points: np.ndarray) -> float:
        """The target points' mean decades outside the hull of `points` (n, 2)."""
        return float(hull_distance(hull_vertices(points), self.target_x).mean())

    def width(self) -> float:
        var = self.g @ self.cov @ self.g
        return float(self._width(np.asarray(var), np.asarray(self._distance(self.points))))

    def widths_with(self, N: np.ndarray, D: np.ndarray) -> np.ndarray:
        """Width after adding each candidate alone: Sherman-Morrison and the grown hull."""
        J = theta_jacobian(self.theta, N, D)  # (M, 5)
        cJ = J @ self.cov  # (M, 5)
        q = np.einsum("mi,mi->m", cJ, J)
        var = self.g @ self.cov @ self.g - (cJ @ self.g) ** 2 / (self.law.sigma**2 + q)
        d = np.array([self._distance(np.vstack([self.points, x])) for x in _log_points(N, D)])
        return self._width(var, d)

    def add(self, N: float, D: float) -> None:
        j = theta_jacobian(self.theta, np.array([N]), np.array([D]))[0]
        cj = self.cov @ j
        self.cov = self.cov - np.outer(cj, cj) / (self.law.sigma**2 + j @ cj)
        self.points = np.vstack([self.points, _log_points(np.array([N]), np.array([D]))])


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


def _log_points(N: np.ndarray, D: np.ndarray) -> np.ndarray:
    """(M, 2) points log10 N, log10 D: the calibration's coordinates."""
    return np.column_stack([np.log10(N), np.log10(D)])


def _starts_of(models: Sequence[ChinchillaLaw]) -> ChinchillaLaw:
    """The first fit, carrying the local optima of all of them as starts for a quick refit."""
    model = copy.copy(models[0])
    model.local_optima_ = np.vstack([m.local_optima_ for m in models])
    return model
