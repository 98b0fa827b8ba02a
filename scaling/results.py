"""Answers of the prediction API: plain dataclasses that print well and serialise to dicts."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from fits import Fit
from fits.calibration import Calibration
from fits.noise import RunNoise


def fmt(value: float | None) -> str:
    """A number for people: 4 significant digits, scientific when very large or small."""
    if value is None:
        return "-"
    return f"{value:.4g}"


@dataclass(frozen=True)
class Prediction:
    """A predicted quantity with a two-sided interval at `level`, and the fit it came from."""

    quantity: str
    value: float
    lo: float
    hi: float
    level: float
    fit_id: str | None = None
    interval: str = "confidence"
    note: str = ""  # what the answer assumes that the runs contradict (repeated data, a bend)

    def __str__(self) -> str:
        caution = f"\n  caution: {self.note}" if self.note else ""
        return (
            f"{self.quantity} = {fmt(self.value)}  "
            f"[{fmt(self.lo)}, {fmt(self.hi)}] ({self.level:.0%} {self.interval} interval)"
            + caution
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ComputeOptimal:
    """Compute-optimal model size, tokens and loss at a compute budget C."""

    C: float
    N: Prediction
    D: Prediction
    loss: Prediction

    def allocation(self) -> tuple[str, str]:
        """N and D as shown: a caution D shares with N is said once, for N (--json keeps
        both whole)."""
        D = self.D
        if self.N.note and D.note.startswith(self.N.note):
            rest = D.note[len(self.N.note) :].lstrip("; ")
            D = replace(D, note="as for N_opt" + (f"; {rest}" if rest else ""))
        return str(self.N), str(D)

    def __str__(self) -> str:
        return "\n".join([f"compute C = {fmt(self.C)} FLOPs", *self.allocation(), str(self.loss)])

    def to_dict(self) -> dict[str, Any]:
        return {
            "C": self.C,
            "N": self.N.to_dict(),
            "D": self.D.to_dict(),
            "loss": self.loss.to_dict(),
        }


@dataclass(frozen=True)
class Crossover:
    """Where one architecture's compute-optimal frontier passes another's (if it does)."""

    arch_a: str
    arch_b: str
    C: Prediction | None
    N: Prediction | None
    D: Prediction | None
    better_below: str | None
    better_above: str | None
    fraction_crossing: float
    note: str

    def __str__(self) -> str:
        crossing = f"{self.fraction_crossing:.0%} of bootstrap pairs cross in range"
        if self.C is None:  # how sure "better throughout" is
            return f"{self.arch_a} vs {self.arch_b}: {self.note}; {crossing}"
        lines = [
            f"{self.arch_a} vs {self.arch_b}: {self.note}",
            str(self.C),
            str(self.N),
            str(self.D),
            f"{self.better_below} is better below, {self.better_above} above; {crossing}",
        ]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("C", "N", "D"):
            out[key] = None if getattr(self, key) is None else getattr(self, key).to_dict()
        return out


def covered(lo: pd.Series, hi: pd.Series, actual: pd.Series) -> pd.Series:
    """Whether each interval holds its run: only a finite interval does (an infinite end, from
    a law that overflows, says nothing of the run, so it cannot count as holding it)."""
    return np.isfinite(lo) & np.isfinite(hi) & (lo <= actual) & (actual <= hi)


@dataclass
class Backtest:
    """Predictions for held-out runs from a fit on the others, scored against what happened."""

    law: str
    holdout: str
    fraction: float
    level: float
    n_train: int
    frame: pd.DataFrame = field(repr=False)
    forms: pd.DataFrame | None = field(default=None, repr=False)

    @property
    def median_rel_error(self) -> float:
        return float(self.frame["rel_error"].abs().median())

    @property
    def max_rel_error(self) -> float:
        return float(self.frame["rel_error"].abs().max())

    @property
    def coverage(self) -> float:
        return float(self.frame["covered"].mean())

    @property
    def median_width(self) -> float:
        """Median interval width relative to the prediction."""
        return float(((self.frame.hi - self.frame.lo) / self.frame.predicted).median())

    @property
    def median_law_width(self) -> float:
        """The same for the law's own interval, before calibration."""
        return float(((self.frame.hi_law - self.frame.lo_law) / self.frame.predicted).median())

    @property
    def law_coverage(self) -> float:
        """Coverage of the law's own interval, before calibration."""
        f = self.frame
        return float(covered(f.lo_law, f.hi_law, f.actual).mean())

    @property
    def n_not_finite(self) -> int:
        """Held-out runs whose predicted loss is not finite (a law that overflows there)."""
        return int((~np.isfinite(self.frame.predicted.to_numpy(dtype=float))).sum())

    def __str__(self) -> str:
        infinite = self.n_not_finite
        return (
            f"backtest {self.law} ({self.holdout}, {self.fraction:.0%} held out): fitted on "
            f"{self.n_train} runs, predicted {len(self.frame)}"
            + (f" ({infinite} of them not finite: the law overflows there)" if infinite else "")
            + ": median |relative error| "
            f"{self.median_rel_error:.2%}, max {self.max_rel_error:.2%}, "
            f"{self.level:.0%} intervals cover {self.coverage:.0%} (median width "
            f"{self.median_width:.2%}; the law's own interval: {self.law_coverage:.0%}, "
            f"width {self.median_law_width:.2%})"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "law": self.law,
            "holdout": self.holdout,
            "fraction": self.fraction,
            "level": self.level,
            "n_train": self.n_train,
            "n_test": len(self.frame),
            "n_not_finite": self.n_not_finite,
            "median_rel_error": self.median_rel_error,
            "max_rel_error": self.max_rel_error,
            "coverage": self.coverage,
            "median_width": self.median_width,
            "law_coverage": self.law_coverage,
            "median_law_width": self.median_law_width,
            "forms": None if self.forms is None else self.forms.to_dict("records"),
            "runs": self.frame.to_dict("records"),
        }


