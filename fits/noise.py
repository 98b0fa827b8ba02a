"""Run noise at a question: the log residuals of the fitted runs nearest to it.

Runs do not scatter about a law equally everywhere: Epoch's smallest budgets scatter about
twice as much as its largest, and on Muennighoff et al.'s runs the models trained for hundreds
of epochs on a few unique tokens scatter several times more than single-epoch ones. A
question is answered by one run at its place, so its interval draws that run's noise from
the residuals of the runs nearest to the place, not from every run: otherwise a question at
the clean end borrows the noise of the dirty end (too wide), and the nested backtests, which
subtract that noise from each held-out error before they measure its growth per decade
(fits.calibration), subtract too much and learn too small a rate (too narrow where the law
bends). The nested backtests use the same neighbourhood for the same reason.

Place: decades of N and D and of the epochs D/U (0 for unrepeated data, where U is unknown or
at least D), Euclidean, the yardstick of the calibration. Neighbours: the NEIGHBOURS_MIN
nearest runs or a quarter of them, whichever is more (all runs when fewer): at least 20 so that
a 90% interval's 5% and 95% quantiles are not the extremes of its residuals, a quarter so that
the noise can differ between the runs' ends and middle. One rule for every data set.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

NEIGHBOURS_MIN = 20
NEIGHBOURS_SHARE = 0.25


def n_neighbours(n_runs: int) -> int:
    """How many of n_runs runs a question draws its noise from."""
    return min(n_runs, max(NEIGHBOURS_MIN, math.ceil(NEIGHBOURS_SHARE * n_runs)))


def places(frame: pd.DataFrame) -> np.ndarray:
    """(n, 3): log10 N, log10 D and log10 of the epochs max(D/U, 1) of runs or questions (0
    where U is missing, unknown or unlimited)."""
    n = np.log10(frame["N"].to_numpy(dtype=float))
    d = frame["D"].to_numpy(dtype=float)
    u = frame["U"].to_numpy(dtype=float) if "U" in frame else np.full(len(frame), np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        epochs = np.log10(np.fmax(d / u, 1.0))  # nan (U unknown) -> 1 epoch
    return np.column_stack([n, np.log10(d), np.nan_to_num(epochs, nan=0.0, posinf=0.0)])


def nearest(where: np.ndarray, points: np.ndarray, k: int) -> np.ndarray:
    """(len(points), k) indices of the k rows of `where` nearest to each point (ties by index)."""
    d2 = ((points[:, None, :] - where[None, :, :]) ** 2).sum(axis=2)
    return np.argsort(d2, axis=1, kind="stable")[:, :k]


def local_quantile(
    errors: np.ndarray, where: np.ndarray, points: np.ndarray, q: float
) -> np.ndarray:
    """The q-quantile of |errors| of the n_neighbours runs (at `where`) nearest each point."""
    near = nearest(where, points, n_neighbours(len(errors)))
    return np.quantile(np.abs(np.asarray(errors, dtype=float))[near], q, axis=1)


@dataclass(frozen=True)
class RunNoise:
    """The fitted runs' log residuals and their places (None: every question draws from all,
    as for a power law of one variable, or a fit stored before places were kept), and their
    observed losses (None where not kept), which bound what a larger run can lose
    (fits.prediction.no_worse_than_runs)."""

    residuals: np.ndarray
    where: np.ndarray | None = None
    losses: np.ndarray | None = None

    @classmethod
    def of(cls, runs: pd.DataFrame, residuals: np.ndarray) -> RunNoise:
        """The noise of a loss law fitted on runs (columns N, D[, U], loss)."""
        losses = runs["loss"].to_numpy(dtype=float) if "loss" in runs else None
        return cls(np.asarray(residuals, dtype=float), places(runs), losses)

    def pools(self, asked: pd.DataFrame) -> np.ndarray:
        """(len(asked), k): the residuals each question draws its run's noise from."""
        if self.where is None:
            return np.broadcast_to(self.residuals, (len(asked), len(self.residuals)))
        near = nearest(self.where, places(asked), n_neighbours(len(self.residuals)))
        return self.residuals[near]

    def describe(self) -> str:
        """One line for a summary."""
        n = len(self.residuals)
        if self.where is None:
            return f"run noise: the log residuals of all {n} fitted runs"
        bound = (
            "; on fresh tokens an upper end is at most the loss of any run with no more N and D, "
            "times both runs' noise"
            if self.losses is not None
            else ""
        )
        return (
            f"run noise: the log residuals of the {n_neighbours(n)} of {n} fitted runs nearest "
            f"each question (decades of N, D and epochs){bound}"
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"residuals": self.residuals.tolist()}
        if self.where is not None:
            out["residual_places"] = self.where.tolist()
        if self.losses is not None:
            out["run_losses"] = self.losses.tolist()
        return out

    @classmethod
    def from_dict(cls, record: Mapping[str, Any]) -> RunNoise | None:
        """The noise of a stored record (None when it kept no residuals)."""
        if "residuals" not in record:
            return None
        where, losses = record.get("residual_places"), record.get("run_losses")
        return cls(
            np.asarray(record["residuals"], dtype=float),
            None if where is None else np.asarray(where, dtype=float),
            None if losses is None else np.asarray(losses, dtype=float),
        )
