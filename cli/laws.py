"""`scaling fit`, `scaling predict ...`, `scaling backtest`: laws and what they answer."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cli import common
from cli.answers import beyond, show
from cli.common import (
    DbOption,
    Json,
    console,
    emit_json,
    format_value,
    positive,
    print_frame,
    real,
)
from cli.fit_display import fit_payload, print_fit, print_forms
from scaling.errors import ScalingError

if TYPE_CHECKING:
    from scaling.study import Study

# The names of fits.LOSS_LAWS and scaling.laws.LAWS, and the help of scaling.laws.OPTIONS,
# for the help texts: importing those registries loads scipy and statsmodels, which
# `scaling --help` should not wait for (tests/test_cli_hardening.py checks that they agree).
LOSS_LAW_NAMES = ("chinchilla", "chinchilla-shared", "data-constrained", "farseer", "kaplan",
                  "overfitting")  # fmt: skip
LAW_NAMES = ("auto", *LOSS_LAW_NAMES, "isoflop", "envelope", "power", "lr", "lr-law", "bs-law",
             "schedule")  # fmt: skip

Arch = Annotated[str | None, typer.Option(help="Only runs of this architecture.")]
Source = Annotated[
    str | None, typer.Option(help="Only runs from this source (local, imported:NAME).")
]
Where = Annotated[str | None, typer.Option(help="Extra SQL condition on runs.")]
Level = Annotated[float, typer.Option(help="Interval level.", min=0.5, max=0.999)]
MAX_BOOTSTRAP = 100_000  # beyond this the intervals do not move and the fit takes hours
Bootstrap = Annotated[
    int,
    typer.Option(min=1, max=MAX_BOOTSTRAP, help="Bootstrap resamples (loss laws, power)."),
]
Law = Annotated[
    str,
    typer.Option(
        "--law",
        help=f"Loss law: auto (the form that extrapolates best) or {', '.join(LOSS_LAW_NAMES)}.",
    ),
]
PowerX = Annotated[str, typer.Option(help="power: the variable, N, D, C or width.")]
FixedE = Annotated[
    float | None,
    typer.Option("--E", parser=real, help="power: hold the offset E fixed (e.g. 0)."),
]
LrForm = Annotated[str, typer.Option(help="lr-law: auto, step, porian or bjorck.")]

WIDE = 120  # a terminal this wide shows each held-out group's interval beside its prediction
ANSWERING = "answering (the first question of a selection fits its law first)"

predict_app = typer.Typer(help="Answer a question about a large run, with an interval.",
                          no_args_is_help=True)  # fmt: skip


def _study(db: Any, level: float = 0.90, bootstrap: int = 1000) -> Study:
    from scaling.study import Study

    return Study(db, level=level, n_bootstrap=bootstrap)


def fit(
    law: Annotated[str, typer.Argument(help=f"One of: {', '.join(LAW_NAMES)}.")],
    arch: Arch = None,
    source: Source = None,
    where: Where = None,
    bootstrap: Bootstrap = 1000,
    level: Level = 0.90,
    n_column: Annotated[str, typer.Option(help="N is params or params_nonembed.")] = "params",
    x: PowerX = "C",
    fixed_e: FixedE = None,
    form: LrForm = "auto",
    method: Annotated[
        str,
        typer.Option(
            help="lr-law data: vertex (per-group optimum) or near-optimal (runs within 0.25% "
            "of their (N, D) best, as Step Law)."
        ),
    ] = "vertex",
    n_neighbors: Annotated[
        int | None,
        typer.Option(
            "--n-neighbors",
            "--neighbors",  # its name before it took the estimators' (fits/) name
            min=1,
            help="isoflop: each budget's parabola through its best size and this many "
            "neighbours a side (default: all sizes), for profiles sampled far past their "
            "minimum.",
        ),
    ] = None,
    resolution: Annotated[
        float | None,
        typer.Option(
            parser=positive,
            help="isoflop: runs share a budget when log10 C rounds to the same multiple of "
            "this (default 0.05, within about 6%; 0.25 groups Chinchilla's budgets).",
        ),
    ] = None,
    schedule_law: Annotated[
        str, typer.Option("--law", help="schedule: multi-power, annealing or auto.")
    ] = "auto",
    loss: Annotated[str, typer.Option(help="schedule: fit the curves' val or train loss.")] = "val",
    groups: Annotated[bool, typer.Option(help="Also print the per-group table.")] = False,
    refit: Annotated[bool, typer.Option(help="Fit again even if stored for these runs.")] = False,
    force: Annotated[
        bool, typer.Option(help="Keep a loss law the data cannot identify, flagged.")
    ] = False,
    as_json: Json = False,
    db: DbOption = None,
) -> None:
    """Fit a law on a selection of runs, print it and store it in the fits table."""
    from scaling.laws import get as get_law

    given = {"x": x, "E": fixed_e, "form": form, "method": method, "n_neighbors": n_neighbors,
             "resolution": resolution, "schedule_law": schedule_law, "loss": loss}  # fmt: skip
    options = get_law(law).options_from(given)
    with common.working(f"fitting {law}"):
        fitted = _study(db, level, bootstrap).fit(law, arch, source, where, n_column=n_column,
                                                  refit=refit, force=force, **options)  # fmt: skip
    if as_json:
        emit_json(fit_payload(fitted))
        return
    print_fit(fitted, get_law(law).table, groups)


@predict_app.command("loss")
def predict_loss(
    n: Annotated[
        float | None, typer.Option("--N", "-N", parser=positive, help="Parameters (7e9, 7B).")
    ] = None,
    d: Annotated[
        float | None, typer.Option("--D", "-D", parser=positive, help="Tokens (1.4T).")
    ] = None,
    compute: Annotated[
        float | None, typer.Option(parser=positive, help="Training FLOPs C = 6ND (with --M).")
    ] = None,
    m: Annotated[
        float | None,
        typer.Option("--M", parser=positive, help="Tokens per parameter M = D/N (with --compute)."),
    ] = None,
    unique: Annotated[
        float | None,
        typer.Option("--U", parser=positive, help="Unique tokens (laws that read them)."),
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
        if not (0 < n < math.inf and 0 < d < math.inf):
            raise ScalingError(f"--compute {compute:g} with --M {m:g} gives N = {n:g}, "
                               f"D = {d:g}: no model has that size")  # fmt: skip
    assert n is not None and d is not None
    study = _study(db, level)
    with common.working(ANSWERING):
        answer = study.predict_loss(n, d, arch, source, where, law=law, U=unique)
    repeats = {"epochs": d / unique} if unique is not None and d > unique else {}
    show(answer, as_json, beyond(study, arch, source, where, N=n, D=d, C=6.0 * n * d, **repeats))


@predict_app.command("optimal")
def predict_optimal(
    compute: Annotated[
        float | None, typer.Option(parser=positive, help="Training FLOPs (1e24).")
    ] = None,
    hours: Annotated[
        float | None,
        typer.Option(parser=positive, help="Or wall-clock hours on the device the runs timed."),
    ] = None,
    seq_len: Annotated[int | None, typer.Option(min=1, help="--hours: context length.")] = None,
    law: Law = "auto",
    arch: Arch = None,
    source: Source = None,
    where: Where = None,
    level: Level = 0.90,
    as_json: Json = False,
    db: DbOption = None,
) -> None:
    """Compute-optimal N and D (C = 6ND), or the best within --hours, and the loss they reach."""
    study = _study(db, level)
    if hours is not None and compute is None:
        with common.working(ANSWERING):
            answer = study.optimal_within(hours, arch, seq_len, source, where, law=law)
        best = answer.optima[answer.asked or answer.winner]
        shown = {"N": best.N, "D": best.D, "C": 6.0 * best.N * best.D}
        show(answer, as_json, beyond(study, best.arch, source, where, **shown))
    elif compute is not None and hours is None:
        with common.working(ANSWERING):
            allocation = study.compute_optimal(compute, arch, source, where, law=law)
        shown = {"N": allocation.N.value, "D": allocation.D.value, "C": compute}
        show(allocation, as_json, beyond(study, arch, source, where, **shown))
    else:
        raise ScalingError("give exactly one of --compute FLOPS or --hours H")


@predict_app.command("lr")
def predict_lr(
    n: Annotated[float, typer.Option("--N", "-N", parser=positive, help="Parameters.")],
    d: Annotated[float, typer.Option("--D", "-D", parser=positive, help="Tokens.")],
    method: Annotated[
        str,
        typer.Option(
            help="The LR law's data: vertex (per-group optimum) or near-optimal (runs within "
            "0.25% of their (N, D) best, the Step Law procedure)."
        ),
    ] = "vertex",
    arch: Arch = None,
    source: Source = None,
    where: Where = None,
    level: Level = 0.90,
    as_json: Json = False,
    db: DbOption = None,
) -> None:
    """Optimal peak learning rate from the LR law fitted on LR scans."""
    study = _study(db, level)
    with common.working(ANSWERING):
        answer = study.optimal_lr(n, d, arch, source, where, method)
    show(answer, as_json, beyond(study, arch, source, where, N=n, D=d, C=6.0 * n * d))


@predict_app.command("bs")
def predict_bs(
    d: Annotated[float, typer.Option("--D", "-D", parser=positive, help="Tokens.")],
    arch: Arch = None,
    source: Source = None,
    where: Where = None,
    level: Level = 0.90,
    as_json: Json = False,
    db: DbOption = None,
) -> None:
    """Optimal batch size (in tokens) at horizon D."""
    study = _study(db, level)
    with common.working(ANSWERING):
        answer = study.optimal_batch_size(d, arch, source, where)
    show(answer, as_json, beyond(study, arch, source, where, D=d))


@predict_app.command("power")
def predict_power(
    at: Annotated[float, typer.Option(parser=positive, help="The variable's value (7B, 4096).")],
    x: Annotated[str, typer.Option(help="The variable: N, D, C or width.")] = "C",
    fixed_e: Annotated[
        float | None, typer.Option("--E", parser=real, help="Hold the offset E fixed (e.g. 0).")
    ] = None,
    arch: Arch = None,
    source: Source = None,
    where: Where = None,
    level: Level = 0.90,
    as_json: Json = False,
    db: DbOption = None,
) -> None:
    """Loss at one value of N, D, C or width from the power law L = E + A x^-alpha (as
    `fit power` fits it), with the law's own interval (`backtest power --x` scores it)."""
    study = _study(db, level)
    with common.working(ANSWERING):
        answer = study.power_loss(at, x, fixed_e, arch, source, where)
    show(answer, as_json, beyond(study, arch, source, where, **{x: at}))


