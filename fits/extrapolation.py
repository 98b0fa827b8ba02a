"""Extrapolation error measured inside the data: nested backtests, form selection, calibration.

A law's bootstrap and the scatter of runs around it measure noise inside the data. What a
user pays for is the error of the law's *form* when a question lies outside the data, and only
backtests measure that. Here the backtests are nested inside the runs being fitted: along each
direction a question can leave the data in (compute C, parameters N, tokens D), and for a few
quantiles q, the law is fitted on the runs at or below the q-th quantile of that coordinate and
scores the runs above it. Each scored run keeps its log error and its distance from that
split's training runs.

Distance (`distance`): decades outside the training runs' box in log10 N, log10 D and
log10 C, the largest of the three. Each coordinate sees one way out: past the largest budget,
past the largest model at equal compute (a large model on many tokens can sit inside the
compute range of small over-trained ones), past the longest run. It is the same yardstick for
every law form, so forms are compared and calibrated on equal terms.

Box calibration (`calibrate_box`, the adaptive planner's; the Study's intervals use
fits.calibration, rates per decade from the runs' hull laid on a bootstrap interval). The
planner keeps its own because its criterion's base is a delta-method half-width, narrower
than the bootstrap's, and the hull rates on it covered 18 of 24 held-out runs in the Epoch
replay against 22 with these (docs/sweeps.md). The interval's half-width in log loss grows
linearly with the distance along each direction, h(x) = b(x) + max_k kappa_k d_k(x), with
b(x) the law's own half-width (bootstrap and run scatter) and d_k the decades outside
along N, D or C.
kappa_k = max(kappa, direction k's own quantile): kappa is the conformal quantile of every
split's scores s = max(|log error| - r, 0) / d (r the run-scatter half-width of that split's
fit near the run, fits.noise: the in-data part of the error, which b already holds; d the run's
largest d_k), and direction k's own quantile uses the scores of the held-out runs that lie
farthest out along k, whichever split held them out. Each run is scored once, along the
direction it left the data in most: divided by a small distance along another direction (a run
held out by a C split 0.03 decades past the largest budget but 0.2 past the longest run), its
error would set a rate per decade that no question leaving along that direction meets. A law
often errs faster per decade along one direction (adding parameters at equal compute) than
along the others, and one pooled kappa would then promise too much there; the pooled floor
keeps a direction whose few runs happened to extrapolate well from promising more than the data
as a whole supports. Each split weighs the same within its quantile, taken at ceil((n+1)
level)/n, the finite-sample correction of split conformal prediction; a direction with too few
scores for that takes the pooled kappa. A held-out run less than MIN_OUTSIDE decades out gives
no score: its error says nothing about a rate per decade, and divided by a near-zero distance
it would set kappa alone. Assumption: the error per decade of extrapolation seen inside the
data holds beyond it; see the README for the limits.

Selection (`assess`): each candidate form's out-of-range error is the median |log error| of
each split's held-out runs, averaged over splits; the lowest wins.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from fits.bootstrap import map_chunks
from fits.calibration import departures, hull_vertices, log_points
from fits.errors import FitError
from fits.noise import local_quantile, places

FitPredict = Callable[[pd.DataFrame, pd.DataFrame], np.ndarray]
"""Fit on the training runs (columns N, D, C, loss[, U]); return predicted loss of the others."""

COORDS = ("C", "N", "D")
QUANTILES = (0.5, 0.65, 0.8)
MIN_TRAIN = 8  # a split with fewer training runs than this is skipped: too few to fit a law
MIN_OUTSIDE = 0.01  # decades (2.3%): a held-out run nearer than this scores no error rate
SAME = 1e-6  # relative: runs this close to a split's cut (one budget's 6ND) train with it


def log_box(runs: pd.DataFrame) -> dict[str, tuple[float, float]]:
    """(min, max) of log10 N, log10 D, log10 C over the runs."""
    return {c: (float(np.log10(runs[c]).min()), float(np.log10(runs[c]).max())) for c in COORDS}


def outside(box: Mapping[str, tuple[float, float]], runs: pd.DataFrame) -> pd.DataFrame:
    """Decades by which each run lies outside the box along C, N and D (columns; 0 inside)."""
    columns = {}
    for c in COORDS:
        lo, hi = box[c]
        columns[c] = decades_outside(np.log10(np.asarray(runs[c], dtype=float)), lo, hi)
    return pd.DataFrame(columns, index=runs.index)


def decades_outside(x: np.ndarray, lo: Any, hi: Any) -> np.ndarray:
    """How far log10 coordinates x lie outside [lo, hi] (0 inside); broadcasts."""
    return np.maximum(np.maximum(lo - x, x - hi), 0.0)


def widening(along: np.ndarray, d: np.ndarray) -> np.ndarray:
    """The calibration's widening in log loss, max_k kappa_k d_k, with the coordinates (in
    COORDS order) on axis 0 of d and of `along` (kappa_k); 0 where d_k = 0 even if kappa_k is
    inf. Array form of `BoxCalibration.extra`, for boxes a design stretches run by run."""
    kappa = np.asarray(along, dtype=float).reshape((-1,) + (1,) * (np.ndim(d) - 1))
    with np.errstate(invalid="ignore"):  # inf * 0 where inside, replaced by 0
        return np.where(d > 0, kappa * d, 0.0).max(axis=0)


def distance(box: Mapping[str, tuple[float, float]], runs: pd.DataFrame) -> np.ndarray:
    """Decades by which each run lies outside the box, largest over N, D and C (0 inside)."""
    return outside(box, runs).max(axis=1).to_numpy()


def conformal_quantile(scores: np.ndarray, weights: np.ndarray | None, level: float) -> float:
    """The ceil((n+1) level)/n weighted quantile of scores (inf when that exceeds 1).

    Weights are normalised; with equal weights this is the ceil((n+1) level)-th smallest
    score, the split-conformal quantile.
    """
    scores = np.asarray(scores, dtype=float)
    n = scores.size
    if n == 0:
        return math.inf
    target = math.ceil((n + 1) * level) / n
    if target > 1:
        return math.inf
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=float)
    order = np.argsort(scores, kind="stable")
    cum = np.cumsum(w[order]) / w.sum()
    return float(scores[order][np.searchsorted(cum, target - 1e-12)])


def nested_splits(
    runs: pd.DataFrame, quantiles: tuple[float, ...] = QUANTILES
) -> list[tuple[str, float, pd.DataFrame, pd.DataFrame]]:
    """(coord, q, train, test) of every nested split: along C, N and D, the runs at or below
    the q-th quantile of that coordinate and those above it; a split with fewer than
    MIN_TRAIN training runs or none held out is left out."""
    splits = []
    for coord in COORDS:
        x = runs[coord].to_numpy(dtype=float)
        for q in quantiles:
            cut = np.quantile(x, q) * (1 + SAME)
            train, test = runs[x <= cut], runs[x > cut]
            if len(train) >= MIN_TRAIN and not test.empty:
                splits.append((coord, q, train, test))
    return splits


def nested_backtest(
    runs: pd.DataFrame,
    fit_predict: FitPredict,
    level: float,
    quantiles: tuple[float, ...] = QUANTILES,
    n_jobs: int | None = 1,
    only: Collection[tuple[str, float]] | None = None,
) -> pd.DataFrame:
    """Held-out runs of every nested split (of those `only` names as (coord, q), when given):
    coord, q, row, log_error, distance, hull (decades from the training runs' hull in log N,
    log D), scatter, dir_N and dir_D (the unit vector from the hull's nearest point to the
    run), and the distance along each coordinate (columns d_C, d_N, d_D).

    log_error = log(actual) - log(predicted); scatter = the level-quantile of |log residual|
    of that split's fit on the training runs nearest the held-out run (fits.noise; the box
    calibration's in-data margin). Splits whose fit fails are skipped. The splits are fitted
    in n_jobs worker processes (fits.bootstrap.map_chunks).
    """
    return nested_backtests(runs, {"": fit_predict}, level, quantiles, n_jobs, only)[""]


def nested_backtests(
    runs: pd.DataFrame,
    fit_predicts: Mapping[str, FitPredict],
    level: float,
    quantiles: tuple[float, ...] = QUANTILES,
    n_jobs: int | None = 1,
    only: Collection[tuple[str, float]] | None = None,
) -> dict[str, pd.DataFrame]:
    """nested_backtest of each form (name -> its fit_predict), every form's splits in one pool
    of workers, so that one costly form's splits do not leave a worker idle. The splits go to
    the workers in the order of the forms given (the costliest first balances the workers
    best), each form's largest first; the answers do not depend on the order."""
    runs = runs.reset_index(drop=True)
    splits = [s for s in nested_splits(runs, quantiles) if only is None or s[:2] in only]
    biggest_first = sorted(range(len(splits)), key=lambda i: -len(splits[i][2]))
    tasks = [(name, i) for name in fit_predicts for i in biggest_first]
    jobs = [(fit_predicts[name], splits[i][2], pd.concat(splits[i][2:])) for name, i in tasks]
    predicted = dict(zip(tasks, map_chunks(_split_fit, jobs, n_jobs), strict=True))
    return {name: _held_out(splits, [predicted[name, i] for i in range(len(splits))], level)
            for name in fit_predicts}  # fmt: skip


