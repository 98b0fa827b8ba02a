"""`scaling sql` and `scaling runs`: read the run log (opened read-only)."""

from __future__ import annotations

import csv
import json
import math
import os
import sys
from datetime import date, datetime, time
from decimal import Decimal
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, TextIO

import typer

from cli.common import DbOption, Json, console, emit_json, print_frame, print_rows
from cli.output import check_out, check_out_name, replacing
from store.errors import StoreError

if TYPE_CHECKING:
    from pathlib import Path

    from store.sql import Result

RUN_SUMMARY = [
    "run_id", "sweep", "arch", "params", "tokens", "lr", "batch_size", "status",
    "final_val_loss", "wall_s",
]  # fmt: skip
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
TABLE_ROWS = 1000  # a table prints at most this many rows; the formats write them all


class Format(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"
    parquet = "parquet"


# what --out's name says when no --format is given (no suffix: csv)
SUFFIX_FORMATS = {
    "": Format.csv, ".txt": Format.csv, ".csv": Format.csv, ".json": Format.json,
    ".parquet": Format.parquet,
}  # fmt: skip


def sql(
    query: Annotated[str, typer.Argument(help="One SQL query over runs, curves, fits, ...")],
    db: DbOption = None,
    format: Annotated[Format, typer.Option("--format", "-f", help="Output format.")] = Format.table,
    out_name: Annotated[
        str | None, typer.Option("--out", "-o", help="Write to this file (replaced whole).")
    ] = None,
) -> None:
    """Run one read-only SQL statement on the run log; print or export csv/json/parquet.

    The query cannot read or write other files (DuckDB's external access is off). A table
    shows the first rows; csv, json and parquet stream the whole result, of any size."""
    try:
        _sql(query, db, format, None if out_name is None else check_out_name(out_name))
    except KeyboardInterrupt:
        # DuckDB can abort the interpreter's teardown after an interrupted query (a C++
        # "exception not rethrown" in about 1 of 3 runs), so the query's Ctrl-C leaves at
        # once: the log was opened read-only and --out is only ever renamed into place.
        sys.stdout.flush()
        sys.stderr.write("interrupted\n")
        sys.stderr.flush()
        os._exit(130)


def _sql(query: str, db: Path | None, format: Format, out: Path | None) -> None:
    from store.db import connect, default_path
    from store.sql import copy_to_parquet
    from store.sql import query as run_query

    if format is Format.parquet and out is None:
        raise StoreError("--format parquet needs --out FILE")
    if format is Format.table and out is not None:  # no --format: the name's
        named = SUFFIX_FORMATS.get(out.suffix.lower())
        if named is None:  # CSV text in runs.xlsx: a file its own program cannot open
            raise StoreError(f"--out {out.name}: {out.suffix} is no format this writes: name "
                             "it .csv, .json or .parquet, or give --format")  # fmt: skip
        format = named
    if out is not None:
        check_out(out, format.value, db if db is not None else default_path())
    with connect(db, read_only=True) as con:
        if format is Format.parquet:
            assert out is not None
            with replacing(out) as temp:
                copy_to_parquet(con, query, temp)
        else:
            result = run_query(con, query)
            if format is Format.table and out is None:
                _print_table(result)
                return
            write = _write_json if format is Format.json else _write_csv
            if out is None:
                write(result, sys.stdout)
                return
            with replacing(out) as temp, open(temp, "w", encoding="utf-8", newline="") as handle:
                write(result, handle)
    console.print(f"wrote {out} ({format.value})", soft_wrap=True)


def _print_table(result: Result) -> None:
    """The first TABLE_ROWS rows as a table, and how to get the rest."""
    rows = result.fetch(TABLE_ROWS + 1)
    print_rows(result.columns, rows[:TABLE_ROWS])
    if len(rows) > TABLE_ROWS:
        console.print(
            f"showing the first {TABLE_ROWS} rows: --format csv or --out FILE gives them all",
            style="yellow",
        )


def _write_csv(result: Result, handle: TextIO) -> None:
    writer = csv.writer(handle, lineterminator="\n")
    writer.writerow([_csv_safe(name) for name in result.columns])
    for rows in result.batches():
        writer.writerows([[_csv_safe(v) for v in row] for row in rows])


def _write_json(result: Result, handle: TextIO) -> None:
    """An array of objects, one per row, written as the rows arrive; a name that repeats
    (SELECT 1 AS x, 2 AS x) gets a suffix, x_1, as in DuckDB's Parquet: no column is lost."""
    names = unique_names(result.columns)
    handle.write("[")
    first = True
    for rows in result.batches():
        for row in rows:
            record = dict(zip(names, map(_json_value, row), strict=True))
            handle.write(("\n" if first else ",\n") + json.dumps(record))
            first = False
    handle.write("\n]\n" if not first else "]\n")


def unique_names(columns: list[str]) -> list[str]:
    """Column names made unique by a suffix (_1, _2, ...) on each repeat."""
    given, used, out = set(columns), set(), []
    for name in columns:
        candidate, n = name, 0
        while candidate in used or (candidate != name and candidate in given):
            n += 1
            candidate = f"{name}_{n}"
        used.add(candidate)
        out.append(candidate)
    return out


def _csv_safe(value: object) -> object:
    """Text a spreadsheet would run as a formula gets a leading quote (OWASP CSV injection);
    NaN is an empty cell, as NULL is."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    if isinstance(value, float) and math.isnan(value):
        return None
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
    status: Annotated[
        str | None, typer.Option(help="pending, running, done, diverged or failed.")
    ] = None,
    sweep: Annotated[str | None, typer.Option(help="Only runs of this sweep.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="Show at most this many (newest).")] = 50,
    as_json: Json = False,
) -> None:
    """List runs in the log."""
    from store.db import connect
    from store.runs import owner_alive, read_runs

    with connect(db, read_only=True) as con:
        frame = read_runs(con, arch=arch, status=status, sweep=sweep)
    running = frame[frame["status"] == "running"]
    gone = [o for o in running["owner"] if owner_alive(o) is False]
    if as_json:  # every column of the newest `limit` runs
        shown = frame.tail(limit)
        emit_json({"n_runs": len(frame), "runs": shown.to_dict("records"),
                   "orphaned_by": sorted(set(gone))})  # fmt: skip
        return
    if frame.empty:
        console.print("no runs match")
        return
    print_frame(frame[RUN_SUMMARY].tail(limit), title=f"{len(frame)} runs", short=True)
    if gone:
        console.print(
            f"{len(gone)} running run(s) were left by a process that is gone "
            f"({', '.join(sorted(set(gone)))}): the next `scaling run` of the same settings, "
            "or `scaling sweep run` for a sweep's runs, trains them again"
        )
