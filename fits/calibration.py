"""Calibrated intervals for questions outside the runs: a method with stated assumptions.

The nested backtests (fits.extrapolation) hold out runs beyond a cut in C, N or D, refit the
law on the rest and score the held-out runs. Here those scores become an interval.

- Distance: decades from the training runs' convex hull in the law's own coordinates
  (log10 N, log10 D), Euclidean; 0 inside. C = 6 N D is linear in them, so leaving the hull
  along C, N or D is one distance, and a question inside the runs' hull (even outside their
  box) is inside. A run held out by one split is scored once in that split, at its distance
  from that split's training runs: no error is divided along several directions.
- Score: the signed shift per decade, s / max(d, FLOOR). A held-out run's log error under its
  split's fit is e_split = s + e_full: e_full the fit on all runs' residual at the run (its
  noise and the form's misfit there, which that fit's run noise already carries into the own
  interval, fits.noise) and s the shift of the prediction at the run when the fit lacks it and
  the runs beyond the cut: the extrapolation error, free of the run's own noise (for an
  average, each form's with its split's weights). Scoring e_split beyond a quantile of the
  split's scatter instead (the rule until 5 December 2026) let a run the form misses even
  in-sample score its misfit as error per decade, and let a run it hits score less than its
  shift. Distances below FLOOR are floored: a run nearer than that measures the change between
  neighbouring runs, and divided by its tiny distance it would set the rate alone.
- Centre: the scores regressed on the direction each run left its split's hull in (u, the
  unit vector in (log10 N, log10 D) from the hull's nearest point to the run) without
  intercept, by least absolute deviations with every split weighing the same: centre . u is
  the median shift per decade along u, the gradient of the extrapolation error to first
  order. A law's bias is rarely the same whichever way the question leaves the runs (on
  Epoch's 245 points the C and D splits' shifts centre near -0.03 per decade and the N
  splits' near +0.005), and pooling every direction's scores widened each question by the
  others' errors.
- Spread: the (1 - level)/2 and (1 + level)/2 quantiles of the scores less their centre,
  shared by every direction, every split weighing the same, by the weighted Harrell-Davis
  estimator (Harrell & Davis 1982; weights as in Akinshin 2023, "Weighted quantile
  estimators"): a smooth average of order statistics, not the sample maximum when scores are
  few. Under `min_kind_size(level)` effective scores its upper quantile lies beyond them, and
  the caution says the intervals beyond the runs may be too narrow (`few_scores_caution`).
- Interval: the law's own (lo, hi) at a question d decades out along u becomes
  (lo e^(min(centre . u + q_lo, 0) d), hi e^(max(centre . u + q_hi, 0) d)), then clipped to
  physics: the upper end at most the uniform-guess loss ln(vocab) when the vocabulary is
  known. An average's own interval is drawn from the average's bootstrap draws (fits.auto);
  the rates are the average's, from its cross-validated nested errors.

- Kinds of question (Mondrian calibration: conformal prediction conditional on a category of
  the question, Vovk, Gammerman and Shafer 2005, ch. 4): where runs carry unique tokens U, a
  question on repeated tokens (D > U) and one on fresh tokens (D <= U, or U unknown) are each
  calibrated (centre and spread) on the nested runs of their own kind alone, when those have
  a Kish effective size of `min_kind_size(level)` or more (19 at 90%: fewer, and the upper
  quantile lies beyond them); a kind with fewer takes every score. A law's error on repeated
  tokens is its repetition term's, which no fresh question meets: on Muennighoff et al.'s runs
  the overfitting penalty, unbounded in the repeats, set every question's lower spread to
  -0.63 per decade (nested predictions of 13 to 69 nats at runs of 3.7 to 3.9; the notebook).

Assumptions: the error per decade seen inside the runs holds beyond them (a law that bends
only past the runs breaks it; runs that bend along D where no form can are named in the
caution, fits.bends); its centre is linear in the departure (a question leaving toward
fewer N or D than the runs, which no split does, gets the opposite of the centre the way the
splits left) and its spread about the centre is the same in every direction; the splits'
runs of the question's kind are exchangeable with it once the centre is taken out.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.spatial import ConvexHull, QhullError
from scipy.special import betainc

from fits.averaging import split_weights
from fits.bends import bend_caution
from fits.errors import FitError
from fits.lad import least_absolute
from fits.noise import repeats as repeating

FLOOR = 0.1  # decades: nearer held-out runs count as this far (see the module docstring)


def log_points(runs: pd.DataFrame) -> np.ndarray:
    """(n, 2) points log10 N, log10 D of runs."""
    return np.log10(runs[["N", "D"]].to_numpy(dtype=float))


def hull_vertices(points: np.ndarray) -> np.ndarray:
    """The convex hull's vertices in order (a segment's two ends, or one point, when the
    points are collinear or equal)."""
    unique = np.unique(points, axis=0)
    if len(unique) >= 3:
        try:
            return unique[ConvexHull(unique).vertices]
        except QhullError:  # collinear: the hull is the segment between the extremes
            pass
    direction = unique[-1] - unique[0]
    along = unique @ direction
    return unique[[int(along.argmin()), int(along.argmax())]]


def _edges(vertices: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(m, 2) edge vectors of the polygon `vertices` and (n, m, 2) vectors from each vertex to
    each point."""
    return np.roll(vertices, -1, axis=0) - vertices, points[:, None, :] - vertices[None, :, :]


