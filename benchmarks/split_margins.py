"""Scoring nested errors beyond each split's own interval: measured, not adopted (4 Dec 2026).

The adopted calibration (fits.calibration) scores a nested held-out run's error beyond its
split's run scatter, and lays the rates on the full fit's own interval at a question, whose
bootstrap already holds the parameter uncertainty there: that uncertainty is counted twice.
The candidate here counts it once: each error is scored beyond the *split's* own interval at
the run (each form of positive cross-validated weight in the split refitted on the split's
training runs with a bootstrap of 200 draws, the same resamples for every form; the split's
average's draws, each times a resampled log residual of the split's average, their 5%/95%
quantiles), the same Harrell-Davis rates per
decade from the hull otherwise. `--shrink` also scales each split's bootstrap deviations (in
log loss) by sqrt(n_split / n), for the parameter uncertainty of the full fit's n runs.

Printed per case: coverage and median width of the 90% intervals, adopted against candidate,
and the candidate's rates. The single-form cases ("alone") fit one form, as
`Study.backtest("chinchilla")` does. Usage:

    python benchmarks/split_margins.py [--shrink | --mapped] [--cases NAME ...]

`--mapped` scores each nested error instead beyond the *full* fit's own interval at a point as
far outside the full fit's hull as the run was outside its split's, in the direction it left
(the full fit's parameter uncertainty at the split's distance, with no further nesting).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from extrapolation import CASES, LEVEL, forms_of, held_out, margin_rates, one_calibration
from machine import machine

from fits import LOSS_LAWS
from fits.auto import AutoFit, fit_auto, with_bootstrap
from fits.averaging import AveragedLaw, cross_weights, split_keys
from fits.bootstrap import observation_interval
from fits.calibration import departures, hull_distance, hull_vertices, log_points
from fits.extrapolation import nested_splits
from fits.prediction import own_interval

SPLIT_DRAWS = 200
ALONE = {"chinchilla-alone": "chinchilla", "kaplan-alone": "kaplan"}  # on epoch240-C, 300 draws


def split_margins(
    fitted: AutoFit, runs: pd.DataFrame, shrink: bool
) -> tuple[np.ndarray, np.ndarray]:
    """(below, above): log margins of each split's own interval at the average's nested
    held-out runs (rows of fitted.nested)."""
    nested = fitted.nested
    names = [c for c in nested.columns if c in LOSS_LAWS]
    full = {n: LOSS_LAWS[n](n_bootstrap=0, level=LEVEL, random_state=0).fit_frame(runs)
            for n in names}  # fmt: skip
    keys = split_keys(nested)
    trains = {(coord, q): train for coord, q, train, _ in nested_splits(runs)}
    below, above = np.zeros(len(nested)), np.zeros(len(nested))
    for split, w in cross_weights(nested, names, keys).items():
        mine = (keys == split).to_numpy()
        train = trains[split]
        test = runs.loc[nested.row.to_numpy(dtype=int)[mine]]
        models, mass = {}, {}
        for name, wk in zip(names, w, strict=True):
            if wk > 0:
                refit = full[name].quick_refit(train, force=True)
                params = {**refit.get_params(), "n_bootstrap": SPLIT_DRAWS}
                models[name], mass[name] = with_bootstrap(refit, type(refit)(**params), train), wk
        average = AveragedLaw.of(models, mass)
        residuals = np.log(train.loss.to_numpy()) - np.log(average.predict_frame(train))
        point = average.predict_frame(test)
        factor = math.sqrt(len(train) / len(runs)) if shrink else 1.0
        draws = point * (average.loss_draws(test) / point) ** factor
        lo, hi = observation_interval(draws, residuals, LEVEL, 0)
        below[mine] = np.maximum(np.log(point / np.ravel(lo)), 0.0)
        above[mine] = np.maximum(np.log(np.ravel(hi) / point), 0.0)
    return below, above


def mapped_margins(fitted: AutoFit, runs: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(below, above): log margins of the *full* fit's own interval at a point as far outside
    the full fit's hull as each nested held-out run was outside its split's (walked from the
    run along the direction it left the split's hull): the full fit's parameter uncertainty
    at the split's distance, without another level of nesting."""
    nested = fitted.nested.reset_index(drop=True)
    full = hull_vertices(log_points(runs))
    points = log_points(runs)
    trains = {(coord, q): train for coord, q, train, _ in nested_splits(runs)}
    mapped = points[nested.row.to_numpy(dtype=int)].copy()
    for (coord, q), split in nested.groupby(["coord", "q"]):
        vertices = hull_vertices(log_points(trains[(coord, q)]))
        for i in split.index[split.hull > 0]:
            x, d = mapped[i], float(nested.hull[i])
            u = departures(vertices, x)[1][0]
            lo, hi = 0.0, 1.0
            while hull_distance(full, x + hi * u)[0] < d:
                hi *= 2
            for _ in range(50):  # bisection: the distance from a convex hull grows along u
                mid = (lo + hi) / 2
                lo, hi = (mid, hi) if hull_distance(full, x + mid * u)[0] < d else (lo, mid)
            mapped[i] = x + hi * u
    asked = pd.DataFrame({"N": 10 ** mapped[:, 0], "D": 10 ** mapped[:, 1]})
    point, lo_own, hi_own = own_interval(fitted.model, fitted.residuals, asked, LEVEL, 0)
    return np.maximum(np.log(point / lo_own), 0.0), np.maximum(np.log(hi_own / point), 0.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shrink", action="store_true")
    parser.add_argument("--mapped", action="store_true", help="the full fit's margins instead")
    choices = [*CASES, *ALONE]
    parser.add_argument("--cases", nargs="*", default=choices, choices=choices)
    args = parser.parse_args()
    print(f"machine: {machine()}", flush=True)
    rows = []
    for case in args.cases:
        load, column, fraction = CASES["epoch240-C" if case in ALONE else case]
        names = [ALONE[case]] if case in ALONE else list(LOSS_LAWS)
        train, test = held_out(load(), column, fraction)
        t0 = time.perf_counter()
        fitted = fit_auto(train, forms_of(names), LEVEL, 300 if case in ALONE else 1000)
        point, lo, hi = fitted.interval(test, LEVEL)
        runs = train.reset_index(drop=True).assign(C=lambda r: 6.0 * r.N * r.D)
        if args.mapped:
            below, above = mapped_margins(fitted, runs)
        else:
            below, above = split_margins(fitted, runs, args.shrink)
        lo_rate, hi_rate = margin_rates(fitted.nested, below, above)
        assert fitted.calibration is not None
        pooled = one_calibration(fitted.calibration, lo_rate, hi_rate, (0.0, 0.0))
        candidate = replace(fitted, calibration=pooled)
        _, lo2, hi2 = candidate.interval(test, LEVEL)
        actual = test.loss.to_numpy()
        held = ((lo <= actual) & (actual <= hi)).sum(), ((lo2 <= actual) & (actual <= hi2)).sum()
        widths = np.median((hi - lo) / point), np.median((hi2 - lo2) / point)
        rows.append({
            "case": case,
            "covered: adopted / candidate": f"{held[0]} / {held[1]} of {len(test)}",
            "median width: adopted / candidate": f"{widths[0]:.2%} / {widths[1]:.2%}",
            "candidate rates": f"{lo_rate:+.4f} / {hi_rate:+.4f}",
            "s": f"{time.perf_counter() - t0:.0f}",
        })  # fmt: skip
        print(rows[-1], flush=True)
    how = "shrunk by sqrt(n_split / n)" if args.shrink else "as drawn"
    print(f"\n90% intervals; {'mapped margins' if args.mapped else f'split margins {how}'}")
    print(pd.DataFrame(rows).to_string(index=False))


if __name__ == "__main__":
    main()
