"""`scaling sql` and `scaling runs`: read the run log (opened read-only)."""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import duckdb
import typer

from cli.common import DbOption, console, print_frame
from store.db import connect
from store.errors import StoreError
from store.runs import read_runs

RUN_SUMMARY = [
    "run_id", "sweep", "arch", "params", "tokens", "lr", "batch_size", "status",
    "final_val_loss", "wall_s",
]  # fmt: skip


class Format(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"
    parquet = "parquet"


def _quote(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def sql(
    query: Annotated[str, typer.Argument(help="A SQL query over runs, curves, fits, ...")],
    db: DbOption = None,
    format: Annotated[Format, typer.Option("--format", "-f", help="Output format.")] = Format.table,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write to this file.")] = None,
) -> None:
    """Run SQL against the run log, read-only; print a table or export csv/json/parquet."""
    if format is Format.parquet and out is None:
        raise StoreError("--format parquet needs --out FILE")
    with connect(db, read_only=True) as con:
        try:
            if out is not None and format is not Format.table:
                options = {"csv": "FORMAT csv, HEADER", "json": "FORMAT json, ARRAY true",
                           "parquet": "FORMAT parquet"}[format.value]  # fmt: skip
                con.execute(f"COPY ({query.rstrip().rstrip(';')}) TO {_quote(out)} ({options})")
                console.print(f"wrote {out}")
                return
            frame = con.execute(query).df()
        except duckdb.Error as exc:
            raise StoreError(f"SQL error: {str(exc).splitlines()[0]}") from exc
    if format is Format.table:
        print_frame(frame)
    elif format is Format.csv:
        frame.to_csv(out or sys.stdout, index=False)
    else:
        text = frame.to_json(orient="records", date_format="iso", indent=1)
        (out.write_text(text) if out else sys.stdout.write(text + "\n"))


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
