"""An adaptive sweep's runs, round by round, replayed from the run log alone.

Round 0 is a fixed start: the three smallest candidate sizes at the four smallest token
counts (enough runs to fit the law and to backtest it inside them), cheapest first while the
budget lasts. Each later round is `scaling.adaptive.plan_round` on the finished runs of the
rounds before it, with the budget left after every run planned so far. A round is planned
only once every run of the previous one has finished, and it depends only on those runs, so a
killed sweep replays the same rounds and finds the same runs left. Diverged and failed runs
count against the budget but are not fitted.

With budget_hours the currency is wall seconds: a run planned costs its predicted seconds
(runners.sweeps.throughput.Throughput fitted on the sweep's own finished runs' tokens per
second, evaluations and start-up included) and a run done costs the seconds it took (its
recorded wall_s; a failed run, one start-up). Both are read from the runs of the rounds
before, so replanning stays a pure function of them. Round 0 is then trained whole: nothing
has been timed before it.

The plan function has the coordinator's shape (scaling.sweep.PlanFunction): it is called with
the losses known so far and returns every run planned, so `run_sweep` trains a round, and
when its last run lands, replans and goes on until the budget is spent.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from runners.config import RunConfig
from runners.corpus import load_corpus
from runners.errors import RunnerError
from runners.results import config_row
from runners.sweeps.designs import LossOf, Planner, Timing, TimingOf, initial_configs
from runners.sweeps.spec import Adaptive, Design, SweepSpec
from runners.sweeps.throughput import RUN_START_S, WORKER_START_S, Throughput
from scaling.adaptive import (
    LawState,
    RoundPlan,
    Target,
    expected_width,
    fit_law,
    plan_round,
)
from scaling.errors import ScalingError
from scaling.sweep import evaluated_tokens
from store.db import connect, default_path
from store.sweeps import run_outcomes, run_timings

START_SIZES, START_TOKENS = 3, 4


@dataclass(frozen=True)
class Round:
    """One round: candidate indices and, after round 0, the plan that chose them."""

    picks: tuple[int, ...]
    plan: RoundPlan | None = None


class AdaptivePlanner:
    """The runs of an adaptive spec: a PlanFunction for scaling.sweep.run_sweep."""

    def __init__(self, spec: SweepSpec, device: str = "auto") -> None:
        assert spec.design.adaptive is not None
        self.spec = spec
        self.design: Adaptive = spec.design.adaptive
        self.target = Target.from_dict(dict(self.design.target))
        self.configs = candidate_configs(spec, device)
        rows = [_row(c) for c in self.configs]
        self.candidates = pd.DataFrame(
            {
                "N": [float(r["params"]) for r in rows],
                "D": [float(r["tokens"]) for r in rows],
                "cost": [float(r["flops"]) for r in rows],  # FLOPs; seconds: see `costs`
                "eval_tokens": [float(evaluated_tokens(c)) for c in self.configs],
            }
        )
        self.budget = self.design.budget
        if self.design.in_seconds:
            least = WORKER_START_S + RUN_START_S  # any run, before its first token
            if self.budget < least:
                raise RunnerError(
                    f"spec.design.budget_hours: {self.budget:.3g} s cannot buy one run; "
                    f"starting one costs about {least:.0f} s"
                )
        elif self.budget < float(self.candidates.cost.min()):
            raise RunnerError(
                f"spec.design.budget_flops: {self.budget:.3g} FLOPs cannot buy one run; the "
                f"cheapest candidate costs {float(self.candidates.cost.min()):.3g}"
            )
        self._plans: dict[tuple[Any, ...], LawState] = {}

    def __call__(
        self, loss_of: LossOf | None = None, timing_of: TimingOf | None = None
    ) -> list[RunConfig]:
        rounds = self.rounds(loss_of or (lambda _: None), timing_of)
        return [self.configs[i] for r in rounds for i in r.picks]

    def start(self) -> tuple[int, ...]:
        """Round 0: the smallest sizes at the fewest tokens, cheapest first, within budget
        (all of them with a budget in hours: none has been timed yet)."""
        sizes = sorted(set(self.candidates.N))[:START_SIZES]
        tokens = sorted(set(self.candidates.D))[:START_TOKENS]
        chosen = self.candidates[self.candidates.N.isin(sizes) & self.candidates.D.isin(tokens)]
        picks, spent = [], 0.0
        for i in chosen.sort_values("cost", kind="stable").index:
            if self.design.in_seconds or spent + chosen.cost[i] <= self.budget:
                picks.append(int(i))
                spent += chosen.cost[i]
        return tuple(picks)

    def rounds(self, loss_of: LossOf, timing_of: TimingOf | None = None) -> list[Round]:
        """Every round planned so far; the last may still have runs to train."""
        timing_of = timing_of or (lambda _: None)
        rounds = [Round(self.start())]
        while True:
            losses = {i: loss_of(self.configs[i]) for r in rounds for i in r.picks}
            if any(v is None for v in losses.values()):
                return rounds
            timings = {i: timing_of(self.configs[i]) for i in losses}
            costs = self.costs(timings)
            if costs is None:  # nothing timed to predict seconds from
                return rounds
            plan = self._plan(losses, self.budget - self.spent(timings), costs)
            if plan is None or plan.picks.empty:
                return rounds
            rounds.append(Round(tuple(int(i) for i in plan.picks["index"]), plan))

    def spent(self, timings: dict[int, Timing | None]) -> float:
        """What the runs done cost: FLOPs, or their measured seconds (one start-up if none)."""
        if not self.design.in_seconds:
            return float(self.candidates.cost.iloc[list(timings)].sum())
        return sum(t.wall_s if t is not None else RUN_START_S for t in timings.values())

    def costs(self, timings: dict[int, Timing | None]) -> pd.Series | None:
        """Each candidate's cost: its FLOPs, or its predicted seconds from the timed runs."""
        if not self.design.in_seconds:
            return self.candidates.cost
        timed = [(i, t) for i, t in timings.items() if t is not None]
        if not timed:
            return None
        c = self.candidates
        per_token = c.cost / c.D
        throughput = Throughput.fit(
            per_token.iloc[[i for i, _ in timed]].to_numpy(),
            np.array([t.tokens_per_s for _, t in timed]),
        )
        assert throughput is not None  # every timed run has a positive rate
        return pd.Series(throughput.seconds(per_token, c.D, c.eval_tokens), index=c.index)

    def _plan(
        self, losses: dict[int, float | None], budget: float, costs: pd.Series
    ) -> RoundPlan | None:
        """plan_round on the finished runs; the fit is cached by the runs it was made on."""
        done = [i for i, v in losses.items() if v is not None and math.isfinite(v)]
        runs = self.candidates.iloc[done].assign(loss=[losses[i] for i in done])
        left = self.candidates.assign(cost=costs).drop(index=list(losses))
        if left.empty or budget < float(left.cost.min()):
            return None
        key = tuple(sorted((i, losses[i]) for i in done))
        if key not in self._plans:
            try:
                self._plans[key] = fit_law(runs, self.design.law)
            except ScalingError as exc:
                raise ScalingError(f"adaptive sweep {self.spec.name}: {exc}") from None
        plan = plan_round(runs, left, self.target, self._plans[key], self.design.round_size, budget)
        index = left.index.to_numpy()[plan.picks["index"].to_numpy(dtype=int)]
        return replace(plan, picks=plan.picks.assign(index=index))


