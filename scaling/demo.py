"""The showcase sweep behind `scaling demo`: real LLaMA-style runs on the embedded corpus."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from rich.console import Console

from runners.config import ModelConfig, RunConfig, TrainConfig

DEMO_SIZES = [(64, 2, 2), (96, 3, 3), (128, 4, 4)]  # (d_model, n_layers, n_heads)
DEMO_TOKENS = [300_000, 600_000, 1_200_000]
DEMO_LR = 4e-3


def demo_configs() -> list[RunConfig]:
    """3 sizes x 3 horizons at context 128, batch 16: enough for a first law in minutes."""
    return [
        RunConfig(
            ModelConfig(arch="llama", d_model=d, n_layers=n, n_heads=h, seq_len=128),
            TrainConfig(tokens=tokens, lr=DEMO_LR, batch_size=16, eval_tokens=32_768),
        )
        for d, n, h in DEMO_SIZES
        for tokens in DEMO_TOKENS
    ]


def run_demo(db: str | Path | None, console: Console) -> pd.DataFrame:
    """Train every demo run not yet in the log, then return the demo runs as a table."""
    from cli.common import progress_bar
    from scaling.execute import run_and_record
    from store.db import connect
    from store.runs import read_runs

    configs = demo_configs()
    with progress_bar() as bar:
        overall = bar.add_task("demo runs", total=len(configs), info="")
        for config in configs:
            m = config.model
            task = bar.add_task(f"  d={m.d_model} L={m.n_layers} D={config.tokens:,}",
                                total=config.resolved().steps, info="")  # fmt: skip

            def show(p, task=task) -> None:
                info = f"{p.tokens_per_s:,.0f} tok/s  loss {p.loss:.3f}"
                bar.update(task, completed=p.step, info=info)

            run_and_record(config, db=db, sweep="demo", progress=show)
            bar.remove_task(task)
            bar.advance(overall)
    with connect(db, read_only=True) as con:
        frame = read_runs(con, sweep="demo")
    columns = ["run_id", "d_model", "n_layers", "params", "tokens", "flops", "status",
               "final_val_loss", "wall_s", "tokens_per_s"]  # fmt: skip
    return frame[columns].sort_values(["params", "tokens"]).reset_index(drop=True)
