"""A local sweep worker process: bound to its coordinator's life, then trains what it is sent.

The binding comes first, before anything heavy is imported (torch takes seconds to import
on a busy machine): on Linux the kernel SIGKILLs the worker the moment its coordinator dies
(prctl PR_SET_PDEATHSIG), and a thread that watches the parent pid is the portable fallback.
So a coordinator killed with SIGKILL never leaves workers training on.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading
import time
from multiprocessing.connection import Connection
from typing import Any

PROGRESS_EVERY_S = 0.5  # a worker reports a running run's progress at most this often
ORPHAN_CHECK_S = 0.5  # how often the fallback checks that the coordinator is alive
PR_SET_PDEATHSIG = 1  # linux/prctl.h


def serve(conn: Connection, threads: int, device: str, parent: int) -> None:
    """Train what the coordinator sends until told to stop or orphaned.

    Ctrl-C and a scheduler's SIGTERM reach the whole process group; they are the
    coordinator's to handle (it commits what came back, then stops its workers). A worker
    that died of them first would have its run recorded as failed. The coordinator stops a
    busy worker with SIGUSR1: its run writes a checkpoint after the step it is on, and the
    worker exits.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _die_with_parent()
    threading.Thread(target=_exit_with, args=(parent,), daemon=True).start()
    if os.getppid() != parent:  # the coordinator died before we were bound to it
        os._exit(1)
    from runners.checkpoint import Stopped, request_stop

    signal.signal(signal.SIGUSR1, lambda signum, frame: request_stop(signum))
    from runners.sweeps.executors import execute

    while True:
        try:
            task = conn.recv()
        except EOFError:
            return
        if task is None:
            return
        key, config, checkpoints = task
        last = 0.0

        def report(progress: Any, key: str = key) -> None:
            nonlocal last
            now = time.monotonic()
            if now - last >= PROGRESS_EVERY_S:
                last = now
                conn.send(("progress", key, progress))

        try:
            outcome = execute(config, device, threads, report, checkpoints)
        except Stopped:
            return
        conn.send(("finished", key, outcome))


def _die_with_parent() -> None:
    """On Linux, have the kernel SIGKILL this process when its parent dies."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL))


def _exit_with(parent: int) -> None:
    """Exit as soon as the coordinator is gone (re-parented), even mid-run."""
    while os.getppid() == parent:
        time.sleep(ORPHAN_CHECK_S)
    os._exit(1)
