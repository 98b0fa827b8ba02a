"""The default loss-law procedure (`auto`): every form, backtested inside the runs, averaged.

1. Fit every candidate form on all runs (no bootstrap); a form the runs cannot identify is
   left out with its one-line reason. With two forms or more, runs that are gross outliers
   under every form (fits.noise.gross_outliers) are set aside and the forms fitted again
   without them (from their optima, `fit_forms`), and the runs left are screened again
   until a pass sets aside none (outliers side by side mask each other) or no form would fit
   without its runs; every step below runs without them, and only the run noise keeps them.
2. Nested backtests of each form (fits.extrapolation.nested_backtest): refit below cuts in C,
   N and D, score the runs above; the largest cuts first, the smaller ones only for the forms
   that get weight there (backtest_forms).
3. Stacking weights on the splits every form completed, on the largest cut along each
   coordinate (fits.averaging); a form under 1% is left out.
4. Calibration of the average on the shifts of its own cross-validated nested predictions
   (fits.calibration).
5. The forms of positive weight get the bootstrap; the average of them is the law.

A prediction interval at a question is the average's own: its bootstrap draws (draw i of the
average is the average of the forms' draws i, each fitted on the same resample of the runs)
times a resampled residual of the runs nearest the question (fits.noise); then widened by the
average's calibration: the rates per decade outside the runs' hull measured on the shifts of
the average's own cross-validated nested predictions (fits.calibration). Stacking makes one
prediction of the forms, so that prediction's extrapolation error is what is calibrated, not
each form's alone; the forms' disagreement enters there, as the errors of the average it
causes on the nested splits, and is not counted a second time as a mixture of the forms (the
stacking weights minimise the absolute error of the log-linear average; they are not the
probabilities of a mixture). Clipped to physics (at most ln vocab when the vocabulary is
known). One procedure with one set of defaults for every data set.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial

import numpy as np
import pandas as pd

from fits.averaging import AveragedLaw, average, in_data_errors, largest_of, stacking_weights
from fits.calibration import Calibration, calibrate
from fits.errors import FitError, each_reason_once
from fits.extrapolation import (
    COORDS,
    QUANTILES,
    nested_backtests,
    nested_splits,
    out_of_range_error,
)
from fits.gridfit import GridLaw
from fits.laws import LossLaw, refit_predict
from fits.noise import RunNoise, gross_outliers, places
from fits.prediction import run_interval

LIGHT_NOTE = "no weight on the largest cuts: its smaller cuts were not fitted"
MakeLaw = Callable[[int], LossLaw]
"""A form's constructor given its number of bootstrap resamples."""


