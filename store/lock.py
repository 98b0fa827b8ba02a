"""The sweep lock: one coordinator per run log, refused with the holder's name otherwise.

An exclusive flock on `<db>.sweep.lock`. The kernel drops a flock when its process dies,
so a coordinator killed with SIGKILL never leaves a stale lock behind. The lock sits beside
the run log's real path (symlinks resolved): two names for one file share one lock. The
file holds the holder's pid, host and start time as text, for the refusal message; it is
never deleted (deleting a lock file races with the next taker).
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from store.errors import StoreError

SUFFIX = ".sweep.lock"
ACQUIRE_WAIT_S = 2.0  # rides out a `sweep status` probe; never waits on a real holder


def lock_path(db: Path) -> Path:
    real = db.resolve()
    return real.with_name(real.name + SUFFIX)


@contextmanager
def sweep_lock(db: Path) -> Iterator[None]:
    """Hold the run log's sweep lock for the block, or raise StoreError naming the holder."""
    import fcntl

    path = lock_path(db)
    if not path.parent.exists():
        raise StoreError(f"folder {path.parent} does not exist")
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + ACQUIRE_WAIT_S
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise StoreError(
                        f"another sweep coordinator is using {db}: {_read(fd)} "
                        f"(lock {path}); let it finish or use another --db"
                    ) from None
                time.sleep(0.05)
        started = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        text = f"pid {os.getpid()} on {socket.gethostname()}, started {started}"
        os.ftruncate(fd, 0)
        os.pwrite(fd, text.encode(), 0)
        yield
    finally:
        os.close(fd)


def lock_holder(db: Path) -> str | None:
    """Who holds the sweep lock of `db` (pid, host, start), or None when no coordinator runs."""
    import fcntl

    path = lock_path(db)
    if not path.exists():
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read(fd)
        return None
    finally:
        os.close(fd)


def _read(fd: int) -> str:
    text = os.pread(fd, 4096, 0).decode(errors="replace").strip()
    return text or "a process that is still starting"
