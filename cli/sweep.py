"""`scaling sweep plan|run|status|suggest`: sweeps of many runs from a TOML spec, resumable.

The coordinator and designs import torch: they are imported inside the commands, so that
`scaling --help` and the other commands stay fast.
"""

from __future__ import annotations

import math
import re
import signal
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from cli.common import (
    DbOption,
    Interrupted,
    Json,
    console,
    emit_json,
    format_value,
    print_frame,
    progress_bar,
)
from runners.checkpoint import DEFAULT_EVERY_S
from runners.errors import RunnerError
from scaling.sweeps import EXIT_RUNS_LEFT

NO_WIDTH = "none (the interval is not finite: the runs cannot bound the target)"

app = typer.Typer(
    help="Sweeps of many runs from a TOML spec: plan them, run what is left, follow them.",
    no_args_is_help=True,
)
SpecArgument = Annotated[Path, typer.Argument(help="The sweep spec (TOML).", show_default=False)]
DURATION = re.compile(r"(\d+(?:\.\d*)?)\s*([dhms]?)", re.I)
SECONDS = {"d": 86400, "h": 3600, "m": 60, "s": 1, "": 1}


class ExecutorKind(StrEnum):
    local = "local"
    ray = "ray"


def duration(text: str) -> float:
    """Typer parser for 2h, 90m, 1h30m, 45s or plain seconds."""
    text = str(text).strip()
    parts = DURATION.findall(text)
    if not text or DURATION.sub("", text).strip():
        raise typer.BadParameter(f"{text!r} is not a duration (examples: 2h, 90m, 1h30m, 600)")
    return sum(float(n) * SECONDS[unit.lower()] for n, unit in parts)


def _clock(seconds: float) -> str:
    minutes, s = divmod(round(seconds), 60)
    hours, m = divmod(minutes, 60)
    return f"{hours}h {m:02d}m" if hours else f"{m}m {s:02d}s"


def plan(
    spec: SpecArgument,
    db: DbOption = None,
    workers: Annotated[int, typer.Option(help="Workers to estimate the wall time for.")] = 1,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda (decides precision auto).")] = (
        "auto"
    ),
    as_json: Json = False,
) -> None:
    """Print the runs a sweep would do, how many are done, its FLOPs and wall time."""
    from runners.sweeps.designs import DEFAULT_EXTRA_RUNS
    from runners.sweeps.spec import load_spec
    from scaling.sweeps.book import plan_sweep
    from scaling.sweeps.planner import planner_for
    from scaling.sweeps.timing import RUN_START_S, WORKER_START_S
    from store.sweeps import FINISHED

    sweep = load_spec(spec)
    result = plan_sweep(sweep.name, planner_for(sweep, device), db)
    runs = result.runs
    counts = runs["status"].value_counts()
    todo = runs[~runs["status"].isin(FINISHED)]
    columns = ["run_id", "arch", "d_model", "n_layers", "n_heads", "params", "tokens", "lr",
               "batch_size", "seed", "flops", "status", "est_s"]  # fmt: skip
    shown = runs[[c for c in columns if c in runs]]
    seconds = None
    if result.throughput is not None and len(todo):
        seconds = WORKER_START_S + todo["est_s"].sum() / max(1, workers)
    if as_json:
        emit_json({"sweep": sweep.name, "design": sweep.design.kind,
                   "runs": shown.to_dict("records"), "planned": len(runs),
                   "finished": {s: int(counts.get(s, 0)) for s in FINISHED},
                   "to_run": len(todo), "flops": runs["flops"].sum(),
                   "flops_to_run": todo["flops"].sum(), "workers": workers,
                   "estimated_wall_s": seconds})  # fmt: skip
        return
    same = [c for c in shown.columns[1:] if len(shown) > 1 and shown[c].nunique(dropna=False) == 1]
    title = f"sweep {sweep.name} ({sweep.design.kind})"
    if same:  # a column that never varies is said once, above the table
        title += ": all " + ", ".join(f"{c} {format_value(shown[c].iloc[0])}" for c in same)
    print_frame(shown.drop(columns=same), title=title, short=True)
    done = ", ".join(f"{counts.get(s, 0)} {s}" for s in FINISHED)
    console.print(f"{len(runs)} runs planned: {done}; {len(todo)} to run")
    if sweep.design.refine:
        limit = sweep.design.max_runs
        console.print(
            "refinement adds LRs until each group's optimum is bracketed, up to "
            + (f"{limit} runs per group" if limit else f"{DEFAULT_EXTRA_RUNS} more per group")
        )
    console.print(
        f"compute: {format_value(runs['flops'].sum())} FLOPs in all, "
        f"{format_value(todo['flops'].sum())} to run"
    )
    if result.throughput is None:
        console.print(
            "wall time: no estimate (no finished local runs in the log to measure throughput "
            "on; run a few, e.g. `sweep run --max-runs 2`, then plan again)"
        )
    elif seconds is not None:
        console.print(
            f"estimated wall time: {_clock(seconds)} with {workers} worker(s): training and "
            f"{format_value(todo['eval_tokens'].sum())} evaluated tokens at the throughput of "
            f"{result.throughput.n_runs} finished runs, plus start-up ({WORKER_START_S:.0f} s, "
            f"then {RUN_START_S:.0f} s a run)"
        )


