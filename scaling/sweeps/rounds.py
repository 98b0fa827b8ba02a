"""What both adaptive planners share: the question (Target), a round's plan, and the greedy
round that spends a budget on the candidates that narrow the target's interval most per unit
cost (scaling.sweeps.adaptive for loss, scaling.sweeps.adaptive_lr for the optimal LR)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import pandas as pd

from scaling.errors import ScalingError

MIN_GAIN = 1e-9  # a candidate that narrows the width by less than this is not worth any cost


@dataclass(frozen=True)
class Ask:
    """A kind of target: where it is asked, how many (N, D) points it takes, and whether the
    LR law (scaling.sweeps.adaptive_lr) or the loss law (scaling.sweeps.adaptive) plans it."""

    name: str
    at_compute: bool  # at the law's compute-optimal (N, D) for a compute, not at given points
    one_point: bool
    on_lr_law: bool
    needs: str  # the refusal when a target lacks what it takes


ASKS = {
    a.name: a
    for a in (
        Ask("loss", False, False, False, "a loss target needs N and D (one or more pairs)"),
        Ask("optimal", True, False, False, "an optimal target needs a positive compute"),
        Ask("lr", False, True, True, "an lr target needs one N and one D"),
    )
}


@dataclass(frozen=True)
class Target:
    """The question: the mean loss of runs at (N, D) (one or more), the optimal loss at C, or
    the optimal LR of runs at one (N, D).

    Several points ask for their mean (in log): the variance is that of the mean prediction,
    the runs' scatter shrinks as 1/sqrt(points), the distance is the points' mean.
    """

    ask: str
    N: tuple[float, ...] = ()
    D: tuple[float, ...] = ()
    compute: float | None = None

    def __post_init__(self) -> None:
        if self.ask not in ASKS:
            raise ScalingError(f"target ask must be one of {', '.join(ASKS)}, got {self.ask!r}")
        kind = ASKS[self.ask]
        points = bool(self.N) and len(self.N) == len(self.D)
        if kind.one_point:
            points = points and len(self.N) == 1
        ok = bool(self.compute and self.compute > 0) if kind.at_compute else points
        if not ok:
            raise ScalingError(kind.needs)

    @property
    def at_compute(self) -> bool:
        return ASKS[self.ask].at_compute

    @property
    def on_lr_law(self) -> bool:
        return ASKS[self.ask].on_lr_law

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Target:
        """{ask="loss" or "lr", N, D} or {ask="optimal", compute}; N and D may be lists."""
        ask = str(raw.get("ask"))
        if ask in ASKS and ASKS[ask].at_compute:
            return cls(ask, compute=float(raw["compute"]))
        n, d = np.atleast_1d(raw.get("N", [])), np.atleast_1d(raw.get("D", []))
        return cls(ask, tuple(map(float, n)), tuple(map(float, d)))


class PlannedLaw(Protocol):
    """The fitted law a round was planned on, as a plan shows it."""

    def describe(self) -> str: ...


@dataclass(frozen=True)
class RoundPlan:
    """The next runs: picks (index into the candidates, N, D, cost, width after) and context.

    width_now: the target's expected relative interval width with the runs done; width of a
    pick: after it and every earlier pick of the round.
    """

    picks: pd.DataFrame
    width_now: float
    estimate: float  # the target's predicted loss (mean over its points), or LR
    law: PlannedLaw


class Design(Protocol):
    """What a greedy round needs of a design criterion."""

    def width(self) -> float: ...
    def widths_with(self, N: np.ndarray, D: np.ndarray) -> np.ndarray: ...
    def add(self, N: float, D: float) -> None: ...


def greedy_round(
    design: Design, candidates: pd.DataFrame, round_size: int, budget: float
) -> pd.DataFrame:
    """Up to round_size candidates (N, D, cost): the best width drop per unit cost, added to
    the design, then the next best, while the budget lasts. Picks: index, N, D, cost, width."""
    if round_size < 1:
        raise ScalingError(f"round size must be at least 1, got {round_size}")
    order = np.lexsort(
        (np.arange(len(candidates)), candidates.D.to_numpy(), candidates.N.to_numpy(),
         candidates.cost.to_numpy())
    )  # fmt: skip
    cand = candidates.iloc[order]
    N, D, cost = (cand[c].to_numpy(dtype=float) for c in ("N", "D", "cost"))
    available = np.ones(len(cand), dtype=bool)
    picks: list[dict[str, Any]] = []
    spent = 0.0
    for _ in range(round_size):
        ok = available & (spent + cost <= budget)
        if not ok.any():
            break
        widths = design.widths_with(N, D)
        gain = np.where(ok, design.width() - widths, -np.inf)
        score = np.where(gain > MIN_GAIN, gain / cost, -np.inf)
        j = int(np.argmax(score))  # first of equal scores: the stable order above
        if not np.isfinite(score[j]):
            break
        design.add(N[j], D[j])
        available[j] = False
        spent += cost[j]
        picks.append({"index": int(order[j]), "N": N[j], "D": D[j], "cost": cost[j],
                      "width": float(widths[j])})  # fmt: skip
    return pd.DataFrame(picks, columns=["index", "N", "D", "cost", "width"])
