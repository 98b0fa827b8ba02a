"""The committed schedule-law runs at 3,000 steps (benchmarks/schedule_runs.py --steps 3000),
recomputed from their Parquet: what docs/schedules.md says about why the issue's 0.3% goal is
out of reach on them, checked independently of the study's driver.

Real training runs: llama d32 and d64, six schedules each, seeds 0 and 1.
"""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd
import pytest

from fits.schedule import MultiPowerLaw
from tests.conftest import REPO

pytestmark = [pytest.mark.golden, pytest.mark.slow]
FITTED = ("constant", "cosine", "two-stage")
GOAL = 0.003  # issue 22: mean relative error of an unseen curve


@pytest.fixture(scope="module")
def curves() -> pd.DataFrame:
    path = REPO / "benchmarks" / "data" / "schedule_curves_h3000.parquet"
    return duckdb.sql("SELECT * FROM read_parquet(?)", params=[str(path)]).df()


def after_warmup(run: pd.DataFrame) -> np.ndarray:
    """Indices of the measured points after the LR peak."""
    lrs = run.lr.to_numpy()
    return np.flatnonzero(run.loss.notna().to_numpy() & (np.arange(len(lrs)) > lrs.argmax()))


def test_two_seeds_of_one_schedule_differ_by_more_than_the_goal(curves: pd.DataFrame):
    """Every (size, schedule): seed 1's curve lies 0.6-1.2% from seed 0's on average."""
    pairs = 0
    for (_, _), run in curves.groupby(["size", "schedule"]):
        first = run[run.seed == 0].sort_values("step")
        second = run[run.seed == 1].sort_values("step")
        at = after_warmup(first)
        diff = np.abs(second.loss.to_numpy()[at] / first.loss.to_numpy()[at] - 1).mean()
        assert 2 * GOAL < diff < 0.012
        pairs += 1
    assert pairs == 12


def test_the_multi_power_law_misses_the_goal_on_its_own_fitted_curves(curves: pd.DataFrame):
    """Fitted on seed 0's three schedules, its mean error on those very curves is above 0.5%
    at both sizes, and its decay exponent beta sits at its lower bound (not identified)."""
    for size in ("d32", "d64"):
        seen = curves[(curves["size"] == size) & (curves.seed == 0)
                      & curves.schedule.isin(FITTED)]  # fmt: skip
        law = MultiPowerLaw().fit(seen[["run", "step", "lr", "loss"]])
        for _, run in seen.groupby("schedule"):
            run = run.sort_values("step")
            at = after_warmup(run)
            error = np.abs(law.predict(run.lr.to_numpy())[at] / run.loss.to_numpy()[at] - 1)
            assert 0.005 < error.mean() < 0.007
        assert law.params_["beta"] == pytest.approx(0.001, rel=1e-3)


def test_fitted_on_two_seed_means_the_unseen_curves_stay_above_the_goal(curves: pd.DataFrame):
    """The seed means of the three fitted schedules, scored on the seed means of WSD and
    linear-to-zero: 0.45-0.6% mean error at both sizes, below the one-seed fits' 0.61-0.67%
    but still above 0.3% (docs/schedules.md)."""
    mean = curves.groupby(["size", "schedule", "step"], as_index=False).agg(
        lr=("lr", "first"), loss=("loss", "mean"), seeds=("seed", "nunique")
    )
    assert (mean.seeds == 2).all()
    for size in ("d32", "d64"):
        mine = mean[mean["size"] == size].assign(run=lambda f: f.schedule)
        law = MultiPowerLaw().fit(mine[mine.schedule.isin(FITTED)][["run", "step", "lr", "loss"]])
        for schedule in ("wsd", "linear-zero"):
            run = mine[mine.schedule == schedule].sort_values("step")
            at = after_warmup(run)
            error = np.abs(law.predict(run.lr.to_numpy())[at] / run.loss.to_numpy()[at] - 1)
            assert 0.0045 < error.mean() < 0.006
            assert error.mean() > GOAL
