"""Writing and reading runs and their curves. Rows are plain dicts: store needs no torch."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import duckdb
import pandas as pd

from store.schema import RUN_COLUMNS

CURVE_COLUMNS = ("run_id", "step", "tokens", "train_loss", "val_loss", "lr")


def _insert_run(con: duckdb.DuckDBPyConnection, row: Mapping[str, Any]) -> None:
    unknown = set(row) - set(RUN_COLUMNS)
    if unknown:
        raise ValueError(f"not run columns: {sorted(unknown)}")
    values = {
        k: (json.dumps(v) if k == "config" and not isinstance(v, str) else v)
        for k, v in row.items()
    }
    cols = ", ".join(values)
    marks = ", ".join("?" for _ in values)
    con.execute(f"INSERT OR REPLACE INTO runs ({cols}) VALUES ({marks})", list(values.values()))


def mark_running(con: duckdb.DuckDBPyConnection, row: Mapping[str, Any]) -> None:
    """Record that a run has started (status running), unless it already finished."""
    existing = con.execute("SELECT status FROM runs WHERE run_id = ?", [row["run_id"]]).fetchone()
    if existing and existing[0] == "done":
        return
    _insert_run(con, {**row, "status": "running"})


def record_run(
    con: duckdb.DuckDBPyConnection,
    row: Mapping[str, Any],
    curve: Sequence[Mapping[str, Any]],
    sweep: str | None = None,
) -> None:
    """Commit a finished run and its whole curve in one transaction (all or nothing)."""
    frame = pd.DataFrame(list(curve), columns=list(CURVE_COLUMNS[1:]))
    frame.insert(0, "run_id", row["run_id"])
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute("DELETE FROM curves WHERE run_id = ?", [row["run_id"]])
        _insert_run(con, row)
        con.register("_curve", frame)
        con.execute("INSERT INTO curves SELECT * FROM _curve")
        con.unregister("_curve")
        if sweep is not None:
            con.execute("INSERT OR IGNORE INTO sweep_runs VALUES (?, ?)", [sweep, row["run_id"]])
        con.execute("COMMIT")
    except Exception:
        con.execute("ROLLBACK")
        raise


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
    """Runs as a DataFrame, filtered by the usual columns and an optional SQL WHERE clause."""
    clauses, params = [], []
    for column, value in (("arch", arch), ("status", status), ("source", source)):
        if value is not None:
            clauses.append(f"{column} = ?")
            params.append(value)
    if sweep is not None:
        clauses.append("(sweep = ? OR run_id IN (SELECT run_id FROM sweep_runs WHERE sweep = ?))")
        params += [sweep, sweep]
    if where:
        clauses.append(f"({where})")
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
