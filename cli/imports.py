"""`scaling import`: bring runs made elsewhere into the run log."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli.common import DbOption, console
from scaling import datasets
from scaling.errors import ScalingError

# How a shipped data set's columns map to runs where its names are not run columns.
EXAMPLE_COLUMNS = {
    "mu-scaling": "params=params_millions*1e6,loss=train_loss_at_20k_steps,d_model=width",
}


def import_runs(
    file: Annotated[Path | None, typer.Argument(help="CSV, Parquet or JSONL file of runs.")] = None,
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
    example: Annotated[
        str | None,
        typer.Option(help=f"A data set that ships with scaling: {', '.join(datasets.names())}."),
    ] = None,
    db: DbOption = None,
) -> None:
    """Import runs (N, D, loss, lr, ...) so they can be fitted like local ones."""
    from store.db import connect
    from store.imports import import_file

    if (file is None) == (example is None):
        raise ScalingError("give a file to import or --example NAME (one of the two)")
    if example is not None:
        file = datasets.path(example)
        source = source or example
        columns = columns or EXAMPLE_COLUMNS.get(example)
    assert file is not None
    with connect(db) as con:
        counts, problems = import_file(con, file, source, columns, skip_bad)
    for problem in problems:
        console.print(f"skipped {problem}", style="yellow")
    name = source or file.stem
    console.print(
        f"imported {counts.inserted} run{'s' * (counts.inserted != 1)} from {file} "
        f"as source 'imported:{name}' (--source {name} selects them)",
        soft_wrap=True,
    )
    notes = [
        f"{counts.present} already in the log, left as they are" if counts.present else "",
        f"{counts.duplicates} rows repeat an earlier row of the file" if counts.duplicates else "",
    ]
    if any(notes):
        console.print("; ".join(note for note in notes if note))
