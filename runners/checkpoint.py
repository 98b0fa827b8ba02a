"""Checkpoints: a run's whole training state on disk, so a killed run resumes where it
stopped (bit for bit on CPU) instead of from step 0.

A checkpoint holds the model, the optimizer, the batch sampler's and torch's RNG states and
the loop's own state (the curve so far, the divergence detector). It is written to a
temporary file and renamed over the last one, so a kill at any moment leaves the previous
checkpoint or the new one, never half of one. They live in a folder next to the run log
(`scaling.duckdb.checkpoints/<run_id>.pt`) and are deleted once their run is committed.

A branch (a cooldown from step s of a stable run) needs no mechanism of its own: when the
stable run passes step s it also writes the checkpoint of each branch that starts there,
under the branch's run id, and the branch later "resumes" from it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

FORMAT = 1
DEFAULT_EVERY_S = 300.0  # a run writes its checkpoint at least this often
SUFFIX = ".pt"


class Stopped(KeyboardInterrupt):
    """Training stopped at a signal after writing its checkpoint: the same run resumes."""

    def __init__(self, signum: int, step: int, steps: int, path: Path) -> None:
        super().__init__(f"stopped at step {step:,} of {steps:,}; checkpoint {path}")
        self.signum, self.step, self.steps, self.path = signum, step, steps, path


@dataclass(frozen=True)
class Branch:
    """A run that shares this run's first `step` steps: its checkpoint is written there."""

    run_id: str
    config: Mapping[str, Any]  # its RunConfig.to_dict(), the checkpoint's header
    step: int


@dataclass(frozen=True)
class Checkpointing:
    """Where checkpoints go and how often; `every_s` 0 writes one only at a signal."""

    folder: Path
    every_s: float = DEFAULT_EVERY_S
    branches: tuple[Branch, ...] = ()

    def path(self, run_id: str) -> Path:
        return self.folder / f"{run_id}{SUFFIX}"

    def due(self, last_s: float, now_s: float) -> bool:
        return self.every_s > 0 and now_s - last_s >= self.every_s

    def save(self, run_id: str, state: dict[str, Any]) -> Path:
        """Write atomically: a temporary file in the same folder, flushed, then renamed."""
        import torch

        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.path(run_id)
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            with open(temporary, "wb") as handle:
                torch.save(state, handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                temporary.unlink()
        return path

    def load(self, run_id: str, config: Mapping[str, Any]) -> dict[str, Any] | None:
        """The run's checkpoint, or None when there is none, it is not this run's, or it
        cannot be read (the run then starts from step 0)."""
        import torch

        path = self.path(run_id)
        if not path.exists():
            return None
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:  # a damaged file is no reason to lose the run: train it again
            return None
        if not isinstance(state, dict):
            return None
        if state.get("format") != FORMAT or state.get("run_id") != run_id:
            return None
        if state.get("config") != dict(config):
            return None
        return state

    def discard(self, run_ids: Sequence[str]) -> None:
        """Delete the checkpoints of runs the log now holds as finished, and any temporary
        file a kill left half-written."""
        for run_id in run_ids:
            path = self.path(run_id)
            for leftover in (path, *self.folder.glob(f".{path.name}.*.tmp")):
                with contextlib.suppress(FileNotFoundError):
                    leftover.unlink()


def folder_for(db: Path) -> Path:
    """The checkpoint folder of a run log: beside it, named after it."""
    return db.with_name(db.name + ".checkpoints")


# A stop asked for by a signal: process-wide, as signals are. Training checks it after each
# step; a sweep worker's SIGUSR1 handler sets it too (runners.sweeps.worker).
_stop: dict[str, int] = {}


def request_stop(signum: int) -> None:
    """Ask the training loop of this process to checkpoint and stop after its step."""
    _stop.setdefault("signum", signum)


def stop_requested() -> int | None:
    """The signal that asked training to stop, or None."""
    return _stop.get("signum")


def clear_stop() -> None:
    _stop.clear()


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """SIGTERM and Ctrl-C ask training to checkpoint and stop at the end of its step.

    Only where nobody else handles them (a sweep worker ignores both; its coordinator
    decides) and only in the main thread. The first signal restores the previous handlers,
    so a second one stops at once.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    defaults = (signal.SIG_DFL, signal.default_int_handler)
    ours = [s for s in (signal.SIGTERM, signal.SIGINT) if signal.getsignal(s) in defaults]
    previous = {s: signal.getsignal(s) for s in ours}

    def handler(signum: int, frame: FrameType | None) -> None:
        request_stop(signum)
        for s, h in previous.items():
            signal.signal(s, h)

    for s in ours:
        signal.signal(s, handler)
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