@predict_app.command("crossover")
def predict_crossover(
    arch_a: Annotated[str, typer.Argument(help="First architecture.")],
    arch_b: Annotated[str, typer.Argument(help="Second architecture.")],
    min_compute: Annotated[float, typer.Option(parser=positive, help="Search from.")] = 1e15,
    max_compute: Annotated[float, typer.Option(parser=positive, help="Search to.")] = 1e27,
    law: Law = "auto",
    source: Source = None,
    level: Level = 0.90,
    as_json: Json = False,
    db: DbOption = None,
) -> None:
    """Compute at which one architecture's compute-optimal frontier passes the other's."""
    study = _study(db, level)
    with common.working(ANSWERING):
        answer = study.crossover(arch_a, arch_b, (min_compute, max_compute), source, law=law)
    show(answer, as_json)


def backtest(
    law: Annotated[
        str, typer.Argument(help=f"auto, {', '.join(LOSS_LAW_NAMES)}, power, lr-law or bs-law.")
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
    x: PowerX = "C",
    fixed_e: FixedE = None,
    form: LrForm = "auto",
    level: Level = 0.90,
    as_json: Json = False,
    db: DbOption = None,
) -> None:
    """Refit without the held-out runs and score its predictions of them."""
    from scaling.laws import get as get_law

    options = get_law(law).options_from({"x": x, "E": fixed_e, "form": form})
    with common.working(f"backtesting {law}"):
        result = _study(db, level).backtest(
            law, arch, holdout, fraction, source, where, method, **options
        )
    if as_json:
        emit_json(result.to_dict())
        return
    from scaling.results import HparamBacktest

    if isinstance(result, HparamBacktest):
        shown = result.frame.drop(columns=["arch", "parametrization", "lo", "hi"])
        interval = result.frame[["lo", "hi"]].apply(
            lambda r: f"{format_value(r.lo)}..{format_value(r.hi)}", axis=1
        )
        if console.width >= WIDE:  # narrower, the interval is in --json and `in` says if it held
            shown.insert(shown.columns.get_loc("predicted") + 1, "interval", interval)
        print_frame(shown, title="held-out (N, D) groups", short=True, squeeze="note")
    else:
        # narrower than WIDE, the law's own interval is left to --json and the summary line
        narrow = ["lo_law", "hi_law"] if console.width < WIDE else []
        shown = result.frame.drop(columns=["run_id", *narrow], errors="ignore")
        unknown = [c for c in ("N", "D", "C") if shown[c].isna().all()]  # e.g. widths alone
        shown = shown.drop(columns=unknown)
        print_frame(shown, title="held-out runs", short=True)
        if result.forms is not None:
            print_forms(result.forms, title="law forms (nested backtests on the training runs)")
    console.print(str(result), highlight=False)