def _held_out(
    splits: list[tuple[str, float, pd.DataFrame, pd.DataFrame]],
    predicted: list[np.ndarray | None],
    level: float,
) -> pd.DataFrame:
    """One form's nested_backtest frame from its predictions on each split (None: failed)."""
    held = []
    for (coord, q, train, test), pred in zip(splits, predicted, strict=True):
        if pred is None:
            continue
        err = np.log(pd.concat([train, test]).loss.to_numpy()) - np.log(pred)
        if not np.isfinite(err).all():
            continue
        scatter = local_quantile(err[: len(train)], places(train), places(test), level)
        along = outside(log_box(train), test).add_prefix("d_")
        hull, direction = departures(hull_vertices(log_points(train)), log_points(test))
        split = pd.DataFrame(
            {
                "coord": coord,
                "q": q,
                "row": test.index.to_numpy(),
                "log_error": err[len(train) :],
                "distance": along.max(axis=1).to_numpy(),
                "hull": hull,
                "scatter": scatter,
                "dir_N": direction[:, 0],
                "dir_D": direction[:, 1],
            }
        )
        held.append(pd.concat([split, along.reset_index(drop=True)], axis=1))
    columns = ["coord", "q", "row", "log_error", "distance", "hull", "scatter", "dir_N", "dir_D"]
    columns += [f"d_{c}" for c in COORDS]
    if not held:
        return pd.DataFrame(columns=columns)
    return pd.concat(held, ignore_index=True)


