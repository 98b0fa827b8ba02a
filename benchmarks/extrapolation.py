"""Do the calibrated intervals of the default procedure hold the extrapolation error it makes?

For each published data set and holdout, the default loss-law procedure (`fits.auto.fit_auto`,
what `auto` runs: every form, nested backtests, stacking, calibration) is fitted on the
smaller runs only (its nested backtests and calibration see only those) and predicts the
held-out larger ones. Printed: median and max |relative error|, mean signed error, coverage
and median width of the 90% intervals, the largest distance of a held-out run from the
training runs' hull, each form's stacking weight, and the time. One set of defaults for every
data set. "oracle width": the narrowest band of one relative half-width about the point that
covers 90% (and 85%) of the held-out runs, read off their own errors (2 x that quantile of
|log error|): not a method, a floor on what any interval about this point with a
constant relative width needs to cover them.

Beside the adopted rule, one measured and not adopted ("own-interval scores"): each nested
held-out run's error is scored beyond the fitted average's own interval at that run (its
bootstrap draws times a run residual) instead of beyond the split's run scatter, so that
the parameter uncertainty the own interval already holds is not counted again in the rate;
the rates are the same Harrell-Davis quantiles per decade from the hull, laid on the same own
interval. The own interval at a training run is narrower than the split's would be (the run
was in the fit), so these scores are if anything too large. Usage:

    python benchmarks/extrapolation.py [--bootstrap 1000] [--cases NAME ...] [--by-cut]

--quadrature also prints the candidate *own interval and widening in quadrature* (docs/laws.md):
the own half-width and the calibration's widening added as independent errors, on each side
about the point, for the average and (with --alone) every form.

--largest-calibration also prints the candidate *Calibration on the largest cuts*
(docs/laws-notebook.md): the calibration's centre and rates from the average's backtest rows
in the largest cut along each coordinate alone, the point and the hull unchanged.

--bottom holds out each case's bottom fraction instead of its top: the questions leave the
runs toward fewer C, N or D, which no nested split does, so the calibration's centre there
is the opposite of the one it learnt (its linear-centre assumption, fits.calibration).

--by-cut also prints each form's error alone and the average's stacked on each cut level of
the nested splits (50%, 65%, 80%) alone. --alone also fits every form by itself through the
same procedure (its own nested backtests and calibration: what `--law NAME` gives) and prints
its coverage and width on the same held-out runs: a calibration honest only for the average
would show here.

--runs also prints every held-out run: its N, D (and U with its epochs D/U), loss, the point
and interval, the signed error and whether it is covered, worst first: which runs make a
case's largest errors.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from machine import machine

from fits import LOSS_LAWS
from fits.auto import AutoFit, fit_auto
from fits.averaging import largest_cuts, split_weights, stack
from fits.calibration import (
    Calibration,
    centre_rates,
    departures,
    log_points,
    per_decade,
    quantile_rates,
)
from fits.errors import FitError
from fits.laws import LossLaw
from fits.prediction import falling_in_tokens, own_interval, question_frame
from scaling import datasets

LEVEL = 0.90


def forms_of(names: Iterable[str] = tuple(LOSS_LAWS)) -> dict[str, Callable[[int], LossLaw]]:
    """The loss-law forms `names` (every registered one by default) as fit_auto takes them:
    each made with a number of resamples, at the benchmarks' level and seed."""

    def make(name: str) -> Callable[[int], LossLaw]:
        return lambda b: LOSS_LAWS[name](n_bootstrap=b, level=LEVEL, random_state=0)

    return {name: make(name) for name in names}


def one_calibration(
    cal: Calibration, lo_rate: float, hi_rate: float, centre: tuple[float, float]
) -> Calibration:
    """`cal` with a candidate's rates and centre for every question, as the candidates measured
    before questions were calibrated by kind (fresh or repeated tokens) were: no kinds."""
    return replace(cal, lo_rate=lo_rate, hi_rate=hi_rate, centre=centre, fresh=None,
                   repeated=None)  # fmt: skip


def step_law_points() -> pd.DataFrame:
    """Step Law's best smoothed loss per (N, D): 17 points."""
    runs = datasets.load("step-law")
    best = runs.groupby(["N", "D"], as_index=False)["smooth loss"].min()
    return best.rename(columns={"smooth loss": "loss"}).astype(float)


