"""The sweep coordinator: plans runs, hands them to an executor, and is the only writer.

Workers never touch the run log. The coordinator commits each finished run with its whole
curve in one transaction, through short-lived connections so that readers get in between.
It holds the run log's sweep lock for its lifetime, so a second coordinator is refused.

Crash safety comes from the run log being the only state: a run is marked `running` once
it is handed out and committed when it comes back. A coordinator killed at any point leaves
committed runs (kept) and `running` rows (no one else can hold the lock, so a restarted
coordinator knows they are orphans and runs them again). Commits are grouped, at most one
per COMMIT_EVERY_S, so that many short runs do not each pay for opening the log: a run
that came back less than that before the coordinator died is trained again on restart.

A reader that holds the file (a notebook's connection) does not stall the sweep: a commit
that finds the log locked is tried again later, while workers keep getting runs. Finished
results are never dropped: when the log cannot take them at the end (locked past
COMMIT_WAIT_S, a full disk) they are kept beside it (store.pending) for the next start.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

from duckdb import DuckDBPyConnection

from runners.checkpoint import DEFAULT_EVERY_S, Checkpointing, folder_for
from runners.devices import check_device
from runners.results import Progress, lineage
from runners.sweeps.executors import (
    Executor,
    Finished,
    Update,
    threads_per_worker,
)
from runners.sweeps.factory import make_executor
from scaling.sweeps.book import PlanFunction, PlannedRun, RunBook, recall_fits
from store import pending
from store.db import COMMIT_WAIT_S, connect, default_path
from store.errors import LockedError, StoreError
from store.lock import sweep_lock
from store.runs import (
    RESULT_CLEARED,
    add_to_sweep,
    mark_running,
    owner,
    record_runs,
)
from store.sweeps import run_outcomes, run_timings

POLL_S = 1.0  # the longest the coordinator sleeps between looks at its budget and workers
COMMIT_EVERY_S = 1.0  # results that come back closer together than this share a connection
TRY_COMMIT_S = 0.2  # how long a commit mid-sweep waits for a reader before trying later
INTERRUPTED_COMMIT_S = 5.0  # a stopped sweep keeps its results aside sooner than this


class Observer:
    """Hooks a display can override; the coordinator calls them as the sweep moves."""

    def planned(self, total: int, finished: int) -> None:
        """The plan has `total` runs, `finished` of them recorded (the plan may grow)."""

    def started(self, run: PlannedRun) -> None:
        """The run was handed to a worker."""

    def progressed(self, run: PlannedRun, progress: Progress) -> None:
        """A running run's latest step (local workers only)."""

    def finished(self, run: PlannedRun, row: dict[str, Any]) -> None:
        """The run is committed to the log with this row (status done, diverged or failed)."""

    def waiting(self, holder: str, results: int) -> None:
        """A commit found the log held by `holder`; `results` runs wait in memory for it."""


@dataclass(frozen=True)
class SweepOptions:
    executor: str = "local"
    workers: int = 1
    threads: int | None = None  # torch threads per worker; default cores // workers
    device: str = "auto"
    address: str | None = None  # Ray cluster address (None: start a local Ray)
    max_runs: int | None = None  # start at most this many runs in this invocation
    time_budget_s: float | None = None  # start no run after this many seconds
    retry_failed: bool = False  # train runs recorded as failed again
    checkpoint_every_s: float = DEFAULT_EVERY_S  # each run checkpoints this often (0: at stop)


@dataclass
class SweepReport:
    name: str
    planned: int = 0
    trained: Counter[str] = field(default_factory=Counter)  # this invocation, by status
    left: int = 0
    stopped_by: str | None = None  # "time budget" or "max runs" when runs are left
    wall_s: float = 0.0
    coordinator_cpu_s: float = 0.0  # CPU the coordinator used planning, committing, dispatching


