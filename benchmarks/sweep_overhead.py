"""What the sweep coordinator costs: its time per run, and the throughput it keeps.

For a sweep of very short runs and one of longer runs, in the same script run:
- ideal: the same runs back to back in this process (one torch thread, warmed up), no
  database; with W workers the ideal wall time is that over W;
- sweep: `run_sweep` with W workers x 1 thread on a fresh DuckDB file, pool start-up and
  every commit included.
Prints the coordinator's own time per run (planning, DuckDB commit of run + curve,
dispatch) and the fraction of ideal throughput the sweep achieved. Also the fraction of
the workers' own training time (sum of the runs' wall_s / W), which other load on the
machine affects alike in both terms.

    python benchmarks/sweep_overhead.py [--workers 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout, not an installed copy

from runners.config import ModelConfig, RunConfig, TrainConfig
from runners.train import train
from scaling.sweeps.coordinator import SweepOptions, run_sweep
from store.db import connect

CASES = {
    # name: (d_model, n_layers, seq_len, batch, tokens per run, runs)
    "short": (32, 1, 32, 8, 2_048, 48),
    "longer": (64, 2, 64, 16, 327_680, 8),
    "long": (64, 2, 64, 16, 1_310_720, 8),  # ~25 s runs: pool start-up amortised
}


def configs(d: int, layers: int, seq: int, batch: int, tokens: int, n: int) -> list[RunConfig]:
    """n distinct runs (distinct seeds) of one shape."""
    return [
        RunConfig(
            ModelConfig(d_model=d, n_layers=layers, n_heads=2, seq_len=seq),
            TrainConfig(tokens=tokens, lr=3e-3, batch_size=batch, eval_tokens=1024, seed=i),
        ).resolved()
        for i in range(n)
    ]


def back_to_back(runs: list[RunConfig]) -> float:
    torch.set_num_threads(1)
    train(runs[0], device="cpu")  # warm-up: the ideal pays no first-call costs
    start = time.perf_counter()
    for config in runs:
        train(config, device="cpu")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    workers = parser.parse_args().workers
    print(f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}, {workers} workers")
    header = ("case", "runs", "run_s", "ideal_s", "sweep_s", "ms/run", "of ideal", "of train")
    print("{:>7} {:>5} {:>6} {:>8} {:>8} {:>7} {:>9} {:>9}".format(*header))
    for name, shape in CASES.items():
        runs = configs(*shape)
        sequential = back_to_back(runs)
        with tempfile.TemporaryDirectory() as tmp:
            db = Path(tmp) / "bench.duckdb"
            options = SweepOptions(workers=workers, threads=1, device="cpu")
            report = run_sweep(f"bench-{name}", lambda *_, runs=runs: runs, db, options)
            with connect(db, read_only=True) as con:
                trained_s = con.execute("SELECT sum(wall_s) FROM runs").fetchone()[0]
        assert report.trained["done"] == len(runs), report
        ideal = sequential / workers
        print(
            f"{name:>7} {len(runs):>5} {sequential / len(runs):>6.2f} {ideal:>8.1f} "
            f"{report.wall_s:>8.1f} {1000 * report.coordinator_cpu_s / len(runs):>7.1f} "
            f"{ideal / report.wall_s:>9.0%} {trained_s / workers / report.wall_s:>9.0%}"
        )
    print(
        "run_s: one run back to back; ideal_s: all runs back to back / workers; sweep_s: "
        "run_sweep wall time (pool start-up included); ms/run: coordinator CPU time per run "
        "(scheduling + DuckDB commits); of ideal = ideal_s / sweep_s; of train = the runs' "
        "own wall_s / workers / sweep_s"
    )


if __name__ == "__main__":
    main()
