"""What every executor shares: the events it reports and the work a worker does (the factory
that picks one is runners.sweeps.factory).

An executor runs configs somewhere else (worker processes, a Ray cluster) and reports back;
it never touches the run log. The coordinator (scaling.sweeps.coordinator) is the single writer.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from runners.checkpoint import Checkpointing
from runners.config import RunConfig
from runners.errors import RunnerError, describe
from runners.results import Progress, RunResult

EXECUTORS = ("local", "ray")


@dataclass(frozen=True)
class Update:
    """A running run's latest step (local workers send one every worker.PROGRESS_EVERY_S)."""

    key: str
    progress: Progress


@dataclass(frozen=True)
class Finished:
    """A run came back: a result (done or diverged), or the error that stopped it."""

    key: str
    result: RunResult | None
    error: str | None = None

    @classmethod
    def of(cls, key: str, outcome: RunResult | str) -> Finished:
        """From what `execute` returned."""
        return cls(key, None, outcome) if isinstance(outcome, str) else cls(key, outcome)


class Executor(Protocol):
    @property
    def slots(self) -> int: ...  # runs it trains at once

    def submit(
        self, key: str, config: RunConfig, checkpoints: Checkpointing | None = None
    ) -> None: ...

    def wait(self, timeout: float) -> list[Update | Finished]: ...

    def close(self) -> None: ...


def cores() -> int:
    """CPU cores this process may use (the affinity mask, where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def threads_per_worker(workers: int, threads: int | None) -> int:
    """torch threads per worker: the cores shared out, so that workers x threads <= cores."""
    if workers < 1:
        raise RunnerError(f"--workers must be at least 1, got {workers}")
    if threads is None:
        return max(1, cores() // workers)
    if threads < 1:
        raise RunnerError(f"--threads must be at least 1, got {threads}")
    return threads


def execute(
    config: RunConfig,
    device: str,
    threads: int,
    progress: Callable[[Progress], None] | None = None,
    checkpoints: Checkpointing | None = None,
) -> RunResult | str:
    """Train one run in a worker; an exception becomes its message, so the sweep goes on.
    (runners.checkpoint.Stopped is no exception: the worker stops with it.) Torch is imported
    here, in the worker: the parent that plans a sweep needs none of it."""
    import torch

    from runners.train import train

    torch.set_num_threads(threads)
    try:
        return train(config, device=device, progress=progress, checkpoints=checkpoints)
    except Exception as exc:
        return describe(exc)