def candidate_configs(spec: SweepSpec, device: str = "auto") -> list[RunConfig]:
    """Every candidate run (sizes x tokens with the spec's fixed settings), resolved for
    `device` (precision auto)."""
    assert spec.design.adaptive is not None
    a = spec.design.adaptive
    grid = replace(spec, axes={"size": a.sizes, "tokens": a.tokens}, design=Design())
    try:
        return initial_configs(grid, device)
    except RunnerError as exc:  # name the key where the user wrote it
        raise RunnerError(str(exc).replace("spec.axes.", "spec.design.candidates.")) from None


def planner_for(spec: SweepSpec, device: str = "auto") -> Planner | AdaptivePlanner:
    """The plan function of a spec: adaptive rounds, or the designs of runners.sweeps."""
    if spec.design.kind == "adaptive":
        return AdaptivePlanner(spec, device)
    return Planner(spec, device)


def _row(config: RunConfig) -> dict[str, Any]:
    corpus = load_corpus(config.train.corpus)
    return config_row(config, corpus.name, corpus.sha256)


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


def suggest(spec: SweepSpec, db: str | Path | None = None) -> Suggestion:
    """The current round of an adaptive sweep against the run log (read-only)."""
    planner = AdaptivePlanner(spec)
    path = Path(db) if db is not None else default_path()
    outcomes: dict[str, tuple[str, Any]] = {}
    timings: dict[str, tuple[float, float]] = {}
    if path.exists():
        with connect(path, read_only=True) as con:
            outcomes, timings = run_outcomes(con), run_timings(con)
    rows = [_row(c) for c in planner.configs]
    run_id = {c: r["run_id"] for c, r in zip(planner.configs, rows, strict=True)}

    def loss_of(config: RunConfig) -> float | None:
        status, loss = outcomes.get(run_id[config], (None, None))
        if status not in ("done", "diverged", "failed"):
            return None
        return float(loss) if status == "done" and loss is not None else math.inf

    def timing_of(config: RunConfig) -> Timing | None:
        measured = timings.get(run_id[config])
        return Timing(*measured) if measured and loss_of(config) is not None else None

    rounds = planner.rounds(loss_of, timing_of)
    current = rounds[-1]
    before = [i for r in rounds[:-1] for i in r.picks]
    frame = pd.DataFrame([rows[i] for i in current.picks])
    frame["status"] = [outcomes.get(r["run_id"], ("planned",))[0] for r in frame.to_dict("records")]
    widths = current.plan.picks["width"].to_numpy() if current.plan else np.full(len(frame), np.nan)
    frame["width_after"] = widths
    spent = planner.spent({i: timing_of(planner.configs[i]) for i in before})
    history = pd.DataFrame(
        [
            {
                "round": k,
                "runs": len(r.picks),
                "flops": float(planner.candidates.cost.iloc[list(r.picks)].sum()),
                "width_before": r.plan.width_now if r.plan else np.nan,
                "width_expected": r.plan.picks.width.iloc[-1] if r.plan else np.nan,
            }
            for k, r in enumerate(rounds)
        ]
    )
    width_now = None
    finished = {i: loss_of(planner.configs[i]) for r in rounds for i in r.picks}
    if all(v is not None for v in finished.values()):  # the sweep is over: measure its end
        done = [i for i, v in finished.items() if v is not None and math.isfinite(v)]
        runs = planner.candidates.iloc[done].assign(loss=[finished[i] for i in done])
        law = fit_law(runs, planner.design.law)
        width_now = expected_width(runs, planner.target, law)
    return Suggestion(
        frame, len(rounds) - 1, current.plan, spent, planner.budget,
        "s" if planner.design.in_seconds else "FLOPs", history, width_now,
    )  # fmt: skip
