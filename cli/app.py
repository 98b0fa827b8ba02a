"""The `scaling` command: a thin typer app; user mistakes print one red line and exit 2."""

from __future__ import annotations

import inspect
import sys
import warnings
from typing import Annotated, TextIO

import typer
from rich.console import Console
from rich.text import Text

from cli import curve_imports, imports, laws, query, report, schedules, sizes, sweep, training
from cli.common import EXIT_INTERRUPTED, Interrupted
from scaling.errors import ScalingWarning

try:  # typer >= 0.22 vendors click; older typers use click itself
    from typer._click import exceptions as click_errors
except ImportError:  # pragma: no cover
    from click import exceptions as click_errors  # type: ignore[no-redef]

# Mistakes a user can fix, by module: looked up only among modules already imported (an
# error class whose module was never loaded cannot have been raised), so that `--help`
# does not import the fitting stack to name FitError.
USER_ERRORS = (
    ("runners.errors", "RunnerError"),
    ("store.errors", "StoreError"),
    ("fits.errors", "FitError"),
    ("scaling.errors", "ScalingError"),
)

app = typer.Typer(
    name="scaling",
    help="Train small models, log them to DuckDB, fit scaling laws, predict large runs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(show: bool) -> None:
    if show:
        from importlib.metadata import PackageNotFoundError, version

        try:
            number = version("scaling")
        except PackageNotFoundError:  # run from a checkout that was never installed
            number = "unknown (not installed)"
        print(f"scaling {number}")
        raise typer.Exit()


@app.callback()
def _options(
    show_version: Annotated[
        bool,
        typer.Option("--version", is_eager=True, callback=_version, help="Print the version."),
    ] = False,
) -> None:
    """Train small models, log them to DuckDB, fit scaling laws, predict large runs."""


app.command("run")(training.run)
app.command("demo")(training.demo)
app.command("sql")(query.sql)
app.command("runs")(query.runs)
app.command("import")(imports.import_runs)
app.command("import-curves")(curve_imports.import_curves)
app.command("fit")(laws.fit)
laws.predict_app.command("curve")(schedules.predict_curve)
laws.predict_app.command("schedule")(schedules.predict_schedule)
app.add_typer(laws.predict_app, name="predict")
app.command("backtest")(laws.backtest)
app.command("report")(report.report)
app.command("sizes")(sizes.sizes)
app.add_typer(sweep.app, name="sweep")


def _unwrapped_help(*apps: typer.Typer) -> None:
    """Each command's help is its docstring with each paragraph on one line, and its line in
    its group's list the first paragraph: typer's rich mode keeps a docstring's source line
    breaks, so a sentence wrapped in the source broke mid-line in `scaling predict --help`."""
    for group in apps:
        for info in group.registered_commands:
            if info.help is None and info.callback is not None:
                paragraphs = inspect.cleandoc(info.callback.__doc__ or "").split("\n\n")
                info.help = "\n\n".join(" ".join(p.split()) for p in paragraphs)
                info.short_help = info.short_help or info.help.split("\n\n")[0]


_unwrapped_help(app, laws.predict_app, sweep.app)


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    """What the API did not do (e.g. log an answer) is one yellow line on stderr."""
    _stderr(Text.assemble(("warning:", "yellow"), " ", " ".join(str(message).split())))


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
    except Interrupted as exc:  # a sweep says what it leaves
        _stderr(Text(str(exc), style="yellow"))
        sys.exit(EXIT_INTERRUPTED)
    except Exception as exc:
        if _is_ctrl_c_in_duckdb(exc):
            code = EXIT_INTERRUPTED
        elif _is_user_error(exc):
            _fail(str(exc))
        else:
            raise
    except (KeyboardInterrupt, typer.Abort):
        code = EXIT_INTERRUPTED
    if code == EXIT_INTERRUPTED:  # typer turns Ctrl-C into this code, silently
        _stderr(Text("interrupted", style="yellow"))
    if isinstance(code, int) and code:
        sys.exit(code)


def _is_ctrl_c_in_duckdb(exc: Exception) -> bool:
    """DuckDB turns a Ctrl-C that lands on a statement run in the main thread (opening the
    log, a short write) into this RuntimeError rather than KeyboardInterrupt."""
    return type(exc) is RuntimeError and str(exc) == "Query interrupted"


def _is_user_error(exc: Exception) -> bool:
    loaded = (getattr(sys.modules.get(module), name, None) for module, name in USER_ERRORS)
    return any(isinstance(exc, kind) for kind in loaded if isinstance(kind, type))


def _fail(message: str) -> None:
    _stderr(Text.assemble(("error:", "bold red"), " ", " ".join(message.split())))
    sys.exit(2)


def _stderr(line: Text) -> None:
    """One line on stderr, never wrapped (a log line or a test reads it whole)."""
    Console(stderr=True, soft_wrap=True, markup=False).print(line, highlight=False)
