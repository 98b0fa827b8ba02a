"""The `scaling` command: a thin typer app; user mistakes print one red line and exit 2."""

from __future__ import annotations

import sys
import warnings
from typing import TextIO

import typer
from rich.console import Console
from rich.markup import escape

from cli import curve_imports, imports, laws, query, report, sizes, sweep, training
from fits.errors import FitError
from runners.errors import RunnerError
from scaling.errors import ScalingError, ScalingWarning
from store.errors import StoreError

try:  # typer >= 0.22 vendors click; older typers use click itself
    from typer._click import exceptions as click_errors
except ImportError:  # pragma: no cover
    from click import exceptions as click_errors  # type: ignore[no-redef]

USER_ERRORS = (RunnerError, StoreError, FitError, ScalingError)

app = typer.Typer(
    name="scaling",
    help="Train small models, log them to DuckDB, fit scaling laws, predict large runs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("run")(training.run)
app.command("demo")(training.demo)
app.command("sql")(query.sql)
app.command("runs")(query.runs)
app.command("import")(imports.import_runs)
app.command("import-curves")(curve_imports.import_curves)
app.command("fit")(laws.fit)
app.add_typer(laws.predict_app, name="predict")
app.command("backtest")(laws.backtest)
app.command("report")(report.report)
app.command("sizes")(sizes.sizes)
app.add_typer(sweep.app, name="sweep")


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    """What the API did not do (e.g. log an answer) is one yellow line on stderr."""
    Console(stderr=True).print(f"[yellow]warning:[/] {message}", highlight=False)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the console script: every mistake is one red line and exit 2."""
    warnings.showwarning = _show_warning
    warnings.simplefilter("always", ScalingWarning)
    # numpy's overflow/divide notes from inside a fit are not for users: fits handle the
    # infinities they produce, and real problems are FitErrors.
    warnings.simplefilter("ignore", RuntimeWarning)
    try:
        code = app(args=argv, prog_name="scaling", standalone_mode=False)
    except click_errors.NoArgsIsHelpError as exc:
        print(exc.ctx.get_help() if exc.ctx else exc.format_message())
        sys.exit(0)
    except click_errors.UsageError as exc:
        hint = f" (see `{exc.ctx.command_path} --help`)" if exc.ctx else ""
        _fail(f"{exc.format_message()}{hint}")
    except click_errors.ClickException as exc:  # e.g. a file option that cannot be opened
        _fail(exc.format_message())
    except USER_ERRORS as exc:
        _fail(str(exc))
    except (KeyboardInterrupt, typer.Abort):
        Console(stderr=True).print("[yellow]interrupted[/]")
        sys.exit(130)
    if isinstance(code, int) and code:
        sys.exit(code)


def _fail(message: str) -> None:
    one_line = " ".join(message.split())
    Console(stderr=True, soft_wrap=True).print(
        f"[bold red]error:[/] {escape(one_line)}", highlight=False
    )
    sys.exit(2)