def run(
    spec: SpecArgument,
    db: DbOption = None,
    workers: Annotated[int, typer.Option(help="Runs at once (processes, or Ray tasks).")] = 1,
    threads: Annotated[
        int | None, typer.Option(help="torch threads per worker [default: cores / workers].")
    ] = None,
    executor: Annotated[ExecutorKind, typer.Option(help="Where runs train.")] = (
        ExecutorKind.local
    ),
    ray_address: Annotated[
        str | None, typer.Option(help="Ray cluster (host:port or auto; default: a local Ray).")
    ] = None,
    max_runs: Annotated[
        int | None, typer.Option(min=1, help="Start at most this many runs, then stop.")
    ] = None,
    time_budget: Annotated[
        float | None,
        typer.Option(parser=duration, help="Start no run after this long (2h, 90m, 1h30m)."),
    ] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    retry_failed: Annotated[bool, typer.Option(help="Train failed runs again.")] = False,
    checkpoint_every: Annotated[
        float,
        typer.Option(
            parser=duration,
            help="Each run checkpoints this often (5m, 30s; 0: only when the sweep is "
            "stopped); a restarted sweep resumes its runs from their checkpoints.",
        ),
    ] = DEFAULT_EVERY_S,
) -> None:
    """Train the runs of a sweep that the log does not hold yet; safe to kill and restart.

    Exits 0 when nothing is left to do, 3 when --max-runs or --time-budget stopped it
    with runs left (start it again to go on), 2 on a bad spec or a busy run log.
    """
    from cli.sweep_display import SweepDisplay
    from runners.sweeps.spec import load_spec
    from scaling.sweeps.coordinator import SweepOptions, run_sweep
    from scaling.sweeps.planner import planner_for

    sweep = load_spec(spec)
    planner = planner_for(sweep, device)
    # A scheduler's SIGTERM stops the sweep as Ctrl-C does: what came back is committed.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    options = SweepOptions(
        executor=executor.value, workers=workers, threads=threads, device=device,
        address=ray_address, max_runs=max_runs, time_budget_s=time_budget,
        retry_failed=retry_failed, checkpoint_every_s=checkpoint_every,
    )  # fmt: skip
    with progress_bar() as bar:
        display = SweepDisplay(bar, sweep.name)
        try:
            report = run_sweep(sweep.name, planner, db, options, display)
        except KeyboardInterrupt:
            raise Interrupted(display.interrupted(f"scaling sweep run {spec}")) from None
    trained = ", ".join(f"{n} {status}" for status, n in sorted(report.trained.items()))
    console.print(
        f"sweep {sweep.name}: trained {report.trained.total()} run(s)"
        f"{f' ({trained})' if trained else ''} in {_clock(report.wall_s)}; "
        f"{report.planned - report.left} of {report.planned} finished"
    )
    if sweep.design.kind == "adaptive":
        from scaling.sweeps.suggestion import suggest as suggest_round

        _print_history(suggest_round(sweep, db, keep_fits=True))
    if report.left:
        console.print(f"stopped by the {report.stopped_by}: {report.left} run(s) left")
        raise typer.Exit(EXIT_RUNS_LEFT)


def status(
    spec: Annotated[
        Path | None, typer.Argument(help="A spec, to also show planned and left.")
    ] = None,
    db: DbOption = None,
    as_json: Json = False,
) -> None:
    """Runs per sweep: done, running, diverged, failed (and left, given a spec)."""
    import pandas as pd

    from runners.sweeps.spec import load_spec
    from scaling.errors import ScalingError
    from scaling.sweeps.book import sweep_status
    from scaling.sweeps.planner import planner_for

    sweep = load_spec(spec) if spec is not None else None
    unplanned = None
    try:
        frame, holder = sweep_status(
            db, sweep.name if sweep else None, planner_for(sweep) if sweep else None
        )
    except ScalingError as exc:  # the runs so far are what shows why: the table without a plan
        frame, holder = sweep_status(db, sweep.name if sweep else None)
        unplanned = f"the sweep cannot plan its next round: {exc}"
    if as_json:
        emit_json({"sweeps": frame.to_dict("records"), "coordinator": holder,
                   "unplanned": unplanned})  # fmt: skip
        return
    if frame.empty:
        console.print("no sweeps in the log")
    else:  # to the minute: with seconds the time folded onto a second line at 80 columns
        last = pd.to_datetime(frame["last_finished"]).dt.strftime("%Y-%m-%d %H:%M")
        print_frame(frame.assign(last_finished=last), title="sweeps")
    if holder:
        console.print(f"a coordinator is running: {holder}")
    elif not frame.empty and frame["running"].sum():
        console.print("no coordinator is running: the next `sweep run` reclaims `running` runs")
    if not frame.empty and frame["orphaned"].sum():
        console.print(
            f"{frame['orphaned'].sum()} running run(s) were left by a process that is gone "
            "(orphaned): the next `sweep run` trains them again"
        )
    if unplanned:
        console.print(unplanned, style="yellow")