@dataclass(frozen=True)
class AutoFit:
    """The averaged law, the forms' table (form, error, splits, weight, note), the
    calibration (None when no split could be backtested), the average's run noise, and
    the average's nested backtest the calibration was measured on (empty when none)."""

    model: AveragedLaw
    forms: pd.DataFrame
    calibration: Calibration | None
    residuals: RunNoise
    nested: pd.DataFrame = field(default_factory=pd.DataFrame)

    def interval(
        self, runs: pd.DataFrame, level: float, seed: int = 0
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Point loss and its prediction interval at the rows of runs (fits.prediction)."""
        return run_interval(self.model, self.residuals, self.calibration, runs, level, seed)


def with_bootstrap(fitted: LossLaw, fresh: LossLaw, runs: pd.DataFrame) -> LossLaw:
    """`fresh` (the form configured with its resamples) fitted on the runs `fitted` was fitted
    on without them: a grid law adds the bootstrap to that fit instead of repeating its grid
    search; any other law is fitted again."""
    same = {**fitted.get_params(), "n_bootstrap": fresh.n_bootstrap} == fresh.get_params()
    if isinstance(fitted, GridLaw) and type(fresh) is type(fitted) and same:
        return fitted._with_bootstrap(runs, fresh.n_bootstrap)
    return fresh.fit_frame(runs)


def fit_forms(
    runs: pd.DataFrame, forms: Mapping[str, MakeLaw], previous: Mapping[str, LossLaw] | None = None
) -> tuple[dict[str, LossLaw], dict[str, str]]:
    """Every form fitted on runs without the bootstrap, and why each that does not fit fails;
    refused when none fits.

    A form fitted in `previous` (the screen's last pass, on these runs and the ones it set
    aside) is refitted from that fit's local optima (`quick_refit`) instead of by its whole
    grid search again: a run set aside is a run of weight 0, as a third of the runs are in
    each bootstrap resample, whose optimum lies in those basins (fits.gridfit). A form
    `previous` refused gets its whole grid search."""
    warm = previous or {}
    fitted: dict[str, LossLaw] = {}
    notes: dict[str, str] = {}
    for name, make in forms.items():
        try:
            fitted[name] = warm[name].quick_refit(runs) if name in warm else make(0).fit_frame(runs)
        except FitError as exc:
            notes[name] = str(exc)
    if not fitted:
        raise FitError(f"no law form fits ({each_reason_once(notes.items())})")
    return fitted, notes


def outliers_under(fitted: Mapping[str, LossLaw], runs: pd.DataFrame) -> np.ndarray:
    """One pass of the screen: the runs that are gross outliers under every fitted form."""
    log_loss = np.log(runs.loss.to_numpy())
    return gross_outliers([log_loss - np.log(m.predict_frame(runs)) for m in fitted.values()],
                          places(runs))  # fmt: skip


def fit_screened(
    runs: pd.DataFrame, forms: Mapping[str, MakeLaw]
) -> tuple[dict[str, LossLaw], dict[str, str], np.ndarray, np.ndarray]:
    """Every form fitted on the runs that are not gross outliers (fits.noise.gross_outliers),
    with the mask of those set aside and the mask of those flagged but kept: screened again on
    the runs left after each pass sets some aside and the forms are refitted, until a pass
    sets aside none, because outliers beside each other inflate each other's neighbourhood MAD
    and mask one another. A pass without whose runs no form fits (the only run of a size) is
    not taken: the screen protects the fit and must not make it impossible, and its runs are
    the ones flagged but kept."""
    aside = np.zeros(len(runs), dtype=bool)
    fitted, notes = fit_forms(runs, forms)
    while True:
        new = outliers_under(fitted, runs[~aside].reset_index(drop=True))
        wider = aside.copy()
        wider[np.flatnonzero(~aside)[new]] = True
        if not new.any():
            return fitted, notes, aside, wider & ~aside
        try:
            fitted, notes = fit_forms(runs[~wider].reset_index(drop=True), forms, fitted)
        except FitError:
            return fitted, notes, aside, wider & ~aside
        aside = wider


def backtest_forms(
    runs: pd.DataFrame, fitted: Mapping[str, LossLaw], level: float, quantiles: tuple[float, ...]
) -> tuple[dict[str, pd.DataFrame], set[str]]:
    """Every form's nested backtest (fits.extrapolation), and the `light` forms backtested on
    the largest cuts alone. The weights are stacked on the largest cuts only and a split's
    cross weights on the largest cuts of the others (fits.averaging), so a form of weight 0
    there enters every smaller cut at weight 0: fitting its smaller cuts could not move the
    average, and costs most for the costliest form (Farseer's six smaller cuts on Epoch's 245
    points, where its weight is under 1%: about 5 s of two cores). So the largest cuts come
    first; the smaller ones are fitted for each form that gets weight, again after a form
    with weight fails one of them and is left out (the weights then change). When no form
    completes a coordinate's largest cut, every form is backtested on every cut."""

    def backtest(names: list[str], only: set[tuple[str, float]]) -> dict[str, pd.DataFrame]:
        costliest_first = sorted(names, key=lambda name: -len(fitted[name].param_names))
        fit_predicts = {name: partial(refit_predict, fitted[name]) for name in costliest_first}
        n_jobs = next(iter(fitted.values())).n_jobs
        done = nested_backtests(runs, fit_predicts, level, quantiles, n_jobs, only)
        return {name: done[name] for name in names}

    cuts = {split[:2] for split in nested_splits(runs, quantiles)}
    largest = largest_of(cuts)
    smaller = cuts - largest
    nested = backtest(list(fitted), largest)
    light = set(fitted)

    def add_smaller(names: list[str]) -> None:
        light.difference_update(names)
        for name, rest in (backtest(names, smaller) if smaller else {}).items():
            if rest.empty:  # concatenated, an empty frame would turn every column to object
                continue
            old = nested[name]
            nested[name] = rest if old.empty else in_split_order(pd.concat([old, rest]))

    completed = {(c, q) for f in nested.values() for c, q in zip(f.coord, f.q, strict=True)}
    if completed != largest:
        add_smaller(list(fitted))
        return nested, light
    while heavy := [
        name for name, w in stacking_weights(nested, light)[0].items() if w > 0 and name in light
    ]:
        add_smaller(heavy)
    return nested, light


def in_split_order(frame: pd.DataFrame) -> pd.DataFrame:
    """A nested backtest's rows in nested_splits' order (by coordinate, then cut), each split's
    rows as they were."""
    order = frame.coord.map({c: i for i, c in enumerate(COORDS)})
    ordered = frame.assign(position=order).sort_values(["position", "q"], kind="stable")
    return ordered.drop(columns="position").reset_index(drop=True)


def fit_auto(
    runs: pd.DataFrame,
    forms: Mapping[str, MakeLaw],
    level: float,
    n_bootstrap: int,
    vocab: float | None = None,
    quantiles: tuple[float, ...] = QUANTILES,
) -> AutoFit:
    """The default procedure on runs (columns N, D, loss[, U]); see the module docstring."""
    every = runs.reset_index(drop=True)
    every = every.assign(C=6.0 * every.N.to_numpy(dtype=float) * every.D.to_numpy(dtype=float))
    fitted, notes, aside, kept = fit_screened(every, forms)
    log_every = np.log(every.loss.to_numpy())
    runs = every[~aside].reset_index(drop=True)
    nested, light = backtest_forms(runs, fitted, level, quantiles)
    weights, backtest, left = average(nested, light)
    if not backtest.empty:
        log_loss = np.log(runs.loss.to_numpy())
        in_data = {k: log_loss - np.log(fitted[k].predict_frame(runs)) for k in weights}
        backtest["in_data"] = in_data_errors(backtest, list(weights), in_data)
    notes.update(left)
    notes.update({name: LIGHT_NOTE for name in light if name in weights and name not in notes})
    if not weights:  # nothing could be backtested: the first form that fits, uncalibrated
        weights = {next(iter(fitted)): 1.0}
    calibration = None if backtest.empty else calibrate(backtest, runs, level, vocab)
    models = {k: with_bootstrap(fitted[k], forms[k](n_bootstrap), runs) if w > 0 else fitted[k]
              for k, w in weights.items()}  # fmt: skip
    model = AveragedLaw.of(models, weights)
    residuals = RunNoise.of(every, log_every - np.log(model.predict_frame(every)), aside, kept)
    table = []
    for name in forms:
        frame = nested.get(name)
        common = frame is not None and not frame.empty and name in weights
        table.append({
            "form": name,
            "error": out_of_range_error(frame) if common else math.nan,
            "splits": 0 if frame is None or frame.empty else frame.groupby(["coord", "q"]).ngroups,
            "weight": weights.get(name, 0.0),
            "note": notes.get(name, ""),
        })  # fmt: skip
    return AutoFit(model, pd.DataFrame(table), calibration, residuals, backtest)
