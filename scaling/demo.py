"""The showcase sweep behind `scaling demo`: real LLaMA-style runs on the embedded corpus."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from runners.config import ModelConfig, RunConfig, TrainConfig
from scaling.sweeps.coordinator import Observer

DEMO_SIZES = [(32, 2, 2), (64, 2, 4), (128, 2, 4)]  # (d_model, n_layers, n_heads)
DEMO_TOKENS = [500_000, 1_000_000, 2_000_000]
LR_TIMES_WIDTH = 0.256  # SP's best LR fell as 1/width in benchmarks/transfer_experiments.py
DEMO_WORKERS = 2
DEMO_WHERE = "run_id IN (SELECT run_id FROM sweep_runs WHERE sweep = 'demo')"
ASK_N, ASK_D, ASK_C = 10e6, 200e6, 1e16  # a model 20x the largest demo model, and a budget


def demo_configs() -> list[RunConfig]:
    """3 widths x 3 horizons at context 128, batch 16: enough for a first law in minutes.

    Each width trains near its own best LR: one LR for all would favour the small models
    at short horizons and the law would see larger models doing worse.
    """
    return [
        RunConfig(
            ModelConfig(arch="llama", d_model=d, n_layers=n, n_heads=h, seq_len=128),
            TrainConfig(tokens=tokens, lr=LR_TIMES_WIDTH / d, batch_size=16, eval_tokens=32_768),
        )
        for d, n, h in DEMO_SIZES
        for tokens in DEMO_TOKENS
    ]


def run_demo(db: str | Path | None, observer: Observer | None = None) -> pd.DataFrame:
    """Train every demo run not yet in the log as the sweep "demo", then return its table.

    The caller shows progress through `observer` (the CLI passes its progress bars).

    Two workers with one torch thread each: these small models gain little from a second
    thread, and one-thread runs keep their pace when other jobs share the cores, where
    two-thread runs slow down badly. Costliest runs go first, so the two finish together.
    """
    from runners.sweeps.executors import cores
    from scaling.sweeps.coordinator import SweepOptions, run_sweep
    from store.db import connect
    from store.runs import read_runs

    options = SweepOptions(workers=min(DEMO_WORKERS, cores()), threads=1)
    # resolved for the device, as a spec's sweep is: each line names the precision it trains in
    configs = [config.resolved(options.device) for config in demo_configs()]
    run_sweep("demo", lambda _loss, _timing: configs, db, options, observer)
    with connect(db, read_only=True) as con:
        frame = read_runs(con, sweep="demo")
    columns = ["run_id", "d_model", "n_layers", "params", "tokens", "flops", "status",
               "final_val_loss", "wall_s", "tokens_per_s"]  # fmt: skip
    return frame[columns].sort_values(["params", "tokens"]).reset_index(drop=True)


def demo_answers(db: str | Path | None) -> list[str]:
    """Fit the demo runs, predict a larger run, and backtest: the loop the product serves."""
    from fits.errors import FitError
    from scaling.errors import ScalingError
    from scaling.study import Study

    study = Study(db)
    try:
        fitted = study.fit("chinchilla", "llama", where=DEMO_WHERE)
        loss = study.predict_loss(ASK_N, ASK_D, "llama", where=DEMO_WHERE)
        backtest = study.backtest("chinchilla", "llama", where=DEMO_WHERE)
    except (ScalingError, FitError) as exc:
        return [f"no law from the demo runs: {exc}"]
    try:  # refused, not answered, when the optimum lies far beyond the runs
        found = study.compute_optimal(ASK_C, "llama", where=DEMO_WHERE)
        optimal = "; ".join(found.allocation())
    except (ScalingError, FitError) as exc:
        optimal = str(exc)
    p = fitted.model.params_
    return [
        f"Chinchilla fit on {fitted.selection['n_runs']} demo runs ({fitted.fit_id}): "
        f"L = {p['E']:.3g} + {p['A']:.3g}/N^{p['alpha']:.3g} + {p['B']:.3g}/D^{p['beta']:.3g}",
        f"a {ASK_N:.0e}-parameter model on {ASK_D:.0e} tokens: {loss}",
        f"compute-optimal at {ASK_C:.0e} FLOPs: {optimal}",
        str(backtest),
        "next: scaling fit chinchilla --arch llama, scaling predict loss --N 1B --D 20B, "
        "scaling report --out report",
    ]
