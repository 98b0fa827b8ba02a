"""A fitted loss law's answer for one run: its point, its own interval and the calibrated one.

The law's own interval is its bootstrap draws times a resampled run residual: a question about
a run is answered by one run, not by the mean of many. When the law is calibrated
(fits.calibration) that interval is widened by the error its nested backtests saw at the
question's distance from the runs (for an average of forms, fits.auto, the average's draws and
its own nested errors). Both are here, once, for every caller: the Study's questions,
its backtests and the tests.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from fits.auto import calibrated
from fits.bootstrap import observation_interval
from fits.calibration import Calibration
from fits.errors import FitError
from fits.laws import LossLaw, training_compute
from fits.noise import RunNoise
from fits.power import PowerLaw

Interval = tuple[np.ndarray, np.ndarray, np.ndarray]  # point, lo, hi


def question_frame(N: Any, D: Any, U: Any = None) -> pd.DataFrame:
    """Runs or questions as the calibration sees them: N, D, C = 6 N D, and the unique tokens
    U when given (a law that prices repeated data is drawn at them).

    C is 6 N D and not the stored FLOPs, because a question's exact FLOPs are unknown.
    """
    N, D = np.asarray(N, dtype=float), np.asarray(D, dtype=float)
    frame = pd.DataFrame({"N": N, "D": D, "C": training_compute(N, D)})
    return frame if U is None else frame.assign(U=np.asarray(U, dtype=float))


def optimum(model: LossLaw, C: float | None) -> pd.DataFrame:
    """The compute-optimal (N, D) at compute C, as a question's row."""
    n_opt, d_opt = model.compute_optimal([C])
    return pd.DataFrame({"N": n_opt, "D": d_opt})


def own_interval(
    model: object, residuals: RunNoise | None, runs: pd.DataFrame | None, level: float,
    seed: int, optimal_at: float | None = None,
) -> Interval:  # fmt: skip
    """Point loss and the law's own interval: law draws times a resampled residual of the runs
    nearest the question (fits.noise).

    At the rows of `runs` (the law's columns; C for a power law), or on the compute-optimal
    frontier at compute `optimal_at` (loss laws only)."""
    point, lo, hi, _ = _own(model, residuals, runs, level, seed, optimal_at)
    return point, lo, hi


def _own(
    model: object, residuals: RunNoise | None, runs: pd.DataFrame | None, level: float,
    seed: int, optimal_at: float | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, pd.DataFrame]:  # fmt: skip
    """`own_interval`, and the questions' rows it was drawn at (the compute-optimal (N, D)
    when `runs` is None), which the calibration widens at."""
    if isinstance(model, LossLaw):
        if runs is None:
            point, draws = model.frontier(optimal_at), model.frontier_draws([optimal_at])
            runs = optimum(model, optimal_at)
        else:
            point, draws = model.predict_frame(runs), model.loss_draws(runs)
    elif isinstance(model, PowerLaw) and runs is not None:
        point, draws = model.predict(runs.C), model.predict_draws(runs.C)
    else:
        raise FitError(f"{type(model).__name__} does not predict loss at these questions")
    pools = None if residuals is None else residuals.pools(runs)
    lo, hi = observation_interval(draws, pools, level, seed)
    return np.asarray(point, dtype=float).ravel(), np.ravel(lo), np.ravel(hi), runs


def run_interval(
    model: object, residuals: RunNoise | None, calibration: Calibration | None,
    runs: pd.DataFrame | None, level: float, seed: int, optimal_at: float | None = None,
) -> Interval:  # fmt: skip
    """Point loss and its prediction interval for one run: the own interval, widened by the
    calibration when the law has one (at the compute-optimal (N, D) when `runs` is None)."""
    point, lo, hi, asked = _own(model, residuals, runs, level, seed, optimal_at)
    if calibration is None:
        return point, lo, hi
    return point, *widened(model, residuals, calibration, asked, lo, hi, seed)


def widened(
    model: object, residuals: RunNoise | None, calibration: Calibration, runs: pd.DataFrame,
    lo: np.ndarray, hi: np.ndarray, seed: int,
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """The own interval (lo, hi) at the rows of runs (N, D[, U]), calibrated: widened by
    distance from the runs and clipped (fits.auto). U, the unique tokens, goes with the
    question: the upper end held at fewer tokens is drawn at it."""
    asked = question_frame(runs.N, runs.D, runs.get("U"))
    return calibrated(model, calibration, lo, hi, asked, residuals, seed)
