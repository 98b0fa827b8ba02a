"""The training loop: one run from config to result (summary + loss curve), no database.

Workers call `train`; the caller (CLI or sweep coordinator) records the result.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable

import torch

from runners.accounting import count
from runners.batches import BatchSampler, validation_windows
from runners.config import RunConfig
from runners.corpus import load_corpus
from runners.errors import RunnerError
from runners.models import LanguageModel
from runners.optim import make_optimizer
from runners.results import CurvePoint, Progress, RunResult

DIVERGENCE_MARGIN = 1.0  # nats above the first-step loss (smoothed) that count as exploding
CURVE_POINTS = 200  # about this many train-loss rows per run


def pick_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise RunnerError("--device cuda asked for, but torch sees no CUDA device")
    return torch.device(device)


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    return f"cpu:{torch.get_num_threads()}threads"


@torch.no_grad()
def evaluate(model: LanguageModel, windows: torch.Tensor, batch_size: int, autocast) -> float:
    model.eval()
    total = 0.0
    for rows in windows.split(batch_size):
        rows = rows.to(next(model.parameters()).device)
        with autocast():
            total += model.loss(rows[:, :-1], rows[:, 1:]).item() * len(rows)
    model.train()
    return total / len(windows)


def train(
    config: RunConfig,
    device: str = "auto",
    progress: Callable[[Progress], None] | None = None,
) -> RunResult:
    """Train one model for exactly `config.tokens` tokens and return its result.

    A non-finite or exploding loss stops the run with status `diverged`; it never raises.
    """
    config = config.resolved(device)
    corpus = load_corpus(config.train.corpus)
    dev = pick_device(device)
    mcfg, tcfg = config.model, config.train
    assert tcfg.warmup is not None and tcfg.eval_every is not None  # set by resolved()
    result = RunResult(
        run_id=config.run_id(corpus.sha256),
        config=config,
        counts=count(mcfg),
        corpus=corpus.name,
        corpus_sha256=corpus.sha256,
        unique_tokens=len(corpus.train),
        device=describe_device(dev),
    )
    torch.manual_seed(tcfg.seed)
    model = LanguageModel(mcfg).to(dev)
    optimizer = make_optimizer(model, mcfg, tcfg)
    sampler = BatchSampler(corpus.train, mcfg.seq_len, tcfg.seed)
    windows = validation_windows(corpus.val, mcfg.seq_len, tcfg.eval_tokens)

    def autocast() -> contextlib.AbstractContextManager:
        enabled = tcfg.precision == "bf16"
        return torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=enabled)

    steps, total_sequences = config.steps, config.tokens // mcfg.seq_len
    lrs = config.lrs()
    log_every = max(1, steps // CURVE_POINTS)
    start = time.perf_counter()
    eval_seconds = 0.0
    tokens_seen, first_loss, smoothed = 0, math.nan, math.nan
    window_losses: list[float] = []
    for step in range(steps):
        batch = min(tcfg.batch_size, total_sequences - step * tcfg.batch_size)
        lr = float(lrs[step])
        for group in optimizer.param_groups:
            group["lr"] = lr * group["lr_mult"]
        x, y = sampler.sample(batch)
        with autocast():
            loss = model.loss(x.to(dev), y.to(dev))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), tcfg.grad_clip)
        optimizer.step()
        tokens_seen += batch * mcfg.seq_len
        value = loss.item()
        window_losses.append(value)
        if step == 0:
            first_loss = smoothed = value
        smoothed = 0.9 * smoothed + 0.1 * value
        diverged = not math.isfinite(value) or smoothed > first_loss + DIVERGENCE_MARGIN
        last = step == steps - 1 or diverged
        val_loss = None
        if (step + 1) % tcfg.eval_every == 0 or last:
            t0 = time.perf_counter()
            val_loss = None if diverged else evaluate(model, windows, tcfg.batch_size, autocast)
            eval_seconds += time.perf_counter() - t0
        if (step + 1) % log_every == 0 or last or val_loss is not None:
            train_loss = sum(window_losses) / len(window_losses)
            result.curve.append(CurvePoint(step + 1, tokens_seen, train_loss, val_loss, lr))
            window_losses.clear()
        elapsed = time.perf_counter() - start
        result.tokens_per_s = tokens_seen / max(elapsed - eval_seconds, 1e-9)
        if progress is not None:
            progress(Progress(step + 1, steps, tokens_seen, value, result.tokens_per_s))
        if diverged:
            result.status = "diverged"
            result.error = f"loss {value:.3g} at step {step + 1} (first {first_loss:.3g})"
            break
    result.wall_s = time.perf_counter() - start
    result.final_train_loss = result.curve[-1].train_loss if result.curve else None
    if result.status == "done":
        result.final_val_loss = result.curve[-1].val_loss
        if result.final_val_loss is None or not math.isfinite(result.final_val_loss):
            result.status, result.error = "diverged", "non-finite validation loss"
    return result
