"""`scaling sql` and `scaling runs`: read the run log (opened read-only)."""

from __future__ import annotations

import json
import math
import sys
from datetime import date, datetime, time
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import duckdb
import pandas as pd
import typer

from cli.common import DbOption, console, print_frame
from store.db import connect
from store.errors import StoreError
from store.runs import read_runs
from store.sql import query as run_query

RUN_SUMMARY = [
    "run_id", "sweep", "arch", "params", "tokens", "lr", "batch_size", "status",
    "final_val_loss", "wall_s",
]  # fmt: skip
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


class Format(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"
    parquet = "parquet"


def sql(
    query: Annotated[str, typer.Argument(help="One SQL query over runs, curves, fits, ...")],
    db: DbOption = None,
    format: Annotated[Format, typer.Option("--format", "-f", help="Output format.")] = Format.table,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write to this file.")] = None,
) -> None:
    """Run one read-only SQL statement on the run log; print or export csv/json/parquet.

    The query cannot read or write other files (DuckDB's external access is off)."""
    if format is Format.parquet and out is None:
        raise StoreError("--format parquet needs --out FILE")
    with connect(db, read_only=True) as con:
        columns, rows = run_query(con, query)
    frame = pd.DataFrame.from_records(rows, columns=columns)
    if format is Format.table:
        print_frame(frame)
        return
    if format is Format.parquet:
        assert out is not None
        export = duckdb.connect()
        export.register("result", frame)
        export.execute(f"COPY result TO {_quote(out)} (FORMAT parquet)")
    elif format is Format.csv:
        frame.map(_csv_safe).to_csv(out or sys.stdout, index=False)
    else:
        records = [dict(zip(columns, map(_json_value, row), strict=True)) for row in rows]
        text = json.dumps(records, indent=1)
        (out.write_text(text + "\n") if out else sys.stdout.write(text + "\n"))
    if out is not None:
        console.print(f"wrote {out}")


def _quote(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def _csv_safe(value: object) -> object:
    """Text a spreadsheet would run as a formula gets a leading quote (OWASP CSV injection)."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def _json_value(value: object) -> object:
    """A cell as JSON: NaN and infinities as the strings "NaN", "Infinity", "-Infinity"
    (JSON has no such numbers; null stays for SQL NULL), times in ISO 8601."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple):
        return [_json_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _json_value(v) for k, v in value.items()}
    return str(value)


def runs(
    db: DbOption = None,
    arch: Annotated[str | None, typer.Option(help="Only this architecture.")] = None,
    status: Annotated[str | None, typer.Option(help="done, running, diverged or failed.")] = None,
    sweep: Annotated[str | None, typer.Option(help="Only runs of this sweep.")] = None,
    limit: Annotated[int, typer.Option(help="Show at most this many (newest).")] = 50,
) -> None:
    """List runs in the log."""
    with connect(db, read_only=True) as con:
        frame = read_runs(con, arch=arch, status=status, sweep=sweep)
    if frame.empty:
        console.print("no runs match")
        return
    print_frame(frame[RUN_SUMMARY].tail(limit), title=f"{len(frame)} runs", short=True)
