"""Importing loss curves made elsewhere: step, lr and loss per run, into `curves`.

One file per run (its name is the run's), or one long file with a run column. Each curve
becomes an imported run (source `imported:NAME`, no config) whose rows go to `curves`:
`step` as the file numbers it (the loss after that many optimiser steps, the LR of the step
that led there), `lr`, the loss as `train_loss`, and `tokens` when the file has them.
Everything is checked before anything is written: a file imports whole or not at all.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from store.errors import StoreError
from store.imports import READERS, read_csv, read_table

ALIASES = {
    "run": ("run", "run_id", "run_name", "name", "curve"),
    "step": ("step", "steps", "iteration", "iter", "it"),
    "lr": ("lr", "learning_rate"),
    "loss": ("loss", "train_loss", "training_loss"),
    "tokens": ("tokens", "n_tokens", "tokens_seen"),
}


@dataclass(frozen=True)
class CurveImport:
    """What an import wrote: runs added, runs the log already held, and curve rows added."""

    inserted: int
    present: int
    points: int


def _column(frame: pd.DataFrame, name: str, path: Path, required: bool) -> str | None:
    by_key = {str(c).strip().lower(): c for c in frame.columns}
    for alias in ALIASES[name]:
        if alias in by_key:
            return by_key[alias]
    if required:
        raise StoreError(
            f"{path}: no {name} column (looked for {', '.join(ALIASES[name])}; "
            f"the file has {', '.join(map(str, frame.columns))})"
        )
    return None


def _refuse(mask: np.ndarray, path: Path, why: str) -> None:
    """One line naming the first row where `mask` holds (rows count from 1, as people do)."""
    if mask.any():
        raise StoreError(f"{path}, row {int(np.flatnonzero(mask)[0]) + 1}: {why}")


def _numbers(frame: pd.DataFrame, column: str, name: str, path: Path) -> np.ndarray:
    """A column as floats: empty cells and 'nan' are NaN, any other text is refused."""
    values = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=float)
    text = frame[column].astype(str).str.strip().str.lower()
    blank = frame[column].isna() | text.isin(("", "nan"))
    _refuse(np.isnan(values) & ~blank.to_numpy(), path, f"{name} is not a number")
    return values


def _read(path: Path) -> pd.DataFrame:
    """The file's table; CSV cells as text, so that a sniffer never reads `inf` as a date."""
    if READERS.get(path.suffix.lower()) != "read_csv_auto" or not path.is_file():
        return read_table(path)
    return read_csv(path, ", all_varchar = true")


def read_curves_file(path: Path) -> dict[str, pd.DataFrame]:
    """The curves of one file, checked: {run name: frame of step, lr, loss (and tokens)}."""
    frame = _read(path)
    if frame.empty:
        raise StoreError(f"{path}: no rows")
    run_column = _column(frame, "run", path, required=False)
    found = {
        name: _column(frame, name, path, name != "tokens") for name in ALIASES if name != "run"
    }
    data = pd.DataFrame(
        {name: _numbers(frame, c, name, path) for name, c in found.items() if c is not None}
    )
    step, lr, loss = (data[c].to_numpy() for c in ("step", "lr", "loss"))
    _refuse(~np.isfinite(step) | ~np.isfinite(lr), path, "step and lr must be finite numbers")
    _refuse((step < 0) | (step != np.round(step)), path, "step must be a whole number >= 0")
    _refuse(lr < 0, path, "lr must be >= 0")
    _refuse(np.isinf(loss) | (loss <= 0), path, "loss must be a finite number > 0, or empty")
    if "tokens" in data:
        tokens = data["tokens"].to_numpy()
        fraction = np.isfinite(tokens) & (tokens != np.round(tokens))
        _refuse(
            np.isinf(tokens) | (tokens < 0) | fraction, path, "tokens must be a whole number >= 0"
        )
    if run_column is None:
        names = np.full(len(data), path.stem, dtype=object)
    else:
        text = frame[run_column].astype(str).str.strip()
        _refuse((frame[run_column].isna() | (text == "")).to_numpy(), path, "empty run name")
        names = text.to_numpy()
    data["step"] = data["step"].astype(np.int64)
    curves: dict[str, pd.DataFrame] = {}
    for name, rows in data.groupby(names, sort=False):
        steps = rows["step"].to_numpy()
        back = np.flatnonzero(np.diff(steps) <= 0)
        if len(back):
            at = back[0]
            raise StoreError(
                f"{path}, row {rows.index[at + 1] + 1}: run {name!r}: steps must increase, "
                f"got {steps[at + 1]} after {steps[at]}"
            )
        if not np.isfinite(rows["loss"]).any():
            raise StoreError(f"{path}: run {name!r} has no loss")
        curves[str(name)] = rows.reset_index(drop=True)
    return curves


def import_curves(
    con: duckdb.DuckDBPyConnection, paths: list[Path], source: str | None = None
) -> CurveImport:
    """Import every curve of `paths` in one transaction (all files checked first)."""
    if not paths:
        raise StoreError("give at least one curve file")
    name = source or (paths[0].stem if len(paths) == 1 else "curves")
    curves: dict[str, pd.DataFrame] = {}
    for path in paths:
        for run, frame in read_curves_file(path).items():
            if run in curves:
                raise StoreError(f"{path}: run {run!r} appears in more than one file")
            curves[run] = frame
    runs, points = [], []
    for run, frame in curves.items():
        payload = json.dumps(
            {"source": name, "run": run, "curve": frame.to_dict("list")}, sort_keys=True
        )
        run_id = "imp-" + hashlib.sha256(payload.encode()).hexdigest()[:16]
        finite = frame[np.isfinite(frame["loss"])]
        runs.append(
            {
                "run_id": run_id,
                "status": "done",
                "final_train_loss": float(finite["loss"].iloc[-1]),
                "source": f"imported:{name}",
                "config": json.dumps({"run": run, "curve_steps": int(frame["step"].iloc[-1])}),
                "finished_at": datetime.now(UTC).replace(tzinfo=None),
            }
        )
        points.append(
            pd.DataFrame(
                {
                    "run_id": run_id,
                    "step": frame["step"],
                    "tokens": frame["tokens"].astype("Int64") if "tokens" in frame else pd.NA,
                    "train_loss": frame["loss"],
                    "val_loss": np.nan,
                    "lr": frame["lr"],
                }
            )
        )
    return _write(con, pd.DataFrame(runs), pd.concat(points, ignore_index=True))


def _write(con: duckdb.DuckDBPyConnection, runs: pd.DataFrame, points: pd.DataFrame) -> CurveImport:
    con.execute("BEGIN TRANSACTION")
    try:
        ids = list(runs["run_id"])
        held = {
            r[0]
            for r in con.execute(
                "SELECT run_id FROM runs WHERE list_contains(?, run_id)", [ids]
            ).fetchall()
        }
        new_runs = runs[~runs["run_id"].isin(held)]
        new_points = points[~points["run_id"].isin(held)]
        con.register("_runs", new_runs)
        con.execute("INSERT INTO runs BY NAME SELECT * FROM _runs")
        con.register("_points", new_points)
        con.execute(
            "INSERT INTO curves BY NAME "
            "SELECT run_id, step, tokens, train_loss, val_loss, lr FROM _points"
        )
        con.unregister("_runs")
        con.unregister("_points")
        con.execute("COMMIT")
    except duckdb.Error as exc:
        con.execute("ROLLBACK")
        raise StoreError(f"nothing imported: {str(exc).splitlines()[0]}") from exc
    return CurveImport(len(new_runs), len(held), len(new_points))
