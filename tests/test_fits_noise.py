"""Run noise local to a question (fits.noise): neighbours, places, pools, and what they draw."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

import fits.noise
from fits.bootstrap import observation_interval
from fits.noise import RunNoise, local_quantile, n_neighbours, nearest, places


def test_a_question_draws_from_at_least_twenty_runs_or_a_quarter_of_them():
    assert [n_neighbours(n) for n in (9, 20, 60, 81, 240)] == [9, 20, 20, 21, 60]


def test_places_are_decades_of_params_tokens_and_epochs():
    frame = pd.DataFrame({"N": [1e6, 1e8, 1e8, 1e8], "D": [1e9, 1e10, 1e10, 1e10],
                          "U": [1e8, math.nan, math.inf, 1e11]})  # fmt: skip
    np.testing.assert_allclose(places(frame), [[6, 9, 1], [8, 10, 0], [8, 10, 0], [8, 10, 0]])
    np.testing.assert_allclose(places(frame.drop(columns="U"))[:, 2], 0.0)


@pytest.mark.parametrize("block", [2**20, 50, 7])  # one block, one point a block, the least
def test_nearest_runs_match_a_plain_search(monkeypatch, block):
    """Ties by index (the repeated rows), and the same in blocks of any size (fits.noise.BLOCK
    point-run pairs)."""
    monkeypatch.setattr(fits.noise, "BLOCK", block)
    rng = np.random.default_rng(3)
    where, points = rng.normal(size=(50, 3)).round(1), rng.normal(size=(7, 3)).round(1)
    where[10:20] = where[0]
    for k in (1, 5, 50):
        expected = [sorted(range(50), key=lambda i: float(((where[i] - p) ** 2).sum()))[:k]
                    for p in (*points, where[0])]  # fmt: skip
        np.testing.assert_array_equal(nearest(where, np.vstack([points, where[0]]), k), expected)
    assert nearest(where, points[:0], 3).shape == (0, 3)


def test_local_quantile_is_the_quantile_of_the_nearest_runs_errors():
    rng = np.random.default_rng(4)
    where, points, errors = rng.normal(size=(90, 3)), rng.normal(size=(6, 3)), rng.normal(size=90)
    k = n_neighbours(90)
    for got, p in zip(local_quantile(errors, where, points, 0.9), points, strict=True):
        near = np.argsort(((where - p) ** 2).sum(axis=1), kind="stable")[:k]
        assert got == pytest.approx(np.quantile(np.abs(errors[near]), 0.9))


def test_each_question_draws_from_its_own_pool():
    """A pool of one value per question: its interval is the draws times exactly that value."""
    draws = np.random.default_rng(5).lognormal(0, 0.01, size=(400, 3))
    pools = np.log([[1.5] * 4, [2.0] * 4, [0.5] * 4])
    lo, hi = observation_interval(draws, pools, 0.9, 0)
    lo_law, hi_law = np.quantile(draws, [0.05, 0.95], axis=0)
    np.testing.assert_allclose(lo, lo_law * [1.5, 2.0, 0.5])
    np.testing.assert_allclose(hi, hi_law * [1.5, 2.0, 0.5])


def test_the_interval_follows_the_noise_where_the_question_is():
    """Runs whose scatter grows 30x from small to large models: a question among the small
    ones gets their narrow band, one among the large ones theirs, each near the normal
    quantiles of its own noise; with every residual pooled both get the same middle width."""
    rng = np.random.default_rng(6)
    N = np.repeat(np.geomspace(1e6, 1e9, 8), 40)
    D = np.tile(np.geomspace(1e9, 1e11, 40), 8)
    sd = np.where(N < 3e7, 0.001, 0.03)
    runs = pd.DataFrame({"N": N, "D": D})
    noise = RunNoise.of(runs, rng.normal(0, sd))
    asked = pd.DataFrame({"N": [1e6, 1e9], "D": [1e10, 1e10]})
    draws = np.ones((4000, 2))
    lo, hi = observation_interval(draws, noise.pools(asked), 0.9, 0)
    width = np.log(hi / lo)
    np.testing.assert_allclose(width, 2 * 1.645 * np.array([0.001, 0.03]), rtol=0.35)
    lo_all, hi_all = observation_interval(draws, RunNoise(noise.residuals).pools(asked), 0.9, 0)
    assert np.log(hi_all / lo_all)[0] > 5 * width[0]


def test_noise_round_trips_and_a_record_without_places_pools_every_run():
    runs = pd.DataFrame({"N": [1e6, 1e7, 1e8], "D": [1e9, 1e9, 1e10], "U": [1e8, 1e9, 1e10],
                         "loss": [3.0, 2.5, 2.0]})  # fmt: skip
    noise = RunNoise.of(runs, np.array([0.01, -0.02, 0.03]))
    again = RunNoise.from_dict(json.loads(json.dumps(noise.to_dict())))
    assert again is not None and again.where is not None and again.losses is not None
    np.testing.assert_array_equal(again.where, noise.where)
    np.testing.assert_array_equal(again.losses, [3.0, 2.5, 2.0])
    old = RunNoise.from_dict({"residuals": [0.01, -0.02, 0.03]})
    assert old is not None and old.where is None and old.losses is None
    np.testing.assert_array_equal(old.pools(runs.iloc[:2]), [[0.01, -0.02, 0.03]] * 2)
    assert RunNoise.from_dict({}) is None
    assert "the 3 of 3 fitted runs nearest" in noise.describe()
    assert "an upper end is at most the loss of any run" in noise.describe()
    assert "upper end" not in RunNoise(noise.residuals, noise.where).describe()
    assert "all 3 fitted runs" in old.describe()
