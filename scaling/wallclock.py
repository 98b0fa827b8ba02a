"""Compute-optimal in hours, not FLOPs: the N and D that minimise loss within H hours.

With a throughput model (fits.throughput) a model of N parameters trains tokens_per_s(N)
tokens a second on the measured device, so in H hours it sees D(N) = tokens_per_s(N) 3600 H
tokens; the answer minimises the loss law's L(N, D(N)) over N. N runs over the size ladder
of the architecture, continuously: between two rungs the log of the throughput is
interpolated linearly in log N (the shape rule is the ladder's). Architectures differ in
both the law and the throughput, so the winner at a wall-clock budget can differ from the
winner at a FLOP budget (e.g. linear mixers at long context).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import pandas as pd
from scipy.optimize import minimize_scalar

from fits.allocation import RATIO_MARGIN
from fits.throughput import ThroughputModel
from scaling.errors import ScalingError
from scaling.results import Prediction, fmt

GRID = 2001  # log-N grid points before the local refinement


class LossPredictor(Protocol):
    """A fitted loss law as this module asks it: L(N, D)."""

    def predict(self, N: Any, D: Any) -> np.ndarray: ...


@dataclass(frozen=True)
class WallclockOptimum:
    """One architecture's best model within `hours`, and the ladder rung nearest to it."""

    arch: str
    hours: float
    N: float
    D: float
    tokens_per_s: float
    loss: Prediction
    nearest_size: str
    table: pd.DataFrame = field(repr=False)  # each rung: N, tokens_per_s, D, loss

    def __str__(self) -> str:
        return (
            f"{self.arch} in {self.hours:g} h: N = {fmt(self.N)} params (nearest size "
            f"{self.nearest_size}), D = {fmt(self.D)} tokens at {fmt(self.tokens_per_s)} "
            f"tokens/s; {self.loss}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "arch": self.arch,
            "hours": self.hours,
            "N": self.N,
            "D": self.D,
            "tokens_per_s": self.tokens_per_s,
            "loss": self.loss.to_dict(),
            "nearest_size": self.nearest_size,
        }


@dataclass(frozen=True)
class WallclockAnswer:
    """Every architecture's optimum at one budget, the one asked about and the winner."""

    hours: float
    optima: dict[str, WallclockOptimum]
    asked: str | None
    winner: str
    note: str

    def __str__(self) -> str:
        shown = [self.optima[self.asked]] if self.asked else list(self.optima.values())
        return "\n".join([*map(str, shown), self.note])

    def to_dict(self) -> dict[str, Any]:
        return {
            "hours": self.hours,
            "asked": self.asked,
            "winner": self.winner,
            "note": self.note,
            "optima": {a: o.to_dict() for a, o in self.optima.items()},
        }


def size_ladder(arch: str, seq_len: int) -> pd.DataFrame:
    """The architecture's named sizes (runners.sizes) at this context length, with seq_len."""
    from runners.sizes import ladder

    return ladder(arch, seq_len).assign(seq_len=seq_len)


