"""Do the wall-clock and crossover answers hold on data sets they have not met?

    python benchmarks/arch_subsets.py [--trials 10] [--seed 0] [--bootstrap 50]

benchmarks/subsets.py's twin for the architecture questions. It draws a random share (10% to
80%) of the architecture study's 404 timed runs (benchmarks/data) and asks the best model
within a random 0.01 to 100 hours for every architecture, and where two random
architectures' compute-optimal frontiers cross in 1e15..1e27 FLOPs. Each must be answered or
refused in one line (ScalingError or FitError); every loss and crossing with a finite
interval about its point; every wall-clock optimum on tokens per parameter within 100x of its
architecture's runs' box (an allocation no run comes near is no answer). Prints one line per
trial and the count of each finding; a finding's subset is replayed by its seed.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from machine import machine
from subsets import about_its_point, run_trials, trial_parser

from fits.allocation import ratio_window
from fits.errors import FitError
from scaling.errors import ScalingError
from scaling.study import Study

RUNS = Path(__file__).resolve().parent / "data" / "architecture_runs.parquet"


def findings(runs: pd.DataFrame, rng: np.random.Generator, bootstrap: int) -> tuple[list[str], str]:
    """What breaks the rules above on these runs (empty: nothing), and the answers."""
    study = Study.from_frame(runs, n_bootstrap=bootstrap)
    hours = float(10 ** rng.uniform(-2, 2))
    a, b = (str(x) for x in rng.choice(sorted(runs.arch.unique()), 2, replace=False))
    found, shown = [], []
    try:
        answer = study.optimal_within(hours)
        shown.append(f"{hours:.3g} h: {answer.winner} wins")
        for arch, optimum in answer.optima.items():
            found += about_its_point(f"{arch} in {hours:.3g} h", optimum.loss)
            mine = runs[runs.arch == arch]
            box = {"N": (mine.params.min(), mine.params.max()),
                   "D": (mine.tokens.min(), mine.tokens.max())}  # fmt: skip
            low, high = ratio_window(box) or (0.0, math.inf)
            if not low <= optimum.D / optimum.N <= high:
                found.append(f"{arch} in {hours:.3g} h: {optimum.D / optimum.N:.3g} tokens a "
                             f"parameter, beyond {low:.3g}..{high:.3g}")  # fmt: skip
    except (ScalingError, FitError) as exc:
        shown.append(f"{hours:.3g} h refused: {str(exc)[:60]}")
    try:
        cross = study.crossover(a, b)
        shown.append(f"{a} vs {b}: {cross.note}, {cross.fraction_crossing:.0%} cross")
        if cross.C is not None:
            found += about_its_point(f"{a} vs {b}", cross.C)
    except (ScalingError, FitError) as exc:
        shown.append(f"{a} vs {b} refused: {str(exc)[:60]}")
    return found, " | ".join(shown)


def main() -> None:
    args = trial_parser(__doc__, trials=10, bootstrap=50).parse_args()
    print(f"machine: {machine()}", flush=True)
    runs = duckdb.read_parquet(str(RUNS)).df()
    runs = runs[(runs.status == "done") & (runs.tokens_per_s > 0)]
    questions = np.random.default_rng([args.seed, 1])  # apart from the draws: seeds replay

    def share(rng: np.random.Generator) -> tuple[str, pd.DataFrame]:
        frac = rng.uniform(0.1, 0.8)
        return f"{frac:.0%} of the runs", runs.sample(frac=frac, random_state=rng.integers(2**31))

    run_trials(args.trials, args.seed, share, lambda s: findings(s, questions, args.bootstrap))


if __name__ == "__main__":
    main()
