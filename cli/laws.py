"""`scaling fit`, `scaling predict ...`, `scaling backtest`: laws and what they answer."""

from __future__ import annotations

import json
import math
from typing import Annotated, Any

import typer

from cli.common import DbOption, console, format_value, print_frame, real
from fits import LOSS_LAWS
from scaling.errors import ScalingError
from scaling.laws import BACKTESTED, LAWS, OPTIONS
from scaling.laws import get as get_law
from scaling.results import FittedLaw, HparamBacktest
from scaling.study import Study

Arch = Annotated[str | None, typer.Option(help="Only runs of this architecture.")]
Source = Annotated[
    str | None, typer.Option(help="Only runs from this source (local, imported:NAME).")
]
Where = Annotated[str | None, typer.Option(help="Extra SQL condition on runs.")]
Json = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]
Level = Annotated[float, typer.Option(help="Interval level.", min=0.5, max=0.999)]
Bootstrap = Annotated[int, typer.Option(help="Bootstrap resamples (loss laws, power).")]
Law = Annotated[
    str,
    typer.Option(
        "--law", help=f"Loss law: auto (the form that extrapolates best) or {', '.join(LOSS_LAWS)}."
    ),
]

predict_app = typer.Typer(help="Answer a question about a large run, with an interval.",
                          no_args_is_help=True)  # fmt: skip


def _study(db: Any, level: float = 0.90, bootstrap: int = 1000) -> Study:
    return Study(db, level=level, n_bootstrap=bootstrap)


