"""Train one run and record it in the run log: the glue between runners and store."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from runners.checkpoint import DEFAULT_EVERY_S, Branch, Checkpointing, folder_for
from runners.config import RunConfig
from runners.corpus import load_corpus
from runners.errors import RunnerError, describe
from runners.results import Progress, RunResult, config_row, lineage
from runners.train import train
from scaling.errors import ScalingError
from store.db import COMMIT_WAIT_S, connect, default_path
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

    The run is marked `running` before training and committed with its curve at the end,
    so a killed process leaves a `running` row and never a half-written curve; its
    checkpoint (beside the run log) lets the same call resume it, and is deleted once the
    run is committed. The commit waits for readers to let go (a finished run is not thrown
    away); a run that raises is recorded as `failed` with its error, then reported as one
    line. `branches` get their checkpoints as this run passes their step; `parent` is
    (parent run id, branch step) of a run that is itself a branch.
    """
    config = config.resolved(device)
    corpus = load_corpus(config.train.corpus)
    row = config_row(config, corpus.name, corpus.sha256, sweep, len(corpus.train))
    if parent is not None:
        row["parent_run_id"], row["branch_step"] = parent
    run_id = row["run_id"]
    path = Path(db) if db is not None else default_path()
    checkpoints = Checkpointing(folder_for(path), checkpoint_every_s, branches)
    with connect(db) as con:
        if run_status(con, run_id) == "done" and not force:
            return None, run_id
        mark_running(con, row)
    try:
        result = train(config, device=device, progress=progress, checkpoints=checkpoints)
    except Exception as exc:
        error = str(exc) if isinstance(exc, RunnerError) else describe(exc)
        failed = {**row, **RESULT_CLEARED, "status": "failed", "error": error}
        with connect(db, wait_s=COMMIT_WAIT_S) as con:
            record_run(con, {**failed, "finished_at": datetime.now(UTC).replace(tzinfo=None)}, [])
        if isinstance(exc, RunnerError):
            raise
        raise ScalingError(f"run {run_id} failed and is recorded as failed: {error}") from exc
    with connect(db, wait_s=COMMIT_WAIT_S) as con:
        record_run(con, {**result.row(sweep), **lineage(row)}, result.curve_rows(), sweep=sweep)
    checkpoints.discard([run_id])
    return result, run_id
