"""The showcase sweep behind `scaling demo`: real LLaMA-style runs on the embedded corpus."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from rich.console import Console

from runners.config import ModelConfig, RunConfig, TrainConfig

DEMO_SIZES = [(64, 2, 2), (96, 3, 3), (128, 4, 4)]  # (d_model, n_layers, n_heads)
DEMO_TOKENS = [300_000, 600_000, 1_200_000]
DEMO_LR = 4e-3
DEMO_WORKERS = 2


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
    """Train every demo run not yet in the log as the sweep "demo", then return its table.

    Two workers with one torch thread each: these small models gain little from a second
    thread, and one-thread runs keep their pace when other jobs share the cores, where
    two-thread runs slow down badly. Costliest runs go first, so the two finish together.
    """
    from cli.common import progress_bar
    from cli.sweep_display import SweepDisplay
    from runners.sweeps.executors import cores
    from scaling.sweep import SweepOptions, run_sweep
    from store.db import connect
    from store.runs import read_runs

    configs = demo_configs()
    options = SweepOptions(workers=min(DEMO_WORKERS, cores()), threads=1)
    with progress_bar() as bar:
        run_sweep("demo", lambda _: configs, db, options, SweepDisplay(bar, "demo"))
    with connect(db, read_only=True) as con:
        frame = read_runs(con, sweep="demo")
    columns = ["run_id", "d_model", "n_layers", "params", "tokens", "flops", "status",
               "final_val_loss", "wall_s", "tokens_per_s"]  # fmt: skip
    return frame[columns].sort_values(["params", "tokens"]).reset_index(drop=True)
