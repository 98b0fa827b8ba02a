"""The sweep lock: one coordinator per run log, refused with the holder's name otherwise.

An exclusive flock on the run log file itself. A flock belongs to the file (its device and
inode), not to a name, so every name of the log shares one lock: a symlink, `./x/../`, a
hard link. DuckDB's own locks are fcntl record locks, which on Linux do not interact with
flock. The kernel drops a flock when its process dies, so a coordinator killed with SIGKILL
never leaves a stale lock behind.

Who holds the lock (pid, host, start time) is written as text to `<db>.sweep.lock` beside
the real path of the name it was taken under, for the refusal message; a coordinator
refused under another name (a hard link elsewhere) finds the holder's pid in /proc/locks.
The text file is never deleted (deleting a lock file races with the next taker).
"""

from __future__ import annotations

import errno
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from store.db import connect, is_no_space, no_space
from store.errors import StoreError

SUFFIX = ".sweep.lock"
ACQUIRE_WAIT_S = 2.0  # rides out a `sweep status` probe; never waits on a real holder
PROC_LOCKS = Path("/proc/locks")


def lock_path(db: Path) -> Path:
    """Where the holder of `db`'s sweep lock describes itself."""
    real = db.resolve()
    return real.with_name(real.name + SUFFIX)


@contextmanager
def sweep_lock(db: Path) -> Iterator[None]:
    """Hold the run log's sweep lock for the block, or raise StoreError naming the holder.

    A log that does not exist yet is created first: the lock is on the file itself.
    """
    import fcntl

    path = lock_path(db)
    if not path.parent.exists():
        raise StoreError(f"folder {path.parent} does not exist")
    if not db.exists():
        with connect(db):
            pass
    fd = os.open(db, os.O_RDONLY)
    try:
        deadline = time.monotonic() + ACQUIRE_WAIT_S
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise StoreError(
                        f"another sweep coordinator is using {db}: {_holder(db, fd)}; "
                        "let it finish or use another --db"
                    ) from None
                time.sleep(0.05)
        _describe_holder(db, path)
        yield
    finally:
        os.close(fd)


def _describe_holder(db: Path, path: Path) -> None:
    """Write who holds the lock beside it; a full or read-only disk stops the sweep here,
    before any run is handed out."""
    started = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    text = f"pid {os.getpid()} on {socket.gethostname()}, started {started}"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, text.encode(), 0)
        finally:
            os.close(fd)
    except OSError as exc:
        if is_no_space(exc):
            raise no_space(db) from exc
        if exc.errno == errno.EROFS:
            raise StoreError(
                f"{db} is on a read-only file system: a sweep records runs in it; copy it "
                "somewhere writable"
            ) from exc
        raise StoreError(f"cannot write the sweep lock {path}: {exc.strerror}") from exc


def lock_holder(db: Path) -> str | None:
    """Who holds the sweep lock of `db` (pid, host, start), or None when no coordinator runs."""
    import fcntl

    if not db.exists():
        return None
    fd = os.open(db, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _holder(db, fd)
        return None
    finally:
        os.close(fd)


def _holder(db: Path, fd: int) -> str:
    """The holder's own description when it took the lock under this name, else its pid."""
    pid = _flock_pid(fd)
    try:
        text = lock_path(db).read_text(errors="replace").strip()
    except OSError:
        text = ""
    if text and (pid is None or text.startswith(f"pid {pid} ")):
        return text
    return f"pid {pid}" if pid is not None else "a process that is still starting"


def _flock_pid(fd: int) -> int | None:
    """The pid holding a flock on the file behind `fd`, from /proc/locks (Linux only)."""
    st = os.fstat(fd)
    where = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    try:
        lines = PROC_LOCKS.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        parts = line.split()
        if len(parts) >= 6 and parts[1] == "FLOCK" and parts[3] == "WRITE" and parts[5] == where:
            return int(parts[4])
    return None
