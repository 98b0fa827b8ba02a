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
        lrs = schedule_lrs(run)
        values = np.full(len(lrs), np.nan)
        logged = by_run.get(run["run_id"])
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
