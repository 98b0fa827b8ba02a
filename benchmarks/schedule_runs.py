"""Loss curves under six LR schedules at two model sizes, for the schedule laws' demonstration.

    python benchmarks/schedule_runs.py train            # the six schedules x two sizes
    python benchmarks/schedule_runs.py train --optimised FILE --seeds 0 1
                                                        # a `predict schedule --json` answer
                                                        # and cosine, both seeds
    python benchmarks/schedule_runs.py train --steps 3000 --base-seeds 0 1
                                                        # the same six at 10x the horizon,
                                                        # two seeds

Each run is trained by the project's runner (runners.train.train) under a schedule spec as
`scaling run --schedule` takes it, for a fixed horizon, with a validation loss every
EVAL_EVERY steps on the same held-out windows (a smooth curve: the train loss of one small
batch is too noisy to score a 0.3% error). The optimised schedule goes in as a `points:` spec
through every post-warmup step. Every finished run is written at
once to its own Parquet file under benchmarks/data/schedule_runs/, so a killed job loses at
most the run in flight; `collect` joins them into benchmarks/data/schedule_curves.parquet
(committed, with one row per step: run, size, schedule, seed, horizon, step, lr, loss).
`--steps` trains the same design at another base horizon (warmup and evaluation spacing
scaled with it) into schedule_runs_hSTEPS/ and schedule_curves_hSTEPS.parquet.
"""

from __future__ import annotations

import argparse
import json
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import duckdb
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


SPECS = {  # schedules as the runners take them (runners/schedule.py)
    "constant": "constant",
    "cosine": "cosine",  # to 10% of the peak
    "two-stage": "steps:0.6=0.2",
    "wsd": "wsd:floor=0",  # the last 20% linear to zero
    "linear-zero": "linear",
    "cosine-2x": "cosine",
}
HORIZON = {"cosine-2x": 2 * STEPS}
FIT_SCHEDULES = ("constant", "cosine", "two-stage")  # the law sees these; the rest are unseen


def parts_dir(steps: int) -> Path:
    return PARTS if steps == STEPS else PARTS.with_name(f"schedule_runs_h{steps}")


def curves_path(steps: int) -> Path:
    return CURVES if steps == STEPS else CURVES.with_name(f"schedule_curves_h{steps}.parquet")


def points_spec(lrs: np.ndarray, warmup: int) -> str:
    """A `points:` schedule through every post-warmup step of per-step LRs (as factors)."""
    steps, peak = len(lrs), lrs.max()
    pairs = [f"{s / (steps - 1)!r}={float(lrs[s] / peak)!r}" for s in range(warmup, steps)]
    if warmup > 0:  # points start at fraction 0; the warmup ramp replaces those steps
        pairs.insert(0, "0.0=1.0")
    return "points:" + ",".join(pairs)


def train_one(job: dict) -> Path:
    """Train one (size, schedule, seed) run and write its curve; returns the file."""
    import torch

    from runners.config import ModelConfig, RunConfig, TrainConfig
    from runners.train import train

    parts = parts_dir(job["base"])
    path = parts / f"{job['name']}.parquet"
    if path.exists():  # trained meanwhile by another launcher
        return path
    torch.set_num_threads(1)
    steps = job["steps"]
    config = RunConfig(
        ModelConfig(d_model=SIZES[job["size"]], n_layers=2, n_heads=4, seq_len=SEQ_LEN),
        TrainConfig(tokens=steps * BATCH * SEQ_LEN, lr=PEAK_LR, batch_size=BATCH,
                    warmup=WARMUP * job["base"] // STEPS, schedule=job["spec"], seed=job["seed"],
                    precision="fp32", eval_every=EVAL_EVERY * job["base"] // STEPS,
                    eval_tokens=EVAL_TOKENS),
    )  # fmt: skip
    lrs = config.lrs()
    assert len(lrs) == steps
    result = train(config, device="cpu")
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
            "lr": lrs,
            "loss": loss,
        }
    )
    parts.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    write_parquet(frame, tmp)
    os.replace(tmp, path)
    return path


