"""Extrapolation error measured inside the data: nested backtests.

A law's bootstrap and the scatter of runs around it measure noise inside the data. What a
user pays for is the error of the law's *form* when a question lies outside the data, and only
backtests measure that. Here the backtests are nested inside the runs being fitted: along each
direction a question can leave the data in (compute C, parameters N, tokens D), and for a few
quantiles q, the law is fitted on the runs at or below the q-th quantile of that coordinate and
scores the runs above it. Each scored run keeps its log error, the run scatter of its split's
fit, and its distance from that split's training runs: decades from their convex hull in
(log10 N, log10 D) (`hull`, what fits.calibration uses) and outside their box along C, N and
D (`d_C`, `d_N`, `d_D`, the largest of them `distance`). fits.averaging stacks the forms on
these errors and fits.calibration turns them into intervals.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from fits.bootstrap import map_chunks
from fits.calibration import hull_distance, hull_vertices, log_points
from fits.errors import FitError

FitPredict = Callable[[pd.DataFrame, pd.DataFrame], np.ndarray]
"""Fit on the training runs (columns N, D, C, loss[, U]); return predicted loss of the others."""

COORDS = ("C", "N", "D")
QUANTILES = (0.5, 0.65, 0.8)
MIN_TRAIN = 8  # a split with fewer training runs than this is skipped: too few to fit a law
SAME = 1e-6  # relative: runs this close to a split's cut (one budget's 6ND) train with it


def log_box(runs: pd.DataFrame) -> dict[str, tuple[float, float]]:
    """(min, max) of log10 N, log10 D, log10 C over the runs."""
    return {c: (float(np.log10(runs[c]).min()), float(np.log10(runs[c]).max())) for c in COORDS}


def outside(box: Mapping[str, tuple[float, float]], runs: pd.DataFrame) -> pd.DataFrame:
    """Decades by which each run lies outside the box along C, N and D (columns; 0 inside)."""
    columns = {}
    for c in COORDS:
        lo, hi = box[c]
        columns[c] = decades_outside(np.log10(np.asarray(runs[c], dtype=float)), lo, hi)
    return pd.DataFrame(columns, index=runs.index)


def decades_outside(x: np.ndarray, lo: Any, hi: Any) -> np.ndarray:
    """How far log10 coordinates x lie outside [lo, hi] (0 inside); broadcasts."""
    return np.maximum(np.maximum(lo - x, x - hi), 0.0)


def nested_backtest(
    runs: pd.DataFrame,
    fit_predict: FitPredict,
    level: float,
    quantiles: tuple[float, ...] = QUANTILES,
    n_jobs: int | None = 1,
) -> pd.DataFrame:
    """Held-out runs of every nested split: coord, q, row, log_error, distance, hull (decades
    from the training runs' hull in log N, log D), scatter, and the distance along each
    coordinate (columns d_C, d_N, d_D).

    log_error = log(actual) - log(predicted); scatter = the level-quantile of |log residual|
    of that split's fit on its own training runs. Splits whose fit fails are skipped. The
    splits are fitted in n_jobs worker processes (fits.bootstrap.map_chunks).
    """
    runs = runs.reset_index(drop=True)
    splits = []
    for coord in COORDS:
        x = runs[coord].to_numpy(dtype=float)
        for q in quantiles:
            cut = np.quantile(x, q) * (1 + SAME)
            train, test = runs[x <= cut], runs[x > cut]
            if len(train) >= MIN_TRAIN and not test.empty:
                splits.append((coord, q, train, test))
    jobs = [(fit_predict, train, pd.concat([train, test])) for _, _, train, test in splits]
    rows = []
    for (coord, q, train, test), pred in zip(
        splits, map_chunks(_split_fit, jobs, n_jobs), strict=True
    ):
        if pred is None:
            continue
        err = np.log(pd.concat([train, test]).loss.to_numpy()) - np.log(pred)
        if not np.isfinite(err).all():
            continue
        scatter = float(np.quantile(np.abs(err[: len(train)]), level))
        along = outside(log_box(train), test).add_prefix("d_")
        hull = hull_distance(hull_vertices(log_points(train)), log_points(test))
        split = pd.DataFrame(
            {
                "coord": coord,
                "q": q,
                "row": test.index.to_numpy(),
                "log_error": err[len(train) :],
                "distance": along.max(axis=1).to_numpy(),
                "hull": hull,
                "scatter": scatter,
            }
        )
        rows.append(pd.concat([split, along.reset_index(drop=True)], axis=1))
    columns = ["coord", "q", "row", "log_error", "distance", "hull", "scatter"]
    columns += [f"d_{c}" for c in COORDS]
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=columns)


def _split_fit(
    fit_predict: FitPredict, train: pd.DataFrame, asked: pd.DataFrame
) -> np.ndarray | None:
    """One split's predictions at `asked`, or None when its fit fails."""
    try:
        return np.asarray(fit_predict(train, asked), dtype=float)
    except FitError:
        return None


def out_of_range_error(nested: pd.DataFrame) -> float:
    """Median |log error| of each split's held-out runs, averaged over the splits."""
    per_split = nested.assign(abs_err=nested.log_error.abs()).groupby(["coord", "q"]).abs_err
    return float(per_split.median().mean())