@dataclass
class HparamBacktest:
    """An LR or batch-size law fitted on the smaller (N, D) groups, scored on the largest.

    Per held-out group (`frame`): the predicted optimum with its interval, the group's own
    optimum (vertex of its loss parabola), their ratio, and the loss penalty in % of using
    the prediction, read off that parabola and off the measured grid (fits.hparam_backtest).
    """

    law: str
    method: str
    formula: str
    fraction: float
    level: float
    n_train: int
    frame: pd.DataFrame = field(repr=False)

    def __str__(self) -> str:
        f = self.frame
        return (
            f"backtest {self.law} ({self.method}; {self.formula}): fitted on {self.n_train} "
            f"(N, D) groups, predicted the {len(f)} largest: ratio predicted/actual "
            f"{f.ratio.min():.3g}..{f.ratio.max():.3g}; loss penalty off the parabola "
            f"{_spread(f.penalty_pct)}, off the grid {_spread(f.grid_penalty_pct)}; "
            f"{self.level:.0%} intervals hold {int(f.covered.sum())} of {len(f)}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "law": self.law,
            "method": self.method,
            "formula": self.formula,
            "fraction": self.fraction,
            "level": self.level,
            "n_train": self.n_train,
            "n_test": len(self.frame),
            "groups": self.frame.to_dict("records"),
        }


def _spread(percent: pd.Series) -> str:
    """'median 0.1%, max 0.3%' over the finite values, '-' when there are none."""
    values = percent.dropna()
    return f"median {values.median():.2g}%, max {values.max():.2g}%" if len(values) else "-"


def shown_forms(forms: pd.DataFrame) -> pd.DataFrame:
    """A table of law forms (fits.auto: form, error, splits, weight, note) as text to show:
    errors in percent, weights to 3 places."""
    errors = [f"{e:.2%}" if pd.notna(e) else "-" for e in forms.error]
    note = forms.get("note", pd.Series("", index=forms.index))  # absent from older records
    return forms.assign(
        error=errors,
        splits=forms.splits.fillna(0).astype(int).astype(str),
        weight=[f"{w:.3f}" for w in forms.weight],
        note=note.fillna("").astype(str),
    )


# the forms table's columns that read from the left; its numbers read from the right
FORMS_TEXT = ("form", "note")
FORMS_HEADING = (
    "law forms: out-of-range error of nested backtests (median |log error|, every cut the form "
    "was backtested on: its splits) and stacking weight in the average (stacked on the largest "
    "cut along C, N and D, the nearest to a fit on all runs; forms that err in opposite "
    "directions share it):"
)


@dataclass
class FittedLaw:
    """A fit with its identity: which law, on which runs, stored under which id."""

    law: str
    model: Fit
    selection: dict[str, Any]
    fit_id: str | None = None
    table: pd.DataFrame | None = field(default=None, repr=False)
    residuals: RunNoise | None = field(default=None, repr=False)
    forms: pd.DataFrame | None = field(default=None, repr=False)
    calibration: Calibration | None = None

    def summary(self) -> str:
        head = f"{self.law} fit {self.fit_id or '(not stored)'} on {self.selection['n_runs']} runs"
        body = self.model.summary()
        if self.table is not None:
            body = (body + "\n" if body else "") + self.table.to_string(index=False)
        return "\n".join([head, body, *self.extrapolation_lines()])

    def extrapolation_lines(self) -> list[str]:
        """The forms' nested-backtest errors and the calibration, for the summary."""
        if self.forms is None:
            return []
        shown = shown_forms(self.forms)
        width = {c: max(len(c), *shown[c].str.len()) for c in shown.columns}

        def line(cells: dict[str, str]) -> str:
            aligned = [
                v.ljust(width[c]) if c in FORMS_TEXT else v.rjust(width[c])
                for c, v in cells.items()
            ]
            return "  " + " ".join(aligned).rstrip()

        table = [line({c: c for c in shown.columns})]
        table += [line(row) for row in shown.to_dict("records")]
        return [FORMS_HEADING, *table, *self.calibration_lines()]

    def calibration_lines(self) -> list[str]:
        """How the intervals are calibrated, any caution, and the run noise."""
        cal = self.calibration
        lines = []
        if cal is None:
            lines.append("intervals NOT calibrated: too few runs to backtest inside the data")
        else:
            lines.append(cal.describe())
            if cal.caution:
                lines.append(f"caution: {cal.caution}")
        if self.residuals is not None:
            lines.append(self.residuals.describe())
        return lines

    def __str__(self) -> str:
        return self.summary()
