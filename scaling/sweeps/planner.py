"""An adaptive sweep's runs, round by round, replayed from the run log alone.

Round 0 is a fixed start: the three smallest candidate sizes at the four smallest token
counts (enough runs to fit the law and to backtest it inside them), cheapest first while the
budget lasts. Each later round is `scaling.sweeps.adaptive.plan_round` on the finished runs of the
rounds before it, with the budget left after every run planned so far. A round is planned
only once every run of the previous one has finished, and it depends only on those runs, so a
killed sweep replays the same rounds and finds the same runs left. Diverged and failed runs
count against the budget but are not fitted.

With budget_hours the currency is wall seconds: a run planned costs its predicted seconds
(scaling.sweeps.timing.Throughput fitted on the sweep's own finished runs' tokens per
second, evaluations and start-up included) and a run done costs the seconds it took (its
recorded wall_s; a failed run, one start-up). Both are read from the runs of the rounds
before, so replanning stays a pure function of them. Round 0 is then trained whole: nothing
has been timed before it.

The plan function has the coordinator's shape (scaling.sweeps.book.PlanFunction): it is
called with the losses known so far and returns every run planned, so `run_sweep` trains a
round, and when its last run lands, replans and goes on until the budget is spent.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from fits.lr import scan_optimum
from runners.config import RunConfig
from runners.corpus import load_corpus
from runners.errors import RunnerError
from runners.results import config_row
from runners.sweeps.designs import (
    LossOf,
    Planner,
    Timing,
    TimingOf,
    initial_configs,
    refinements,
    with_lr,
)
from runners.sweeps.spec import Adaptive, Design, SweepSpec
from scaling.errors import ScalingError
from scaling.sweeps.adaptive import plan_round
from scaling.sweeps.adaptive_lr import LRLawState, fit_lr_law, plan_lr_round
from scaling.sweeps.book import evaluated_tokens
from scaling.sweeps.round_fits import RoundFits
from scaling.sweeps.rounds import RoundPlan, Target
from scaling.sweeps.timing import RUN_START_S, WORKER_START_S, Throughput

START_SIZES, START_TOKENS = 3, 4
SCAN = (0.5, 1.0, 2.0)  # a scanned group's first LRs, as multiples of its centre LR
KNOWN_WITHIN = 2.0  # the LR law knows an LR when its 90% interval lies within this factor


@dataclass(frozen=True)
class Group:
    """A candidate as its round planned it: the LR at its centre, and whether it is scanned
    (SCAN times the centre, extended until the best LR is bracketed) or run once there."""

    index: int
    lr: float
    scanned: bool


@dataclass(frozen=True)
class Outcome:
    """A finished group: its best loss (inf if every run diverged) and, if scanned, the
    optimal LR of its scan (fits.lr.scan_optimum)."""

    runs: tuple[RunConfig, ...]
    loss: float
    lr_opt: float
    bracketed: bool


@dataclass(frozen=True)
class Round:
    """One round: its groups and, after round 0, the plan that chose them."""

    groups: tuple[Group, ...]
    plan: RoundPlan | None = None

    @property
    def picks(self) -> tuple[int, ...]:
        return tuple(g.index for g in self.groups)


# (candidate index, timing of one of its runs), per run planned so far
Timed = list[tuple[int, Timing | None]]


class AdaptivePlanner:
    """The runs of an adaptive spec: a PlanFunction for scaling.sweeps.coordinator.run_sweep."""

    def __init__(self, spec: SweepSpec, device: str = "auto") -> None:
        assert spec.design.adaptive is not None
        self.spec = spec
        self.design: Adaptive = spec.design.adaptive
        self.target = Target.from_dict(dict(self.design.target))
        self.configs = candidate_configs(spec, device)
        rows = [row(c) for c in self.configs]
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
        self.fits = RoundFits(spec.name, self.design.law)
        # the coordinator reads and stores the rounds' fits in the run log
        self.recall, self.remember = self.fits.recall, self.fits.remember

    def __call__(
        self, loss_of: LossOf | None = None, timing_of: TimingOf | None = None
    ) -> list[RunConfig]:
        loss_of = loss_of or (lambda _: None)
        rounds = self.rounds(loss_of, timing_of)
        return [c for r in rounds for g in r.groups for c in self.runs_of(g, loss_of)]

    def start(self) -> tuple[Group, ...]:
        """Round 0: the smallest sizes at the fewest tokens, cheapest first, within budget
        (all of them with a budget in hours: none has been timed yet), scanned at [fixed] lr
        when the sweep finds its LRs."""
        sizes = sorted(set(self.candidates.N))[:START_SIZES]
        tokens = sorted(set(self.candidates.D))[:START_TOKENS]
        chosen = self.candidates[self.candidates.N.isin(sizes) & self.candidates.D.isin(tokens)]
        groups, spent = [], 0.0
        for i in chosen.sort_values("cost", kind="stable").index:
            group = self.group(int(i), None)
            cost = chosen.cost[i] * (len(SCAN) if group.scanned else 1)
            if self.design.in_seconds or spent + cost <= self.budget:
                groups.append(group)
                spent += cost
        return tuple(groups)

    def group(self, index: int, law: LRLawState | None) -> Group:
        """A candidate's group: at [fixed] lr, or at the LR law's LR, scanned unless the law
        knows that LR within KNOWN_WITHIN (always scanned for an lr target, or with no law)."""
        fixed = self.configs[index].train.lr
        if self.design.lr == "fixed":
            return Group(index, fixed, scanned=False)
        if law is None:
            return Group(index, fixed, scanned=True)
        n, d = np.array([self.candidates.N[index]]), np.array([self.candidates.D[index]])
        lr = float(f"{float(law.model.predict({'N': n, 'D': d})[0]):.3g}")
        known = not self.target.on_lr_law and law.known_within(n, d)[0] <= KNOWN_WITHIN
        return Group(index, lr, scanned=not known)

    def runs_of(self, group: Group, loss_of: LossOf) -> list[RunConfig]:
        """The runs of a group: one, or its scan with the refinements its losses call for."""
        base = self.configs[group.index]
        if not group.scanned:
            return [with_lr(base, group.lr)]
        scan = [with_lr(base, float(f"{group.lr * f:.3g}")) for f in SCAN]
        return scan + refinements(scan, loss_of)

    def outcome(self, group: Group, loss_of: LossOf) -> Outcome | None:
        """The group's result once all its runs (refinements included) have finished."""
        runs = self.runs_of(group, loss_of)
        losses = [loss_of(c) for c in runs]
        if any(v is None for v in losses):
            return None
        loss = np.array(losses, dtype=float)
        best = float(np.min(loss)) if np.isfinite(loss).any() else math.inf
        if not group.scanned:
            return Outcome(tuple(runs), best, group.lr, bracketed=False)
        lrs = np.array([c.train.lr for c in runs])
        order = np.argsort(lrs)
        scan = scan_optimum(lrs[order], np.where(np.isfinite(loss), loss, np.nan)[order])
        return Outcome(tuple(runs), best, float(scan["opt"]), bool(scan["bracketed"]))  # type: ignore[arg-type]

    def rounds(self, loss_of: LossOf, timing_of: TimingOf | None = None) -> list[Round]:
        """Every round planned so far; the last may still have runs to train."""
        timing_of = timing_of or (lambda _: None)
        rounds = [Round(self.start())]
        while True:
            outcomes = {g: self.outcome(g, loss_of) for r in rounds for g in r.groups}
            finished = {g: o for g, o in outcomes.items() if o is not None}
            if len(finished) < len(outcomes):
                return rounds
            timed = [(g.index, timing_of(c)) for g, o in finished.items() for c in o.runs]
            costs = self.costs(timed)
            if costs is None:  # nothing timed to predict seconds from
                return rounds
            following = self._next_round(finished, self.budget - self.spent(timed), costs)
            if following is None:
                return rounds
            rounds.append(following)

    def spent(self, timed: Timed) -> float:
        """What the runs done cost: FLOPs, or their measured seconds (one start-up if none)."""
        if not self.design.in_seconds:
            return float(sum(self.candidates.cost[i] for i, _ in timed))
        return sum(t.wall_s if t is not None else RUN_START_S for _, t in timed)

    def costs(self, timed: Timed) -> pd.Series | None:
        """Each candidate's cost per run: its FLOPs, or its predicted seconds from the timed
        runs."""
        if not self.design.in_seconds:
            return self.candidates.cost
        measured = [(i, t) for i, t in timed if t is not None]
        if not measured:
            return None
        c = self.candidates
        per_token = c.cost / c.D
        throughput = Throughput.fit(
            per_token.iloc[[i for i, _ in measured]].to_numpy(),
            np.array([t.tokens_per_s for _, t in measured]),
        )
        assert throughput is not None  # every timed run has a positive rate
        return pd.Series(throughput.seconds(per_token, c.D, c.eval_tokens), index=c.index)

    def lr_law(self, outcomes: dict[Group, Outcome]) -> LRLawState | None:
        """The LR law on the bracketed scans, None with a fixed LR or too few of them (an lr
        target cannot go on without one)."""
        if self.design.lr == "fixed":
            return None
        try:
            return fit_lr_law(self.bracketed(outcomes))
        except ScalingError as exc:
            if self.target.on_lr_law:
                raise ScalingError(
                    f"adaptive sweep {self.spec.name}: {exc}; a scan brackets its optimum "
                    "when a worse LR lies on both sides of the best (try another [fixed] lr)"
                ) from None
            return None

    def bracketed(self, outcomes: dict[Group, Outcome]) -> pd.DataFrame:
        """The scanned groups whose optimum was bracketed: N, D, lr_opt."""
        c = self.candidates
        rows = [(c.N[g.index], c.D[g.index], o.lr_opt) for g, o in outcomes.items()
                if g.scanned and o.bracketed]  # fmt: skip
        return pd.DataFrame(rows, columns=["N", "D", "lr_opt"])

    def loss_runs(self, outcomes: dict[Group, Outcome]) -> pd.DataFrame:
        """The groups with a finite loss, as the loss law's runs: N, D, cost, ..., loss."""
        done = [(g.index, o.loss) for g, o in outcomes.items() if math.isfinite(o.loss)]
        return self.candidates.loc[[i for i, _ in done]].assign(loss=[v for _, v in done])

    def _next_round(
        self, outcomes: dict[Group, Outcome], budget: float, costs: pd.Series
    ) -> Round | None:
        """The next round on the finished groups; the loss fit is kept by its runs."""
        law = self.lr_law(outcomes)
        picked = {g.index for g in outcomes}
        groups = {i: self.group(int(i), law) for i in self.candidates.index if i not in picked}
        scans = pd.Series(
            {i: len(SCAN) if g.scanned else 1 for i, g in groups.items()}, dtype=float
        )
        left = self.candidates.loc[list(groups)].assign(cost=costs[list(groups)] * scans)
        if left.empty or budget < float(left.cost.min()):
            return None
        size = self.design.round_size
        if self.target.on_lr_law:
            assert law is not None
            plan = plan_lr_round(self.bracketed(outcomes), left, self.target, law, size, budget)
        else:
            runs = self.loss_runs(outcomes)
            try:
                state = self.fits.fit(runs)
            except ScalingError as exc:
                raise ScalingError(f"adaptive sweep {self.spec.name}: {exc}") from None
            plan = plan_round(runs, left, self.target, state, size, budget)
        index = left.index.to_numpy()[plan.picks["index"].to_numpy(dtype=int)]
        if index.size == 0:
            return None
        plan = replace(plan, picks=plan.picks.assign(index=index))
        return Round(tuple(groups[int(i)] for i in index), plan)


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


def row(config: RunConfig) -> dict[str, Any]:
    """The run log's row of a planned run (its id, counts and config columns)."""
    corpus = load_corpus(config.train.corpus)
    return config_row(config, corpus.name, corpus.sha256)
