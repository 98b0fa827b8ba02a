"""`scaling run` (one model) and `scaling demo` (the showcase sweep)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cli.common import (
    DbOption,
    Interrupted,
    Json,
    console,
    emit_json,
    integer,
    print_frame,
    progress_bar,
    real,
)
from cli.sweep import duration
from runners.checkpoint import DEFAULT_EVERY_S, Branch
from runners.errors import RunnerError

if TYPE_CHECKING:
    from runners.config import RunConfig
    from runners.results import Progress


def run(
    arch: Annotated[str, typer.Option(help="llama, tnl, hgrn2, cosformer2, tnl_spread.")] = "llama",
    size: Annotated[
        str | None, typer.Option(help="A named size (see `scaling sizes`); sets the shape.")
    ] = None,
    d_model: Annotated[int, typer.Option(help="Model width.")] = 128,
    n_layers: Annotated[int, typer.Option(help="Number of blocks.")] = 4,
    n_heads: Annotated[int, typer.Option(help="Attention heads (d_model must divide).")] = 4,
    seq_len: Annotated[int, typer.Option(help="Context length in tokens.")] = 256,
    batch_size: Annotated[int, typer.Option(help="Sequences per optimiser step.")] = 16,
    tokens: Annotated[int, typer.Option(parser=integer, help="Token horizon D (2e6, 50M).")] = (
        2_000_000
    ),
    lr: Annotated[float, typer.Option(parser=real, help="Peak learning rate.")] = 3e-3,
    warmup: Annotated[
        int | None, typer.Option(parser=integer, help="Warmup steps (default 5%, <= 200).")
    ] = None,
    schedule: Annotated[
        str,
        typer.Option(
            help="cosine[:floor=0.1], linear[:floor=0], constant, "
            "wsd[:cooldown=0.2,shape=linear|exp|1-sqrt|cosine,floor=0.1], "
            "steps:0.5=0.3,0.8=0.1 or points:0=1,0.9=1,1=0 (docs/schedules.md)."
        ),
    ] = "cosine",
    precision: Annotated[
        str, typer.Option(help="auto (bf16 on CUDA and bf16-capable CPUs), fp32 or bf16.")
    ] = "auto",
    parametrization: Annotated[str, typer.Option(help="sp or mup.")] = "sp",
    mup_base_width: Annotated[
        int, typer.Option(help="muP: the width at which muP equals SP.")
    ] = 128,
    seed: Annotated[int, typer.Option(help="Seed for init and data order.")] = 0,
    corpus: Annotated[
        str, typer.Option(help="'default', a text file, a folder, .jsonl or .parquet.")
    ] = "default",
    eval_every: Annotated[
        int | None, typer.Option(parser=integer, help="Steps between evals.")
    ] = None,
    eval_tokens: Annotated[int, typer.Option(parser=integer, help="Held-out tokens.")] = 65_536,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    force: Annotated[bool, typer.Option(help="Train again even if the log has this run.")] = False,
    checkpoint_every: Annotated[
        float,
        typer.Option(
            parser=duration,
            help="Checkpoint this often (5m, 30s) beside the run log; 0: only at "
            "SIGTERM or Ctrl-C. The same command resumes a killed run.",
        ),
    ] = DEFAULT_EVERY_S,
    branch_at: Annotated[
        str | None,
        typer.Option(
            help="Steps of this (constant-LR) run to branch cooldowns from, e.g. 1000,2000; "
            "each branch is a run of its own (docs/schedules.md)."
        ),
    ] = None,
    cooldown_steps: Annotated[
        int | None, typer.Option(parser=integer, help="Each branch's cooldown, in steps.")
    ] = (None),
    cooldown_shape: Annotated[
        str, typer.Option(help="Branch cooldown: linear, exp, 1-sqrt or cosine.")
    ] = "1-sqrt",
    cooldown_floor: Annotated[
        float, typer.Option(parser=real, help="Branch cooldown's final LR factor.")
    ] = 0.0,
    db: DbOption = None,
    as_json: Json = False,
) -> None:
    """Train one model and record the run and its loss curve (and its branches')."""
    from runners.corpus import load_corpus

    if size is not None:
        from runners.sizes import size_config

        named = size_config(arch, size)
        d_model, n_layers, n_heads = named.d_model, named.n_layers, named.n_heads
    from runners.config import ModelConfig, RunConfig, TrainConfig

    model = ModelConfig(
        arch=arch,
        d_model=d_model,
        n_layers=n_layers,
        n_heads=n_heads,
        seq_len=seq_len,
        parametrization=parametrization,
        mup_base_width=mup_base_width,
    )
    config = RunConfig(
        model,
        TrainConfig(
            tokens=tokens,
            lr=lr,
            batch_size=batch_size,
            warmup=warmup,
            schedule=schedule,
            precision=precision,
            seed=seed,
            corpus=corpus,
            eval_every=eval_every,
            eval_tokens=eval_tokens,
        ),
    ).resolved(device)
    sha256 = load_corpus(corpus).sha256  # a missing or bad corpus is reported before the bar
    plan = _branches(config, branch_at, cooldown_steps, cooldown_shape, cooldown_floor, sha256)
    branches = tuple(branch for _, branch in plan)
    said = not as_json  # with --json, the runs' rows at the end instead of a line each
    parent_id = _train_one(config, db, device, force, checkpoint_every, said, branches=branches)
    trained = [parent_id]
    for branch_config, branch in plan:
        trained.append(_train_one(branch_config, db, device, force, checkpoint_every, said,
                                  parent=(parent_id, branch.step)))  # fmt: skip
    if as_json:
        from store.db import connect
        from store.runs import read_runs

        with connect(db, read_only=True) as con:
            runs = read_runs(con).set_index("run_id", drop=False)
        emit_json({"runs": runs.loc[trained].to_dict("records")})


def _branches(
    config: RunConfig,
    branch_at: str | None,
    cooldown_steps: int | None,
    shape: str,
    floor: float,
    corpus_sha256: str,
) -> list[tuple[RunConfig, Branch]]:
    """The branch runs asked for with --branch-at and --cooldown-steps (both or neither)."""
    if branch_at is None and cooldown_steps is None:
        return []
    if branch_at is None or cooldown_steps is None:
        raise RunnerError("--branch-at and --cooldown-steps go together")
    from runners.branches import Cooldown, branch_plan

    try:
        steps = [int(s) for s in branch_at.split(",")]
    except ValueError:
        raise RunnerError(
            f"--branch-at: expected steps such as 1000,2000, got {branch_at!r}"
        ) from None
    return branch_plan(config, steps, Cooldown(cooldown_steps, shape, floor), corpus_sha256)


def _train_one(
    config: RunConfig,
    db: Path | None,
    device: str,
    force: bool,
    checkpoint_every: float,
    said: bool,
    branches: tuple[Branch, ...] = (),
    parent: tuple[str, int] | None = None,
) -> str:
    """Train one run under a progress bar, print its line (if `said`), and return its id."""
    from runners.checkpoint import Stopped
    from scaling.execute import run_and_record

    bar = progress_bar()
    m = config.model
    shape = f"{m.arch} d={m.d_model} L={m.n_layers}"
    if parent is not None:
        shape += f" branch@{parent[1]}"
    task = None

    def show(p: Progress) -> None:
        nonlocal task
        if task is None:  # drawn once training starts: a run already in the log draws none
            bar.start()
            task = bar.add_task(shape, total=config.steps, info="")
        info = f"{p.tokens_per_s:,.0f} tok/s  loss {p.loss:.3f}"
        bar.update(task, completed=p.step, info=info)

    try:
        result, run_id = run_and_record(
            config, db=db, device=device, force=force, progress=show,
            checkpoint_every_s=checkpoint_every, branches=branches, parent=parent,
        )  # fmt: skip
    except Stopped as stop:
        console.print(f"{stop}: run the same command to resume", highlight=False)
        raise typer.Exit(128 + stop.signum) from None
    finally:
        if task is not None:
            bar.stop()
    if not said:
        return run_id
    if result is None:
        console.print(f"run {run_id} is already in the log as done (use --force to train again)")
        return run_id
    loss = f"{result.final_val_loss:.4f}" if result.final_val_loss is not None else "-"
    resumed = f" (resumed at step {result.resumed_at:,})" if result.resumed_at else ""
    console.print(
        f"run {run_id}: {result.status}{resumed}, val loss {loss}, "
        f"{result.counts.params:,} params, "
        f"{result.config.tokens:,} tokens, {result.wall_s:.1f} s "
        f"({result.tokens_per_s:,.0f} tok/s, {result.config.train.precision} on {result.device})"
    )
    if result.status != "done":
        console.print(str(result.error), style="yellow")
    return run_id


def demo(db: DbOption = None) -> None:
    """The showcase: a small real sweep of LLaMA-style models on the embedded corpus."""
    from cli.sweep_display import SweepDisplay
    from scaling.demo import demo_answers, run_demo

    console.print("stage 1 of 2: train the demo runs the log does not hold yet")
    with progress_bar() as bar:
        display = SweepDisplay(bar, "demo")
        try:
            frame = run_demo(db, display)
        except KeyboardInterrupt:
            raise Interrupted(display.interrupted("scaling demo")) from None
    short = {"d_model": "d", "n_layers": "layers", "final_val_loss": "val loss", "wall_s": "wall s"}
    table = frame.assign(run_id=frame.run_id.str[:8]).rename(columns=short)
    print_frame(table.drop(columns=["flops", "tokens_per_s"]), title="demo runs (all in SQL)")
    console.print("stage 2 of 2: fit a law to the runs, predict, backtest")
    for line in demo_answers(db):
        console.print(line, highlight=False)
