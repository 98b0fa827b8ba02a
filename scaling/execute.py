"""Train one run and record it in the run log: the glue between runners and store."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from runners.checkpoint import DEFAULT_EVERY_S, Branch, Checkpointing, folder_for
from runners.config import RunConfig
from runners.corpus import load_corpus
from runners.devices import check_device
from runners.errors import RunnerError, describe
from runners.results import Progress, RunResult, config_row, lineage
from runners.train import train
from scaling.errors import ScalingError
from store import pending
from store.db import COMMIT_WAIT_S, connect, default_path
from store.errors import StoreError
from store.runs import RESULT_CLEARED, mark_running, record_run, run_status


def run_and_record(
    config: RunConfig,
    db: str | Path | None = None,
    sweep: str | None = None,
    device: str = "auto",
    force: bool = False,
    progress: Callable[[Progress], None] | None = None,
    checkpoint_every_s: float = DEFAULT_EVERY_S,
    branches: tuple[Branch, ...] = (),
    parent: tuple[str, int] | None = None,
) -> tuple[RunResult | None, str]:
    """Train `config` unless the log already holds it as done; returns (result, run_id).

    The run is marked `running` (with this process as its owner) before training and
    committed with its curve at the end, so a killed process leaves a `running` row and
    never a half-written curve; its checkpoint (beside the run log) lets the same call
    resume it, and is deleted once the run is committed. A run that raises is recorded as
    `failed` with its error, then reported as one line; a forced retrain that raises leaves
    the finished run as it was. A result the log cannot take (full disk, locked past the
    wait) is kept beside it (store.pending) and recorded by the next run or sweep.
    `branches` get their checkpoints as this run passes their step; `parent` is (parent run
    id, branch step) of a run that is itself a branch.
    """
    check_device(device)
    config = config.resolved(device)
    corpus = load_corpus(config.train.corpus)
    row = config_row(config, corpus.name, corpus.sha256, sweep, len(corpus.train))
    if parent is not None:
        row["parent_run_id"], row["branch_step"] = parent
    run_id = row["run_id"]
    path = Path(db) if db is not None else default_path()
    checkpoints = Checkpointing(folder_for(path), checkpoint_every_s, branches)
    with connect(path) as con:
        pending.recover(con, path)
        before = run_status(con, run_id)
        if before == "done" and not force:
            return None, run_id
        mark_running(con, row)
    try:
        result = train(config, device=device, progress=progress, checkpoints=checkpoints)
    except Exception as exc:
        error = str(exc) if isinstance(exc, RunnerError) else describe(exc)
        if before == "done":
            raise ScalingError(
                f"the retrain of run {run_id} failed ({error}); the log keeps its finished run"
            ) from exc
        failed = {**row, **RESULT_CLEARED, "status": "failed", "error": error}
        _commit(path, {**failed, "finished_at": datetime.now(UTC).replace(tzinfo=None)}, [], sweep)
        if isinstance(exc, RunnerError):
            raise
        raise ScalingError(f"run {run_id} failed and is recorded as failed: {error}") from exc
    _commit(path, {**result.row(sweep), **lineage(row)}, result.curve_rows(), sweep)
    checkpoints.discard([run_id])
    return result, run_id


def _commit(
    db: Path, row: Mapping[str, Any], curve: Sequence[Mapping[str, Any]], sweep: str | None
) -> None:
    """Record a finished run, or keep it for the next start and say where."""
    try:
        with connect(db, wait_s=COMMIT_WAIT_S) as con:
            record_run(con, row, curve, sweep=sweep)
    except StoreError as exc:
        try:
            folder = pending.save(db, [(row, curve)], sweep)
        except StoreError as lost:
            raise StoreError(f"{exc}; {lost}") from exc
        raise StoreError(
            f"{exc}; run {row['run_id']} is kept in {folder} and recorded by the next "
            "`scaling run` or `scaling sweep run` on this log"
        ) from exc
