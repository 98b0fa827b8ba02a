"""The training loop: one run from config to result (summary + loss curve), no database.

Workers call `train`; the caller (CLI or sweep coordinator) records the result.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import asdict, astuple, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from runners.accounting import count
from runners.batches import BatchSampler, validation_windows
from runners.checkpoint import (
    FORMAT,
    Checkpointing,
    Stopped,
    clear_stop,
    stop_on_signals,
    stop_requested,
)
from runners.config import RunConfig
from runners.corpus import load_corpus
from runners.devices import check_device
from runners.models import LanguageModel
from runners.optim import make_optimizer
from runners.results import CurvePoint, Progress, RunResult

DIVERGENCE_MARGIN = 1.0  # nats above the first-step loss (smoothed) that count as exploding
CURVE_POINTS = 200  # about this many train-loss rows per run


def pick_device(device: str = "auto") -> torch.device:
    check_device(device)
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
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


@dataclass
class _Loop:
    """The training loop's own state: what a checkpoint needs besides model and optimizer."""

    step: int = 0  # optimiser steps done
    tokens_seen: int = 0
    first_loss: float = math.nan
    smoothed: float = math.nan
    window_losses: list[float] = field(default_factory=list)
    curve: list[CurvePoint] = field(default_factory=list)
    elapsed_s: float = 0.0  # wall seconds of earlier sessions of this run
    eval_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "curve": [astuple(p) for p in self.curve]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> _Loop:
        return cls(**{**data, "curve": [CurvePoint(*p) for p in data["curve"]]})


def train(
    config: RunConfig,
    device: str = "auto",
    progress: Callable[[Progress], None] | None = None,
    checkpoints: Checkpointing | None = None,
) -> RunResult:
    """Train one model for exactly `config.tokens` tokens and return its result.

    A non-finite or exploding loss stops the run with status `diverged`; it never raises.
    With `checkpoints`, the run resumes from its checkpoint if it has one, writes one every
    `checkpoints.every_s` seconds, and at SIGTERM or Ctrl-C writes one and raises Stopped.
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
    loop = _Loop()
    saved = checkpoints.load(result.run_id, config.to_dict()) if checkpoints else None
    if saved is not None:
        loop = _restore(saved, model, optimizer, sampler)
        result.resumed_at = loop.step

    def autocast() -> contextlib.AbstractContextManager:
        enabled = tcfg.precision == "bf16"
        return torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=enabled)

    def checkpoint(run_id: str, header: dict[str, Any]) -> Path:
        assert checkpoints is not None
        so_far = replace(loop, elapsed_s=loop.elapsed_s + time.perf_counter() - start)
        state = _state(header, so_far, model, optimizer, sampler)
        return checkpoints.save(run_id, {"format": FORMAT, "run_id": run_id, **state})

    steps, total_sequences = config.steps, config.tokens // mcfg.seq_len
    lrs = config.lrs()
    log_every = max(1, steps // CURVE_POINTS)
    header = {"config": config.to_dict()}
    start = last_saved = time.perf_counter()
    with stop_on_signals() if checkpoints else contextlib.nullcontext():
        for step in range(loop.step, steps):
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
            loop.step = step + 1
            loop.tokens_seen += batch * mcfg.seq_len
            value = loss.item()
            loop.window_losses.append(value)
            if step == 0:
                loop.first_loss = loop.smoothed = value
            loop.smoothed = 0.9 * loop.smoothed + 0.1 * value
            diverged = (
                not math.isfinite(value) or loop.smoothed > loop.first_loss + DIVERGENCE_MARGIN
            )
            last = step == steps - 1 or diverged
            val_loss = None
            if (step + 1) % tcfg.eval_every == 0 or last:
                t0 = time.perf_counter()
                val_loss = None if diverged else evaluate(model, windows, tcfg.batch_size, autocast)
                loop.eval_s += time.perf_counter() - t0
            if (step + 1) % log_every == 0 or last or val_loss is not None:
                train_loss = sum(loop.window_losses) / len(loop.window_losses)
                loop.curve.append(CurvePoint(step + 1, loop.tokens_seen, train_loss, val_loss, lr))
                loop.window_losses.clear()
            elapsed = loop.elapsed_s + time.perf_counter() - start
            result.tokens_per_s = loop.tokens_seen / max(elapsed - loop.eval_s, 1e-9)
            if progress is not None:
                progress(Progress(step + 1, steps, loop.tokens_seen, value, result.tokens_per_s))
            if diverged:
                result.status = "diverged"
                result.error = f"loss {value:.3g} at step {step + 1} (first {loop.first_loss:.3g})"
                break
            if checkpoints is None or last:
                continue
            for branch in checkpoints.branches:
                if branch.step == step + 1:
                    checkpoint(branch.run_id, {"config": dict(branch.config)})
            signum = stop_requested()
            if signum is not None or checkpoints.due(last_saved, time.perf_counter()):
                path = checkpoint(result.run_id, header)
                last_saved = time.perf_counter()
                if signum is not None:
                    clear_stop()
                    raise Stopped(signum, step + 1, steps, path)
    result.curve = loop.curve
    result.wall_s = loop.elapsed_s + time.perf_counter() - start
    result.final_train_loss = result.curve[-1].train_loss if result.curve else None
    if result.status == "done":
        result.final_val_loss = result.curve[-1].val_loss
        if result.final_val_loss is None or not math.isfinite(result.final_val_loss):
            result.status, result.error = "diverged", "non-finite validation loss"
    return result


def _state(
    header: dict[str, Any],
    loop: _Loop,
    model: LanguageModel,
    optimizer: torch.optim.Optimizer,
    sampler: BatchSampler,
) -> dict[str, Any]:
    """Everything the rest of the run depends on, as of the end of step `loop.step`."""
    return {
        **header,
        "loop": loop.to_dict(),
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "sampler": sampler.generator.get_state(),
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }


def _restore(
    state: dict[str, Any],
    model: LanguageModel,
    optimizer: torch.optim.Optimizer,
    sampler: BatchSampler,
) -> _Loop:
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    sampler.generator.set_state(state["sampler"])
    torch.set_rng_state(state["torch_rng"])
    if state["cuda_rng"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    return _Loop.from_dict(state["loop"])
