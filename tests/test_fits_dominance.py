"""Upper ends held to the runs themselves (fits.prediction.no_worse_than_runs): a model at least
as large on at least as many fresh tokens does no worse than a run (repeated tokens or not), up
to both runs' noise."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fits.noise import RunNoise, n_neighbours
from fits.prediction import no_worse_than_runs
from scaling import datasets
from scaling.study import Study


def naive_bound(runs: pd.DataFrame, residuals: np.ndarray, question: pd.Series,
                level: float) -> float:  # fmt: skip
    """min over the runs j with N_j <= N and D_j <= D of L_j e^(q_j + q): loops, each q
    the level-quantile of |residual| over the k runs nearest in decades of N, D and epochs."""

    def where(row: pd.Series) -> np.ndarray:
        u = row.get("U", np.nan)
        epochs = 0.0 if not np.isfinite(u) or u >= row.D else np.log10(row.D / u)
        return np.array([np.log10(row.N), np.log10(row.D), epochs])

    places = np.array([where(r) for _, r in runs.iterrows()])
    k = n_neighbours(len(runs))

    def q(at: np.ndarray) -> float:
        order = np.argsort(((places - at) ** 2).sum(axis=1), kind="stable")[:k]
        return float(np.quantile(np.abs(residuals[order]), level))

    if where(question)[2] > 0:  # a question that repeats data: unbounded
        return np.inf
    best = np.inf
    for j, run in runs.iterrows():
        if run.N <= question.N and run.D <= question.D:
            best = min(best, run.loss * np.exp(q(places[j])))
    return best * np.exp(q(where(question)))


def test_the_bound_is_the_lowest_smaller_run_with_both_noises():
    rng = np.random.default_rng(11)
    n = 60
    runs = pd.DataFrame({"N": 10 ** rng.uniform(6, 9, n), "D": 10 ** rng.uniform(8, 11, n)})
    runs["U"] = np.where(rng.random(n) < 0.3, runs.D / 10, np.nan)  # 30% on 10 epochs
    runs["loss"] = 2 + 1e9 / runs.N**0.3 / runs.D**0.05 * rng.lognormal(0, 0.02, n)
    residuals = rng.normal(0, 0.02, n)
    noise = RunNoise.of(runs, residuals)
    asked = pd.DataFrame({"N": 10 ** rng.uniform(7, 10, 12), "D": 10 ** rng.uniform(9, 12, 12)})
    asked["U"] = np.where(np.arange(12) < 3, asked.D / 4, np.nan)  # three repeat data
    point, hi = np.full(12, 0.5), np.full(12, 1e6)
    got = no_worse_than_runs(noise, asked, 0.9, point, hi)
    expected = [naive_bound(runs, residuals, q, 0.9) for _, q in asked.iterrows()]
    assert np.isfinite(expected).sum() >= 6  # most fresh questions have a smaller run
    np.testing.assert_allclose(got, np.minimum(expected, 1e6), rtol=1e-12)


def test_a_question_on_repeated_tokens_is_not_bounded_and_the_point_is_kept():
    runs = pd.DataFrame({"N": [1e7, 1e8], "D": [1e9, 1e10], "U": [1e8, np.nan],
                         "loss": [3.0, 2.5]})  # fmt: skip
    noise = RunNoise.of(runs, np.zeros(2))
    asked = pd.DataFrame({"N": [1e9, 1e9, 1e9, 1e7], "D": [1e11, 1e11, 1e11, 1e11],
                          "U": [np.nan, 1e10, np.nan, np.nan]})  # fmt: skip
    point = np.array([2.0, 2.0, 2.6, 2.0])
    hi = no_worse_than_runs(noise, asked, 0.9, point, np.full(4, 9.0))
    # fresh and larger than both: the lower run's 2.5 (no noise); a repeated question is not
    # bounded; never below the point; a fresh question above only the repeated run: its 3.0
    assert hi.tolist() == pytest.approx([2.5, 9.0, 2.6, 3.0])
    stored = RunNoise(noise.residuals, noise.where)  # a fit stored before losses were kept
    assert no_worse_than_runs(stored, asked, 0.9, point, np.full(4, 9.0)).tolist() == [9.0] * 4


def test_auto_on_six_epoch_runs_answers_no_worse_than_its_lowest_run():
    """`python benchmarks/subsets.py --seed 3` found it (trial 26): auto on six of Epoch's runs
    (four sizes) answered 1.92 [1.77, 4.8e10] at ten times their N and D, an upper end its own
    uncalibrated bootstrap set. A model ten times the largest on ten times the tokens loses no
    more than the lowest of them, up to both runs' noise; the point is untouched."""
    runs = datasets.load("chinchilla-epoch").loc[[83, 129, 195, 209, 215, 241], ["N", "D", "loss"]]
    study = Study.from_frame(runs.astype(float), n_bootstrap=100)
    fitted = study.fit("auto")
    answer = study.loss_at(fitted, 10 * runs.N.max(), 10 * runs.D.max())
    assert fitted.residuals is not None
    noise = 2 * np.abs(fitted.residuals.residuals).max()
    assert answer.lo <= answer.value <= answer.hi <= runs.loss.min() * np.exp(noise) + 1e-12
    assert answer.hi < runs.loss.max()
