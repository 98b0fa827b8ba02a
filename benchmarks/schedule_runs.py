"""Loss curves under six LR schedules at two model sizes, for the schedule laws' demonstration.

    python benchmarks/schedule_runs.py train            # the six schedules x two sizes
    python benchmarks/schedule_runs.py train --optimised FILE --seeds 0 1
                                                        # a `predict schedule --json` answer
                                                        # and cosine, both seeds

Each run is trained by the project's runner (runners.train.train) for a fixed horizon with a
validation loss every EVAL_EVERY steps on the same held-out windows (a smooth curve: the
train loss of one small batch is too noisy to score a 0.3% error). The LR of every step comes
from the schedule functions below (until the runners take any schedule as data, the runner's
per-step factor is swapped for ours in this process only). Every finished run is written at
once to its own Parquet file under benchmarks/data/schedule_runs/, so a killed job loses at
most the run in flight; `collect` joins them into benchmarks/data/schedule_curves.parquet
(committed, with one row per step: run, size, schedule, seed, horizon, step, lr, loss).
"""

from __future__ import annotations

import argparse
import json
import math
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
PARTS = HERE / "data" / "schedule_runs"
CURVES = HERE / "data" / "schedule_curves.parquet"
SIZES = {"d32": 32, "d64": 64}  # llama, 2 layers, 4 heads, seq 64, batch 16
STEPS = 300  # the base horizon; the long-horizon cosine trains twice as long
WARMUP = 15
PEAK_LR = 3e-3
EVAL_EVERY = 6
EVAL_TOKENS = 4096
SEQ_LEN, BATCH = 64, 16


def _cosine(p: float) -> float:
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * p))


SHAPES: dict[str, Callable[[float], float]] = {  # post-warmup progress p in [0, 1] -> factor
    "constant": lambda p: 1.0,
    "cosine": _cosine,
    "two-stage": lambda p: 1.0 if p < 0.6 else 0.2,
    "wsd": lambda p: 1.0 if p < 0.8 else max(0.0, 1 - (p - 0.8) / 0.2),
    "linear-zero": lambda p: max(0.0, 1 - p),
    "cosine-2x": _cosine,
}
HORIZON = {"cosine-2x": 2 * STEPS}
FIT_SCHEDULES = ("constant", "cosine", "two-stage")  # the law sees these; the rest are unseen


def factors(schedule: str, steps: int) -> np.ndarray:
    """LR factor of every step: linear warmup, then the schedule's shape over the rest."""
    out = np.empty(steps)
    for step in range(steps):
        if step < WARMUP:
            out[step] = (step + 1) / WARMUP
        else:
            out[step] = SHAPES[schedule]((step - WARMUP) / max(1, steps - 1 - WARMUP))
    return out


def train_one(job: dict) -> Path:
    """Train one (size, schedule, seed) run and write its curve; returns the file."""
    import torch

    import runners.train as runner
    from runners.config import ModelConfig, RunConfig, TrainConfig

    path = PARTS / f"{job['name']}.parquet"
    if path.exists():  # trained meanwhile by another launcher
        return path
    torch.set_num_threads(1)
    lr_factors = np.asarray(job["factors"], dtype=float)
    runner.lr_factor = lambda step, steps, warmup, schedule: float(lr_factors[step])
    steps = len(lr_factors)
    config = RunConfig(
        ModelConfig(d_model=SIZES[job["size"]], n_layers=2, n_heads=4, seq_len=SEQ_LEN),
        TrainConfig(tokens=steps * BATCH * SEQ_LEN, lr=PEAK_LR, batch_size=BATCH,
                    warmup=WARMUP, schedule="constant", seed=job["seed"], precision="fp32",
                    eval_every=EVAL_EVERY, eval_tokens=EVAL_TOKENS),
    )  # fmt: skip
    result = runner.train(config, device="cpu")
    if result.status != "done":
        raise RuntimeError(f"{job['name']}: {result.status} {result.error}")
    loss = np.full(steps, np.nan)
    for point in result.curve:
        if point.val_loss is not None:
            loss[point.step - 1] = point.val_loss  # the loss after this step's update
    frame = pd.DataFrame(
        {
            "run": job["name"],
            "size": job["size"],
            "params": result.counts.params,
            "schedule": job["schedule"],
            "seed": job["seed"],
            "horizon": steps,
            "step": np.arange(steps),
            "lr": PEAK_LR * lr_factors,
            "loss": loss,
        }
    )
    PARTS.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    frame.to_parquet(tmp, index=False)
    os.replace(tmp, path)
    return path


def jobs(optimised: Path | None, seeds: list[int], sizes: list[str]) -> list[dict]:
    out = []
    if optimised is None:
        for size in sizes:
            for schedule in SHAPES:
                steps = HORIZON.get(schedule, STEPS)
                name = f"{size}-{schedule}-s0"
                out.append({"name": name, "size": size, "schedule": schedule, "seed": 0,
                            "factors": factors(schedule, steps).tolist()})  # fmt: skip
        return out
    answer = json.loads(optimised.read_text())
    size = answer["size"]
    lrs = np.asarray(answer["lr"], dtype=float)
    for seed in seeds:
        out.append({"name": f"{size}-optimised-s{seed}", "size": size, "schedule": "optimised",
                    "seed": seed, "factors": (lrs / PEAK_LR).tolist()})  # fmt: skip
        out.append({"name": f"{size}-cosine-s{seed}", "size": size, "schedule": "cosine",
                    "seed": seed, "factors": factors("cosine", len(lrs)).tolist()})  # fmt: skip
    return out


def train(optimised: Path | None, seeds: list[int], sizes: list[str], workers: int) -> None:
    todo = [
        j for j in jobs(optimised, seeds, sizes) if not (PARTS / f"{j['name']}.parquet").exists()
    ]
    todo.sort(key=lambda j: -len(j["factors"]) * SIZES[j["size"]])  # longest first
    print(f"{len(todo)} runs to train")
    with ProcessPoolExecutor(workers) as pool:
        for path in pool.map(train_one, todo):
            print("wrote", path.relative_to(HERE.parent), flush=True)
    collect()


def collect() -> None:
    frames = [pd.read_parquet(p) for p in sorted(PARTS.glob("*.parquet"))]
    pd.concat(frames, ignore_index=True).to_parquet(CURVES, index=False)
    print(f"{len(frames)} runs -> {CURVES.relative_to(HERE.parent)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("action", choices=("train", "collect"))
    parser.add_argument("--optimised", type=Path, help="a `predict schedule --json` answer")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--sizes", nargs="+", choices=list(SIZES), default=list(SIZES))
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    if args.action == "collect":
        collect()
    else:
        train(args.optimised, args.seeds, args.sizes, args.workers)


if __name__ == "__main__":
    main()
