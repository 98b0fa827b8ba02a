"""The local executor: a pool of spawned worker processes, one run at a time each.

A hand-rolled pool rather than concurrent.futures: it streams each run's progress back,
knows which run a dead worker held (that run fails, the pool replaces the worker and goes
on, where ProcessPoolExecutor would break as a whole), and its workers die with the
coordinator, even by SIGKILL (runners.sweeps.worker), so a restarted sweep never races
orphans.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import signal
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess

from runners.checkpoint import Checkpointing
from runners.config import RunConfig
from runners.sweeps.executors import Finished, Update
from runners.sweeps.worker import serve

CLOSE_WAIT_S = 5.0
CHECKPOINT_WAIT_S = 10.0  # a busy worker asked to stop gets this long to write its checkpoint


@dataclass
class _Worker:
    process: BaseProcess
    conn: Connection
    key: str | None = None  # the run it is training


class LocalPool:
    """`workers` spawned processes with `threads` torch threads each."""

    def __init__(self, workers: int, threads: int, device: str = "auto") -> None:
        self._context = mp.get_context("spawn")  # fork after torch is imported is unsafe
        self._threads, self._device = threads, device
        self._workers = [self._start() for _ in range(workers)]

    @property
    def slots(self) -> int:
        return len(self._workers)

    def _start(self) -> _Worker:
        ours, theirs = self._context.Pipe()
        process = self._context.Process(
            target=serve,
            args=(theirs, self._threads, self._device, os.getpid()),
            name="scaling-sweep-worker",
            daemon=True,
        )
        process.start()
        theirs.close()
        return _Worker(process, ours)

    def submit(self, key: str, config: RunConfig, checkpoints: Checkpointing | None = None) -> None:
        worker = next(w for w in self._workers if w.key is None)
        worker.conn.send((key, config, checkpoints))
        worker.key = key

    def wait(self, timeout: float) -> list[Update | Finished]:
        """Events from busy workers, as soon as there is one or after `timeout` seconds."""
        busy = [w for w in self._workers if w.key is not None]
        wait([w.conn for w in busy] + [w.process.sentinel for w in busy], timeout)
        events: list[Update | Finished] = []
        for index, worker in enumerate(self._workers):
            if worker.key is None:
                continue
            events += _drain(worker)
            if worker.key is not None and not worker.process.is_alive():
                code = worker.process.exitcode
                error = f"worker process died (exit code {code}; out of memory or killed?)"
                events.append(Finished(worker.key, None, error))
                worker.conn.close()
                self._workers[index] = self._start()
        return events

    def close(self) -> None:
        """Stop the workers: idle ones are asked to exit, busy ones to checkpoint their run
        and exit (SIGUSR1; they ignore SIGTERM, see worker.serve), then killed."""
        busy = False
        for worker in self._workers:
            if worker.key is None:
                with contextlib.suppress(OSError):
                    worker.conn.send(None)
            elif worker.process.pid is not None:
                busy = True
                with contextlib.suppress(ProcessLookupError):
                    os.kill(worker.process.pid, signal.SIGUSR1)
        deadline = time.monotonic() + (CHECKPOINT_WAIT_S if busy else CLOSE_WAIT_S)
        for worker in self._workers:
            worker.process.join(max(0.0, deadline - time.monotonic()))
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join()
            worker.conn.close()


def _drain(worker: _Worker) -> list[Update | Finished]:
    events: list[Update | Finished] = []
    while worker.key is not None and worker.conn.poll():
        try:
            kind, key, payload = worker.conn.recv()
        except (EOFError, OSError):
            break
        if kind == "progress":
            events.append(Update(key, payload))
        else:
            events.append(Finished.of(key, payload))
            worker.key = None
    return events
