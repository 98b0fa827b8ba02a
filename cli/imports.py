"""`scaling import`: bring runs made elsewhere into the run log."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli.common import DbOption, console
from store.db import connect
from store.imports import import_file


def import_runs(
    file: Annotated[Path, typer.Argument(help="CSV, Parquet or JSONL file of runs.")],
    source: Annotated[
        str | None, typer.Option(help="Name recorded as source 'imported:NAME' (default: stem).")
    ] = None,
    columns: Annotated[
        str | None,
        typer.Option(help="Map run columns to file columns: 'params=N,tokens=D,loss=L'."),
    ] = None,
    skip_bad: Annotated[
        bool, typer.Option(help="Import the good rows and list the bad ones.")
    ] = False,
    db: DbOption = None,
) -> None:
    """Import runs (N, D, loss, lr, ...) so they can be fitted like local ones."""
    with connect(db) as con:
        count, problems = import_file(con, file, source, columns, skip_bad)
    for problem in problems:
        console.print(f"[yellow]skipped {problem}[/]")
    name = source or file.stem
    console.print(f"imported {count} runs from {file} as source 'imported:{name}'")
