"""A fitted loss law's answer for one run: its point, its own interval and the calibrated one.

The law's own interval is its bootstrap draws times a resampled run residual: a question about
a run is answered by one run, not by the mean of many. When the law is calibrated
(fits.calibration) that interval is widened by the error its nested backtests saw at the
question's distance from the runs (for an average of forms, fits.auto, the average's draws and
its own nested errors). Both are here, once, for every caller: the Study's questions,
its backtests and the tests.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from fits.base import holding_point
from fits.bootstrap import observation_interval
from fits.calibration import Calibration
from fits.errors import FitError
from fits.laws import LossLaw, training_compute
from fits.noise import RunNoise, local_quantile, places, repeats
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

    At the rows of `runs` (the law's columns; a power law's x), or on the compute-optimal
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
    elif isinstance(model, PowerLaw) and runs is not None:  # at the runs' column of its x
        point, draws = model.predict(runs), model.predict_draws(runs)
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
    return point, *widened(model, residuals, calibration, asked, point, lo, hi, level, seed)


def widened(
    model: object, residuals: RunNoise | None, calibration: Calibration | None,
    runs: pd.DataFrame, point: np.ndarray, lo: np.ndarray, hi: np.ndarray, level: float,
    seed: int,
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """The own interval (lo, hi) about `point` at the rows of runs (N, D[, U]): calibrated
    when the law has a calibration (widened by distance from the runs and clipped:
    `calibrated`), its upper end then at most what the runs themselves allow
    (`no_worse_than_runs`). U, the unique tokens, goes with the question: the upper end held
    at fewer tokens is drawn at it; a lower end on repeated tokens is at least the one on fresh
    tokens (`no_better_than_fresh`). The interval holds its point (`holding_point`) unless
    the point is above ln vocab, which the ends never are."""
    asked = question_frame(runs.N, runs.D, runs.get("U"))
    lo, hi = calibrated(model, calibration, lo, hi, asked, residuals, seed)
    if isinstance(model, LossLaw):
        lo = no_better_than_fresh(model, residuals, calibration, asked, level, seed, point, lo)
        if residuals is not None:
            hi = no_worse_than_runs(residuals, asked, level, point, hi)
        hi = no_worse_than_one_pass(model, residuals, calibration, asked, level, seed, point, hi)
    lo, hi = holding_point(point, lo, hi)
    return (lo, hi) if calibration is None else calibration.clip(lo, hi)


def no_better_than_fresh(
    model: LossLaw, residuals: RunNoise | None, calibration: Calibration | None,
    asked: pd.DataFrame, level: float, seed: int, point: np.ndarray, lo: np.ndarray,
) -> np.ndarray:  # fmt: skip
    """Lower ends `lo` at the rows of asked on repeated tokens (D > U), each at least the
    calibrated lower end of the same N and D on fresh tokens, never above the point.

    Physics: repeated tokens are worth at most fresh ones (Muennighoff et al. 2023), so N
    parameters trained on D tokens drawn from U unique lose no less than on D fresh tokens (on
    Muennighoff's shipped runs 1,265 of 1,268 pairs of a repeating run and a fresh run at least
    as large and as long agree; the others by -3.6%, -0.17% and -0.16%, run noise). It binds
    where the repeated questions' calibration is wide: their kind's spread is set by laws whose
    repetition terms run away past the repeats they were fitted on (fits.calibration)."""
    repeated = repeats(asked)
    if not repeated.any():
        return lo
    fresh = question_frame(asked.N[repeated], asked.D[repeated])
    _, fresh_lo, fresh_hi = own_interval(model, residuals, fresh, level, seed)
    if calibration is not None:
        fresh_lo, _ = calibration.widen(fresh_lo, fresh_hi, fresh)
    out = np.array(lo, dtype=float)
    out[repeated] = np.minimum(np.maximum(out[repeated], fresh_lo), np.asarray(point)[repeated])
    return out


def no_worse_than_one_pass(
    model: LossLaw, residuals: RunNoise | None, calibration: Calibration | None,
    asked: pd.DataFrame, level: float, seed: int, point: np.ndarray, hi: np.ndarray,
) -> np.ndarray:  # fmt: skip
    """Upper ends `hi` at the rows of asked on repeated tokens (D > U), each at most the upper
    end `widened` gives one pass of the same data (N on U fresh tokens), never below the point.

    Physics: no repeating run ends above one pass of its data (0 of Muennighoff's 34 pairs),
    and that pass is bounded as any fresh question is (fewer tokens, the runs it dominates).
    The grid of `falling_in_tokens` stops below U and the runs' bound takes fresh questions
    only, so without this a repeated question's upper end could stand above its one pass's
    (Muennighoff's runs at ten times their largest N, 100 epochs: 3.33 against 2.82)."""
    repeated = repeats(asked)
    if not repeated.any():
        return hi
    once = question_frame(asked.N[repeated], asked.U[repeated])
    once_point, once_lo, once_hi = own_interval(model, residuals, once, level, seed)
    _, once_hi = widened(
        model, residuals, calibration, once, once_point, once_lo, once_hi, level, seed
    )
    out = np.array(hi, dtype=float)
    out[repeated] = np.maximum(np.minimum(out[repeated], once_hi), np.asarray(point)[repeated])
    return out


def calibrated(
    model: object,
    calibration: Calibration | None,
    lo: np.ndarray,
    hi: np.ndarray,
    runs: pd.DataFrame,
    residuals: RunNoise | None,
    seed: int,
) -> tuple[np.ndarray, np.ndarray]:
    """The calibrated interval at the rows of runs: the law's own interval (lo, hi) widened and
    clipped by the calibration, the upper end then at most its value at fewer tokens
    (falling_in_tokens); unchanged without a calibration."""
    if calibration is None:
        return lo, hi
    lo, hi = calibration.widen(lo, hi, runs)
    if isinstance(model, LossLaw):
        hi = falling_in_tokens(model, calibration, runs, residuals, seed, hi)
    return lo, hi


def no_worse_than_runs(
    noise: RunNoise, asked: pd.DataFrame, level: float, point: np.ndarray, hi: np.ndarray
) -> np.ndarray:
    """Upper ends `hi` at the rows of asked on fresh tokens, each at most the lowest observed
    loss of a fitted run with no more parameters and no more tokens, never below the point:
    min_j L_j e^(q_j + q), q_j and q the level-quantile of |log residual| among the run-noise
    neighbours of run j and of the question (one observation's noise each).

    Physics: a model at least as large, trained on at least as many fresh tokens, does no
    worse, and repeated tokens are worth at most fresh ones (on the shipped sets' runs either
    failed beyond 1% in 2 of ~41,000 pairs). A question that repeats data is not bounded:
    larger models overfit many epochs. It binds where an interval's upper end outgrows the
    runs: few runs (an uncalibrated interval) or a form's runaway bootstrap refits. Unchanged
    where the noise keeps no places or losses (power laws, fits stored before they were
    kept)."""
    if noise.where is None or noise.losses is None:
        return hi
    asked_at = places(asked)
    bounded = asked_at[:, 2] <= 0.0
    if not bounded.any():
        return hi
    runs_at = noise.where
    log_bound = np.log(noise.losses) + local_quantile(noise.residuals, runs_at, runs_at, level)
    ask = asked_at[bounded]
    smaller = (runs_at[None, :, 0] <= ask[:, None, 0] + TIE) & (
        runs_at[None, :, 1] <= ask[:, None, 1] + TIE
    )
    lowest = np.where(smaller, log_bound[None, :], np.inf).min(axis=1)
    bound = np.exp(lowest + local_quantile(noise.residuals, runs_at, ask, level))
    out = np.array(hi, dtype=float)
    out[bounded] = np.maximum(np.minimum(out[bounded], bound), np.asarray(point)[bounded])
    return out


TIE = 1e-9  # decades: a question at a run's own N and D is bounded by it


PER_DECADE = 8  # token counts per decade on the grid that bounds an upper end from fewer tokens


def falling_in_tokens(
    model: LossLaw, calibration: Calibration, runs: pd.DataFrame, residuals: RunNoise | None,
    seed: int, hi: np.ndarray,
) -> np.ndarray:  # fmt: skip
    """Upper ends `hi` at the rows of runs, each at most the lowest calibrated upper end at the
    same N and fewer fresh tokens (a grid from the fitted runs' fewest), never below the point.

    Physics: at fixed N the loss does not rise with fresh tokens, so a run's loss at (N, D) is
    at most its loss at (N, D' < D), and an upper end that holds at D' holds at D. On repeated
    tokens it can rise (overfitting: Muennighoff's runs at one N and U rise with D in 99 of
    339 pairs, by up to 54%), but not above one pass of the same data (no repeating run is
    above a fresh run of its N on at most its unique tokens, 0 of 34 pairs), so the grid
    points are those with D' <= U. It binds where the widening outside the runs grows faster
    in D than the law's loss falls. Every grid point gives a valid bound; the grid is shared by
    the rows of one N and one count of unique tokens U, so the bound never rises with D there."""
    tokens = runs.D.to_numpy(dtype=float)
    unique = runs["U"].to_numpy(dtype=float) if "U" in runs else np.full(len(runs), np.inf)
    unique = np.nan_to_num(unique, nan=np.inf)  # U unknown: unlimited fresh tokens
    fewest = 10 ** min(v[1] for v in calibration.hull)
    below = tokens > fewest
    if not below.any():
        return hi
    steps = math.ceil(np.log10(tokens.max() / fewest) * PER_DECADE)
    d_grid = fewest * 10 ** (np.arange(steps + 1) / PER_DECADE)
    keys = np.column_stack([runs.N.to_numpy(dtype=float), unique])
    sizes, size_of = np.unique(keys[below], axis=0, return_inverse=True)
    per_block = max(1, GRID_ROWS // len(d_grid))  # sizes per evaluation: bounded memory
    upper = np.vstack([
        upper_ends(model, calibration, residuals, seed, sizes[i : i + per_block], d_grid)
        for i in range(0, len(sizes), per_block)
    ])[np.ravel(size_of)]  # (rows below, grid)  # fmt: skip
    grid = d_grid[None, :]
    fresh_before = (grid < tokens[below][:, None]) & (grid <= unique[below][:, None])
    bound = np.where(fresh_before, upper, np.inf).min(axis=1)
    point = model.predict_frame(runs)[below]
    out = np.array(hi, dtype=float)
    out[below] = np.maximum(np.minimum(out[below], bound), point)
    return out


GRID_ROWS = 2000  # grid questions per interval evaluation (each holds the average's draws)


def upper_ends(
    model: LossLaw, calibration: Calibration, residuals: RunNoise | None, seed: int,
    sizes: np.ndarray, tokens: np.ndarray,
) -> np.ndarray:  # fmt: skip
    """(len(sizes), len(tokens)) calibrated upper ends at every (N, U) row of `sizes` (U the
    unique tokens, inf for unlimited) and every D of `tokens`."""
    grid = pd.DataFrame({"N": np.repeat(sizes[:, 0], len(tokens)),
                         "D": np.tile(tokens, len(sizes)),
                         "U": np.repeat(sizes[:, 1], len(tokens))})  # fmt: skip
    pools = None if residuals is None else residuals.pools(grid)
    lo, up = observation_interval(model.loss_draws(grid), pools, calibration.level, seed)
    _, up = calibration.widen(np.ravel(lo), np.ravel(up), grid)
    return np.asarray(up).reshape(len(sizes), len(tokens))
