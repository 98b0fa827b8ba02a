"""Do the calibrated intervals hold the extrapolation error they really make?

For each published data set and holdout, `Study.backtest("auto")` fits on the smaller runs
(its nested backtests and calibration see only those), predicts the held-out larger ones, and
this prints the median and max |relative error|, the coverage of the calibrated 90% intervals
beside the law's own (bootstrap + run scatter) ones, and the median width of each. One set of
defaults for every data set. Usage:

    python benchmarks/extrapolation.py [--bootstrap 1000]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scaling import datasets
from scaling.study import Study


def step_law_points() -> pd.DataFrame:
    """Step Law's best smoothed loss per (N, D): 17 points."""
    runs = datasets.load("step-law")
    best = runs.groupby(["N", "D"], as_index=False)["smooth loss"].min()
    frame = best.rename(columns={"smooth loss": "loss"}).astype(float)
    return frame.assign(C=6.0 * frame.N * frame.D)


CASES = [
    ("Epoch 240", datasets.epoch_240, "top-compute"),
    ("Epoch 245 (outliers kept)", lambda: datasets.load("chinchilla-epoch"), "top-compute"),
    ("Epoch 240", datasets.epoch_240, "top-params"),
    ("Epoch 240", datasets.epoch_240, "top-tokens"),
    ("Step Law, 17 (N, D) optima", step_law_points, "top-compute"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bootstrap", type=int, default=1000)
    args = parser.parse_args()
    rows = []
    for name, load, holdout in CASES:
        t0 = time.perf_counter()
        study = Study.from_frame(load(), n_bootstrap=args.bootstrap)
        result = study.backtest("auto", holdout=holdout, fraction=0.25)
        rows.append(
            {
                "data": name,
                "holdout": holdout,
                "train/test": f"{result.n_train}/{len(result.frame)}",
                "median err": f"{result.median_rel_error:.2%}",
                "max err": f"{result.max_rel_error:.2%}",
                "coverage": f"{result.coverage:.0%}",
                "law's own": f"{result.law_coverage:.0%}",
                "median width": f"{result.median_width:.2%}",
                "law's own width": f"{result.median_law_width:.2%}",
                "max distance": f"{result.frame.distance.max():.2f}",
                "s": f"{time.perf_counter() - t0:.1f}",
            }
        )
        print(f"{name}, {holdout}: forms {result.forms.to_dict('records')}", flush=True)
    print(f"\n90% intervals, 25% held out, {args.bootstrap} resamples; distance in decades")
    print(pd.DataFrame(rows).to_string(index=False))


if __name__ == "__main__":
    main()
