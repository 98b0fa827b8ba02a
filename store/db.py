"""Opening the run log: short-lived connections, lock waits, migrations, clear errors.

Writers open the file only for the moment of a write, so that `scaling sql` and other
readers can get in between the commits of a running sweep.
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import re
import stat
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

import duckdb

from store.errors import LockedError, StoreError
from store.schema import MIGRATIONS, SCHEMA_VERSION

DEFAULT_DB = "scaling.duckdb"
LOCK_WAIT_S = 30.0  # a command waits this long for another process to let go of the file
LOCK_WAIT_ENV = "SCALING_LOCK_WAIT_S"  # ... or as long as this says (seconds)
COMMIT_WAIT_S = 600.0  # a finished run's commit waits this long: its result is not thrown away
# How DuckDB reports a file whose pages are missing or torn (truncated, overwritten).
DAMAGE = re.compile(
    r"could not read enough bytes from file|corrupt database file|checksum \S+ does not match",
    re.I,
)
# How DuckDB reports a write the file system refused (a full disk, a read-only mount).
NO_SPACE = re.compile(r"no space left on device|disk quota exceeded", re.I)
READ_ONLY_FS = re.compile(r"read-only file system", re.I)
# DuckDB reaches the network on its own unless told not to: a file that is not its own
# format (an SQLite one) makes it download a scanner extension, a URL loads httpfs. The
# product needs no extension, so every connection it opens installs and loads none.
OFFLINE: dict[str, str | bool | int | float | list[str]] = {
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "allow_community_extensions": False,
}
MAGIC = b"DUCK"  # bytes 8..12 of every DuckDB database file


def default_path() -> Path:
    return Path(os.environ.get("SCALING_DB", DEFAULT_DB))


def is_damage(exc: duckdb.Error) -> bool:
    """Whether DuckDB's error says the database file itself is damaged."""
    return bool(DAMAGE.search(str(exc)))


def memory() -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection that installs and loads no extension."""
    return duckdb.connect(":memory:", config=OFFLINE)


def is_no_space(exc: BaseException) -> bool:
    """Whether an error says the disk (or the user's quota) is full."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    return bool(NO_SPACE.search(str(exc)))


def no_space(path: Path) -> StoreError:
    return StoreError(f"no space left on device for {path}: free some space and run again")


def _damaged(path: Path, exc: duckdb.Error) -> StoreError | None:
    """A StoreError for an error that says the file is damaged or cannot be written."""
    if is_no_space(exc):
        return no_space(path)
    match = DAMAGE.search(str(exc))
    if match is None:
        return None
    return StoreError(
        f"{path} is damaged ({match.group(0).lower()}); restore it from a copy or start a new one"
    )


def _check_file(path: Path) -> None:
    """Refuse what is not a DuckDB file before DuckDB opens it.

    DuckDB would block reading a FIFO, read a device forever, and answer an SQLite file by
    trying to download its scanner; none of them is a run log.
    """
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return
    except OSError as exc:
        raise StoreError(f"cannot open {path}: {exc.strerror}") from exc
    if not stat.S_ISREG(mode):
        raise StoreError(f"{path} is not a DuckDB run log (not a regular file)")
    try:
        with path.open("rb") as fh:
            head = fh.read(16)
    except OSError as exc:
        raise StoreError(f"cannot read {path}: {exc.strerror}") from exc
    if head[8:12] != MAGIC:
        why = "it is empty" if not head else "it has no DuckDB header"
        if head.startswith(b"SQLite format 3\0"):
            why = "it is an SQLite database"
        raise StoreError(f"{path} is not a DuckDB run log ({why})")


def _unwritable(path: Path) -> StoreError | None:
    """Why a run log that exists and reads cannot be opened for writing, if it is that."""
    folder = path.resolve().parent
    read_only_fs = os.statvfs(folder).f_flag & os.ST_RDONLY
    if read_only_fs:
        return StoreError(
            f"{path} is on a read-only file system: read it with `scaling runs` or "
            "`scaling sql`, or copy it somewhere writable to add runs"
        )
    if not os.access(path if path.exists() else folder, os.W_OK):
        return StoreError(f"{path} is not writable by this user (permission denied)")
    return None


def _holder(message: str) -> str:
    """The process DuckDB says holds the file, with its command line where it can be read."""
    match = re.search(r"\(PID (\d+)\)", message)
    if match is None:
        return "another process"
    pid = match.group(1)
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return f"process {pid}"
    command = " ".join(b" ".join(argv).decode(errors="replace").split())[:120]
    return f"process {pid} ({command})" if command else f"process {pid}"


def lock_wait_s() -> float:
    """How long a command waits for the run log: $SCALING_LOCK_WAIT_S seconds, else 30 (a
    notebook that holds the log for minutes may want more, a script that must not hang less)."""
    text = os.environ.get(LOCK_WAIT_ENV)
    if text is None:
        return LOCK_WAIT_S
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds >= 0):
        raise StoreError(f"{LOCK_WAIT_ENV} must be a number of seconds >= 0, not {text!r}")
    return seconds


