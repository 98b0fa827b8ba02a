"""`scaling run` (one model) and `scaling demo` (the showcase sweep)."""

from __future__ import annotations

from typing import Annotated

import typer

from cli.common import DbOption, console, integer, print_frame, progress_bar, real
from runners.config import ModelConfig, RunConfig, TrainConfig


def run(
    arch: Annotated[str, typer.Option(help="llama, tnl, hgrn2 or cosformer2.")] = "llama",
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
    warmup: Annotated[int | None, typer.Option(help="Warmup steps (default 5%, <= 200).")] = None,
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
    eval_every: Annotated[int | None, typer.Option(help="Steps between evals.")] = None,
    eval_tokens: Annotated[int, typer.Option(parser=integer, help="Held-out tokens.")] = 65_536,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    force: Annotated[bool, typer.Option(help="Train again even if the log has this run.")] = False,
    db: DbOption = None,
) -> None:
    """Train one model and record the run and its loss curve."""
    from runners.corpus import load_corpus
    from scaling.execute import run_and_record

    if size is not None:
        from runners.sizes import size_config

        named = size_config(arch, size)
        d_model, n_layers, n_heads = named.d_model, named.n_layers, named.n_heads
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
    load_corpus(corpus)  # a missing or bad corpus is reported before the progress bar
    bar = progress_bar()
    shape = f"{arch} d={config.model.d_model} L={config.model.n_layers}"
    task = None

    def show(p) -> None:
        nonlocal task
        if task is None:  # drawn once training starts: a run already in the log draws none
            bar.start()
            task = bar.add_task(shape, total=config.steps, info="")
        info = f"{p.tokens_per_s:,.0f} tok/s  loss {p.loss:.3f}"
        bar.update(task, completed=p.step, info=info)

    try:
        result, run_id = run_and_record(config, db=db, device=device, force=force, progress=show)
    finally:
        if task is not None:
            bar.stop()
    if result is None:
        console.print(f"run {run_id} is already in the log as done (use --force to train again)")
        return
    loss = f"{result.final_val_loss:.4f}" if result.final_val_loss is not None else "-"
    console.print(
        f"run {run_id}: {result.status}, val loss {loss}, {result.counts.params:,} params, "
        f"{result.config.tokens:,} tokens, {result.wall_s:.1f} s "
        f"({result.tokens_per_s:,.0f} tok/s, {result.config.train.precision} on {result.device})"
    )
    if result.status != "done":
        console.print(f"[yellow]{result.error}[/]")


def demo(db: DbOption = None) -> None:
    """The showcase: a small real sweep of LLaMA-style models on the embedded corpus."""
    from cli.sweep_display import SweepDisplay
    from scaling.demo import demo_answers, run_demo

    with progress_bar() as bar:
        frame = run_demo(db, SweepDisplay(bar, "demo"))
    short = {"d_model": "d", "n_layers": "layers", "final_val_loss": "val loss", "wall_s": "wall s"}
    table = frame.assign(run_id=frame.run_id.str[:8]).rename(columns=short)
    print_frame(table.drop(columns=["flops", "tokens_per_s"]), title="demo runs (all in SQL)")
    for line in demo_answers(db):
        console.print(line, highlight=False)
