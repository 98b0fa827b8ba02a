"""A sweep's run book: its planned runs and what the run log says of each (done, failed, or
left), kept in step in memory. The coordinator trains from it; `plan_sweep` and `sweep_status`
read it without training, on a read-only connection.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from duckdb import DuckDBPyConnection

from runners.checkpoint import Branch
from runners.config import RunConfig
from runners.corpus import load_corpus
from runners.results import config_row
from runners.sweeps.designs import LossOf, Timing, TimingOf
from scaling.sweeps.timing import Throughput
from store.db import connect, default_path
from store.lock import lock_holder
from store.runs import owner_alive
from store.sweeps import (
    FINISHED,
    measured_throughput,
    planned_loss,
    run_outcomes,
    run_timings,
    running_owners,
    sweep_counts,
)

# runners.sweeps.designs.Planner is one; it sees finished runs' losses and timings
PlanFunction = Callable[[LossOf, TimingOf], list[RunConfig]]


@dataclass(frozen=True)
class PlannedRun:
    config: RunConfig
    row: dict[str, Any]  # its `runs` row before it has run (runners.results.config_row)

    @property
    def run_id(self) -> str:
        return self.row["run_id"]

    @property
    def label(self) -> str:
        m, t = self.config.model, self.config.train
        shape = f"{m.arch} d={m.d_model} L={m.n_layers}"
        return f"{shape} D={self.config.tokens:,} lr={t.lr:.3g} {t.precision}"


class RunBook:
    """The plan and what the run log says about each of its runs, kept in step in memory."""

    def __init__(
        self,
        sweep: str,
        planner: PlanFunction,
        outcomes: dict[str, tuple[str, Any]],
        retry_failed: bool,
        timings: dict[str, tuple[float, float]] | None = None,
    ) -> None:
        self.sweep, self.planner = sweep, planner
        # Grid planners branch runs ([design.branches]); other planners have no branches.
        self.parent_of = getattr(planner, "parent_of", lambda config: None)
        self._branches_of = getattr(planner, "branches_of", lambda config: ())
        # Adaptive planners store their rounds' fits (scaling.sweeps.round_fits).
        self.remember = getattr(planner, "remember", lambda con: None)
        self.timings = dict(timings or {})
        # With retry_failed, runs that failed before this invocation count as not run; a run
        # that fails again now is final, so a deterministic failure is retried only once.
        self.outcomes = {
            k: v for k, v in outcomes.items() if not (retry_failed and v[0] == "failed")
        }
        self._runs: dict[RunConfig, PlannedRun] = {}
        self._plan: list[PlannedRun] | None = None

    def finished(self, run_id: str) -> bool:
        outcome = self.outcomes.get(run_id)
        return outcome is not None and outcome[0] in FINISHED

    def loss_of(self, config: RunConfig) -> float | None:
        return planned_loss(self.outcomes.get(self.run(config).run_id))

    def timing_of(self, config: RunConfig) -> Timing | None:
        run_id = self.run(config).run_id
        if not self.finished(run_id) or run_id not in self.timings:
            return None
        return Timing(*self.timings[run_id])

    def run(self, config: RunConfig) -> PlannedRun:
        if config not in self._runs:
            corpus = load_corpus(config.train.corpus)
            row = config_row(config, corpus.name, corpus.sha256, self.sweep, len(corpus.train))
            parent = self.parent_of(config)
            if parent is not None:  # a branch (runners.branches): name its parent
                row["parent_run_id"], row["branch_step"] = self.run(parent[0]).run_id, parent[1]
            self._runs[config] = PlannedRun(config, row)
        return self._runs[config]

    def branches_of(self, run: PlannedRun) -> tuple[Branch, ...]:
        """The branches whose checkpoints this run writes as it passes their steps."""
        return tuple(self._branches_of(run.config))

    def plan(self) -> list[PlannedRun]:
        if self._plan is None:
            planned = self.planner(self.loss_of, self.timing_of)
            runs = {r.run_id: r for r in map(self.run, planned)}
            self._plan = list(runs.values())
        return self._plan

    def todo(self, busy: Iterable[str] = ()) -> list[PlannedRun]:
        """Runs not finished nor in flight, costliest first (the tail of a sweep stays short)."""
        skip = set(busy)
        runs = [r for r in self.plan() if r.run_id not in skip and not self.finished(r.run_id)]
        return sorted(runs, key=lambda r: -r.row["flops"])

    def record(self, run_id: str, row: dict[str, Any]) -> None:
        """A run came back: its status, loss and (when measured) timing, from its row."""
        self.outcomes[run_id] = (row["status"], row.get("final_val_loss"))
        wall, rate = row.get("wall_s"), row.get("tokens_per_s")
        if wall and rate and wall > 0 and rate > 0:
            self.timings[run_id] = (float(wall), float(rate))
        self._plan = None  # an lr_scan may refine on this result

    def n_finished(self) -> int:
        return sum(self.finished(r.run_id) for r in self.plan())


def recall_fits(planner: PlanFunction, con: DuckDBPyConnection) -> None:
    """An adaptive planner reads the fits its rounds were planned on
    (scaling.sweeps.round_fits); other planners fit nothing."""
    getattr(planner, "recall", lambda con: None)(con)


@dataclass(frozen=True)
class SweepPlan:
    """What `run_sweep` would do: every planned run with its status and estimated seconds."""

    name: str
    runs: pd.DataFrame
    throughput: Throughput | None


def plan_sweep(name: str, planner: PlanFunction, db: str | Path | None = None) -> SweepPlan:
    """The plan against the run log (read-only; a missing log means nothing is done yet)."""
    outcomes, measured, timings = {}, None, {}
    path = Path(db) if db is not None else default_path()
    if path.exists():
        with connect(path, read_only=True) as con:
            outcomes, measured = run_outcomes(con), measured_throughput(con)
            timings = run_timings(con)
            recall_fits(planner, con)
    book = RunBook(name, planner, outcomes, retry_failed=False, timings=timings)
    runs = pd.DataFrame(
        [
            {
                **r.row,
                "eval_tokens": evaluated_tokens(r.config),
                "status": outcomes.get(r.run_id, ("planned",))[0],
            }
            for r in book.plan()
        ]
    )
    throughput = None
    if measured is not None:
        throughput = Throughput.fit(measured["flops_per_token"], measured["tokens_per_s"])
    if throughput is not None:
        runs["est_s"] = throughput.seconds(
            runs["flops"] / runs["tokens"], runs["tokens"], runs["eval_tokens"]
        )
    return SweepPlan(name, runs, throughput)


def evaluated_tokens(config: RunConfig) -> int:
    """Held-out tokens a run scores in all: one evaluation every eval_every steps and at the
    end, each over eval_tokens rounded up to whole sequences (as runners.batches takes them)."""
    config = config.resolved()
    steps, every, seq_len = config.steps, config.train.eval_every, config.model.seq_len
    assert every is not None  # resolved() sets it
    n_evals = steps // every + (steps % every != 0)
    return n_evals * -(-config.train.eval_tokens // seq_len) * seq_len


def sweep_status(
    db: str | Path | None = None, name: str | None = None, planner: PlanFunction | None = None
) -> tuple[pd.DataFrame, str | None]:
    """Runs per sweep by status and who coordinates the log now (None: no one).

    Given a planner, the sweep's row also says how many runs it plans and has left.
    """
    path = Path(db) if db is not None else default_path()
    with connect(path, read_only=True) as con:
        frame = sweep_counts(con, name)
        owners = running_owners(con, name)
        outcomes = run_outcomes(con) if planner is not None else {}
        timings = run_timings(con) if planner is not None else {}
        if planner is not None:
            recall_fits(planner, con)
    if planner is not None and name is not None:
        book = RunBook(name, planner, outcomes, retry_failed=False, timings=timings)
        if frame.empty:
            frame = pd.DataFrame([{"sweep": name, "runs": 0, "done": 0, "running": 0,
                                   "diverged": 0, "failed": 0, "last_finished": None}])  # fmt: skip
        frame["planned"] = len(book.plan())
        frame["left"] = len(book.todo())
    if not frame.empty:
        dead = owners.loc[owners["owner"].map(lambda o: owner_alive(o) is False).astype(bool)]
        orphaned = frame["sweep"].map(dead.groupby("sweep").size()).fillna(0).astype(int)
        frame.insert(frame.columns.get_loc("running") + 1, "orphaned", orphaned)
    return frame, lock_holder(path)
