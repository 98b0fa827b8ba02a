"""Where a fit's calibration comes from: the nested splits' scores, split by split.

`auto` widens an interval outside the runs by rates per decade learnt from the shifts of its
nested predictions (fits.calibration): one spread for every question of the fit. This prints,
for `auto` fitted on all of a shipped data set's runs (as `scaling fit auto` does), each nested
split's scores (shift per decade from its training runs' hull: median and 5%/95% quantiles),
the nested predictions that score lowest and highest with the runs they missed, and the
answers at the questions given, with the rates that widened them. It shows which splits, and
which runs in them, set a data set's spread. Usage:

    python benchmarks/nested_splits.py [--data data-constrained] [--worst 8] \
        [--ask N,D[,U] ...] [--bootstrap 200] [--without FORM ...]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from extrapolation import LEVEL, forms_of
from machine import machine

from fits import LOSS_LAWS
from fits.auto import fit_auto
from fits.calibration import scores
from fits.prediction import question_frame
from scaling import datasets

ASKED = {"data-constrained": ["8.7e9,1.78e11,1.78e11", "8.7e9,9e11,9e11", "2.8e9,5.5e10,5.5e10"]}


def split_table(nested: pd.DataFrame) -> pd.DataFrame:
    """Per nested split (coordinate, cut quantile): runs held out, farthest hull distance and
    the scores' median and 5% / 95% quantiles (shift per decade)."""
    return nested.groupby(["coord", "q"]).agg(
        held_out=("score", "size"),
        farthest=("hull", "max"),
        median=("score", "median"),
        q05=("score", lambda s: np.quantile(s, 0.05)),
        q95=("score", lambda s: np.quantile(s, 0.95)),
    )


def extreme_rows(nested: pd.DataFrame, runs: pd.DataFrame, worst: int) -> pd.DataFrame:
    """The nested predictions that score lowest and highest: the run, its loss, what the
    average fitted without it predicted, the hull distance and the score."""
    order = np.argsort(nested.score.to_numpy(), kind="stable")
    rows = nested.iloc[np.concatenate([order[:worst], order[-worst:]])]
    run = runs.iloc[rows.row.to_numpy(dtype=int)].reset_index(drop=True)
    table = run[[c for c in ("N", "D", "U") if c in run]].copy()
    if "U" in table:
        table["epochs"] = table.D / table.U
    loss = run.loss.to_numpy(dtype=float)
    return table.assign(
        split=[f"{c} {q:.0%}" for c, q in zip(rows.coord, rows.q, strict=True)],
        loss=loss,
        predicted=loss * np.exp(-rows.log_error.to_numpy(dtype=float)),
        hull=rows.hull.to_numpy(),
        score=rows.score.to_numpy(),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="data-constrained", choices=datasets.names())
    parser.add_argument("--worst", type=int, default=8, help="lowest and highest scores shown")
    parser.add_argument("--ask", nargs="*", help="questions N,D[,U] (default: the data set's)")
    parser.add_argument("--bootstrap", type=int, default=200)
    parser.add_argument("--without", nargs="*", default=[], choices=list(LOSS_LAWS),
                        help="forms left out (to see what one adds)")  # fmt: skip
    args = parser.parse_args()
    print(f"machine: {machine()}", flush=True)
    data = datasets.load(args.data)
    every = data[[c for c in ("N", "D", "U", "loss") if c in data]].astype(float)
    fitted = fit_auto(every, forms_of(n for n in LOSS_LAWS if n not in args.without), LEVEL,
                      args.bootstrap)  # fmt: skip
    if fitted.calibration is None:
        sys.exit(f"{args.data}: no nested split could be fitted, nothing to show")
    aside = fitted.residuals.set_aside
    runs = every[~aside] if aside is not None else every
    nested = fitted.nested.assign(score=scores(fitted.nested)[0])
    print(fitted.forms[["form", "error", "weight"]].to_string(index=False))
    print(fitted.calibration.describe())
    pd.set_option("display.width", 200)
    print(f"\nscores per split (shift per decade):\n{split_table(nested).round(4)}")
    extremes = extreme_rows(nested, runs, args.worst)
    print("\nlowest and highest scores:")
    print(extremes.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    asked = [[float(v) for v in q.split(",")] for q in (args.ask or ASKED.get(args.data, []))]
    for question in asked:
        N, D, *U = question
        frame = question_frame(np.array([N]), np.array([D]), np.array(U) if U else None)
        point, lo, hi = fitted.interval(frame, LEVEL)
        d, below, above = fitted.calibration.rates(frame)
        print(f"\nN {N:.3g} D {D:.3g}{f' U {U[0]:.3g}' if U else ''}: {point[0]:.3f} "
              f"[{lo[0]:.3f}, {hi[0]:.3f}], width {(hi[0] - lo[0]) / point[0]:.1%}; "
              f"{d[0]:.2f} decades from the hull, widened {below[0]:+.4f} / {above[0]:+.4f} "
              "per decade")  # fmt: skip


if __name__ == "__main__":
    main()
