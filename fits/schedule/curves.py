"""A schedule law's data: the runs' curves it is fitted on (the contract of `fit(curves)`),
the schedules it is asked about, and the curves it answers with, each checked where it enters
or leaves so that a fault reads as one line (FitError) naming the run or the step."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from fits.errors import FitError
from fits.schedule.kernel import warmup_end


@dataclass(frozen=True)
class Curve:
    """One run's schedule and the steps where its loss was measured (after the warmup)."""

    run: str
    lrs: np.ndarray
    steps: np.ndarray
    loss: np.ndarray


def curves_from_frame(curves: pd.DataFrame) -> list[Curve]:
    """Check the contract's frame and split it by run; FitError says what is wrong."""
    missing = {"run", "step", "lr", "loss"} - set(curves.columns)
    if missing:
        raise FitError(f"curves need columns run, step, lr, loss; missing {sorted(missing)}")
    out = []
    for run, rows in curves.groupby("run", sort=True):
        rows = rows.sort_values("step")
        steps = rows["step"].to_numpy()
        if not np.array_equal(steps, np.arange(len(rows))):
            raise FitError(f"run {run}: steps must be 0, 1, 2, ... with every step's LR")
        lrs = rows["lr"].to_numpy(dtype=float)
        if not _usable_lrs(lrs):
            raise FitError(f"run {run}: LRs must be finite, non-negative and not all zero")
        loss = rows["loss"].to_numpy(dtype=float)
        measured = np.isfinite(loss) & (steps > warmup_end(lrs))
        if (loss[measured] <= 0).any():
            raise FitError(f"run {run}: losses must be positive")
        if measured.sum() < 2:
            raise FitError(f"run {run}: fewer than two losses measured after its warmup")
        out.append(Curve(str(run), lrs, steps[measured], loss[measured]))
    if not out:
        raise FitError("no runs in the curves")
    return out


def positive_curve(curve: np.ndarray, where: str = "", why: str = "") -> np.ndarray:
    """The curve, or FitError from the first step where it reaches a loss <= 0: the law's
    parameters do not hold there (a band about a negative loss would be no band at all)."""
    if (curve <= 0).any():
        step = int(np.argmax(curve <= 0))
        raise FitError(
            f"the law predicts a loss <= 0 from step {step:,}{where}: it does not extrapolate "
            f"there{why}"
        )
    return curve


def check_schedule(lrs: Any) -> np.ndarray:
    """One schedule as a 1-D array of finite, non-negative per-step LRs (not all zero)."""
    try:
        arr = np.asarray(lrs, dtype=float)
    except (TypeError, ValueError):
        raise FitError(f"a schedule's LRs must be numbers: {str(lrs)[:60]}") from None
    if arr.ndim != 1 or len(arr) == 0:
        raise FitError("a schedule is a 1-D array of per-step LRs")
    if not _usable_lrs(arr):
        raise FitError("a schedule's LRs must be finite, non-negative and not all zero")
    return arr


def _usable_lrs(lrs: np.ndarray) -> bool:
    """Per-step LRs a law can read: finite, none negative, not all zero (no LR area at all)."""
    return bool(np.isfinite(lrs).all() and (lrs >= 0).all() and (lrs > 0).any())
