"""The local executor: a pool of spawned worker processes, one run at a time each.

A hand-rolled pool rather than concurrent.futures: it streams each run's progress back,
knows which run a dead worker held (that run fails, the pool replaces the worker and goes
on, where ProcessPoolExecutor would break as a whole), and its workers exit on their own
when the coordinator dies, even by SIGKILL, so a restarted sweep never races orphans.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing as mp
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess

from runners.config import RunConfig
from runners.results import Progress
from runners.sweeps.executors import Finished, Update, execute

PROGRESS_EVERY_S = 0.5  # a worker reports a running run's progress at most this often
ORPHAN_CHECK_S = 0.5  # how often a worker checks that its coordinator is alive
CLOSE_WAIT_S = 5.0
PR_SET_PDEATHSIG = 1  # linux/prctl.h


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
            target=_serve,
            args=(theirs, self._threads, self._device, os.getpid()),
            name="scaling-sweep-worker",
            daemon=True,
        )
        process.start()
        theirs.close()
        return _Worker(process, ours)

    def submit(self, key: str, config: RunConfig) -> None:
        worker = next(w for w in self._workers if w.key is None)
        worker.conn.send((key, config))
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
        """Stop the workers: idle ones are asked to exit, busy ones are killed."""
        for worker in self._workers:
            if worker.key is None:
                with contextlib.suppress(OSError):
                    worker.conn.send(None)
            else:
                worker.process.kill()  # it ignores SIGTERM (see _serve)
        deadline = time.monotonic() + CLOSE_WAIT_S
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


def _serve(conn: Connection, threads: int, device: str, parent: int) -> None:
    """A worker: train what the coordinator sends until told to stop or orphaned.

    Ctrl-C and a scheduler's SIGTERM reach the whole process group; they are the
    coordinator's to handle (it commits what came back, then stops its workers). A worker
    that died of them first would have its run recorded as failed.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _die_with_parent()
    threading.Thread(target=_exit_with, args=(parent,), daemon=True).start()
    while True:
        try:
            task = conn.recv()
        except EOFError:
            return
        if task is None:
            return
        key, config = task
        last = 0.0

        def report(progress: Progress, key: str = key) -> None:
            nonlocal last
            now = time.monotonic()
            if now - last >= PROGRESS_EVERY_S:
                last = now
                conn.send(("progress", key, progress))

        conn.send(("finished", key, execute(config, device, threads, report)))


def _die_with_parent() -> None:
    """On Linux, have the kernel SIGKILL this worker the moment its coordinator dies
    (prctl PR_SET_PDEATHSIG); `_exit_with` is the portable fallback and covers the race of
    a coordinator that died before this call."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _exit_with(parent: int) -> None:
    """Exit as soon as the coordinator is gone (re-parented), even mid-run."""
    while os.getppid() == parent:
        time.sleep(ORPHAN_CHECK_S)
    os._exit(1)
