"""Pieces every command shares: number parsing, the --db option, tables, progress bars.

Nothing printed is read as Rich markup: run logs and users supply arch names, sources and
SQL results, and `[/]` in any of them must print as written (colours are set as styles).
"""

from __future__ import annotations

import json
import math
import numbers
import re
import stat
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich import box
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    import pandas as pd
    from rich.progress import Progress

from runners.numbers import parse_number

console = Console(markup=False, highlight=False)  # the highlighter is quadratic in a word
EXIT_INTERRUPTED = 130  # as a shell reports a command stopped by Ctrl-C (128 + SIGINT)


class Interrupted(Exception):
    """Ctrl-C (or SIGTERM) stopped a command that says what it leaves, e.g. how many runs
    of a sweep are committed; printed as one line, exit 130."""


SI_SCALES = ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k"))
DECIMAL = re.compile(r"^-?\d+(?:\.(\d+))?$")  # a plain decimal cell, and its places


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


def positive(text: str | float) -> float:
    """Typer parser for sizes, tokens, compute, ratios and hours: finite and above zero."""
    number = real(text)
    if not (math.isfinite(number) and number > 0):
        raise typer.BadParameter(f"must be a positive number, got {str(text).strip()!r}")
    return number


def _number(text: str) -> float:
    try:
        return parse_number(text)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc


def regular_file(path: Path | None) -> Path | None:
    """A path that, if it exists, is a regular file: a FIFO, a device or a folder is refused
    here, since opening one blocks forever or reads something that is no run log."""
    if path is not None:
        if not str(path).strip():
            raise typer.BadParameter("an empty path")
        try:
            mode = path.stat().st_mode
        except FileNotFoundError:
            return path
        except OSError as exc:
            raise typer.BadParameter(f"{path}: {exc.strerror}") from exc
        if not stat.S_ISREG(mode):
            kind = "a folder" if stat.S_ISDIR(mode) else "not a regular file"
            raise typer.BadParameter(f"{path} is {kind}")
    return path


Json = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]
DbOption = Annotated[
    Path | None,
    typer.Option(
        "--db",
        help="DuckDB run log (default: $SCALING_DB or ./scaling.duckdb).",
        show_default=False,
        callback=regular_file,
    ),
]


def format_value(value: object, si_from: float = 1e5) -> str:
    """Compact cell text: 4 significant digits, SI suffixes for large counts (from `si_from`:
    a column that holds 114k shows 33440 as 33.4k too)."""
    if _missing(value):
        return ""
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if not _is_number(value):
        return str(value)
    assert isinstance(value, numbers.Real)
    magnitude = abs(float(value))
    if not math.isfinite(magnitude):
        return str(float(value))
    if si_from <= magnitude < 1e15:
        shown = float(f"{magnitude:.3g}")  # 999,936 shows as 1M, not 1e+03k
        scale, suffix = next(((s, x) for s, x in SI_SCALES if shown >= s), (1.0, ""))
        return f"{float(value) / scale:.3g}{suffix}"
    if isinstance(value, numbers.Integral):
        return str(value)
    if 1e3 <= magnitude < 1e5:
        return f"{value:.0f}"
    if 0 < magnitude < 1e-2:  # 3.16e-3, not 0.003162: narrow columns of learning rates
        mantissa, exponent = f"{value:.2e}".split("e")
        return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"
    return f"{value:.4g}"


def format_column(values: list[object]) -> list[str]:
    """A column's cells in one style: SI suffixes for every count from 1k when any reaches
    100k (not 33440 beside 114k), and plain decimals to the same places (1.870 beside
    1.871, not 1.87)."""
    large = any(_is_number(v) and 1e5 <= abs(float(v)) < 1e15 for v in values)  # type: ignore[arg-type]
    cells = [format_value(v, 1e3 if large else 1e5) for v in values]
    fractions = [
        DECIMAL.match(c) if isinstance(v, float) else None
        for c, v in zip(cells, values, strict=True)
    ]
    places = max((len(m.group(1) or "") for m in fractions if m), default=0)
    return [
        _pad(c, min(places, _places_for_4_digits(c)) - len(m.group(1) or "")) if m else c
        for c, m in zip(cells, fractions, strict=True)
    ]


def _places_for_4_digits(cell: str) -> int:
    """Places after the point that show 4 significant digits of a plain decimal."""
    whole, _, fraction = cell.lstrip("-").partition(".")
    if whole.strip("0"):
        return max(0, 4 - len(whole.lstrip("0")))
    return 4 + len(fraction) - len(fraction.lstrip("0"))


def _pad(cell: str, zeros: int) -> str:
    return cell + ("" if "." in cell else ".") + "0" * zeros if zeros > 0 else cell


