"""Scoring a hyperparameter law on held-out (N, D) groups, as Step Law scores its own law.

A law for the optimal LR (or batch size) is fitted on the smaller groups and asked about the
largest ones (by compute 6ND). Each held-out group is scored against its own optimum: the
vertex of the parabola in log x through the group's best runs (fits.lr.scan_optimum), taken
along the one-dimensional scan through the group's best run (for LR: the LR scan at the best
run's batch size; for batch size: the batch-size scan at the best run's LR).

The loss penalty of the prediction is read two ways. `penalty_pct`: that parabola at the
predicted value relative to its minimum, as asked. The parabola is fitted to the best point and
its two neighbours, so a prediction a few grid steps away reads it beyond those points, where
a local parabola can exaggerate; `grid_penalty_pct` is therefore also given: the measured
losses interpolated linearly in log x at the prediction, relative to the best sampled loss
(Step Law's "above the grid optimum"). Outside the scan's sampled range the parabola is an
extrapolation: it is still read (not clipped), `in_range` is False and the grid penalty NaN.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import numpy as np
import pandas as pd

from fits import validate
from fits.laws import training_compute
from fits.lr import LogParabola, scan, scan_optimum

SCORE_COLUMNS = ("predicted", "lo", "hi", "actual", "ratio", "covered", "penalty_pct",
                 "grid_penalty_pct", "in_range", "bracketed", "note")  # fmt: skip


def largest_compute(groups: pd.DataFrame, fraction: float) -> np.ndarray:
    """Mask of the held-out groups: the max(1, round(fraction * n)) with the largest 6 N D."""
    validate.columns(groups, ["N", "D"])
    if not 0 < fraction < 1:
        raise ValueError(f"holdout fraction must be between 0 and 1, got {fraction}")
    compute = training_compute(groups["N"], groups["D"])
    n_test = max(1, round(fraction * len(groups)))
    held = np.zeros(len(groups), dtype=bool)
    held[np.argsort(compute, kind="stable")[len(groups) - n_test :]] = True
    return held


def score_groups(
    runs: pd.DataFrame,
    predicted: pd.DataFrame,
    keys: Sequence[str],
    x: str,
    across: str,
    *,
    loss: str = "loss",
    status: str | None = "status",
    name: str = "LR",
) -> pd.DataFrame:
    """One row per group of `predicted` (keys, predicted, lo, hi): its optimum and the score.

    `runs` holds those groups' runs; x is the scanned hyperparameter (e.g. lr), `across` the
    other one, held at the group's best run's value (e.g. batch_size). Columns: keys, across,
    predicted, lo, hi, actual (the scan's vertex, or its best sampled x when not bracketed),
    ratio = predicted / actual, covered (lo <= actual <= hi), penalty_pct (100 x the
    parabola's relative loss above its minimum at the predicted x; NaN when the group's
    optimum is not bracketed), grid_penalty_pct (100 x the measured losses interpolated in
    log x at the prediction, relative to the best of them; NaN out of range), in_range
    (predicted x within the scan's finite sampled x), bracketed and note.
    """
    keys = list(keys)
    validate.columns(runs, [*keys, x, across, loss])
    validate.columns(predicted, [*keys, "predicted", "lo", "hi"])
    by_group = dict(iter(runs.groupby(keys, sort=False, dropna=False)))
    rows = []
    for row in predicted.itertuples(index=False):
        key = tuple(getattr(row, k) for k in keys)
        group = by_group.get(key)  # a list of keys groups by tuples, even of one key
        if group is None:
            raise ValueError(f"no runs for the held-out group {dict(zip(keys, key, strict=True))}")
        value, lo, hi = float(row.predicted), float(row.lo), float(row.hi)
        at, actual, scored = _score_scan(group, x, across, loss, status, name, value)
        rows.append(
            {
                **dict(zip(keys, key, strict=True)),
                across: at,
                "predicted": value,
                "lo": lo,
                "hi": hi,
                "actual": actual,
                "ratio": value / actual,
                "covered": bool(lo <= actual <= hi),
                **scored,
            }
        )
    return pd.DataFrame(rows, columns=[*keys, across, *SCORE_COLUMNS])


def _score_scan(
    group: pd.DataFrame,
    x: str,
    across: str,
    loss: str,
    status: str | None,
    name: str,
    predicted: float,
) -> tuple[float, float, dict[str, object]]:
    """The scan of x through the group's best run: its `across` value, optimum, and score."""
    values = group[loss].astype(float)
    finite = np.isfinite(values.to_numpy())
    if status is not None and status in group.columns:
        finite &= group[status].astype(str).str.lower().ne("diverged").to_numpy()
    if not finite.any():
        empty = {"penalty_pct": np.nan, "grid_penalty_pct": np.nan, "in_range": False,
                 "bracketed": False, "note": "no finite loss"}  # fmt: skip
        return np.nan, np.nan, empty
    at = float(group[across].to_numpy(float)[finite][np.argmin(values.to_numpy()[finite])])
    same = np.isclose(group[across].to_numpy(float), at, rtol=1e-9, atol=0.0, equal_nan=True)
    per_x = scan(group[same], x, loss, status)  # the scan through the best run
    opt = scan_optimum(per_x.index.to_numpy(), per_x.to_numpy(), name=name)
    ok = np.isfinite(per_x.to_numpy())
    sampled, measured = per_x.index.to_numpy()[ok], per_x.to_numpy()[ok]
    in_range = bool(sampled.min() <= predicted <= sampled.max())
    at_prediction = np.interp(np.log(predicted), np.log(sampled), measured)
    grid = 100.0 * (at_prediction / measured.min() - 1.0) if in_range else np.nan
    parabola = opt["parabola"]
    penalty = (
        100.0 * float(parabola.penalty(predicted))
        if isinstance(parabola, LogParabola) and opt["bracketed"]
        else np.nan
    )
    scored = {
        "penalty_pct": penalty,
        "grid_penalty_pct": grid,
        "in_range": in_range,
        "bracketed": bool(opt["bracketed"]),
        "note": opt["note"],
    }
    return at, cast(float, opt["opt"]), scored
