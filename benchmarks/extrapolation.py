"""Do the calibrated intervals of the default procedure hold the extrapolation error it makes?

For each published data set and holdout, the default loss-law procedure (`fits.auto.fit_auto`,
what `auto` runs: every form, nested backtests, stacking, calibration) is fitted on the
smaller runs only (its nested backtests and calibration see only those) and predicts the
held-out larger ones. Printed: median and max |relative error|, mean signed error, coverage
and median width of the 90% intervals, the largest distance of a held-out run from the
training runs' hull, each form's stacking weight, and the time. One set of defaults for every
data set. Usage:

    python benchmarks/extrapolation.py [--bootstrap 1000] [--cases NAME ...]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fits import LOSS_LAWS
from fits.auto import fit_auto
from scaling import datasets

LEVEL = 0.90


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


def held_out(data: pd.DataFrame, column: str, fraction: float) -> tuple[pd.DataFrame, ...]:
    """(train, test): the top `fraction` of runs by column (C = 6 N D) held out."""
    data = data.assign(C=6.0 * data.N * data.D)
    order = np.argsort(data[column].to_numpy(), kind="stable")
    n_test = max(1, round(fraction * len(data)))
    return data.iloc[order[:-n_test]], data.iloc[order[-n_test:]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--cases", nargs="*", default=list(CASES), choices=list(CASES))
    args = parser.parse_args()
    forms = {
        name: (lambda b, name=name: LOSS_LAWS[name](n_bootstrap=b, level=LEVEL, random_state=0))
        for name in LOSS_LAWS
    }
    rows = []
    for case in args.cases:
        load, column, fraction = CASES[case]
        train, test = held_out(load(), column, fraction)
        t0 = time.perf_counter()
        fitted = fit_auto(train, forms, LEVEL, args.bootstrap)
        point, lo, hi = fitted.interval(test, LEVEL)
        actual = test.loss.to_numpy()
        error = (point - actual) / actual
        distance = fitted.calibration.distance(test) if fitted.calibration else np.nan
        weights = ", ".join(f"{r.form} {r.weight:.2f}" for r in fitted.forms.itertuples()
                            if r.weight > 0)  # fmt: skip
        rows.append({
            "case": case,
            "train/test": f"{len(train)}/{len(test)}",
            "median err": f"{np.median(np.abs(error)):.2%}",
            "max err": f"{np.abs(error).max():.2%}",
            "mean signed": f"{error.mean():+.2%}",
            "coverage": f"{((lo <= actual) & (actual <= hi)).mean():.0%}",
            "median width": f"{np.median((hi - lo) / point):.2%}",
            "max distance": f"{np.max(distance):.2f}",
            "weights": weights,
            "s": f"{time.perf_counter() - t0:.0f}",
        })  # fmt: skip
        print(f"{case}: {fitted.calibration.describe() if fitted.calibration else 'uncalibrated'}")
        print(fitted.forms.to_string(index=False))
        print(rows[-1], flush=True)
    print(f"\n90% intervals, {args.bootstrap} resamples; distance in decades from the hull")
    print(pd.DataFrame(rows).to_string(index=False))


if __name__ == "__main__":
    main()
