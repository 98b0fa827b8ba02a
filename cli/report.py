"""`scaling report`: figures and an HTML page of the fits."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli.common import DbOption, console
from store.errors import StoreError


def report(
    out_name: Annotated[
        str, typer.Option("--out", help="Folder for the PNGs, CSVs and index.html.")
    ] = "scaling-report",
    arch: Annotated[str | None, typer.Option(help="Only this architecture.")] = None,
    source: Annotated[str | None, typer.Option(help="Only runs from this source.")] = None,
    bootstrap: Annotated[
        int, typer.Option(min=1, max=100_000, help="Bootstrap resamples per fit.")
    ] = 1000,
    db: DbOption = None,
) -> None:
    """Draw frontiers, IsoFLOP curves, LR scans, residuals and a backtest as PNGs and HTML.

    Each figure is written with the CSV of the data behind it; a figure the runs cannot
    support is listed under "Not drawn" with the reason.
    """
    from scaling.report import write_report
    from scaling.study import Study

    out = Path(out_name)
    if not out_name.strip() or (out.exists() and not out.is_dir()):
        what = "an empty name" if not out_name.strip() else "not a folder"
        raise StoreError(f"--out {out_name}: {what}; the report needs a folder (made if missing)")

    result = write_report(Study(db, n_bootstrap=bootstrap), out, arch, source)
    for figure in result.figures.values():
        console.print(f"drew {figure.png}")
    for name, reason in result.skipped.items():
        console.print(f"not drawn: {name}: {reason}", style="yellow")
    console.print(f"open {result.index}")
