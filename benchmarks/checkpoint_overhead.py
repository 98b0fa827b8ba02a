"""What checkpoints cost: one checkpoint against one training step, and the share of
training time at the default interval.

For each size, in the same script run (one torch thread): the time of a training step
(a run without checkpoints, over its steps), and the time of writing that run's checkpoint
(torch.save, fsync, rename; the median of five writes of the state a checkpointed run of
the same config left). At the default of one every DEFAULT_EVERY_S seconds a checkpoint
costs its time over the interval.

    python benchmarks/checkpoint_overhead.py [--steps 20] [--sizes s m]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout, not an installed copy

from runners.accounting import count
from runners.checkpoint import DEFAULT_EVERY_S, Checkpointing
from runners.config import RunConfig, TrainConfig
from runners.sizes import size_config
from runners.train import train


def timed(config: RunConfig, checkpoints: Checkpointing | None) -> float:
    start = time.perf_counter()
    train(config, device="cpu", checkpoints=checkpoints)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--sizes", nargs="+", default=["s", "m"])
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"{'size':>5} {'params':>9} {'ckpt MB':>8} {'step s':>8} {'ckpt s':>8} "
          f"{'ckpt/step':>9} {'at ' + str(int(DEFAULT_EVERY_S)) + ' s':>9}")  # fmt: skip
    for size in args.sizes:
        model = size_config("llama", size, seq_len=256)
        tokens = args.steps * 16 * 256
        train_cfg = TrainConfig(tokens=tokens, batch_size=16, eval_tokens=4096, precision="fp32")
        config = RunConfig(model, train_cfg).resolved("cpu")
        timed(config, None)  # warm-up: corpus, allocator
        per_step = timed(config, None) / config.steps
        with tempfile.TemporaryDirectory() as folder:
            checkpoints = Checkpointing(Path(folder), every_s=1e-9)
            train(config, device="cpu", checkpoints=checkpoints)
            (path,) = Path(folder).glob("*.pt")
            size_mb = path.stat().st_size / 1e6
            state = torch.load(path, weights_only=True)
            writes = []
            for _ in range(5):
                start = time.perf_counter()
                checkpoints.save(state["run_id"], state)
                writes.append(time.perf_counter() - start)
        per_checkpoint = sorted(writes)[2]
        params = count(config.model).params
        share = per_checkpoint / DEFAULT_EVERY_S
        print(f"{size:>5} {params:>9,} {size_mb:>8.1f} {per_step:>8.3f} {per_checkpoint:>8.3f} "
              f"{per_checkpoint / per_step:>9.2f} {share:>9.2%}")  # fmt: skip


if __name__ == "__main__":
    main()
