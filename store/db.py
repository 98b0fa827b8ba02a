"""Opening the run log: short-lived connections, lock waits, migrations, clear errors.

Writers open the file only for the moment of a write, so that `scaling sql` and other
readers can get in between the commits of a running sweep.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

from store.errors import StoreError
from store.schema import MIGRATIONS, SCHEMA_VERSION

DEFAULT_DB = "scaling.duckdb"
LOCK_WAIT_S = 30.0  # a command waits this long for another process to let go of the file
COMMIT_WAIT_S = 600.0  # a finished run's commit waits this long: its result is not thrown away
# How DuckDB reports a file whose pages are missing or torn (truncated, overwritten).
DAMAGE = re.compile(
    r"could not read enough bytes from file|corrupt database file|checksum \S+ does not match",
    re.I,
)


def default_path() -> Path:
    return Path(os.environ.get("SCALING_DB", DEFAULT_DB))


def is_damage(exc: duckdb.Error) -> bool:
    """Whether DuckDB's error says the database file itself is damaged."""
    return bool(DAMAGE.search(str(exc)))


def _damaged(path: Path, exc: duckdb.Error) -> StoreError | None:
    """A StoreError for an error that says the file itself is damaged, else None."""
    match = DAMAGE.search(str(exc))
    if match is None:
        return None
    return StoreError(
        f"{path} is damaged ({match.group(0).lower()}); restore it from a copy or start a new one"
    )


def _holder(message: str) -> str:
    match = re.search(r"\(PID (\d+)\)", message)
    return f"process {match.group(1)}" if match else "another process"


def _open(path: Path, read_only: bool, wait_s: float) -> duckdb.DuckDBPyConnection:
    deadline = time.monotonic() + wait_s
    delay = 0.01
    while True:
        try:
            return duckdb.connect(str(path.resolve()), read_only=read_only)
        except duckdb.IOException as exc:
            message = str(exc)
            if "lock" in message.lower():
                if time.monotonic() < deadline:
                    time.sleep(delay)
                    delay = min(delay * 2, 0.25)
                    continue
                raise StoreError(
                    f"{path} is locked by {_holder(message)}; try again when it finishes"
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
    (version,) = con.execute("SELECT max(version) FROM schema_version").fetchall()[0]
    return int(version or 0)


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
    path: str | Path | None = None, read_only: bool = False, wait_s: float = LOCK_WAIT_S
) -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection to the run log, migrated when writable; closed on exit.

    The file is opened by its real path (symlinks resolved), the same path the sweep lock
    takes. A damaged file is reported as such wherever in the block DuckDB notices it.
    """
    path = Path(path) if path is not None else default_path()
    if read_only and not path.exists():
        raise StoreError(f"no run log at {path}: run `scaling demo` or `scaling run` first")
    if not read_only and path.parent and not path.parent.exists():
        raise StoreError(f"folder {path.parent} does not exist")
    con = _open(path, read_only, wait_s)
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
        yield con
    except duckdb.Error as exc:
        damaged = _damaged(path, exc)
        if damaged is None:
            raise
        raise damaged from exc
    finally:
        with contextlib.suppress(duckdb.Error):
            con.close()
