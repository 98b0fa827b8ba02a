"""Finished runs the run log could not take, kept as JSON until the next writer records them.

A trained result is never thrown away because its commit failed (a full disk, a reader that
held the file past the wait, a read-only mount): it is written to `<db>.pending/`, beside
the log, or where that disk is full too, to a folder in the temp directory named after the
log's real path. `recover` records every such file the next time `scaling run` or
`scaling sweep run` opens the log, then deletes it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import duckdb

from store.errors import StoreError
from store.runs import record_runs, run_status

Result = tuple[Mapping[str, Any], Sequence[Mapping[str, Any]]]


def pending_folders(db: Path) -> tuple[Path, Path]:
    """Beside the log first; the temp directory when the log's disk is full."""
    real = db.resolve()
    digest = hashlib.sha256(str(real).encode()).hexdigest()[:16]
    spare = Path(tempfile.gettempdir()) / "scaling-pending" / f"{real.name}-{digest}"
    return real.with_name(real.name + ".pending"), spare


def save(db: Path, results: Sequence[Result], sweep: str | None) -> Path:
    """Write each result to its own JSON file; the folder they are in. StoreError where no
    folder takes them (the results are then lost, and the message says so)."""
    problems = []
    for folder in pending_folders(db):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            for row, curve in results:
                record = {"row": row, "curve": curve, "sweep": sweep}
                _write(folder / f"{row['run_id']}.json", record)
            return folder
        except OSError as exc:
            problems.append(f"{folder}: {exc.strerror}")
    raise StoreError(
        f"{len(results)} finished run(s) could not be kept anywhere ({'; '.join(problems)})"
    )


def _write(path: Path, record: dict[str, Any]) -> None:
    """Whole or not at all: a half-written file is never left under the final name."""
    part = path.with_name(path.name + ".part")
    try:
        with part.open("w") as fh:
            json.dump(record, fh, default=str)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(part, path)
    except OSError:
        with contextlib.suppress(OSError):
            part.unlink()
        raise


def recover(con: duckdb.DuckDBPyConnection, db: Path) -> int:
    """Record the results kept for `db`; how many were recorded. A kept failure does not
    replace a run the log holds as done. Each file is deleted once its run is committed."""
    recorded = 0
    for folder in pending_folders(db):
        for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
            try:
                record = json.loads(path.read_text())
                row, curve, sweep = record["row"], record["curve"], record["sweep"]
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise StoreError(f"cannot read the kept run {path}: {exc}") from exc
            if row.get("status") == "done" or run_status(con, row["run_id"]) != "done":
                record_runs(con, [(row, curve)], sweep)
                recorded += 1
            path.unlink()
    return recorded