def run_sweep(
    name: str,
    planner: PlanFunction,
    db: str | Path | None = None,
    options: SweepOptions = SweepOptions(),
    observer: Observer | None = None,
) -> SweepReport:
    """Train every planned run the log does not hold yet; safe to kill and start again."""
    db = Path(db) if db is not None else default_path()
    observer = observer or Observer()
    threads = threads_per_worker(options.workers, options.threads)
    if options.executor == "local":  # a Ray cluster's devices are checked on its nodes
        check_device(options.device)
    started_at = time.monotonic()
    with sweep_lock(db):
        with connect(db, wait_s=COMMIT_WAIT_S) as con:
            pending.recover(con, db)
            book = RunBook(name, planner, run_outcomes(con), options.retry_failed, run_timings(con))
            recall_fits(planner, con)
            add_to_sweep(con, name, [r.run_id for r in book.plan() if book.finished(r.run_id)])
            book.remember(con)
        report = SweepReport(name)
        observer.planned(len(book.plan()), book.n_finished())
        if book.todo():
            executor = make_executor(
                options.executor, options.workers, threads, options.device, options.address
            )
            try:
                _Coordinator(book, executor, db, options, observer, report).run(started_at)
            finally:
                executor.close()
    report.planned = len(book.plan())
    report.left = len(book.todo())
    report.wall_s = time.monotonic() - started_at
    return report


class _Journal:
    """What the run log still has to hear: runs handed out, results come back."""

    def __init__(
        self, checkpoints: Checkpointing, remember: Callable[[DuckDBPyConnection], None]
    ) -> None:
        self.checkpoints = checkpoints
        self.remember = remember  # stores the fits the plan made since (an adaptive planner)
        self.handed_out: list[PlannedRun] = []
        self.results: list[tuple[PlannedRun, dict[str, Any], list[dict[str, Any]]]] = []
        self.last_commit = -math.inf
        self.owner = owner()  # the coordinator owns the runs it hands out
        self.held_by: str | None = None  # who held the log at the last try, if anyone

    def __bool__(self) -> bool:
        return bool(self.handed_out or self.results)

    def due(self) -> float:
        return self.last_commit + COMMIT_EVERY_S

    def commit(self, db: Path, sweep: str, observer: Observer, wait_s: float) -> bool:
        """One connection: mark what is still out as running, then record the results.

        The results are one transaction: each run with its whole curve, or none of them.
        False when another process held the log for `wait_s`: nothing is lost, the next
        commit carries it all.
        """
        back = {run.run_id for run, _, _ in self.results}
        try:
            with connect(db, wait_s=wait_s) as con:
                self.remember(con)
                for run in self.handed_out:
                    if run.run_id not in back:
                        mark_running(con, run.row, self.owner)
                record_runs(con, [(row, curve) for _, row, curve in self.results], sweep)
        except LockedError as exc:
            self.last_commit = time.monotonic()  # try again one interval later
            if exc.holder != self.held_by:
                observer.waiting(exc.holder, len(self.results))
            self.held_by = exc.holder
            return False
        self.held_by = None
        # a failed run keeps its checkpoint: --retry-failed resumes it
        self.checkpoints.discard(
            [r.run_id for r, row, _ in self.results if row["status"] != "failed"]
        )
        for run, row, _ in self.results:
            observer.finished(run, row)
        self.handed_out, self.results = [], []
        self.last_commit = time.monotonic()
        return True

    def commit_or_keep(
        self, db: Path, sweep: str, observer: Observer, wait_s: float | None = None
    ) -> None:
        """The last commit: wait up to `wait_s` (default COMMIT_WAIT_S), else keep the
        results for the next start (store.pending) and raise StoreError saying where."""
        wait_s = COMMIT_WAIT_S if wait_s is None else wait_s
        try:  # a short try first, so that a wait on a reader is said before it starts
            if self.commit(db, sweep, observer, TRY_COMMIT_S):
                return
            if self.commit(db, sweep, observer, wait_s):
                return
            problem: StoreError = LockedError(
                f"{db} was held by {self.held_by} for {wait_s:.0f} s", self.held_by or ""
            )
        except StoreError as exc:  # a full disk, a damaged or read-only file
            problem = exc
        self.keep(db, sweep, problem)

    def keep(self, db: Path, sweep: str, problem: StoreError) -> NoReturn:
        """The log refused the results: keep them for the next start and raise `problem`
        saying where they are."""
        results = [(row, curve) for _, row, curve in self.results]
        if not results:
            raise problem
        try:
            folder = pending.save(db, results, sweep)
        except StoreError as lost:
            raise StoreError(f"{problem}; {lost}") from problem
        raise StoreError(
            f"{problem}; {len(results)} finished run(s) are kept in {folder} and recorded "
            "by the next `scaling sweep run` or `scaling run` on this log"
        ) from problem


