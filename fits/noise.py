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

Gross outliers (`gross_outliers`) are runs no form can place, set aside from the fit so that a
few together do not bend it. The forms are fitted with a Huber loss on log loss (delta =
1e-3, nearly least absolute deviations), which bounds each run's pull but not the pull of
several runs together where the design has few others: on Epoch's 245 points four of the five
runs Besiroglu et al. left out (2.3e9-6.8e9 parameters on under 1e9 tokens, losses 3.8-5.0
where every form predicts about 3) sit in one corner, a nested split that lacks the largest
runs lets them bend its D term, and the calibration learnt their pull as the law's bias
(docs/laws-notebook.md, *Gross outliers set aside from the fit*). A run is one when, under
every form that fits, its log residual's modified z-score among its neighbours (the nearest
*other* runs), 0.6745 (r - their median) / their MAD, exceeds OUTLIER_CUT in absolute value:
the cut Iglewicz & Hoaglin (1993, "How to Detect and Handle Outliers") recommend. Every form,
because a run one form places is a bend the others miss, and so at least two: under one, a
bend it cannot follow looks the same as an outlier (Chinchilla's form alone would set aside
six of Epoch's 240 points and leave the published fit); neighbours, because runs scatter
more at some places than others. Screened only with more than NEIGHBOURS_MIN runs, so that
every scale comes from at least that many others; a neighbourhood whose MAD is 0 flags
nothing. Their noise still counts, and so do their losses in the dominance bound
(fits.prediction): a question near them is answered by a run that may be one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

NEIGHBOURS_MIN = 20
NEIGHBOURS_SHARE = 0.25
OUTLIER_CUT = 3.5
BLOCK = 2**20  # point-run pairs whose distances `nearest` holds at once (about 40 MB)


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


def repeats(frame: pd.DataFrame) -> np.ndarray:
    """Which runs or questions repeat their unique tokens, D > U (`places`' epochs above 1)."""
    return repeating(places(frame))


def repeating(place: np.ndarray) -> np.ndarray:
    """Which rows of `places` output repeat their unique tokens (log10 epochs above 0)."""
    return place[:, 2] > 0


def nearest(where: np.ndarray, points: np.ndarray, k: int) -> np.ndarray:
    """(len(points), k) indices of the k rows of `where` nearest to each point, nearest first
    (ties by index), a block of points at a time: every run against every run at once held
    about 40 bytes a pair (`auto` on 5,000 runs peaked at 967 MB, in blocks 489 MB; 20,000
    would need 16 GB)."""
    rows = max(1, BLOCK // max(len(where), 1))
    return np.concatenate([_nearest_block(where, points[i : i + rows], k)
                           for i in range(0, max(len(points), 1), rows)])  # fmt: skip


def _nearest_block(where: np.ndarray, points: np.ndarray, k: int) -> np.ndarray:
    """`nearest` for one block. The k nearest are picked by partition, not by sorting every
    run (at 10,000 runs k is 2,500 of them): those closer than the k-th distance, then the
    lowest-indexed of those at it; only they are sorted, stably, so ties stay in index order."""
    d2 = sum((points[:, None, axis] - where[None, :, axis]) ** 2 for axis in range(where.shape[1]))
    if k >= len(where):
        return np.argsort(d2, axis=1, kind="stable")[:, :k]
    kth = np.partition(d2, k - 1, axis=1)[:, k - 1 : k]
    closer, tied = d2 < kth, d2 == kth
    room = k - closer.sum(axis=1, keepdims=True)
    chosen = closer | (tied & (np.cumsum(tied, axis=1) <= room))
    picked = np.nonzero(chosen)[1].reshape(len(points), k)  # each row's k in index order
    order = np.argsort(np.take_along_axis(d2, picked, axis=1), axis=1, kind="stable")
    return np.take_along_axis(picked, order, axis=1)


def local_quantile(
    errors: np.ndarray, where: np.ndarray, points: np.ndarray, q: float
) -> np.ndarray:
    """The q-quantile of |errors| of the n_neighbours runs (at `where`) nearest each point."""
    near = nearest(where, points, n_neighbours(len(errors)))
    return np.quantile(np.abs(np.asarray(errors, dtype=float))[near], q, axis=1)


def modified_z(residuals: np.ndarray, where: np.ndarray) -> np.ndarray:
    """Each residual's modified z-score among the residuals of its nearest other runs (at
    `where`, `places`); 0 where those neighbours' MAD is 0."""
    residuals = np.asarray(residuals, dtype=float)
    n = len(residuals)
    k = min(n_neighbours(n), n - 1)
    near = nearest(where, where, k + 1)
    others = np.array([row[row != i][:k] for i, row in enumerate(near)])
    pool = residuals[others]
    centre = np.median(pool, axis=1)
    mad = np.median(np.abs(pool - centre[:, None]), axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = 0.6745 * (residuals - centre) / mad
    return np.where(mad > 0, z, 0.0)


def gross_outliers(residuals: Sequence[np.ndarray], where: np.ndarray) -> np.ndarray:
    """Boolean mask of the runs (at `where`) whose log residual is a gross outlier under every
    form (`residuals`, one array per form); none with NEIGHBOURS_MIN runs or fewer, or with
    fewer than two forms."""
    n = len(where)
    if n <= NEIGHBOURS_MIN or len(residuals) < 2:
        return np.zeros(n, dtype=bool)
    return np.all([np.abs(modified_z(r, where)) > OUTLIER_CUT for r in residuals], axis=0)


@dataclass(frozen=True)
class RunNoise:
    """The fitted runs' log residuals and their places (None: every question draws from all,
    as for a power law of one variable, or a fit stored before places were kept), and their
    observed losses (None where not kept), which bound what a larger run can lose
    (fits.prediction.no_worse_than_runs); set_aside marks the runs the law was not fitted on,
    gross outliers (`gross_outliers`), whose noise still counts (None: every run was fitted);
    kept_outliers marks gross outliers it was fitted on all the same, since without them no
    form fits (fits.auto.fit_screened; None: no such run)."""

    residuals: np.ndarray
    where: np.ndarray | None = None
    losses: np.ndarray | None = None
    set_aside: np.ndarray | None = None
    kept_outliers: np.ndarray | None = None

    @classmethod
    def of(
        cls,
        runs: pd.DataFrame,
        residuals: np.ndarray,
        set_aside: np.ndarray | None = None,
        kept_outliers: np.ndarray | None = None,
    ) -> RunNoise:
        """The noise of a loss law at runs (columns N, D[, U], loss), set_aside marking those
        it was not fitted on and kept_outliers the gross outliers it was fitted on."""
        losses = runs["loss"].to_numpy(dtype=float) if "loss" in runs else None
        where = places(runs)
        return cls(np.asarray(residuals, dtype=float), where, losses, _mask(set_aside),
                   _mask(kept_outliers))  # fmt: skip

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
        if repeating(self.where).any():
            bound += "; on repeated tokens a lower end is at least that on as many fresh tokens"
        runs = "fitted runs" if self.set_aside is None else "runs"
        return (
            f"run noise: the log residuals of the {n_neighbours(n)} of {n} {runs} nearest "
            f"each question (decades of N, D and epochs){bound}{self._aside()}"
        )

    def aside_runs(self) -> list[dict[str, float]]:
        """The runs set aside from the fit: N, D and loss of each (none when none was)."""
        return self._runs(self.set_aside)

    def kept_outlier_runs(self) -> list[dict[str, float]]:
        """The gross outliers the fit kept, since without them no form fits: N, D and loss."""
        return self._runs(self.kept_outliers)

    def _runs(self, mask: np.ndarray | None) -> list[dict[str, float]]:
        """N, D and loss of the runs in mask. N and D come back from their log10 places to 14
        significant digits, which the round trip through log10 keeps exactly (219712, not
        219712.00000000012)."""
        if mask is None or self.where is None or self.losses is None:
            return []

        def count(log10: float) -> float:
            return float(f"{10**log10:.14g}")

        return [
            {"N": count(self.where[i, 0]), "D": count(self.where[i, 1]), "loss": self.losses[i]}
            for i in np.flatnonzero(mask)
        ]

    def _aside(self) -> str:
        """The runs set aside from the fit and the outliers kept, named (at most five of
        each), for the summary."""
        cut = f"under every form over {OUTLIER_CUT} robust SDs from their neighbours' residuals"
        text = ""
        if runs := self.aside_runs():
            text += f"; {len(runs)} set aside from the fit as gross outliers, {cut} "
            text += f"({_named(runs)}); their noise kept"
        if runs := self.kept_outlier_runs():
            text += f"; {len(runs)} kept in the fit though as far off, since without them no "
            text += f"form fits ({_named(runs)})"
        return text

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"residuals": self.residuals.tolist()}
        if self.where is not None:
            out["residual_places"] = self.where.tolist()
        if self.losses is not None:
            out["run_losses"] = self.losses.tolist()
        if self.set_aside is not None:
            out["set_aside"] = np.flatnonzero(self.set_aside).tolist()
        if self.kept_outliers is not None:
            out["kept_outliers"] = np.flatnonzero(self.kept_outliers).tolist()
        return out

    @classmethod
    def from_dict(cls, record: Mapping[str, Any]) -> RunNoise | None:
        """The noise of a stored record (None when it kept no residuals)."""
        if "residuals" not in record:
            return None
        residuals = np.asarray(record["residuals"], dtype=float)
        where, losses = record.get("residual_places"), record.get("run_losses")
        masks = []
        for key in ("set_aside", "kept_outliers"):
            mask = None
            if record.get(key):
                mask = np.zeros(len(residuals), dtype=bool)
                mask[np.asarray(record[key], dtype=int)] = True
            masks.append(mask)
        return cls(
            residuals,
            None if where is None else np.asarray(where, dtype=float),
            None if losses is None else np.asarray(losses, dtype=float),
            *masks,
        )


def _mask(flags: np.ndarray | None) -> np.ndarray | None:
    """A boolean mask of runs, or None when it marks none."""
    return None if flags is None or not np.any(flags) else np.asarray(flags, bool)


def _named(runs: list[dict[str, float]]) -> str:
    """At most five runs by N, D and loss, and how many more."""
    named = ", ".join(f"N {r['N']:.3g} D {r['D']:.3g} loss {r['loss']:.4g}" for r in runs[:5])
    return named + (f" and {len(runs) - 5} more" if len(runs) > 5 else "")
