"""What `sweep suggest` and `sweep run`'s closing summary show of an adaptive sweep: the round
to train now, each round's history, and once every run is done the width the design criterion
measures on all of them.

A suggestion only reads the run log. The one fit it may add, the law on all of a finished
sweep's runs (no round was planned on it, so the coordinator never stored it), `sweep run`
keeps in the log with the rounds' fits (scaling.sweeps.round_fits), so a later `suggest` or
`status` reads it instead of fitting it again.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from runners.config import RunConfig
from runners.sweeps.designs import Timing
from runners.sweeps.spec import SweepSpec
from scaling.sweeps.adaptive import LEVEL, expected_width
from scaling.sweeps.adaptive_lr import LRDesign
from scaling.sweeps.planner import AdaptivePlanner, Group, Outcome, row
from scaling.sweeps.rounds import RoundPlan
from store.db import connect, default_path
from store.errors import LockedError
from store.sweeps import planned_loss, run_outcomes, run_timings

KEEP_WAIT_S = 2.0  # how long `sweep run` waits for a reader to store the closing fit


@dataclass(frozen=True)
class Suggestion:
    """The round to train now, with what the planner expects of it."""

    runs: pd.DataFrame  # the round's runs: config columns, status, cost, width after each
    round: int
    plan: RoundPlan | None
    spent: float  # what every run before this round cost, in `unit`
    budget: float
    unit: str  # "FLOPs", or "s" for a budget in hours
    history: pd.DataFrame  # per round: runs, FLOPs, width when planned, width expected after
    width_now: float | None  # with every run of the sweep done: the width measured on them


def suggest(spec: SweepSpec, db: str | Path | None = None, keep_fits: bool = False) -> Suggestion:
    """The current round of an adaptive sweep against the run log (read-only, unless
    `keep_fits`: then the fits it made are stored, if no other process holds the log)."""
    planner = AdaptivePlanner(spec)
    path = Path(db) if db is not None else default_path()
    outcomes: dict[str, tuple[str, Any]] = {}
    timings: dict[str, tuple[float, float]] = {}
    if path.exists():
        with connect(path, read_only=True) as con:
            outcomes, timings = run_outcomes(con), run_timings(con)
            planner.recall(con)
    rows: dict[RunConfig, dict[str, Any]] = {}

    def row_of(config: RunConfig) -> dict[str, Any]:
        if config not in rows:
            rows[config] = row(config)
        return rows[config]

    def loss_of(config: RunConfig) -> float | None:
        return planned_loss(outcomes.get(row_of(config)["run_id"]))

    def timing_of(config: RunConfig) -> Timing | None:
        measured = timings.get(row_of(config)["run_id"])
        return Timing(*measured) if measured and loss_of(config) is not None else None

    rounds = planner.rounds(loss_of, timing_of)
    runs_in = [[(k, c) for k, g in enumerate(r.groups) for c in planner.runs_of(g, loss_of)]
               for r in rounds]  # fmt: skip
    current = rounds[-1]
    frame = pd.DataFrame([row_of(c) for _, c in runs_in[-1]])
    frame["status"] = [outcomes.get(r["run_id"], ("planned",))[0] for r in frame.to_dict("records")]
    widths = current.plan.picks["width"].to_numpy() if current.plan else None
    frame["width_after"] = [np.nan if widths is None else widths[k] for k, _ in runs_in[-1]]
    before = [(g.index, timing_of(c)) for r in rounds[:-1] for g in r.groups
              for c in planner.runs_of(g, loss_of)]  # fmt: skip
    history = pd.DataFrame(
        [
            {
                "round": k,
                "runs": len(runs),
                "flops": sum(float(row_of(c)["flops"]) for _, c in runs),
                "width_before": r.plan.width_now if r.plan else np.nan,
                "width_expected": r.plan.picks.width.iloc[-1] if r.plan else np.nan,
            }
            for k, (r, runs) in enumerate(zip(rounds, runs_in, strict=True))
        ]
    )
    finished = {g: planner.outcome(g, loss_of) for r in rounds for g in r.groups}
    width_now = None
    if all(o is not None for o in finished.values()):  # the sweep is over: measure its end
        width_now = _width_measured(planner, {g: o for g, o in finished.items() if o})
    if keep_fits and planner.fits.unsaved:
        _keep_fits(planner, path)
    return Suggestion(
        frame, len(rounds) - 1, current.plan, planner.spent(before), planner.budget,
        "s" if planner.design.in_seconds else "FLOPs", history, width_now,
    )  # fmt: skip


def _keep_fits(planner: AdaptivePlanner, path: Path) -> None:
    """Store the fits this suggestion made. They are a cache keyed by their runs: a log held
    by another process past KEEP_WAIT_S only means the next command fits them again."""
    try:
        with connect(path, wait_s=KEEP_WAIT_S) as con:
            planner.remember(con)
    except LockedError:
        pass


def _width_measured(planner: AdaptivePlanner, outcomes: dict[Group, Outcome]) -> float:
    """The target's width by the design criterion on every finished group of the sweep."""
    if planner.target.on_lr_law:
        law = planner.lr_law(outcomes)
        assert law is not None
        return LRDesign(law, planner.bracketed(outcomes), planner.target, LEVEL).width()
    runs = planner.loss_runs(outcomes)
    return expected_width(runs, planner.target, planner.fits.fit(runs))