def _open(path: Path, read_only: bool, wait_s: float) -> duckdb.DuckDBPyConnection:
    _check_file(path)
    deadline = time.monotonic() + wait_s
    delay = 0.01
    while True:
        try:
            return duckdb.connect(str(path.resolve()), read_only=read_only, config=OFFLINE)
        except duckdb.IOException as exc:
            message = str(exc)
            if READ_ONLY_FS.search(message) or (not read_only and "permission" in message.lower()):
                raise _unwritable(path) or StoreError(f"cannot open {path}: {message}") from exc
            if "lock" in message.lower():
                if time.monotonic() < deadline:
                    time.sleep(delay)
                    delay = min(delay * 2, 0.25)
                    continue
                holder = _holder(message)
                raise LockedError(
                    f"{path} is locked by {holder}; try again when it finishes", holder
                ) from exc
            raise _damaged(path, exc) or StoreError(
                f"{path} is not a DuckDB run log ({message.splitlines()[0]})"
            ) from exc
        except duckdb.Error as exc:
            raise _damaged(path, exc) or StoreError(
                f"cannot open {path}: {str(exc).splitlines()[0]}"
            ) from exc


def _version(con: duckdb.DuckDBPyConnection, path: Path) -> int:
    tables = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    if "schema_version" not in tables:
        if tables:
            raise StoreError(f"{path} is a DuckDB file but not a scaling run log")
        return 0
    low, high, rows = con.execute(
        "SELECT min(version), max(version), count(*) FROM schema_version"
    ).fetchall()[0]
    if not rows:
        raise StoreError(f"{path} is damaged: its schema_version table is empty")
    if low is None or low < 1:
        raise StoreError(f"{path} is damaged: schema_version holds {low}, not a schema version")
    return int(high)


@lru_cache(maxsize=1)
def _columns_of_schema() -> frozenset[tuple[str, str]]:
    """Every (table or view, column) a run log at SCHEMA_VERSION has."""
    con = memory()
    migrate(con, Path(":memory:"))
    columns = _columns(con)
    con.close()
    return columns


def _columns(con: duckdb.DuckDBPyConnection) -> frozenset[tuple[str, str]]:
    rows = con.execute(
        "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = 'main'"
    ).fetchall()
    return frozenset(rows)


def _check_schema(con: duckdb.DuckDBPyConnection, path: Path) -> None:
    """Refuse a run log whose tables or columns were dropped (by hand, or a bad restore)."""
    missing = _columns_of_schema() - _columns(con)
    if missing:
        tables = {t for t, _ in _columns(con)}
        names = sorted(t if t not in tables else f"{t}.{c}" for t, c in missing)
        lost = ", ".join(dict.fromkeys(names))
        raise StoreError(f"{path} is damaged: {lost} missing; restore it from a copy")


def migrate(con: duckdb.DuckDBPyConnection, path: Path) -> None:
    """Bring the schema forward to SCHEMA_VERSION; refuse files from a newer release."""
    version = _version(con, path)
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"{path} has schema version {version}; this release knows up to {SCHEMA_VERSION}: "
            "upgrade scaling"
        )
    if version == SCHEMA_VERSION:
        return
    con.execute("BEGIN TRANSACTION")
    if version == 0:
        con.execute(
            "CREATE TABLE schema_version "
            "(version INTEGER, applied_at TIMESTAMP DEFAULT current_timestamp)"
        )
    for number, statements in enumerate(MIGRATIONS[version:], start=version + 1):
        for sql in statements:
            con.execute(sql)
        con.execute("INSERT INTO schema_version (version) VALUES (?)", [number])
    con.execute("COMMIT")


@contextmanager
def connect(
    path: str | Path | None = None, read_only: bool = False, wait_s: float | None = None
) -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection to the run log, migrated when writable; closed on exit. It waits up to
    `wait_s` (default: lock_wait_s()) for another process to let go of the file.

    The file is opened by its real path (symlinks resolved), the same path the sweep lock
    takes. A damaged file is reported as such wherever in the block DuckDB notices it.
    """
    path = Path(path) if path is not None else default_path()
    if read_only and not path.exists():
        raise StoreError(f"no run log at {path}: run `scaling demo` or `scaling run` first")
    if not read_only and path.parent and not path.parent.exists():
        raise StoreError(f"folder {path.parent} does not exist")
    con = _open(path, read_only, lock_wait_s() if wait_s is None else wait_s)
    try:
        if read_only:
            version = _version(con, path)
            if version != SCHEMA_VERSION:
                raise StoreError(
                    f"{path} has schema version {version}, expected {SCHEMA_VERSION}: "
                    "open it once with a writing command to migrate"
                    if version < SCHEMA_VERSION
                    else f"{path} was written by a newer release of scaling"
                )
        else:
            migrate(con, path)
        _check_schema(con, path)
        yield con
    except duckdb.Error as exc:
        damaged = _damaged(path, exc)
        if damaged is None:
            raise
        raise damaged from exc
    finally:
        with contextlib.suppress(duckdb.Error):
            con.close()
