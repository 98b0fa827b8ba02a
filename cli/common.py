"""Pieces every command shares: number parsing, the --db option, tables, progress bars."""

from __future__ import annotations

import math
import numbers
from pathlib import Path
from typing import Annotated

import numpy as np
import pandas as pd
import typer
from rich import box
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from runners.numbers import parse_number

console = Console()
SI_SCALES = ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k"))


def integer(text: str | int) -> int:
    """Typer parser for whole numbers written as 2e6, 50M, 2_000_000."""
    if isinstance(text, int):
        return text
    number = _number(text)
    if not math.isfinite(number) or number != round(number):
        raise typer.BadParameter(f"{text!r} is not a whole number")
    return round(number)


def real(text: str | float) -> float:
    """Typer parser for numbers written as 3e-3, 7B, 1.4T."""
    return float(text) if isinstance(text, int | float) else _number(text)


def _number(text: str) -> float:
    try:
        return parse_number(text)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc


DbOption = Annotated[
    Path | None,
    typer.Option(
        "--db",
        help="DuckDB run log (default: $SCALING_DB or ./scaling.duckdb).",
        show_default=False,
    ),
]


def format_value(value: object) -> str:
    """Compact cell text: 4 significant digits, SI suffixes for large counts."""
    if value is None or value is pd.NA or value is pd.NaT:
        return ""
    if isinstance(value, pd.Timestamp):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real):
        return str(value)
    if math.isnan(value):
        return ""
    magnitude = abs(float(value))
    if 1e5 <= magnitude < 1e15:
        shown = float(f"{magnitude:.3g}")  # 999,936 shows as 1M, not 1e+03k
        scale, suffix = next((s, x) for s, x in SI_SCALES if shown >= s)
        return f"{value / scale:.3g}{suffix}"
    if isinstance(value, numbers.Integral):
        return str(value)
    if 1e3 <= magnitude < 1e5:
        return f"{value:.0f}"
    if 0 < magnitude < 1e-2:  # 3.16e-3, not 0.003162: narrow columns of learning rates
        mantissa, exponent = f"{value:.2e}".split("e")
        return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"
    return f"{value:.4g}"


# Tables of runs read at 80 columns: short headers, id prefixes (enough to find a run
# with `run_id LIKE 'abcd1234%'`), and text that folds rather than ending in "…".
SHORT_HEADERS = {
    "run_id": "run", "d_model": "d", "n_layers": "L", "n_heads": "h", "params": "N",
    "tokens": "D", "flops": "C", "batch_size": "bs", "final_val_loss": "loss",
    "wall_s": "wall s", "est_s": "est s", "parametrization": "param",
}  # fmt: skip
RUN_ID_SHOWN = 8


def print_frame(frame: pd.DataFrame, title: str | None = None, short: bool = False) -> None:
    """A DataFrame as a compact rich table (floats to 4 significant digits, SI suffixes).

    short: a table of runs, with short headers and run-id prefixes, to fit 80 columns.
    """
    if short:
        if "run_id" in frame:
            frame = frame.assign(run_id=frame["run_id"].astype(str).str[:RUN_ID_SHOWN])
        frame = frame.rename(columns=SHORT_HEADERS)
    table = Table(title=title, box=box.SIMPLE_HEAD, padding=(0, 0), show_edge=False)
    for column in frame.columns:
        numeric = pd.api.types.is_numeric_dtype(frame[column])
        table.add_column(str(column), justify="right" if numeric else "left", overflow="fold")
    for row in frame.itertuples(index=False):
        table.add_row(*(format_value(v) for v in row))
    console.print(table)


def progress_bar(transient: bool = False) -> Progress:
    """The progress bar of long commands: count, bar, rate fields, elapsed and ETA."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=console,
        transient=transient,
    )
