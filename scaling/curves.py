"""Loss curves with the LR of every step: the frame schedule laws fit (fits/schedule.py).

The run log stores a run's schedule (runs.schedule, runs.config) and its curve at logged
steps only; the LR of every step is rebuilt here from the config, exactly as training set
it, and `curves.lr` at the logged steps is a check of that rebuild.

Frame layout: one row per optimiser step s = 0 .. T-1 of each run, `lr` the LR of update s
and `loss` the loss logged after it (curves.step = s + 1), NaN where nothing was logged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from runners.config import RunConfig
from runners.errors import RunnerError
from runners.schedule import parse_schedule
from scaling.errors import ScalingError
from store.db import connect
from store.runs import read_curves, read_runs

LOSS_COLUMNS = ("train_loss", "val_loss")
FRAME_COLUMNS = ["run", "step", "lr", "loss"]


def schedule_lrs(run: RunConfig | Mapping[str, Any] | pd.Series) -> np.ndarray:
    """The LR of every optimiser step of a run, from step 0: a RunConfig, or a `runs` row
    (its lr, schedule, warmup, tokens, batch_size and seq_len columns)."""
    if isinstance(run, RunConfig):
        return run.lrs()
    columns = ("lr", "schedule", "warmup", "tokens", "batch_size", "seq_len")
    missing = [c for c in columns if pd.isna(run.get(c))]
    if missing:
        raise ScalingError(
            f"run {run.get('run_id')}: cannot rebuild its LRs without {', '.join(missing)}"
        )
    steps = -(-int(run["tokens"]) // (int(run["batch_size"]) * int(run["seq_len"])))
    try:
        factors = parse_schedule(str(run["schedule"])).factors(steps, int(run["warmup"]))
    except RunnerError as exc:
        raise ScalingError(f"run {run.get('run_id')}: {exc}") from exc
    return float(run["lr"]) * factors


def curves_frame(
    runs: pd.DataFrame, curves: pd.DataFrame, loss: str = "train_loss"
) -> pd.DataFrame:
    """The run, step, lr, loss frame of `runs` (rows of the runs table) from their logged
    `curves` (rows of the curves table)."""
    if loss not in LOSS_COLUMNS:
        raise ScalingError(f"loss must be one of {', '.join(LOSS_COLUMNS)}, got {loss!r}")
    by_run = dict(tuple(curves.groupby("run_id"))) if len(curves) else {}
    frames = []
    for _, run in runs.iterrows():
        logged = by_run.get(run["run_id"])
        if pd.isna(run.get("schedule")):
            lrs = _imported_lrs(run["run_id"], logged)
        else:
            lrs = schedule_lrs(run)
        values = np.full(len(lrs), np.nan)
        if logged is not None:
            index = logged["step"].to_numpy() - 1
            inside = (index >= 0) & (index < len(lrs))
            values[index[inside]] = logged[loss].to_numpy(dtype=float)[inside]
        frames.append(
            pd.DataFrame(
                {"run": run["run_id"], "step": np.arange(len(lrs)), "lr": lrs, "loss": values}
            )
        )
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype=float) for c in FRAME_COLUMNS})
    return pd.concat(frames, ignore_index=True)


def _imported_lrs(run_id: str, logged: pd.DataFrame | None) -> np.ndarray:
    """An imported curve's LRs: its file's, which must give every step from 1 to its last
    (step k's LR is that of the update that led to step k; a step 0 row is not needed)."""
    if logged is None or logged.empty:
        raise ScalingError(f"run {run_id}: no schedule and no curve to take its LRs from")
    steps = logged["step"].to_numpy()
    steps, lrs = steps[steps >= 1], logged["lr"].to_numpy(dtype=float)[steps >= 1]
    if len(steps) == 0 or steps[-1] != len(steps) or np.isnan(lrs).any():
        raise ScalingError(
            f"run {run_id}: its curve gives the LR at {len(steps):,} of steps 1 .. "
            f"{int(steps[-1]) if len(steps) else 0:,}; a schedule fit needs every step's LR "
            "(import every step, with the loss empty where it was not measured)"
        )
    return lrs


def read_schedule_curves(
    db: str | Path | None = None,
    run_ids: Sequence[str] | None = None,
    where: str | None = None,
    loss: str = "train_loss",
) -> pd.DataFrame:
    """The curves frame of the finished runs in the log (all, `run_ids`, or a WHERE clause)."""
    with connect(db, read_only=True) as con:
        runs = read_runs(con, status="done", where=where)
        if run_ids is not None:
            runs = runs[runs["run_id"].isin(list(run_ids))]
        curves = read_curves(con, list(runs["run_id"]))
    return curves_frame(runs, curves, loss)