def optimal_within(
    law: LossPredictor,
    throughput: ThroughputModel,
    ladder: pd.DataFrame,
    hours: float,
    level: float = 0.90,
    n_column: str = "params",
    ratios: tuple[float, float] | None = None,
) -> WallclockOptimum:
    """Minimise law.predict(N, tokens_per_s(N) 3600 hours) over the ladder's range of N.

    `ladder` holds one architecture's rungs at the context length to train with (columns of
    `size_ladder`: name, arch, d_model, n_layers, n_heads, seq_len, params, params_nonembed,
    flops_per_token); N is `n_column`, the parameter count the law was fitted on. ratios: the
    tokens per parameter (lo, hi) an answer may have (fits.allocation.ratio_window), as for
    a compute-optimal answer: a law can fall again toward an allocation no run comes near.
    """
    if not hours > 0:
        raise ScalingError(f"hours must be positive, got {hours}")
    if ladder.empty or ladder["arch"].nunique() != 1:
        raise ScalingError("give the size ladder of exactly one architecture")
    rungs = ladder.assign(N=ladder[n_column].astype(float)).sort_values("N")
    rungs = rungs.assign(tokens_per_s=throughput.tokens_per_s(rungs))
    seconds = 3600.0 * hours
    rungs = rungs.assign(D=rungs.tokens_per_s * seconds)
    rungs = rungs.assign(loss=law.predict(rungs.N.to_numpy(), rungs.D.to_numpy()))
    log_n, log_rate = np.log(rungs.N.to_numpy()), np.log(rungs.tokens_per_s.to_numpy())

    def loss_at(x: np.ndarray) -> np.ndarray:
        rate = np.exp(np.interp(x, log_n, log_rate))
        return np.asarray(law.predict(np.exp(x), rate * seconds), dtype=float)

    grid = np.linspace(log_n[0], log_n[-1], GRID)
    arch = str(rungs["arch"].iloc[0])
    if ratios is not None:
        per_parameter = np.exp(np.interp(grid, log_n, log_rate) - grid) * seconds
        grid = grid[(per_parameter >= ratios[0]) & (per_parameter <= ratios[1])]
        if grid.size == 0:
            raise ScalingError(
                f"in {hours:g} h no size of {arch}'s ladder trains on a number of tokens per "
                f"parameter within {RATIO_MARGIN:g}x of its runs' ({ratios[0] * RATIO_MARGIN:.3g}"
                f"..{ratios[1] / RATIO_MARGIN:.3g}): the runs say nothing that far from theirs"
            )
    i = int(np.nanargmin(loss_at(grid)))
    lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, grid.size - 1)]
    best = minimize_scalar(
        lambda x: float(loss_at(np.array([x]))[0]), bounds=(lo, hi), method="bounded"
    )
    x = best.x if best.fun <= loss_at(grid[i : i + 1])[0] else grid[i]
    n_opt = float(np.exp(x))
    rate = float(np.exp(np.interp(x, log_n, log_rate)))
    d_opt = rate * seconds
    loss = _loss_prediction(law, n_opt, d_opt, level)
    nearest = rungs.iloc[int(np.argmin(np.abs(log_n - x)))]["name"]
    table = rungs[["name", "N", "tokens_per_s", "D", "loss"]].reset_index(drop=True)
    return WallclockOptimum(arch, hours, n_opt, d_opt, rate, loss, str(nearest), table)


def compare(optima: dict[str, WallclockOptimum], asked: str | None = None) -> WallclockAnswer:
    """Which architecture reaches the lowest loss within the same hours."""
    if not optima:
        raise ScalingError("no architecture has both a loss law and throughput data")
    if asked is not None and asked not in optima:
        raise ScalingError(f"no wall-clock answer for arch {asked!r}: fit it first")
    ranked = sorted(optima.values(), key=lambda o: o.loss.value)
    winner = ranked[0]
    hours = winner.hours
    if len(ranked) == 1:
        note = f"only {winner.arch} has a loss law and throughput data: no comparison"
    else:
        runner_up = ranked[1]
        overlap = winner.loss.hi >= runner_up.loss.lo
        note = (
            f"winner within {hours:g} h: {winner.arch} (loss {fmt(winner.loss.value)}), ahead "
            f"of {runner_up.arch} ({fmt(runner_up.loss.value)})"
            + ("; their intervals overlap" if overlap else "")
        )
    return WallclockAnswer(hours, optima, asked, winner.arch, note)


def _loss_prediction(law: LossPredictor, N: float, D: float, level: float) -> Prediction:
    """The law's loss at (N, D), with its bootstrap interval when the law has one."""
    value = float(np.ravel(law.predict(N, D))[0])
    interval = getattr(law, "predict_interval", None)
    if interval is None:
        return Prediction("loss", value, value, value, level, None, "no")
    p = interval(N, D, level=level)
    lo, hi = float(np.ravel(p.lo)[0]), float(np.ravel(p.hi)[0])
    return Prediction("loss", value, lo, hi, level, None, "confidence")