def _split_fit(
    fit_predict: FitPredict, train: pd.DataFrame, asked: pd.DataFrame
) -> np.ndarray | None:
    """One split's predictions at `asked`, or None when its fit fails."""
    try:
        return np.asarray(fit_predict(train, asked), dtype=float)
    except FitError:
        return None


def out_of_range_error(nested: pd.DataFrame) -> float:
    """Median |log error| of each split's held-out runs, averaged over the splits."""
    per_split = nested.assign(abs_err=nested.log_error.abs()).groupby(["coord", "q"]).abs_err
    return float(per_split.median().mean())


@dataclass(frozen=True)
class BoxCalibration:
    """How far a question is from the data, and how much that widens its interval.

    kappa: the pooled log-loss half-width added per decade of distance; along: kappa_k per
    coordinate (never below kappa), the one applied; box: the fitted runs' log10 ranges of
    N, D, C; n_scores, n_splits: the nested held-out runs and splits behind kappa.
    """

    level: float
    kappa: float
    along: dict[str, float]
    box: dict[str, tuple[float, float]]
    n_scores: int
    n_splits: int

    def distance(self, runs: pd.DataFrame) -> np.ndarray:
        """Decades outside the fitted runs (see `distance`)."""
        return distance(self.box, runs)

    def extra(self, runs: pd.DataFrame) -> np.ndarray:
        """The widening in log loss, max_k kappa_k d_k (0 inside the data, even if inf)."""
        d = outside(self.box, runs)[list(COORDS)].to_numpy().T
        return widening(np.array([self.along[c] for c in COORDS]), d)

    def widen(
        self, estimate: np.ndarray, lo: np.ndarray, hi: np.ndarray, runs: pd.DataFrame
    ) -> tuple[np.ndarray, np.ndarray]:
        """The law's interval (lo, hi) around estimate, each side widened by `extra` in log."""
        extra = self.extra(runs)
        return lo * np.exp(-extra), hi * np.exp(extra)

    def to_dict(self) -> dict[str, Any]:
        def finite(k: float) -> float | None:  # JSON has no inf
            return k if math.isfinite(k) else None

        return {
            "level": self.level,
            "kappa": finite(self.kappa),
            "along": {c: finite(k) for c, k in self.along.items()},
            "box": {k: list(v) for k, v in self.box.items()},
            "n_scores": self.n_scores,
            "n_splits": self.n_splits,
        }

    @classmethod
    def from_dict(cls, record: Mapping[str, Any]) -> BoxCalibration:
        """Read a record; one written before kappa_k existed widens by its kappa everywhere."""

        def number(k: float | None) -> float:
            return math.inf if k is None else float(k)

        box = {k: (float(v[0]), float(v[1])) for k, v in record["box"].items()}
        kappa = number(record["kappa"])
        along = {c: number(record.get("along", {}).get(c, record["kappa"])) for c in COORDS}
        n_scores, n_splits = record["n_scores"], record["n_splits"]
        return cls(float(record["level"]), kappa, along, box, n_scores, n_splits)

    def describe(self) -> str:
        """One line for a summary: the kappa_k applied and what they come from."""
        along = ", ".join(f"{c} {self.along[c]:.4f}" for c in COORDS)
        return (
            f"intervals widened per decade outside the runs by kappa ({along}) in log loss "
            f"(conformal {self.level:.0%} quantiles of {self.n_scores} nested errors, "
            f"{self.n_splits} splits; pooled {self.kappa:.4f})"
        )