def _missing(value: object) -> bool:
    """NULL, NaN, pandas' NA and NaT (pandas is looked at only when already imported)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return True
    pd = sys.modules.get("pandas")
    return pd is not None and (value is pd.NA or value is pd.NaT)


def _is_number(value: object) -> bool:
    return (
        isinstance(value, numbers.Real)
        and not isinstance(value, bool)
        and (type(value).__name__ != "bool_")
    )


# Tables of runs read at 80 columns: short headers, id prefixes (enough to find a run
# with `run_id LIKE 'abcd1234%'`), and text that folds rather than ending in "…".
SHORT_HEADERS = {
    "run_id": "run", "d_model": "d", "n_layers": "L", "n_heads": "h", "params": "N",
    "tokens": "D", "flops": "C", "batch_size": "bs", "final_val_loss": "loss",
    "wall_s": "wall s", "est_s": "est s", "parametrization": "param", "n_points": "runs",
    "n_diverged": "div", "n_fit": "fit", "bracketed": "brkt", "loss_opt": "loss*",
    "predicted": "pred", "penalty_pct": "pen %", "grid_penalty_pct": "grid %",
    "covered": "in", "rel_error": "rel err",
}  # fmt: skip
RUN_ID_SHOWN = 8


def print_frame(
    frame: pd.DataFrame,
    title: str | None = None,
    short: bool = False,
    squeeze: str | None = None,
    compact: bool = False,
) -> None:
    """A DataFrame as a compact rich table (floats to 4 significant digits, SI suffixes).

    short: a table of runs, with short headers and run-id prefixes, to fit 80 columns.
    squeeze: a text column cut to what the others leave of the line (one line a row).
    compact (implied by squeeze): a column the same in every row is said once in the title
    (the squeezed one too, and left out where it is empty in every row).
    """
    import pandas as pd

    if (compact or squeeze is not None) and len(frame) > 1:
        same = [c for c in frame.columns if frame[c].nunique(dropna=False) == 1]
        blank = [c for c in same if c == squeeze and not str(frame[c].iloc[0]).strip()]
        said = ", ".join(
            f"{c} {format_value(frame[c].iloc[0]) or '-'}" for c in same if c not in blank
        )
        if said:
            title = f"{title}: all {said}" if title else f"all {said}"
        frame = frame.drop(columns=same)
        squeeze = None if squeeze in same else squeeze
    if short:
        if "run_id" in frame:
            frame = frame.assign(run_id=frame["run_id"].astype(str).str[:RUN_ID_SHOWN])
        frame = frame.rename(columns=SHORT_HEADERS)
    numeric = [pd.api.types.is_numeric_dtype(frame[c]) for c in frame.columns]
    squeezed = SHORT_HEADERS.get(squeeze, squeeze) if short and squeeze else squeeze
    print_rows(list(frame.columns), list(frame.itertuples(index=False)), title, numeric, squeezed)


def print_rows(
    columns: list[str],
    rows: list[tuple[object, ...]],
    title: str | None = None,
    numeric: list[bool] | None = None,
    squeeze: str | None = None,
) -> None:
    """Rows as a compact table; numeric columns (by default: those whose cells are all
    numbers or empty) are right-aligned; the column `squeeze` is cut to fit the line."""
    if numeric is None:
        numeric = [
            all(_missing(r[i]) or _is_number(r[i]) for r in rows) and bool(rows)
            for i in range(len(columns))
        ]
    table = Table(title=title, box=box.SIMPLE_HEAD, padding=(0, 0), show_edge=False)
    for column, right in zip(columns, numeric, strict=True):
        table.add_column(str(column), justify="right" if right else "left", overflow="fold")
    cells = [format_column([row[i] for row in rows]) for i in range(len(columns))]
    if squeeze in columns:
        i = columns.index(squeeze)
        others = sum(
            max([len(str(c)), *map(len, cells[j])]) for j, c in enumerate(columns) if j != i
        )
        room = max(len(str(squeeze)), 12, console.width - others - (len(columns) - 1))
        cells[i] = [c if len(c) <= room else c[: room - 1] + "…" for c in cells[i]]
    for row in zip(*cells, strict=True):
        table.add_row(*row)
    console.print(table)


def progress_bar(transient: bool = False) -> Progress:
    """The progress bar of long commands: count, bar, rate fields, elapsed and ETA.

    At 80 columns the count, times and ETA keep their width and the bar is short; the
    label and the rate fields share what is left, cut with an ellipsis."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.table import Column

    def fixed(width: int) -> Column:
        return Column(no_wrap=True, min_width=width)

    left = max(20, console.width - 10 - 11 - 7 - 3 - 7 - 6)  # the fixed columns, 6 gaps

    def shrinking(share: float) -> Column:
        return Column(no_wrap=True, overflow="ellipsis", max_width=int(left * share))

    return Progress(
        TextColumn("{task.description}", style="bold", markup=False, table_column=shrinking(0.45)),
        BarColumn(bar_width=10, table_column=fixed(10)),
        MofNCompleteColumn(table_column=fixed(11)),
        TextColumn("{task.fields[info]}", markup=False, table_column=shrinking(0.55)),
        TimeElapsedColumn(table_column=fixed(7)),
        TextColumn("eta", table_column=fixed(3)),
        TimeRemainingColumn(table_column=fixed(7)),
        console=console,
        transient=transient,
        disable=not console.is_terminal,  # a file or a pipe gets plain lines instead
    )


@contextmanager
def working(description: str) -> Iterator[None]:
    """A spinner and the time elapsed on stderr while a command computes (a fit of every law
    form takes seconds to a minute); nothing where stderr is not a terminal, and nothing left
    behind on it, so the answer on stdout reads the same either way."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    errors = Console(stderr=True, markup=False, highlight=False)
    columns = (SpinnerColumn(), TextColumn("{task.description}", markup=False),
               TimeElapsedColumn())  # fmt: skip
    with Progress(*columns, console=errors, transient=True,
                  disable=not errors.is_terminal) as spinner:  # fmt: skip
        spinner.add_task(description, total=None)
        yield


def _json_safe(value: Any) -> Any:
    """NaN and inf become null so the JSON is valid for any reader."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def emit_json(payload: dict[str, Any]) -> None:
    """One JSON object on stdout (what every --json prints)."""
    typer.echo(json.dumps(_json_safe(payload), indent=1, default=str))
