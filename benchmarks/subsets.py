"""Does `auto` give physical answers on data sets it has not met? Fit it on random subsets.

    python benchmarks/subsets.py [--trials 40] [--seed 0] [--bootstrap 100] [--kinds ...]

The public sets that judge the product are not in the repo, so this draws stand-ins from the
shipped ones (Epoch's 245 points, Farseer's and Muennighoff's shared runs, Step Law's best
point per (N, D)): a random share of the runs, a few model sizes, only the smaller models, or
a handful of runs; with `--kinds` also only the shorter runs (the question of over-training:
Gadre et al. fit short runs and predict long ones) or only the larger models. A seed draws
the same subsets with the same kinds. On each, `Study.fit("auto")` must fit or refuse in one
line (ScalingError or FitError). Its answers at the runs' median N and D, at ten times their
largest N and D, and at 1000x N and 300x D (unique tokens unlimited) must be finite with
lo <= point <= hi, and so must the compute-optimal N, D and loss at 100x the largest run's
compute (or be refused in one line), with 6 N D that compute. Physics: a model ten times the
largest on ten times the tokens, none of them repeated, does better than every run, so its
point must lie below the lowest loss among the runs and its upper end below the highest.
Prints one line per trial and the count of each finding; a finding's subset is replayed by
its seed.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
import traceback
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from machine import machine

from fits.errors import FitError
from scaling import datasets
from scaling.errors import ScalingError
from scaling.results import Prediction
from scaling.study import Study

SETS = ("chinchilla-epoch", "farseer", "data-constrained", "step-law")
KINDS = ("a random share", "a few sizes", "the smaller models", "a handful")
MORE_KINDS = ("the shorter runs", "the larger models")  # drawn only when named: seeds replay


def shipped(name: str) -> pd.DataFrame:
    """The set's runs as N, D[, U], loss (Step Law: the best smoothed loss per (N, D))."""
    runs = datasets.load(name)
    if name == "step-law":
        runs = runs.groupby(["N", "D"], as_index=False)["smooth loss"].min()
        runs = runs.rename(columns={"smooth loss": "loss"})
    return runs[[c for c in ("N", "D", "U", "loss") if c in runs]].astype(float)


def draw(rng: np.random.Generator, kinds: tuple[str, ...] = KINDS) -> tuple[str, str, pd.DataFrame]:
    name, kind = SETS[rng.integers(len(SETS))], kinds[rng.integers(len(kinds))]
    runs = shipped(name)
    seed = int(rng.integers(2**31))
    if kind == "a random share":
        runs = runs.sample(frac=rng.uniform(0.1, 0.6), random_state=seed)
    elif kind == "a few sizes":
        sizes = np.unique(runs.N)
        keep = rng.choice(sizes, size=min(sizes.size, int(rng.integers(2, 7))), replace=False)
        runs = runs[runs.N.isin(keep)]
    elif kind == "the smaller models":
        largest = np.quantile(runs.N, rng.uniform(0.2, 0.6))
        runs = runs[runs["N"] <= largest]
    elif kind == "the shorter runs":
        runs = runs[runs["D"] <= np.quantile(runs.D, rng.uniform(0.2, 0.6))]
    elif kind == "the larger models":
        runs = runs[runs["N"] >= np.quantile(runs.N, rng.uniform(0.4, 0.8))]
    else:
        runs = runs.sample(n=min(len(runs), int(rng.integers(5, 30))), random_state=seed)
    return name, kind, runs


def about_its_point(label: str, answer: Prediction) -> list[str]:
    """The finding when `answer` is not a finite interval about its point (none when it is)."""
    ends = (answer.lo, answer.value, answer.hi)
    if all(map(math.isfinite, ends)) and 0 < answer.lo <= answer.value <= answer.hi:
        return []
    return [f"{label}: not a finite interval about the point"]