def _clean(value: Any) -> Any:
    """NaN and inf become null so the JSON is valid for any reader."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def _emit(payload: dict[str, Any]) -> None:
    typer.echo(json.dumps(_clean(payload), indent=1, default=str))


def fit_payload(fitted: FittedLaw) -> dict[str, Any]:
    """The JSON of a fit: parameter names as keys, then intervals and the rest."""
    model = fitted.model
    out: dict[str, Any] = dict(model.params_)
    out["intervals"] = {k: list(v) for k, v in model.intervals_.items()}
    out["stderr"] = dict(model.stderr_)
    out["level"] = model.level_
    out["n_points"] = model.n_points_
    out["objective"] = model.objective_
    for name in ("derived_", "derived_intervals_"):
        if hasattr(model, name):
            out[name.rstrip("_")] = getattr(model, name)
    if hasattr(model, "identification_problems"):
        out["problems"] = model.identification_problems()
    if hasattr(model, "cautions"):
        out["cautions"] = model.cautions()
    if fitted.table is not None:
        out["table"] = json.loads(fitted.table.to_json(orient="records"))
    if fitted.forms is not None:
        out["forms"] = json.loads(fitted.forms.to_json(orient="records"))
        out["calibration"] = None if fitted.calibration is None else fitted.calibration.to_dict()
    out.update({"law": fitted.law, "fit_id": fitted.fit_id, "n_runs": fitted.selection["n_runs"]})
    return out


def fit(
    law: Annotated[str, typer.Argument(help=f"One of: {', '.join(LAWS)}.")],
    arch: Arch = None,
    source: Source = None,
    where: Where = None,
    bootstrap: Bootstrap = 1000,
    level: Level = 0.90,
    n_column: Annotated[str, typer.Option(help="N is params or params_nonembed.")] = "params",
    x: Annotated[str, typer.Option(help=OPTIONS["x"].help)] = OPTIONS["x"].default,
    fixed_e: Annotated[float | None, typer.Option("--E", help=OPTIONS["E"].help)] = None,
    form: Annotated[str, typer.Option(help=OPTIONS["form"].help)] = OPTIONS["form"].default,
    method: Annotated[
        str, typer.Option(help=OPTIONS["method"].help)
    ] = OPTIONS["method"].default,
    neighbors: Annotated[
        int | None, typer.Option(min=1, help=OPTIONS["neighbors"].help)
    ] = None,
    groups: Annotated[bool, typer.Option(help="Also print the per-group table.")] = False,
    refit: Annotated[bool, typer.Option(help="Fit again even if stored for these runs.")] = False,
    force: Annotated[
        bool, typer.Option(help="Keep a loss law the data cannot identify, flagged.")
    ] = False,
    as_json: Json = False,
    db: DbOption = None,
) -> None:
    """Fit a law on a selection of runs, print it and store it in the fits table."""
    given = {"x": x, "E": fixed_e, "form": form, "method": method, "neighbors": neighbors}
    options = get_law(law).options_from(given)
    fitted = _study(db, level, bootstrap).fit(law, arch, source, where, n_column=n_column,
                                              refit=refit, force=force, **options)  # fmt: skip
    if as_json:
        _emit(fit_payload(fitted))
        return
    console.print(f"[bold]{fitted.law}[/] fit {fitted.fit_id} on {fitted.selection['n_runs']} runs")
    console.print(fitted.model.summary(), highlight=False)
    for line in fitted.extrapolation_lines():
        console.print(line, highlight=False)
    table = fitted.table
    if table is None:
        return
    if "bracketed" in table.columns:
        console.print(f"{int(table.bracketed.sum())} of {len(table)} groups have a bracketed "
                      "LR optimum")  # fmt: skip
    title = get_law(law).table
    if title or groups:
        shown = table.assign(note=table["note"].astype(str).str.slice(0, 48))
        print_frame(shown, title=title or "per group")


def _show(answer: Any, as_json: bool) -> None:
    if as_json:
        _emit(answer.to_dict())
    else:
        console.print(str(answer), highlight=False)


@predict_app.command("loss")
def predict_loss(
    n: Annotated[
        float | None, typer.Option("--N", "-N", parser=real, help="Parameters (7e9, 7B).")
    ] = None,
    d: Annotated[
        float | None, typer.Option("--D", "-D", parser=real, help="Tokens (1.4T).")
    ] = None,
    compute: Annotated[
        float | None, typer.Option(parser=real, help="Training FLOPs C = 6ND (with --M).")
    ] = None,
    m: Annotated[
        float | None,
        typer.Option("--M", parser=real, help="Tokens per parameter M = D/N (with --compute)."),
    ] = None,
    unique: Annotated[
        float | None,
        typer.Option("--U", parser=real, help="data-constrained: unique tokens available."),
    ] = None,
    law: Law = "auto",
    arch: Arch = None,
    source: Source = None,
    where: Where = None,
    level: Level = 0.90,
    as_json: Json = False,
    db: DbOption = None,
) -> None:
    """Loss of an N-parameter model trained on D tokens, or at compute C with D = M N
    (Gadre et al.'s terms); the interval is calibrated by backtests."""
    if (
        (n is None) != (d is None)
        or (compute is None) != (m is None)
        or (n is None) == (compute is None)
    ):
        raise ScalingError("give --N and --D, or --compute and --M")
    if compute is not None and m is not None:
        if not (compute > 0 and m > 0):
            raise ScalingError("--compute and --M must be positive")
        n = math.sqrt(compute / (6.0 * m))
        d = m * n
    assert n is not None and d is not None
    answer = _study(db, level).predict_loss(n, d, arch, source, where, law=law, U=unique)
    _show(answer, as_json)


@predict_app.command("optimal")
def predict_optimal(
    compute: Annotated[
        float | None, typer.Option(parser=real, help="Training FLOPs (1e24).")
    ] = None,
    hours: Annotated[
        float | None, typer.Option(help="Or wall-clock hours on the device the runs timed.")
    ] = None,
    seq_len: Annotated[int | None, typer.Option(help="--hours: context length.")] = None,
    law: Law = "auto",
    arch: Arch = None,
    source: Source = None,
    where: Where = None,
    level: Level = 0.90,
    as_json: Json = False,
    db: DbOption = None,
) -> None:
    """Compute-optimal N and D (C = 6ND), or the best within --hours, and the loss they reach."""
    if hours is not None and compute is None:
        answer = _study(db, level).optimal_within(hours, arch, seq_len, source, where, law=law)
        _show(answer, as_json)
    elif compute is not None and hours is None:
        _show(_study(db, level).compute_optimal(compute, arch, source, where, law=law), as_json)
    else:
        raise ScalingError("give exactly one of --compute FLOPS or --hours H")


@predict_app.command("lr")
def predict_lr(
    n: Annotated[float, typer.Option("--N", "-N", parser=real, help="Parameters.")],
    d: Annotated[float, typer.Option("--D", "-D", parser=real, help="Tokens.")],
    arch: Arch = None,
    source: Source = None,
    where: Where = None,
    level: Level = 0.90,
    as_json: Json = False,
    db: DbOption = None,
) -> None:
    """Optimal peak learning rate from the LR law fitted on LR scans."""
    _show(_study(db, level).optimal_lr(n, d, arch, source, where), as_json)


@predict_app.command("bs")
def predict_bs(
    d: Annotated[float, typer.Option("--D", "-D", parser=real, help="Tokens.")],
    arch: Arch = None,
    source: Source = None,
    where: Where = None,
    level: Level = 0.90,
    as_json: Json = False,
    db: DbOption = None,
) -> None:
    """Optimal batch size (in tokens) at horizon D."""
    _show(_study(db, level).optimal_batch_size(d, arch, source, where), as_json)


@predict_app.command("crossover")
def predict_crossover(
    arch_a: Annotated[str, typer.Argument(help="First architecture.")],
    arch_b: Annotated[str, typer.Argument(help="Second architecture.")],
    min_compute: Annotated[float, typer.Option(parser=real, help="Search from.")] = 1e15,
    max_compute: Annotated[float, typer.Option(parser=real, help="Search to.")] = 1e27,
    law: Law = "auto",
    source: Source = None,
    level: Level = 0.90,
    as_json: Json = False,
    db: DbOption = None,
) -> None:
    """Compute at which one architecture's compute-optimal frontier passes the other's."""
    study = _study(db, level)
    answer = study.crossover(arch_a, arch_b, (min_compute, max_compute), source, law=law)
    _show(answer, as_json)


def backtest(
    law: Annotated[
        str, typer.Argument(help=f"One of: {', '.join(BACKTESTED)}.")
    ] = "auto",
    arch: Arch = None,
    source: Source = None,
    where: Where = None,
    holdout: Annotated[
        str, typer.Option(help="top-compute, top-params, top-tokens or random.")
    ] = "top-compute",
    fraction: Annotated[
        float, typer.Option(help="Fraction of runs (lr-law, bs-law: of (N, D) groups) held out.")
    ] = 0.25,
    method: Annotated[
        str | None,
        typer.Option(help="lr-law: vertex (default) or near-optimal, as in `scaling fit`."),
    ] = None,
    level: Level = 0.90,
    as_json: Json = False,
    db: DbOption = None,
) -> None:
    """Refit without the held-out runs and score its predictions of them."""
    result = _study(db, level).backtest(law, arch, holdout, fraction, source, where, method)
    if as_json:
        _emit(result.to_dict())
        return
    if isinstance(result, HparamBacktest):
        shown = result.frame.drop(columns=["arch", "parametrization", "lo", "hi"])
        interval = result.frame[["lo", "hi"]].apply(
            lambda r: f"{format_value(r.lo)}..{format_value(r.hi)}", axis=1
        )
        shown.insert(shown.columns.get_loc("predicted") + 1, "interval", interval)
        print_frame(shown, title="held-out (N, D) groups")
    else:
        print_frame(result.frame.drop(columns=["run_id"]), title="held-out runs")
        if result.forms is not None:
            print_frame(result.forms, title="law forms (nested backtests on the training runs)")
    console.print(str(result), highlight=False)
