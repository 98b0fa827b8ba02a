"""Do the LR and batch-size laws answer or refuse in one line on data sets they have not met?

    python benchmarks/hparam_subsets.py [--trials 30] [--seed 0] [--bootstrap 100]

benchmarks/subsets.py's twin for hyperparameters. It draws random subsets of Step Law's 1,911
runs (a random share, one to four model sizes, only the smaller models, only the shorter
runs, or a handful), and on each asks the optimal LR (vertex and near-optimal) at ten times
the largest N and D, and the optimal batch size at ten times the largest D. Each must be
answered with a finite interval of some width about its point, or refused in one line
(ScalingError or FitError); an LR answer at ten times an N (or D) that every run shared must
say that the law cannot see it. Prints one line per trial and the count of each finding; a
finding's subset is replayed by its seed.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from machine import machine
from subsets import about_its_point, run_trials, trial_parser

from fits.errors import FitError
from scaling import datasets
from scaling.errors import ScalingError
from scaling.results import Prediction
from scaling.study import Study

KINDS = ("a random share", "a few sizes", "the smaller models", "the shorter runs", "a handful")


def draw(runs: pd.DataFrame, rng: np.random.Generator) -> tuple[str, pd.DataFrame]:
    kind = KINDS[rng.integers(len(KINDS))]
    seed = int(rng.integers(2**31))
    if kind == "a random share":
        return kind, runs.sample(frac=rng.uniform(0.05, 0.5), random_state=seed)
    if kind == "a few sizes":
        sizes = rng.choice(runs.N.unique(), size=int(rng.integers(1, 5)), replace=False)
        return kind, runs[runs.N.isin(sizes)]
    if kind in ("the smaller models", "the shorter runs"):
        column = "N" if kind == "the smaller models" else "D"
        largest = np.quantile(runs[column], rng.uniform(0.1, 0.6))
        return kind, runs[runs[column] <= largest]
    return kind, runs.sample(n=int(rng.integers(3, 40)), random_state=seed)


def findings(runs: pd.DataFrame, bootstrap: int) -> tuple[list[str], str]:
    """What breaks the rules above on these runs (empty: nothing), and the answers."""
    study = Study.from_frame(runs, n_bootstrap=bootstrap)
    n, d = 10 * float(runs.N.max()), 10 * float(runs.D.max())
    questions: dict[str, Callable[[], Prediction]] = {
        "lr": lambda: study.optimal_lr(n, d),
        "lr near-optimal": lambda: study.optimal_lr(n, d, method="near-optimal"),
        "batch size": lambda: study.optimal_batch_size(d),
    }
    found, shown = [], []
    for label, ask in questions.items():
        try:
            p = ask()
        except (ScalingError, FitError) as exc:
            shown.append(f"{label} refused: {str(exc)[:60]}")
            continue
        shown.append(f"{label} {p.value:.3g} [{p.lo:.3g}, {p.hi:.3g}]")
        if not (missed := about_its_point(label, p)) and p.hi / p.lo < 1 + 1e-6:
            found.append(f"{label}: an interval of no width")
        found += missed
        unseen = [v for v in ("N", "D") if runs[v].nunique() == 1]
        if label.startswith("lr") and unseen and not p.note:
            found.append(f"{label}: at {' and '.join(unseen)} no run had, without a caution")
    return found, " | ".join(shown)


def main() -> None:
    args = trial_parser(__doc__, trials=30, bootstrap=100).parse_args()
    print(f"machine: {machine()}", flush=True)
    runs = datasets.load("step-law").assign(seq_len=2048)
    run_trials(
        args.trials, args.seed, lambda rng: draw(runs, rng),
        lambda subset: findings(subset, args.bootstrap),
    )  # fmt: skip


if __name__ == "__main__":
    main()
