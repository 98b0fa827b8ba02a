"""Writing and reading runs and their curves. Rows are plain dicts: store needs no torch."""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
from collections.abc import Mapping, Sequence
from typing import Any

import duckdb
import pandas as pd

from store.errors import StoreError
from store.schema import RUN_COLUMNS, STATUSES
from store.sql import RUN_LOG_TABLES, expression

# What a run's result sets, cleared when it is marked running or fails: DuckDB's INSERT OR
# REPLACE keeps the columns a row leaves out, so an earlier attempt's values would linger.
RESULT_CLEARED = dict.fromkeys(
    (
        "final_val_loss",
        "final_train_loss",
        "wall_s",
        "tokens_per_s",
        "device",
        "error",
        "finished_at",
        "owner",
    )
)
CURVE_COLUMNS = ("run_id", "step", "tokens", "train_loss", "val_loss", "lr")


def _insert_run(con: duckdb.DuckDBPyConnection, row: Mapping[str, Any]) -> None:
    _insert_runs(con, [row])


def _insert_runs(con: duckdb.DuckDBPyConnection, rows: Sequence[Mapping[str, Any]]) -> None:
    """Upsert rows with one multi-row statement per set of columns (a statement costs more
    than a row, so a batch costs about what one row does)."""
    groups: dict[tuple[str, ...], list[Mapping[str, Any]]] = {}
    for row in rows:
        unknown = set(row) - set(RUN_COLUMNS)
        if unknown:
            raise ValueError(f"not run columns: {sorted(unknown)}")
        groups.setdefault(tuple(row), []).append(row)
    for columns, group in groups.items():
        values = [
            json.dumps(v) if k == "config" and not isinstance(v, str) else v
            for row in group
            for k, v in row.items()
        ]
        marks = ", ".join(["(" + ", ".join("?" * len(columns)) + ")"] * len(group))
        con.execute(f"INSERT OR REPLACE INTO runs ({', '.join(columns)}) VALUES {marks}", values)


def owner() -> str:
    """This process, as a `running` row records who trains it."""
    return f"pid {os.getpid()} on {socket.gethostname()}"


def owner_alive(text: str | None) -> bool | None:
    """Whether the process an `owner` names still runs; None where it cannot be told (another
    host, or no owner recorded). A pid the system reused after a crash reads as alive."""
    match = re.fullmatch(r"pid (\d+) on (.+)", text or "")
    if match is None or match.group(2) != socket.gethostname():
        return None
    try:
        os.kill(int(match.group(1)), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, run by another user
    return True


def mark_running(
    con: duckdb.DuckDBPyConnection, row: Mapping[str, Any], by: str | None = None
) -> None:
    """Record that a run has started (status running, owner `by`, default this process),
    unless it already finished."""
    existing = con.execute("SELECT status FROM runs WHERE run_id = ?", [row["run_id"]]).fetchone()
    if existing and existing[0] == "done":
        return
    _insert_run(con, {**row, **RESULT_CLEARED, "status": "running", "owner": by or owner()})


def record_run(
    con: duckdb.DuckDBPyConnection,
    row: Mapping[str, Any],
    curve: Sequence[Mapping[str, Any]],
    sweep: str | None = None,
) -> None:
    """Commit a finished run and its whole curve in one transaction (all or nothing)."""
    record_runs(con, [(row, curve)], sweep)


def record_runs(
    con: duckdb.DuckDBPyConnection,
    runs: Sequence[tuple[Mapping[str, Any], Sequence[Mapping[str, Any]]]],
    sweep: str | None = None,
) -> None:
    """Commit finished runs, each with its whole curve, in one transaction (all or nothing).

    A batch costs about as much as a single run: a sweep of short runs commits them together.
    """
    if not runs:
        return
    ids = [row["run_id"] for row, _ in runs]
    points = [{"run_id": row["run_id"], **p} for row, curve in runs for p in curve]
    frame = pd.DataFrame(points, columns=list(CURVE_COLUMNS))
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute("DELETE FROM curves WHERE list_contains(?, run_id)", [ids])
        _insert_runs(con, [{**row, "owner": None} for row, _ in runs])
        if len(frame):
            con.register("_curve", frame)
            con.execute("INSERT INTO curves SELECT * FROM _curve")
            con.unregister("_curve")
        if sweep is not None:
            add_to_sweep(con, sweep, ids)
        con.execute("COMMIT")
    except Exception:
        # A COMMIT that failed (a full disk) has already ended the transaction; a second
        # error from ROLLBACK would hide the first, which says what went wrong.
        with contextlib.suppress(duckdb.TransactionException):
            con.execute("ROLLBACK")
        raise


def add_to_sweep(con: duckdb.DuckDBPyConnection, sweep: str, run_ids: Sequence[str]) -> None:
    """Make runs members of `sweep` (a run can belong to several sweeps)."""
    if run_ids:
        sql = "INSERT OR IGNORE INTO sweep_runs SELECT ?, unnest(?::VARCHAR[])"
        con.execute(sql, [sweep, list(run_ids)])


def run_status(con: duckdb.DuckDBPyConnection, run_id: str) -> str | None:
    row = con.execute("SELECT status FROM runs WHERE run_id = ?", [run_id]).fetchone()
    return row[0] if row else None


def read_runs(
    con: duckdb.DuckDBPyConnection,
    arch: str | None = None,
    status: str | None = None,
    sweep: str | None = None,
    source: str | None = None,
    where: str | None = None,
) -> pd.DataFrame:
    """Runs as a DataFrame, filtered by the usual columns and an optional SQL WHERE clause.

    `source` is the name a user gave: `chinchilla` matches runs imported as `chinchilla`
    (stored as `imported:chinchilla`), as does `imported:chinchilla`; `local` the local runs.
    `where` must be one SQL expression over the run log (store.sql.expression).
    """
    if status is not None and status not in STATUSES:  # it would select no run, silently
        raise StoreError(f"status must be one of {', '.join(STATUSES)}, got {status!r}")
    clauses: list[str] = []
    params: list[Any] = []
    for column, value in (("arch", arch), ("status", status)):
        if value is not None:
            clauses.append(f"{column} = ?")
            params.append(value)
    if source is not None:
        clauses.append("(source = ? OR source = 'imported:' || ?)")
        params += [source, source]
    if sweep is not None:
        clauses.append("(sweep = ? OR run_id IN (SELECT run_id FROM sweep_runs WHERE sweep = ?))")
        params += [sweep, sweep]
    if where:
        clauses.append(f"(\n{expression(where, RUN_LOG_TABLES, '--where')}\n)")
    sql = "SELECT * FROM runs"
    if clauses:
        sql += " WHERE " + " AND ".join(clauses)
    return con.execute(sql + " ORDER BY created_at, run_id", params).df()


def read_curves(
    con: duckdb.DuckDBPyConnection, run_ids: Sequence[str] | None = None
) -> pd.DataFrame:
    """Curve points (one row per logged step), for all runs or the given ones."""
    if run_ids is None:
        return con.execute("SELECT * FROM curves ORDER BY run_id, step").df()
    return con.execute(
        "SELECT * FROM curves WHERE list_contains(?, run_id) ORDER BY run_id, step", [list(run_ids)]
    ).df()