def findings(runs: pd.DataFrame, bootstrap: int) -> tuple[list[str], str]:
    """What breaks the rules above on these runs (empty: nothing), and the answers."""
    study = Study.from_frame(runs, n_bootstrap=bootstrap)
    try:
        fitted = study.fit("auto")
    except (ScalingError, FitError) as exc:
        return [], f"refused: {str(exc)[:90]}"
    n_max, d_max = float(runs.N.max()), float(runs.D.max())
    questions = {"median": (float(runs.N.median()), float(runs.D.median())),
                 "10x": (10 * n_max, 10 * d_max), "1000x": (1000 * n_max, 300 * d_max)}  # fmt: skip
    found, shown = [], []
    for label, (n, d) in questions.items():
        answer = study.loss_at(fitted, n, d)  # fresh tokens: no repeats
        lo, point, hi = answer.lo, answer.value, answer.hi
        shown.append(f"{label} {point:.3f} [{lo:.3f}, {hi:.3f}]")
        found += about_its_point(label, answer)
        if label == "10x" and not point < runs.loss.min():
            found.append("10x: point not below every run's loss")
        if label == "10x" and not hi < runs.loss.max():
            found.append("10x: upper end not below the highest run's loss")
    budget = 100 * 6 * float((runs.N * runs.D).max())
    try:
        optimal = study.compute_optimal(budget)
    except (ScalingError, FitError) as exc:
        shown.append(f"optimal refused: {str(exc)[:60]}")
        return found, " ".join(shown)
    size, tokens = optimal.N, optimal.D
    shown.append(f"optimal N {size.value:.3g} [{size.lo:.3g}, {size.hi:.3g}]")
    for answer in (size, tokens, optimal.loss):
        found += about_its_point(f"optimal {answer.quantity}", answer)
    if not math.isclose(6 * size.value * tokens.value, budget, rel_tol=1e-6):
        found.append("optimal: 6 N D is not the budget")
    return found, " ".join(shown)


def main() -> None:
    parser = trial_parser(__doc__, trials=40, bootstrap=100)
    every = ", ".join(KINDS + MORE_KINDS)
    parser.add_argument("--kinds", default=",".join(KINDS), help=f"comma-separated, of: {every}")
    args = parser.parse_args()
    kinds = tuple(k.strip() for k in args.kinds.split(","))
    if unknown := [k for k in kinds if k not in KINDS + MORE_KINDS]:
        parser.error(f"unknown kinds {unknown}: choose from {every}")
    print(f"machine: {machine()}", flush=True)

    def labelled(rng: np.random.Generator) -> tuple[str, pd.DataFrame]:
        name, kind, runs = draw(rng, kinds)
        return f"{name}, {kind}", runs

    run_trials(args.trials, args.seed, labelled, lambda runs: findings(runs, args.bootstrap))


def trial_parser(doc: str | None, trials: int, bootstrap: int) -> argparse.ArgumentParser:
    """The options every subset benchmark takes: how many trials, the seed that replays them,
    and the bootstrap resamples of each fit."""
    parser = argparse.ArgumentParser(description=(doc or "").splitlines()[0])
    parser.add_argument("--trials", type=int, default=trials)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--bootstrap", type=int, default=bootstrap)
    return parser


def run_trials(
    trials: int,
    seed: int,
    draw_one: Callable[[np.random.Generator], tuple[str, pd.DataFrame]],
    check: Callable[[pd.DataFrame], tuple[list[str], str]],
) -> None:
    """Draw and check `trials` subsets, one line each, then the count of each finding."""
    rng = np.random.default_rng(seed)
    counts: Counter[str] = Counter()
    for trial in range(trials):
        label, runs = draw_one(rng)
        t0 = time.perf_counter()
        try:
            found, shown = check(runs)
        except Exception:  # a traceback is a finding: a user mistake must be refused in a line
            found, shown = ["traceback"], traceback.format_exc(limit=-3)
        counts.update(found or ["none"])
        sizes = runs["N" if "N" in runs else "params"].nunique()
        print(f"{trial:3d} {label}: {len(runs)} runs, {sizes} sizes "
              f"({time.perf_counter() - t0:.0f} s) {shown}{' FOUND: ' if found else ''}"
              f"{'; '.join(found)}", flush=True)  # fmt: skip
    print(f"\n{trials} subsets (seed {seed}): " +
          ", ".join(f"{k}: {v}" for k, v in counts.most_common()))  # fmt: skip


if __name__ == "__main__":
    main()