def write_parquet(frame: pd.DataFrame, path: Path) -> None:
    """pandas needs pyarrow for Parquet; DuckDB (a dependency already) writes it."""
    duckdb.from_df(frame).write_parquet(str(path))


def read_parquet(path: Path) -> pd.DataFrame:
    return duckdb.sql(f"SELECT * FROM read_parquet('{path}')").df()


def jobs(optimised: Path | None, seeds: list[int], sizes: list[str], base: int = STEPS,
         base_seeds: tuple[int, ...] = (0,)) -> list[dict]:  # fmt: skip
    out = []
    if optimised is None:
        for size in sizes:
            for schedule, spec in SPECS.items():
                steps = base * HORIZON.get(schedule, STEPS) // STEPS
                for seed in base_seeds:
                    out.append({"name": f"{size}-{schedule}-s{seed}", "size": size,
                                "schedule": schedule, "seed": seed, "spec": spec, "steps": steps,
                                "base": base})  # fmt: skip
        return out
    answer = json.loads(optimised.read_text())
    size = answer["size"]
    lrs = np.asarray(answer["lr"], dtype=float)
    spec = points_spec(lrs, WARMUP)
    for seed in seeds:
        out.append({"name": f"{size}-optimised-s{seed}", "size": size, "schedule": "optimised",
                    "seed": seed, "spec": spec, "steps": len(lrs), "base": STEPS})  # fmt: skip
        out.append({"name": f"{size}-cosine-s{seed}", "size": size, "schedule": "cosine",
                    "seed": seed, "spec": "cosine", "steps": len(lrs), "base": STEPS})  # fmt: skip
    return out


def train(optimised: Path | None, seeds: list[int], sizes: list[str], workers: int,
          base: int = STEPS, base_seeds: tuple[int, ...] = (0,)) -> None:  # fmt: skip
    parts = parts_dir(base)
    todo = [
        j for j in jobs(optimised, seeds, sizes, base, base_seeds)
        if not (parts / f"{j['name']}.parquet").exists()
    ]  # fmt: skip
    # the fitted schedules first (the optimised runs need them), then the longest
    todo.sort(key=lambda j: (j["schedule"] not in FIT_SCHEDULES, -j["steps"]))
    print(f"{len(todo)} runs to train")
    with ProcessPoolExecutor(workers) as pool:
        for path in pool.map(train_one, todo):
            print("wrote", path.relative_to(HERE.parent), flush=True)
    collect(base)


def collect(base: int = STEPS) -> None:
    """Add the trained parts to the Parquet; a run the Parquet holds already keeps its rows
    (a rerun of a committed run on another machine differs in float rounding)."""
    path = curves_path(base)
    kept = read_parquet(path) if path.exists() else pd.DataFrame(columns=["run"])
    frames = [read_parquet(p) for p in sorted(parts_dir(base).glob("*.parquet"))]
    new = [f for f in frames if f.run.iloc[0] not in set(kept.run)]
    write_parquet(pd.concat([kept, *new], ignore_index=True), path)
    print(f"{len(new)} runs added, {kept.run.nunique()} kept -> {path.relative_to(HERE.parent)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("action", choices=("train", "collect"))
    parser.add_argument("--optimised", type=Path, help="a `predict schedule --json` answer")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--sizes", nargs="+", choices=list(SIZES), default=list(SIZES))
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--steps", type=int, default=STEPS, help="the base horizon")
    parser.add_argument(
        "--base-seeds",
        type=int,
        nargs="+",
        default=[0],
        help="seeds of the six schedules (a second gives their seed noise)",
    )
    args = parser.parse_args()
    if args.action == "collect":
        collect(args.steps)
    else:
        train(args.optimised, args.seeds, args.sizes, args.workers, args.steps,
              tuple(args.base_seeds))  # fmt: skip


if __name__ == "__main__":
    main()