def calibrate_box(nested: pd.DataFrame, runs: pd.DataFrame, level: float) -> BoxCalibration:
    """kappa (pooled over the splits, scores over d) and kappa_k = max(kappa, the quantile of
    the scores of the runs farthest out along k); splits weigh the same."""
    if nested.empty:
        raise FitError("no nested backtest could be fitted: too few runs to calibrate")
    excess = np.maximum(nested.log_error.abs() - nested.scatter, 0.0).to_numpy()
    weights = 1.0 / nested.groupby(["coord", "q"]).row.transform("size").to_numpy()
    d = nested.distance.to_numpy()
    far = d >= MIN_OUTSIDE
    kappa = conformal_quantile(excess[far] / d[far], weights[far], level)
    dominant = np.array(COORDS)[nested[[f"d_{c}" for c in COORDS]].to_numpy().argmax(axis=1)]
    along = {}
    for c in COORDS:
        mine = far & (dominant == c)
        own = conformal_quantile(excess[mine] / d[mine], weights[mine], level)
        along[c] = max(kappa, own) if math.isfinite(own) else kappa
    n_splits = int(nested.groupby(["coord", "q"]).ngroups)
    return BoxCalibration(level, kappa, along, log_box(runs), len(nested), n_splits)


def assess(
    runs: pd.DataFrame,
    candidates: Mapping[str, FitPredict | str],
    level: float,
    quantiles: tuple[float, ...] = QUANTILES,
) -> tuple[pd.DataFrame, str | None, BoxCalibration | None]:
    """Score every candidate form by nested backtests; the lowest error wins and is calibrated.

    candidates: name -> a FitPredict, or a one-line reason why the form was left out.
    Returns the table of forms (form, error, splits, note), the winner and its calibration
    (None and None when no form could be backtested: too few runs to hold any out).
    """
    table, nested_of = [], {}
    for name, fp in candidates.items():
        nested = None if isinstance(fp, str) else nested_backtest(runs, fp, level, quantiles)
        if nested is None or nested.empty:
            note = fp if isinstance(fp, str) else "no nested backtest could be fitted"
            table.append({"form": name, "error": math.nan, "splits": 0, "note": note})
            continue
        nested_of[name] = nested
        n_splits = int(nested.groupby(["coord", "q"]).ngroups)
        table.append(
            {"form": name, "error": out_of_range_error(nested), "splits": n_splits, "note": ""}
        )
    forms = pd.DataFrame(table, columns=["form", "error", "splits", "note"])
    if not nested_of:
        return forms, None, None
    best = str(forms.loc[forms.error.idxmin(), "form"])
    why = "lowest out-of-range error" if len(nested_of) > 1 else "the only form backtested"
    forms.loc[forms.form == best, "note"] = f"selected: {why}"
    return forms, best, calibrate_box(nested_of[best], runs, level)