CASES = {  # name: (data, held-out column, fraction)
    "epoch240-C": (datasets.epoch_240, "C", 0.25),
    "epoch245-C": (lambda: datasets.load("chinchilla-epoch"), "C", 0.25),
    "epoch240-N": (datasets.epoch_240, "N", 0.25),
    "epoch240-D": (datasets.epoch_240, "D", 0.25),
    "steplaw-C": (step_law_points, "C", 0.25),
    "farseer-C": (lambda: datasets.load("farseer"), "C", 0.10),
    "data-constrained-C": (lambda: datasets.load("data-constrained"), "C", 0.10),
}


def held_out_runs(test: pd.DataFrame, point: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> str:
    """The held-out runs with their answers, largest |error| first."""
    table = test[[c for c in ("N", "D", "U") if c in test]].copy()
    if "U" in table:
        table["epochs"] = (table.D / table.U).round(1)
    actual = test.loss.to_numpy()
    table = table.assign(
        loss=actual,
        point=point,
        lo=lo,
        hi=hi,
        error=(point - actual) / actual,
        covered=(lo <= actual) & (actual <= hi),
    )
    table = table.iloc[np.argsort(-np.abs(table.error.to_numpy()), kind="stable")]
    return table.to_string(index=False, float_format=lambda v: f"{v:.4g}",
                           formatters={"error": "{:+.2%}".format})  # fmt: skip


def held_out(
    data: pd.DataFrame, column: str, fraction: float, bottom: bool = False
) -> tuple[pd.DataFrame, ...]:
    """(train, test): the top (or, with `bottom`, the bottom) `fraction` of runs by column
    (C = 6 N D) held out."""
    data = data.assign(C=6.0 * data.N * data.D)
    order = np.argsort(data[column].to_numpy(), kind="stable")
    n_test = max(1, round(fraction * len(data)))
    if bottom:
        return data.iloc[order[n_test:]], data.iloc[order[:n_test]]
    return data.iloc[order[:-n_test]], data.iloc[order[-n_test:]]


def own_interval_rates(fitted: AutoFit, train: pd.DataFrame) -> tuple[float, float]:
    """(lo_rate, hi_rate) from the nested errors scored beyond the average's own interval."""
    nested = fitted.nested
    runs = train.reset_index(drop=True)
    point, lo, hi = own_interval(fitted.model, fitted.residuals, runs, LEVEL, 0)
    rows = nested.row.to_numpy(dtype=int)
    return margin_rates(nested, np.log(point / lo)[rows], np.log(hi / point)[rows])


def margin_rates(nested: pd.DataFrame, below: np.ndarray, above: np.ndarray) -> tuple[float, float]:
    """(lo_rate, hi_rate) of the nested errors scored beyond margins instead of as shifts (the
    rules measured and not adopted): sign(e) max(|e| - margin, 0) per decade from the hull,
    the margin `above` for an error up and `below` for one down (log loss, per row)."""
    e = nested.log_error.to_numpy(dtype=float)
    excess = np.where(e > 0, np.maximum(e - above, 0.0), np.minimum(e + below, 0.0))
    return quantile_rates(*per_decade(nested, excess), LEVEL)


def by_cut(fitted: AutoFit, train: pd.DataFrame, test: pd.DataFrame) -> str:
    """Median error on the held-out runs of each form alone (fitted on all training runs) and
    of their average stacked on one cut level of the nested splits at a time: the smaller the
    cut, the fewer runs each form was scored as fitted on (the training-size bias the adopted
    stacking on the largest cuts avoids). A form with no weight on the largest cuts was not
    backtested on the smaller ones (fits.auto.backtest_forms) and is stacked on those without
    it."""
    nested = fitted.nested
    names = [c for c in nested.columns if c in LOSS_LAWS]
    predicted = {n: LOSS_LAWS[n](n_bootstrap=0, level=LEVEL, random_state=0, force=True)
                 .fit_frame(train).predict_frame(test) for n in names}  # fmt: skip
    actual = test.loss.to_numpy()

    def error(log_point: np.ndarray) -> str:
        return f"{np.median(np.abs(np.exp(log_point) / actual - 1)):.2%}"

    parts = [f"{n} alone {error(np.log(p))}" for n, p in predicted.items()]
    for q in sorted(nested.q.unique()):
        rows = (nested.q == q).to_numpy()
        backtested = [n for n in names if nested.loc[rows, n].notna().all()]  # light: largest
        errors = nested[backtested].to_numpy(dtype=float)[rows]
        w = stack(errors, split_weights(nested[rows]))
        log_point = sum(wk * np.log(predicted[n]) for wk, n in zip(w, backtested, strict=True))
        parts.append(f"stacked on the {q:.0%} cuts {error(np.asarray(log_point))}")
    return "; ".join(parts)


def quadrature_interval(
    fitted: AutoFit, runs: pd.DataFrame, combine=np.hypot
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The candidate's interval at the rows of runs: the own half-width a and the widening b
    (log loss) as combine(a, b) on each side about the point, then the adopted clipping and
    fewer-tokens bound (from the adopted upper ends). combine=np.add gives the adopted one."""
    point, lo, hi = own_interval(fitted.model, fitted.residuals, runs, LEVEL, 0)
    cal = fitted.calibration
    if cal is None:
        return point, lo, hi
    asked = question_frame(runs.N, runs.D, runs.get("U"))
    d, below, above = cal.rates(asked)
    lo = point * np.exp(-combine(np.log(point / lo).clip(min=0), -below * d))
    hi = point * np.exp(combine(np.log(hi / point).clip(min=0), above * d))
    lo, hi = cal.clip(lo, hi)
    if isinstance(fitted.model, LossLaw):
        hi = falling_in_tokens(fitted.model, cal, asked, fitted.residuals, 0, hi)
    return point, lo, hi


def covered(lo: np.ndarray, hi: np.ndarray, actual: np.ndarray) -> int:
    return int(((lo <= actual) & (actual <= hi)).sum())


def quadrature_columns(fitted: AutoFit, test: pd.DataFrame) -> dict[str, str]:
    """The candidate's coverage and median width on the held-out runs, as table columns."""
    point, lo, hi = quadrature_interval(fitted, test)
    return {
        "quadrature cov": f"{covered(lo, hi, test.loss.to_numpy()) / len(test):.0%}",
        "quadrature width": f"{np.median((hi - lo) / point):.2%}",
    }


def largest_calibration_columns(fitted: AutoFit, test: pd.DataFrame) -> dict[str, str]:
    """The candidate *Calibration on the largest cuts* (docs/laws-notebook.md): the centre and
    rates of the average's backtest rows in the largest cut along each coordinate alone, the
    hull and the point unchanged; its coverage and median width on the held-out runs."""
    cal, backtest = fitted.calibration, fitted.nested
    if cal is None:
        return {"largest-cut cov": "-", "largest-cut width": "-"}
    centre, lo_rate, hi_rate = centre_rates(backtest, LEVEL)  # the adopted rates, rebuilt
    assert (lo_rate, hi_rate) == (cal.lo_rate, cal.hi_rate)
    centre, lo_rate, hi_rate = centre_rates(backtest[largest_cuts(backtest)], LEVEL)
    candidate = one_calibration(cal, lo_rate, hi_rate, (float(centre[0]), float(centre[1])))
    point, lo, hi = replace(fitted, calibration=candidate).interval(test, LEVEL)
    return {
        "largest-cut cov": f"{covered(lo, hi, test.loss.to_numpy()) / len(test):.0%}",
        "largest-cut width": f"{np.median((hi - lo) / point):.2%}",
        "largest-cut rates": f"{lo_rate:+.4f}/{hi_rate:+.4f} (every cut {cal.lo_rate:+.4f}/"
        f"{cal.hi_rate:+.4f})",
    }


def centred_error(fitted: AutoFit, point: np.ndarray, test: pd.DataFrame) -> float:
    """Median |relative error| of the point moved to the calibration's centre,
    point x e^(centre . u d) (the candidate *The point at the centre*, docs/laws.md)."""
    cal, centred = fitted.calibration, point
    if cal is not None:
        d, u = departures(np.array(cal.hull, dtype=float), log_points(test))
        centred = point * np.exp(u @ np.asarray(cal.centre) * d)
    return float(np.median(np.abs(centred / test.loss.to_numpy() - 1)))


def alone(
    forms: dict, train: pd.DataFrame, test: pd.DataFrame, n_bootstrap: int, centred: bool,
    quadrature: bool,
) -> str:  # fmt: skip
    """Each form fitted and calibrated by itself: covered / held out, median width, error
    (and, with `centred`, the error of the point at the calibration's centre; with
    `quadrature`, the candidate's coverage and width)."""
    actual, parts = test.loss.to_numpy(), []
    for name, make in forms.items():
        try:
            fitted = fit_auto(train, {name: make}, LEVEL, n_bootstrap)
        except FitError as exc:
            parts.append(f"{name} refused ({str(exc)[:60]})")
            continue
        point, lo, hi = fitted.interval(test, LEVEL)
        width = np.median((hi - lo) / point)
        error = np.median(np.abs(point / actual - 1))
        parts.append(
            f"{name} {covered(lo, hi, actual)}/{len(test)} at {width:.2%} (error {error:.2%})"
        )
        if quadrature:
            _, q_lo, q_hi = quadrature_interval(fitted, test)
            q_width = np.median((q_hi - q_lo) / point)
            parts[-1] += f" [quadrature {covered(q_lo, q_hi, actual)}/{len(test)} at {q_width:.2%}]"
        if centred:
            parts[-1] += f" [centred error {centred_error(fitted, point, test):.2%}]"
    return "; ".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--cases", nargs="*", default=list(CASES), choices=list(CASES))
    parser.add_argument("--by-cut", action="store_true", help="errors stacked per cut level")
    parser.add_argument("--alone", action="store_true", help="every form by itself too")
    parser.add_argument(
        "--centred",
        action="store_true",
        help="the error of the point at the calibration's centre too",
    )
    parser.add_argument(
        "--quadrature",
        action="store_true",
        help="the candidate with own half-width and widening in quadrature too",
    )
    parser.add_argument(
        "--largest-calibration",
        action="store_true",
        help="the candidate calibrated on the largest cuts alone too",
    )
    parser.add_argument("--runs", action="store_true", help="every held-out run, worst first")
    parser.add_argument(
        "--bottom",
        action="store_true",
        help="hold out the smallest runs instead: questions toward fewer C, N or D",
    )
    args = parser.parse_args()
    print(f"machine: {machine()}", flush=True)
    forms = forms_of()
    rows = []
    for case in args.cases:
        load, column, fraction = CASES[case]
        train, test = held_out(load(), column, fraction, args.bottom)
        t0 = time.perf_counter()
        fitted = fit_auto(train, forms, LEVEL, args.bootstrap)
        point, lo, hi = fitted.interval(test, LEVEL)
        actual = test.loss.to_numpy()
        error = (point - actual) / actual
        log_error = np.abs(np.log(point / actual))
        distance = fitted.calibration.distance(test) if fitted.calibration else np.nan
        _, own_lo, own_hi = own_interval(fitted.model, fitted.residuals, test, LEVEL, 0)
        alt = (own_lo, own_hi)
        if fitted.calibration is not None:
            lo_rate, hi_rate = own_interval_rates(fitted, train)
            cal = one_calibration(fitted.calibration, lo_rate, hi_rate, (0.0, 0.0))
            alt = cal.widen(own_lo, own_hi, test)
        weights = ", ".join(f"{r.form} {r.weight:.2f}" for r in fitted.forms.itertuples()
                            if r.weight > 0)  # fmt: skip
        candidates = quadrature_columns(fitted, test) if args.quadrature else {}
        if args.largest_calibration:
            candidates.update(largest_calibration_columns(fitted, test))
        rows.append({
            "case": case,
            "train/test": f"{len(train)}/{len(test)}",
            "median err": f"{np.median(np.abs(error)):.2%}",
            **({"centred err": f"{centred_error(fitted, point, test):.2%}"} if args.centred
               else {}),
            "max err": f"{np.abs(error).max():.2%}",
            "mean signed": f"{error.mean():+.2%}",
            "coverage": f"{((lo <= actual) & (actual <= hi)).mean():.0%}",
            "median width": f"{np.median((hi - lo) / point):.2%}",
            "oracle width 90/85%": "/".join(f"{2 * np.quantile(log_error, q):.2%}"
                                            for q in (LEVEL, 0.85)),
            **candidates,
            "own-scores cov": f"{((alt[0] <= actual) & (actual <= alt[1])).mean():.0%}",
            "own-scores width": f"{np.median((alt[1] - alt[0]) / point):.2%}",
            "max distance": f"{np.max(distance):.2f}",
            "weights": weights,
            "s": f"{time.perf_counter() - t0:.0f}",
        })  # fmt: skip
        print(f"{case}: {fitted.calibration.describe() if fitted.calibration else 'uncalibrated'}")
        print(fitted.forms.to_string(index=False))
        print(rows[-1], flush=True)
        if args.runs:
            print(f"{case} runs:\n{held_out_runs(test, point, lo, hi)}", flush=True)
        if args.by_cut:
            print(f"{case} by cut: {by_cut(fitted, train, test)}", flush=True)
        if args.alone:
            fits_alone = alone(forms, train, test, args.bootstrap, args.centred, args.quadrature)
            print(f"{case} alone: {fits_alone}", flush=True)
    print(f"\n90% intervals, {args.bootstrap} resamples; distance in decades from the hull")
    print(pd.DataFrame(rows).to_string(index=False))


if __name__ == "__main__":
    main()