def suggest(spec: SpecArgument, db: DbOption = None, as_json: Json = False) -> None:
    """Print the runs an adaptive sweep trains next, each with its cost and the expected
    width of the target's interval once it (and the ones above it) are done."""
    from runners.sweeps.spec import load_spec
    from scaling.sweeps.suggestion import suggest as suggest_round

    sweep = load_spec(spec)
    if sweep.design.kind != "adaptive":
        raise RunnerError(
            f"spec.design.kind: suggest needs an adaptive design, got {sweep.design.kind!r} "
            "(`scaling sweep plan` shows the runs of the others)"
        )
    s = suggest_round(sweep, db)
    runs = s.runs
    if as_json:
        emit_json({"sweep": sweep.name, "round": s.round, "runs": runs.to_dict("records"),
                   "spent": s.spent, "budget": s.budget, "unit": s.unit,
                   "width_now": s.width_now, "rounds": s.history.to_dict("records")})  # fmt: skip
        return
    shape = [
        f"{d}/{n}/{h}" for d, n, h in zip(runs.d_model, runs.n_layers, runs.n_heads, strict=True)
    ]
    table = runs.assign(shape=shape, FLOPs=runs.flops)[
        ["run_id", "shape", "params", "tokens", "lr", "FLOPs", "status", "width_after"]
    ]
    table["width_after"] = [_percent(w) for w in table.width_after]
    table["run_id"] = table.run_id.str[:8]
    print_frame(table, title=f"adaptive sweep {sweep.name}: round {s.round}")
    if s.unit == "s":
        expected = ""
        if s.plan is not None:
            expected = f", about {s.plan.picks.cost.sum():.0f} s expected in it"
        console.print(
            f"budget: {s.spent / 3600:.3g} of {s.budget / 3600:.3g} hours spent before this "
            f"round (measured){expected}"
        )
    else:
        console.print(
            f"budget: {format_value(s.spent)} of {format_value(s.budget)} FLOPs planned before "
            f"this round, {format_value(float(runs.flops.sum()))} in it"
        )
    if s.plan is None:
        console.print("round 0 is the start design: the law is fitted once it is done")
        _print_trimmed(sweep)
    else:
        console.print(
            f"{s.plan.law.describe()}: target {s.plan.estimate:.4g}, "
            f"design criterion's 90% width {_percent(s.plan.width_now, NO_WIDTH)} now (a score "
            "for choosing runs: `scaling predict` gives the answer's interval)"
        )
    _print_history(s)


def _print_trimmed(sweep: Any) -> None:
    """Say when the budget left part of round 0's start set out (the docs promise the set)."""
    from scaling.sweeps.planner import START_SIZES, START_TOKENS, AdaptivePlanner

    planner = AdaptivePlanner(sweep)
    n, d = planner.candidates.N, planner.candidates.D  # the start set, as planner.start reads it
    start = n.isin(sorted(set(n))[:START_SIZES]) & d.isin(sorted(set(d))[:START_TOKENS])
    wanted, kept = int(start.sum()), len(planner.start())
    if kept < wanted:
        console.print(
            f"round 0 trimmed to the budget: {kept} of its {wanted} start configurations (the "
            f"{START_SIZES} smallest sizes at the {START_TOKENS} fewest tokens) fit in it",
            style="yellow",
        )


def _print_history(s: Any) -> None:
    """The rounds so far: runs, FLOPs, the target's width when planned and expected after."""
    history = s.history.assign(
        width_before=[_percent(w) for w in s.history.width_before],
        width_expected=[_percent(w) for w in s.history.width_expected],
    )
    print_frame(history, title="rounds")
    if s.width_now is not None:
        console.print(
            f"every planned run is done: the budget is spent or no candidate narrows the "
            f"interval; design criterion's width on all {int(s.history.runs.sum())} runs: "
            f"{_percent(s.width_now, NO_WIDTH)}"
        )


def _percent(width: float, missing: str = "-") -> str:
    """A relative width as a percentage; one that is not finite is no answer, and says so."""
    return f"{width:.2%}" if math.isfinite(width) else missing


app.command("plan")(plan)
app.command("run")(run)
app.command("status")(status)
app.command("suggest")(suggest)