def _nearest_on_edges(vertices: np.ndarray, ab: np.ndarray, ap: np.ndarray) -> np.ndarray:
    """(n, 2): for each point (ap, from `_edges`), the nearest point of any edge."""
    length2 = (ab**2).sum(axis=1)
    t = np.where(length2 > 0, (ap * ab).sum(axis=2) / np.where(length2 > 0, length2, 1), 0)
    nearest = vertices[None] + np.clip(t, 0.0, 1.0)[..., None] * ab[None]  # (n, m, 2)
    points = ap[:, 0, :] + vertices[0]
    closest = ((points[:, None, :] - nearest) ** 2).sum(axis=2).argmin(axis=1)
    return nearest[np.arange(len(points)), closest]


def hull_distance(vertices: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Euclidean distance of each point from the convex polygon (segment, point) `vertices`:
    0 inside, else the distance to its nearest edge."""
    return departures(vertices, points)[0]


def departures(vertices: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(distance, direction) of each point from the convex polygon (segment, point) `vertices`:
    its hull distance (0 inside, else to its nearest edge) and the (n, 2) unit vector from the
    boundary's nearest point to it (0 inside)."""
    points = np.atleast_2d(np.asarray(points, dtype=float))
    ab, ap = _edges(vertices, points)
    away = points - _nearest_on_edges(vertices, ab, ap)
    distance = np.sqrt((away**2).sum(axis=1))
    if len(vertices) >= 3:
        cross = ab[None, :, 0] * ap[..., 1] - ab[None, :, 1] * ap[..., 0]  # counter-clockwise
        distance = np.where((cross >= -1e-12).all(axis=1), 0.0, distance)
    outside = distance > 0
    return distance, np.where(outside[:, None], away / np.where(outside, distance, 1)[:, None], 0)


def harrell_davis(scores: np.ndarray, weights: np.ndarray | None, probability: float) -> float:
    """Weighted Harrell-Davis quantile: sum_i W_i x_(i), W_i the Beta(p(n+1), (1-p)(n+1))
    mass between the weighted ECDF's steps, n the Kish effective size (sum w)^2 / sum w^2."""
    x = np.asarray(scores, dtype=float)
    if x.size == 0:
        return math.nan
    w = np.ones(x.size) if weights is None else np.asarray(weights, dtype=float)
    order = np.argsort(x, kind="stable")
    x, w = x[order], w[order] / w.sum()
    n = 1.0 / float((w**2).sum())
    a, b = probability * (n + 1), (1 - probability) * (n + 1)
    edges = np.concatenate([[0.0], np.minimum(np.cumsum(w), 1.0)])
    mass = np.diff(betainc(a, b, edges))
    return float(mass @ x)


def scores(nested: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Signed shift per decade of every nested held-out run, (log_error - in_data) /
    max(hull, FLOOR), and its weight (each split weighs the same). Needs columns coord, q, row,
    log_error, in_data (the fit on all runs' log error at the run), hull."""
    shift = nested.log_error.to_numpy(dtype=float) - nested.in_data.to_numpy(dtype=float)
    return per_decade(nested, shift)


def per_decade(nested: pd.DataFrame, error: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A log error per nested held-out run divided by its floored hull distance,
    error / max(hull, FLOOR), and each run's weight: 1 / its split's size, so that every split
    weighs the same."""
    rate = np.asarray(error, dtype=float) / np.maximum(nested.hull.to_numpy(dtype=float), FLOOR)
    sizes = nested.groupby(["coord", "q"]).row.transform("size").to_numpy(dtype=float)
    return rate, 1.0 / sizes


@dataclass(frozen=True)
class KindRates:
    """One kind of question's own centre and spread (fresh or repeated tokens), from its
    n_scores nested runs."""

    centre: tuple[float, float]
    lo_rate: float
    hi_rate: float
    n_scores: int

    def to_dict(self) -> dict[str, Any]:
        return {"centre": list(self.centre), "lo_rate": self.lo_rate, "hi_rate": self.hi_rate,
                "n_scores": self.n_scores}  # fmt: skip

    @classmethod
    def from_dict(cls, record: Mapping[str, Any] | None) -> KindRates | None:
        if record is None:
            return None
        a, b = record["centre"]
        return cls((float(a), float(b)), float(record["lo_rate"]), float(record["hi_rate"]),
                   int(record["n_scores"]))  # fmt: skip

    def describe(self, kind: str) -> str:
        n, d = self.centre
        return (f"on {kind} tokens a centre of {n:+.4f} along log N and {d:+.4f} along log D, "
                f"spread {self.lo_rate:+.4f} below and {self.hi_rate:+.4f} above it "
                f"({self.n_scores} nested errors)")  # fmt: skip


@dataclass(frozen=True)
class Calibration:
    """How far, and in which direction, a question is from the runs, and how much that widens
    its interval.

    level; centre: the median shift per decade along log10 N and log10 D (a question leaving
    the hull along the unit vector u gets centre . u); lo_rate <= 0 <= hi_rate: the scores'
    spread about it per decade below and above; hull: the fitted runs' hull vertices in
    (log10 N, log10 D); ceiling: the largest loss physics allows (ln vocab; None when unknown);
    n_scores, n_splits: the nested runs and splits behind it; caution: why the runs break the
    calibration's assumption, when they show it (fits.bends), or that its scores are too few
    to hold its upper quantile (`few_scores_caution`). fresh, repeated: the kinds'
    own rates for questions on fresh and on repeated tokens (module docstring); None where a
    kind takes the rates of every score above.
    """

    level: float
    lo_rate: float
    hi_rate: float
    hull: tuple[tuple[float, float], ...]
    ceiling: float | None
    n_scores: int
    n_splits: int
    caution: str | None = None
    centre: tuple[float, float] = (0.0, 0.0)
    fresh: KindRates | None = None
    repeated: KindRates | None = None

    def distance(self, runs: pd.DataFrame) -> np.ndarray:
        """Decades from the fitted runs' hull in (log10 N, log10 D)."""
        return hull_distance(np.array(self.hull, dtype=float), log_points(runs))

    def rates(self, runs: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(distance, below, above) at the rows of runs: decades from the hull and the
        widening per decade below (<= 0) and above (>= 0), the centre along the row's
        departure plus the spread, clipped at 0."""
        d, u = departures(np.array(self.hull, dtype=float), log_points(runs))
        centre = u @ np.asarray(self.centre, dtype=float)
        lo, hi = np.full(len(d), self.lo_rate), np.full(len(d), self.hi_rate)
        repeats = repeating(runs)
        for kind, rows in ((self.fresh, ~repeats), (self.repeated, repeats)):
            if kind is not None:
                centre = np.where(rows, u @ np.asarray(kind.centre, dtype=float), centre)
                lo, hi = np.where(rows, kind.lo_rate, lo), np.where(rows, kind.hi_rate, hi)
        return d, np.minimum(centre + lo, 0.0), np.maximum(centre + hi, 0.0)

    def widen(
        self, lo: np.ndarray, hi: np.ndarray, runs: pd.DataFrame
    ) -> tuple[np.ndarray, np.ndarray]:
        """The law's own interval (lo, hi) at the rows of `runs`, widened and clipped."""
        d, below, above = self.rates(runs)
        lo = np.asarray(lo, dtype=float) * np.exp(below * d)
        hi = np.asarray(hi, dtype=float) * np.exp(above * d)
        return self.clip(lo, hi)

    def clip(self, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The interval (lo, hi) clipped to physics: at most ln vocab when it is known."""
        if self.ceiling is None:
            return lo, hi
        return np.minimum(lo, self.ceiling), np.minimum(hi, self.ceiling)

    def to_dict(self) -> dict[str, Any]:
        return {
            "level": self.level,
            "lo_rate": self.lo_rate,
            "hi_rate": self.hi_rate,
            "hull": [list(v) for v in self.hull],
            "ceiling": self.ceiling,
            "n_scores": self.n_scores,
            "n_splits": self.n_splits,
            "caution": self.caution,
            "centre": list(self.centre),
            "fresh": None if self.fresh is None else self.fresh.to_dict(),
            "repeated": None if self.repeated is None else self.repeated.to_dict(),
        }

    @classmethod
    def from_dict(cls, record: Mapping[str, Any]) -> Calibration:
        centre = record.get("centre", (0.0, 0.0))  # stored before it: pooled rates
        return cls(
            float(record["level"]),
            float(record["lo_rate"]),
            float(record["hi_rate"]),
            tuple((float(a), float(b)) for a, b in record["hull"]),
            None if record["ceiling"] is None else float(record["ceiling"]),
            int(record["n_scores"]),
            int(record["n_splits"]),
            record.get("caution"),
            (float(centre[0]), float(centre[1])),
            KindRates.from_dict(record.get("fresh")),  # stored before them: one calibration
            KindRates.from_dict(record.get("repeated")),
        )

    def describe(self) -> str:
        """One line for a summary."""
        ceiling = "" if self.ceiling is None else f"; at most ln(vocab) = {self.ceiling:.3f}"
        n, d = self.centre
        return (
            f"intervals widened per decade outside the runs' hull by a centre of {n:+.4f} "
            f"along log N and {d:+.4f} along log D, spread {self.lo_rate:+.4f} below and "
            f"{self.hi_rate:+.4f} above it, in log loss (least absolute deviations on the "
            f"departure direction; Harrell-Davis {(1 - self.level) / 2:.0%}/"
            f"{(1 + self.level) / 2:.0%} quantiles of the rest; {self.n_scores} nested "
            f"errors, {self.n_splits} splits){ceiling}{self._kinds()}"
        )

    def _kinds(self) -> str:
        """The kinds of question calibrated on their own nested runs, for `describe`."""
        kinds = (("fresh", self.fresh), ("repeated", self.repeated))
        said = [rates.describe(name) for name, rates in kinds if rates is not None]
        if not said:
            return ""
        rest = "" if len(said) == 2 else " (the other kind, too few of its own: every score's)"
        return f"; each question by its kind instead: {'; '.join(said)}{rest}"


def quantile_rates(rate: np.ndarray, weight: np.ndarray, level: float) -> tuple[float, float]:
    """(lo_rate <= 0, hi_rate >= 0): the (1 -+ level)/2 weighted Harrell-Davis quantiles of
    scores per decade, clipped at 0."""
    lo = harrell_davis(rate, weight, (1 - level) / 2)
    hi = harrell_davis(rate, weight, (1 + level) / 2)
    return min(lo, 0.0), max(hi, 0.0)


TIE = 1e-9  # pull of the centre toward 0, per unit of the scores' weight (see `centre_rates`)


def centre_rates(nested: pd.DataFrame, level: float) -> tuple[np.ndarray, float, float]:
    """(centre, lo_rate, hi_rate): the nested scores regressed on their runs' departure
    directions (columns dir_N, dir_D) without intercept by weighted least absolute deviations,
    and the Harrell-Davis quantiles of what is left (module docstring). A vanishing pull toward
    0 picks, among centres that fit as well, the one that is 0 along any direction no held-out
    run left by."""
    score, weight = scores(nested)
    direction = nested[["dir_N", "dir_D"]].to_numpy(dtype=float)
    pull = np.full(2, TIE * weight.sum())
    centre = least_absolute(np.vstack([direction, np.eye(2)]), np.concatenate([score, [0, 0]]),
                            np.concatenate([weight, pull]))  # fmt: skip
    lo, hi = quantile_rates(score - direction @ centre, weight, level)
    return centre, lo, hi


def calibrate(
    nested: pd.DataFrame,
    runs: pd.DataFrame,
    level: float,
    vocab: float | None = None,
) -> Calibration:
    """The calibration of a form (or an average) from its nested backtest (module docstring).

    runs: the fitted runs (N, D, loss; U optional): their hull, and whether they bend where no
    form can (fits.bends). vocab: the runs' vocabulary size when known (the upper end is
    clipped at ln vocab)."""
    if nested.empty:
        raise FitError("no nested backtest could be fitted: too few runs to calibrate")
    centre, lo, hi = centre_rates(nested, level)
    n_splits = int(nested.groupby(["coord", "q"]).ngroups)
    ceiling = None if vocab is None else math.log(vocab)
    hull = tuple((float(a), float(b)) for a, b in hull_vertices(log_points(runs)))
    repeats = repeating(runs)
    if repeats.any():
        repeats = repeats[nested.row.to_numpy(dtype=int)]
    fresh, repeated = (own_kind(nested[rows], level) if repeats.any() else None
                       for rows in (~repeats, repeats))  # fmt: skip
    caution = "; ".join(c for c in (bend_caution(runs), few_scores_caution(nested, level)) if c)
    return Calibration(level, lo, hi, hull, ceiling, len(nested), n_splits, caution or None,
                       (float(centre[0]), float(centre[1])), fresh, repeated)  # fmt: skip


def min_kind_size(level: float) -> int:
    """The fewest scores (Kish effective size) a kind of question is calibrated on alone:
    p / (1 - p) at p = (1 + level) / 2, below which the split-conformal p quantile lies beyond
    the sample (19 at 90%)."""
    p = (1 + level) / 2
    return math.ceil(round(p / (1 - p), 9))


def effective_size(nested: pd.DataFrame) -> float:
    """The Kish effective size of nested runs weighted so that every split weighs the same."""
    return float((w := split_weights(nested)).sum() ** 2 / (w**2).sum())


def few_scores_caution(nested: pd.DataFrame, level: float) -> str | None:
    """Why the intervals beyond the runs may be too narrow (too few scores); None if enough."""
    if (size := effective_size(nested)) >= (needed := min_kind_size(level)):
        return None
    return (
        f"the intervals beyond the runs are calibrated on {len(nested)} nested errors "
        f"(effective size {size:.1f}), fewer than the {needed} that a {(1 + level) / 2:.0%} "
        "quantile needs to lie within them: beyond the runs they may be too narrow"
    )


def own_kind(nested: pd.DataFrame, level: float) -> KindRates | None:
    """A kind's own centre and spread from its nested runs, every split weighing the same
    within it; None when they are too few (`min_kind_size`)."""
    if nested.empty:
        return None
    if effective_size(nested) < min_kind_size(level):
        return None
    centre, lo, hi = centre_rates(nested, level)
    return KindRates((float(centre[0]), float(centre[1])), lo, hi, len(nested))
