"""Speed of the linear token mixers, printed as ratios measured in one run (not a test).

1. chunk-wise form vs the naive recurrence, forward + backward of one mixer at seq_len 1024;
2. forward + backward time per token of whole LMs as seq_len grows 256 -> 4096 at a fixed
   number of tokens per batch (linear mixers should stay flat, softmax attention grows);
3. training tokens/s (forward, backward, AdamW step) of each linear arch relative to llama
   at equal non-embedding parameters (runners/sizes.py) and seq_len 256.

    python benchmarks/mixers.py            # a few minutes on 2 CPU cores
    python benchmarks/mixers.py --quick    # about a minute: fewer sizes and lengths

Each figure is the fastest of a few repeats, the least noisy statistic when other processes
share the cores. The clock is wall time; on a busy machine `--threads 1 --cpu-time` times
this process's CPU seconds instead, which other processes disturb far less. The load at the
start is printed: compare ratios from one run, not absolute times across runs.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout, not an installed copy

from runners.accounting import count
from runners.models import MIXERS, LanguageModel
from runners.sizes import size_config

LINEAR = ("tnl", "hgrn2", "cosformer2")
ARCHS = ("llama", *LINEAR)


Timer = Callable[..., float]


def fastest(
    clock: Callable[[], float], fn: Callable[..., object], repeats: int, *args: object
) -> float:
    """Seconds of the fastest of `repeats` calls fn(*args), after one warm-up call."""
    fn(*args)
    times = []
    for _ in range(repeats):
        start = clock()
        fn(*args)
        times.append(clock() - start)
    return min(times)


def mixer_pass(mixer: torch.nn.Module, x: torch.Tensor) -> None:
    mixer(x).sum().backward()


def model_pass(model: LanguageModel, idx: torch.Tensor) -> None:
    model.loss(idx[:, :-1], idx[:, 1:]).backward()


def train_step(model: LanguageModel, optimizer: torch.optim.Optimizer, idx: torch.Tensor) -> None:
    optimizer.zero_grad(set_to_none=True)
    model_pass(model, idx)
    optimizer.step()


def chunk_vs_recurrent(quick: bool, timer: Timer) -> pd.DataFrame:
    """Part 1: one mixer of size s (d 128, 4 heads), batch 2 x 1024 tokens, forward+backward."""
    seq_len, batch = 1024, 2
    rows = []
    for arch in LINEAR:
        cfg = size_config(arch, "s", seq_len=seq_len)
        mixer = MIXERS[arch](cfg, 1)
        x = torch.randn(batch, seq_len, cfg.d_model, requires_grad=True)
        seconds = {}
        for impl in ("chunk", "recurrent"):
            mixer.impl = impl
            seconds[impl] = timer(mixer_pass, 1 if quick else 2, mixer, x)
        tokens = batch * seq_len
        rows.append(
            {
                "arch": arch,
                "chunk_tok_s": tokens / seconds["chunk"],
                "recurrent_tok_s": tokens / seconds["recurrent"],
                "speedup": seconds["recurrent"] / seconds["chunk"],
            }
        )
    return pd.DataFrame(rows)


def context_scaling(quick: bool, timer: Timer) -> pd.DataFrame:
    """Part 2: LMs of size s, forward+backward per token as seq_len grows, tokens fixed."""
    tokens = 4096 if quick else 8192
    lengths = (256, 1024, 2048) if quick else (256, 512, 1024, 2048, 4096)
    rows = []
    for arch in ARCHS:
        base = None
        for seq_len in lengths:
            torch.manual_seed(0)
            model = LanguageModel(size_config(arch, "s", seq_len=seq_len))
            idx = torch.randint(0, 256, (tokens // seq_len, seq_len + 1))
            seconds = timer(model_pass, 2, model, idx)
            per_token = seconds / tokens
            base = base or per_token
            rows.append(
                {
                    "arch": arch,
                    "seq_len": seq_len,
                    "us_per_token": 1e6 * per_token,
                    "vs_256": per_token / base,
                }
            )
    return pd.DataFrame(rows)


def training_throughput(quick: bool, timer: Timer) -> pd.DataFrame:
    """Part 3: full training steps (batch 16 x 256) at matched sizes, tokens/s vs llama.

    hgrn2 runs twice: at the default chunk (64) and at 16, where its chunk form is cheaper
    on CPU (fewer halving levels; FLOPs per token are lower too).
    """
    seq_len, batch = 256, 16
    variants = (("llama", 64), ("tnl", 64), ("hgrn2", 64), ("hgrn2", 16), ("cosformer2", 64))
    rows = []
    for name in ("s",) if quick else ("s", "m", "l"):
        llama = None
        for arch, chunk in variants:
            torch.manual_seed(0)
            cfg = size_config(arch, name, seq_len=seq_len, chunk_size=chunk)
            model = LanguageModel(cfg)
            optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
            idx = torch.randint(0, 256, (batch, seq_len + 1))
            seconds = timer(train_step, 2, model, optimizer, idx)
            tokens_per_s = batch * seq_len / seconds
            llama = llama or tokens_per_s
            rows.append(
                {
                    "size": name,
                    "arch": arch if arch == "llama" else f"{arch} (chunk {chunk})",
                    "params_nonembed": count(cfg).params_nonembed,
                    "tokens_per_s": tokens_per_s,
                    "llama_over_arch": llama / tokens_per_s,
                }
            )
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer sizes, lengths, repeats")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    parser.add_argument("--cpu-time", action="store_true", help="time CPU seconds, not wall")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    timer = partial(fastest, time.process_time if args.cpu_time else time.perf_counter)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{'CPU' if args.cpu_time else 'wall'} time, load average {os.getloadavg()[0]:.2f} at start"
    )
    pd.set_option("display.float_format", lambda v: f"{v:,.3g}")
    parts = (
        ("1. chunk-wise vs naive recurrence, one mixer, forward+backward, seq_len 1024",
         chunk_vs_recurrent),
        ("2. whole LM (size s), forward+backward time per token vs seq_len, fixed tokens/batch",
         context_scaling),
        ("3. training tokens/s at matched non-embedding params, seq_len 256 (llama / arch)",
         training_throughput),
    )  # fmt: skip
    for title, part in parts:
        start = time.perf_counter()
        frame = part(args.quick, timer)
        print(f"\n{title}  [{time.perf_counter() - start:.0f} s]")
        print(frame.to_string(index=False))
    print(f"\nload average {os.getloadavg()[0]:.2f} at end")


if __name__ == "__main__":
    main()
