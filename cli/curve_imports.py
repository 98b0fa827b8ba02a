"""`scaling import-curves`: loss curves made elsewhere, for the schedule laws."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli.common import DbOption, console


def import_curves(
    files: Annotated[
        list[Path],
        typer.Argument(help="CSV, Parquet or JSONL: step, lr, loss (and run, tokens) columns."),
    ],
    source: Annotated[
        str | None, typer.Option(help="Name recorded as source 'imported:NAME'.")
    ] = None,
    db: DbOption = None,
) -> None:
    """Import loss curves: one file per run (named by the file), or a file with a run column."""
    from store.curve_imports import import_curves as write_curves
    from store.db import connect

    with connect(db) as con:
        counts = write_curves(con, files, source)
    name = source or (files[0].stem if len(files) == 1 else "curves")
    console.print(
        f"imported {counts.inserted} curve{'s' * (counts.inserted != 1)} "
        f"({counts.points:,} points) as source 'imported:{name}'"
        + (f"; {counts.present} already in the log, left as they are" if counts.present else ""),
        highlight=False,
        markup=False,
    )
