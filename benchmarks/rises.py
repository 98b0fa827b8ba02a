"""Where does the loss rise with N or D, which no registered loss form can follow?

The Chinchilla forms, Kaplan's and Muennighoff et al.'s are non-increasing in N and in D, so
runs whose loss rises with a larger model at the same tokens, or with more tokens on the same
model, are places they cannot reach: one of the two runs of such a pair is missed by at least
half the rise (Farseer's form can bend up, but is refused where it rises along a ray past the
runs, and reads no unique tokens U). Lovelace et al.'s overfitting penalty (`overfitting`) is
the registered form that can follow a rise at the same U.

For each shipped data set (and each architecture of the committed study, its seed replicates
averaged), the mean loss per (N, D[, U]) is compared with the next larger N at the same D[, U]
and with the next larger D at the same N[, U]. Printed: the adjacent pairs compared, how many
rise, how many of those at up to NEARLY_FRESH_EPOCHS epochs and beyond (the epochs D/U of the
pair's later run, where U is known), and the largest rises with their places. Descriptive:
nothing here is a test against noise (the shipped sets have no replicates to measure it with).
Usage:

    python benchmarks/rises.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from extrapolation import step_law_points  # noqa: E402
from machine import machine  # noqa: E402

from scaling import datasets  # noqa: E402
from scaling.questions import NEARLY_FRESH_EPOCHS  # noqa: E402

SHOWN = 5  # largest rises printed per data set


def adjacent_pairs(runs: pd.DataFrame) -> pd.DataFrame:
    """Each mean loss beside the next at a larger N (same D, U) or a larger D (same N, U):
    columns along, N, D, U, epochs (of the later run), rise (relative)."""
    keys = [c for c in ("N", "D", "U") if c in runs]
    cells = runs.groupby(keys, dropna=False).loss.mean().reset_index()
    if "U" not in cells:
        cells["U"] = np.nan
    rows = []
    for along in ("N", "D"):
        fixed = [k for k in ("N", "D", "U") if k != along]
        for _, group in cells.groupby(fixed, dropna=False):
            group = group.sort_values(along)
            before, after = group.iloc[:-1], group.iloc[1:]
            rows.append(pd.DataFrame({
                "along": along,
                "N": after.N.to_numpy(),
                "D": after.D.to_numpy(),
                "U": after.U.to_numpy(),
                "epochs": (after.D / after.U).to_numpy(),
                "rise": after.loss.to_numpy() / before.loss.to_numpy() - 1,
            }))  # fmt: skip
    return pd.concat(rows, ignore_index=True)


def own_runs() -> dict[str, pd.DataFrame]:
    """The committed study's finished runs per architecture, as N, D, loss."""
    runs = duckdb.read_parquet(str(HERE / "data" / "architecture_runs.parquet")).df()
    runs = runs[runs.status == "done"]
    return {
        f"ours: {arch}": pd.DataFrame({"N": g.params, "D": g.tokens, "loss": g.final_val_loss})
        for arch, g in runs.groupby("arch")
    }


def describe(name: str, pairs: pd.DataFrame) -> str:
    rises = pairs[pairs.rise > 0]
    line = f"{name}: {len(pairs)} adjacent pairs, {len(rises)} rise"
    if pairs.U.notna().any():
        for label, band in (
            (f"<= {NEARLY_FRESH_EPOCHS:g} epochs", pairs.epochs <= NEARLY_FRESH_EPOCHS),
            (f"> {NEARLY_FRESH_EPOCHS:g} epochs", pairs.epochs > NEARLY_FRESH_EPOCHS),
        ):
            up = pairs[band].rise > 0
            largest = f", largest {pairs[band].rise.max():+.1%}" if up.any() else ""
            line += f"; {label}: {int(up.sum())} of {int(band.sum())}{largest}"
    top = rises.nlargest(SHOWN, "rise")
    if top.empty:
        return line
    shown = pd.DataFrame({
        "along": top.along, "N": top.N.map("{:.3g}".format), "D": top.D.map("{:.3g}".format),
        "epochs": top.epochs.map(lambda e: "" if np.isnan(e) else f"{e:.3g}"),
        "rise": top.rise.map("{:+.2%}".format),
    })  # fmt: skip
    return f"{line}\n{shown.to_string(index=False)}"


def main() -> None:
    print(f"machine: {machine()}")
    sets = {
        "data-constrained (shipped runs)": datasets.load("data-constrained"),
        "Epoch 245": datasets.load("chinchilla-epoch"),
        "Farseer (shipped runs)": datasets.load("farseer"),
        "Step Law, best smoothed loss per (N, D)": step_law_points(),
        **own_runs(),
    }
    for name, runs in sets.items():
        print(describe(name, adjacent_pairs(runs)), flush=True)


if __name__ == "__main__":
    main()