class _Coordinator:
    """Keeps every slot busy; commits at most every COMMIT_EVERY_S, and once more at the end.

    A finished run's slot is refilled at once, before its commit: workers never wait on the
    run log, and runs that finish close together share one connection.
    """

    def __init__(
        self,
        book: RunBook,
        executor: Executor,
        db: Path,
        options: SweepOptions,
        observer: Observer,
        report: SweepReport,
    ) -> None:
        self.book, self.executor, self.db = book, executor, db
        self.options, self.observer, self.report = options, observer, report
        self.in_flight: dict[str, PlannedRun] = {}
        self.checkpoints = Checkpointing(folder_for(db), options.checkpoint_every_s)
        self.journal = _Journal(self.checkpoints, book.remember)
        self.n_started = 0

    def run(self, started_at: float) -> None:
        cpu_started = time.process_time()
        try:
            self._loop(started_at)
        except (KeyboardInterrupt, SystemExit):
            # Stopped by Ctrl-C or a scheduler's SIGTERM: keep what came back; the runs
            # still out are about to be stopped and stay `running` until reclaimed.
            self.journal.handed_out = []
            if self.journal.results:
                self.journal.commit_or_keep(
                    self.db, self.book.sweep, self.observer, INTERRUPTED_COMMIT_S
                )
            raise
        except StoreError as exc:  # a commit mid-sweep failed (a full disk): nothing dropped
            self.journal.keep(self.db, self.book.sweep, exc)
        self.report.coordinator_cpu_s = time.process_time() - cpu_started

    def _loop(self, started_at: float) -> None:
        journal = self.journal
        while True:
            self.report.stopped_by = _stop_reason(self.options, self.n_started, started_at)
            if self.report.stopped_by is None:
                self._hand_out()
            if journal and not self.in_flight:
                journal.commit_or_keep(self.db, self.book.sweep, self.observer)
                self.observer.planned(len(self.book.plan()), self.book.n_finished())
            elif journal and time.monotonic() >= journal.due():
                finished = bool(journal.results)
                committed = journal.commit(self.db, self.book.sweep, self.observer, TRY_COMMIT_S)
                if committed and finished:
                    self.observer.planned(len(self.book.plan()), self.book.n_finished())
            if not self.in_flight:
                return
            timeout = POLL_S
            if journal:
                timeout = min(POLL_S, max(0.0, journal.due() - time.monotonic()))
            self._receive(self.executor.wait(timeout))

    def _hand_out(self) -> None:
        free = self.executor.slots - len(self.in_flight)
        if self.options.max_runs is not None:
            free = min(free, self.options.max_runs - self.n_started)
        for run in self.book.todo(self.in_flight)[:free]:
            checkpoints = replace(self.checkpoints, branches=self.book.branches_of(run))
            self.executor.submit(run.run_id, run.config, checkpoints)
            self.in_flight[run.run_id] = run
            self.journal.handed_out.append(run)
            self.observer.started(run)
            self.n_started += 1

    def _receive(self, events: list[Update | Finished]) -> None:
        for event in events:
            run = self.in_flight[event.key]
            if isinstance(event, Update):
                self.observer.progressed(run, event.progress)
                continue
            del self.in_flight[event.key]
            row, curve = _finished_row(run, event, self.book.sweep)
            self.book.record(run.run_id, row)
            self.report.trained[row["status"]] += 1
            self.journal.results.append((run, row, curve))


def _stop_reason(options: SweepOptions, n_started: int, started_at: float) -> str | None:
    if options.max_runs is not None and n_started >= options.max_runs:
        return "max runs"
    budget = options.time_budget_s
    if budget is not None and time.monotonic() - started_at >= budget:
        return "time budget"
    return None


def _finished_row(
    run: PlannedRun, event: Finished, sweep: str
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The `runs` row and curve to commit for a run that came back."""
    result, error = event.result, event.error
    if result is not None and result.run_id != run.run_id:
        error = (
            f"the worker computed run id {result.run_id}: its corpus or code differs from "
            "the coordinator's (same scaling install and corpus on every node?)"
        )
        result = None
    if result is not None:
        return {**result.row(sweep), **lineage(run.row)}, result.curve_rows()
    failed = {**run.row, **RESULT_CLEARED, "status": "failed", "error": error}
    return {**failed, "finished_at": datetime.now(UTC).replace(tzinfo=None)}, []
