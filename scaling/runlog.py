"""Where a Study's runs, fits and answers live: a DuckDB run log, or an in-memory copy of a
DataFrame; and the selection of runs a law is fitted on, in the columns fits/ expects."""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import duckdb
import numpy as np
import pandas as pd

from scaling.errors import ScalingError, ScalingWarning
from store.db import connect, default_path, is_damage, memory, migrate
from store.errors import StoreError
from store.imports import frame_runs, normalise_columns, own_names
from store.runs import read_curves, read_runs

T = TypeVar("T")
CANONICAL_ORDER = ["N", "D", "U", "loss", "lr", "batch_size", "batch_tokens", "d_model", "arch",
                   "parametrization", "vocab_size", "C", "status", "run_id"]  # fmt: skip


class RunLog:
    """A run log to read runs from and write fits and answers to (a file, or in memory)."""

    def __init__(self, db: str | Path | None = None) -> None:
        self.db = db
        self._memory: duckdb.DuckDBPyConnection | None = None

    @classmethod
    def from_frame(cls, runs: pd.DataFrame) -> RunLog:
        """An in-memory log holding the runs of a DataFrame (columns N, D, loss, lr, ... or the
        run-log names)."""
        if not isinstance(runs, pd.DataFrame):
            raise ScalingError(f"from_frame takes a pandas DataFrame, got {type(runs).__name__}")
        if runs.empty:  # else every question said "no finished runs match"
            raise ScalingError("the frame has no rows: no runs to fit")
        runs = _each_run_once(runs)
        frame = normalise_columns(runs, {})
        if "final_val_loss" not in frame.columns:
            raise ScalingError("the frame needs a loss column (loss or final_val_loss)")
        labels = frame.index if frame.index.is_unique else range(len(frame))
        defaults = {
            "run_id": [f"row{label}" for label in labels],  # as a refusal names the row
            "status": "done",
            "source": "frame",
        }
        frame = frame.assign(**{k: v for k, v in defaults.items() if k not in frame.columns})
        try:
            frame = frame_runs(frame, own_names(list(runs.columns)))
        except StoreError as exc:
            raise ScalingError(str(exc)) from None
        con = memory()
        migrate(con, Path(":memory:"))
        con.register("_frame", frame[[c for c in frame.columns if c in _run_columns(con)]])
        con.execute("INSERT INTO runs BY NAME SELECT * FROM _frame")
        con.unregister("_frame")
        log = cls(None)
        log._memory = con
        return log

    @contextmanager
    def connection(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        if self._memory is not None:
            yield self._memory
        else:
            with connect(self.db, read_only=read_only) as con:
                yield con

    def runs(
        self,
        arch: str | None = None,
        status: str | None = "done",
        source: str | None = None,
        where: str | None = None,
        sweep: str | None = None,
    ) -> pd.DataFrame:
        """Runs as a DataFrame (by default only finished ones)."""
        with self.connection(read_only=True) as con:
            try:
                return read_runs(
                    con, arch=arch, status=status, sweep=sweep, source=source, where=where
                )
            except duckdb.Error as exc:
                if where is None or is_damage(exc):
                    raise  # store.db.connect names the damage of the file
                raise ScalingError(f"bad --where clause: {str(exc).splitlines()[0]}") from exc
            except StoreError as exc:  # a selection that is none (status, --where)
                raise ScalingError(str(exc)) from None

    def curves(self, run_ids: Sequence[str]) -> pd.DataFrame:
        with self.connection(read_only=True) as con:
            return read_curves(con, list(run_ids))

    def law_runs(
        self,
        statuses: Sequence[str],
        arch: str | None,
        source: str | None,
        where: str | None,
        n_column: str = "params",
    ) -> pd.DataFrame:
        """The runs with one of `statuses` a law is fitted on, as `law_frame` gives them."""
        status = "done" if tuple(statuses) == ("done",) else None
        runs = self.runs(arch=arch, status=status, source=source, where=where)
        if status is None:
            runs = runs[runs["status"].isin(list(statuses))]
        if runs.empty:
            what = ", ".join(
                f"{k}={v}" for k, v in (("arch", arch), ("source", source), ("where", where)) if v
            )
            raise ScalingError(f"no finished runs match{' (' + what + ')' if what else ''}")
        return law_frame(runs, n_column)

    def write(self, action: Callable[[duckdb.DuckDBPyConnection], T], what: str) -> T | None:
        """Run a write on the run log; on a read-only or unwritable log warn (ScalingWarning)
        with `what` happened, and return None, so that a question is still answered."""
        try:
            with self.connection() as con:
                return action(con)
        except (StoreError, duckdb.Error, OSError) as exc:
            path = Path(self.db) if self.db is not None else default_path()
            writable = os.access(path, os.W_OK) and os.access(path.parent or ".", os.W_OK)
            reason = f"{path} is read-only" if not writable else str(exc).splitlines()[0]
            warnings.warn(f"{reason}: {what}", ScalingWarning, stacklevel=4)
            return None


def _each_run_once(runs: pd.DataFrame) -> pd.DataFrame:
    """A frame's rows less those that repeat an earlier row in every column, with a warning:
    an import keeps such a row once (it is the same run, by the run id its content gives), so
    a frame must too, or the same file answers differently by the route it came in (Farseer's
    404 shared rows hold 4 repeats: 400 runs imported, 404 from the frame until 7 December
    2026)."""
    try:
        repeats = runs.duplicated()
    except TypeError:  # unhashable cells: refused, by name, when the rows are read
        return runs
    if repeats.any():
        said = f"{int(repeats.sum())} rows repeat an earlier row of the frame"
        warnings.warn(f"{said}: each run is kept once, as an import keeps a file's",
                      ScalingWarning, stacklevel=4)  # fmt: skip
    return runs[~repeats]


def law_frame(runs: pd.DataFrame, n_column: str = "params") -> pd.DataFrame:
    """Runs of the log in the columns fits/ expects (N, D, C, loss, lr, ...), in an order set by
    what they hold (run_id last), so that a fit's resamples, and so its intervals, do not depend
    on the order the runs were logged in or on the ids an import or a DataFrame gave them."""
    if n_column not in runs.columns:
        raise ScalingError(f"unknown N column {n_column!r}: use params or params_nonembed")
    if runs[n_column].isna().all() and runs["params"].notna().any():  # else "no N" in the fit
        raise ScalingError(f"no {n_column} in any of the {len(runs)} runs (they give params): "
                           "count N as params, the default")  # fmt: skip
    frame = pd.DataFrame(
        {
            "run_id": runs["run_id"],
            "arch": runs["arch"].fillna("-"),
            "N": runs[n_column].astype(float),
            "D": runs["tokens"].astype(float),
            "C": runs["flops"].astype(float),
            "loss": runs["final_val_loss"].astype(float),
            "lr": runs["lr"].astype(float),
            "batch_size": runs["batch_size"].astype(float),
            "batch_tokens": (runs["batch_size"] * runs["seq_len"]).astype(float),
            "d_model": runs["d_model"].astype(float),
            "U": runs["unique_tokens"].astype(float) if "unique_tokens" in runs else np.nan,
            "vocab_size": runs["vocab_size"].astype(float) if "vocab_size" in runs else np.nan,
            "parametrization": runs["parametrization"].fillna("-"),
            "status": runs["status"],
        }
    )
    return frame.sort_values(CANONICAL_ORDER, kind="stable").reset_index(drop=True)


def _run_columns(con: duckdb.DuckDBPyConnection) -> set[str]:
    return {
        r[0]
        for r in con.execute(
            "SELECT column_name FROM duckdb_columns() WHERE table_name = 'runs'"
        ).fetchall()
    }
