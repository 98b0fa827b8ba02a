"""Do optimizer steps or tokens place the bend of our IsoFLOP runs? (docs/laws.md)

At fixed N our byte-level runs' loss falls slowly at the fewest tokens, then faster, then
slower; every study run has 2,048 tokens per step, so steps and tokens cannot be told apart
there. This trains llama xxs at its four IsoFLOP token counts with 16 and with 64 sequences per
step (benchmarks/experiments/bend_batch.toml), and with 32 at twice those token counts, so at
the same steps as with 16 (bend_batch_32.toml); the LR the study gives it; seeds 0 and 1. It
compares, per batch size, the seed-mean loss drop per decade of tokens between neighbouring
token counts. Runs are committed as benchmarks/data/bend_runs.parquet and bend_curves.parquet
(restored into the uncommitted log benchmarks/data/bend.duckdb on every start, so nothing
trains twice).

    python benchmarks/bend_batch.py run --workers 2   # resumable; about 12 minutes on 2 cores
    python benchmarks/bend_batch.py analyse
"""

from __future__ import annotations

import sys
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout, not an installed copy
from architecture_study import run_action, study_parser  # the study driver beside this one

from fits.bends import drop_rises
from scaling.experiments.architecture import Clock, sweep
from store import archive

HERE = Path(__file__).resolve().parent
SPECS = (HERE / "experiments" / "bend_batch.toml", HERE / "experiments" / "bend_batch_32.toml")
DB = HERE / "data" / "bend.duckdb"
RUNS = HERE / "data" / "bend_runs.parquet"
CURVES = HERE / "data" / "bend_curves.parquet"
PREFIX = "bend-"


def run(budget_s: float | None, workers: int) -> None:
    print(f"restored {archive.restore(DB, PREFIX, RUNS, CURVES)} runs from {RUNS.name}")
    clock = Clock(budget_s)
    for spec in SPECS:
        if not sweep(spec, DB, clock, workers, RUNS, CURVES, prefix=PREFIX):
            return print("time budget spent or stopped: run again to go on")
    print("all runs done: next `analyse`")


def seed_sd(runs: pd.DataFrame) -> float:
    """The loss SD between seeds, pooled over every (batch size, tokens) seed pair."""
    pairs = runs.pivot_table(
        index=["batch_size", "tokens"], columns="seed", values="final_val_loss"
    )
    return float(np.sqrt((pairs.diff(axis=1).iloc[:, -1] ** 2 / 2).mean()))


def drops(runs: pd.DataFrame, sd: float) -> pd.DataFrame:
    """Per batch size and neighbouring pair of token counts: the seed-mean loss drop per decade
    of tokens, its SD, and the steps at the pair's geometric middle."""
    means = runs.groupby(["batch_size", "tokens"]).final_val_loss.agg(["mean", "size"])
    rows = []
    for batch, group in means.groupby(level="batch_size"):
        tokens = group.index.get_level_values("tokens").to_numpy(dtype=float)
        loss, count = group["mean"].to_numpy(), group["size"].to_numpy()
        decades = np.diff(np.log10(tokens))
        middle = np.sqrt(tokens[1:] * tokens[:-1])
        for i, step in enumerate(decades):
            rows.append({
                "batch": batch, "tokens from": int(tokens[i]), "tokens to": int(tokens[i + 1]),
                "steps at middle": middle[i] / (batch * 128),
                "drop per decade": (loss[i] - loss[i + 1]) / step,
                "sd": sd * np.sqrt(1 / count[i] + 1 / count[i + 1]) / step,
            })  # fmt: skip
    return pd.DataFrame(rows)


def rises(runs: pd.DataFrame, sd: float) -> list[float]:
    """For one batch size's runs: each drop per decade minus the one before it, in SDs of that
    difference (fits.bends.drop_rises)."""
    means = runs.groupby("tokens").final_val_loss.agg(["mean", "size"])
    tokens = means.index.to_numpy(dtype=float)
    return list(drop_rises(tokens, means["mean"].to_numpy(), means["size"].to_numpy(), sd))


def analyse() -> None:
    if not RUNS.exists():
        sys.exit(f"no runs yet at {RUNS}: `python {Path(__file__).name} run` first")
    runs = duckdb.connect().execute("SELECT * FROM read_parquet(?)", [str(RUNS)]).df()
    runs = runs[runs.status == "done"]
    table = runs.pivot_table(index="tokens", columns=["batch_size", "seed"],
                             values="final_val_loss")  # fmt: skip
    print("final validation loss (nats per byte)\n" + table.round(4).to_string())
    sd = seed_sd(runs)
    found = drops(runs, sd)
    print(f"\nseed-mean drop per decade of tokens (seed SD {sd:.4f})")
    print(found.round(3).to_string(index=False))
    for batch, group in found.groupby("batch"):
        top = group.loc[group["drop per decade"].idxmax()]
        each = ", ".join(f"{r:+.1f}" for r in rises(runs[runs.batch_size == batch], sd))
        start, end = int(top["tokens from"]), int(top["tokens to"])
        print(f"batch {batch}: steepest between {start:,} and {end:,} tokens "
              f"({top['steps at middle']:.0f} steps); each drop minus the one before: "
              f"{each} SDs")  # fmt: skip


def main() -> None:
    args = study_parser(__doc__, ("run", "analyse")).parse_args()
    run_action({"run": lambda: run(args.time_budget, args.workers), "analyse": analyse}[args.what])


if __name__ == "__main__":
    main()
