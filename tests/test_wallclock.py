"""The wall-clock optimiser: agrees with a brute-force grid, sees the long-context speed-up."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fits import ChinchillaLaw, chinchilla_loss
from fits.throughput import ThroughputModel
from scaling.errors import ScalingError
from scaling.study import Study
from scaling.wallclock import compare, optimal_within, size_ladder
from store.db import connect
from tests.conftest import run_cli

PARAMS = np.array([1.6, 40.0, 300.0, 0.30, 0.32])  # E, A, B, alpha, beta (made up)
SPEED = ThroughputModel.with_coefficients(
    {
        "llama": {"flops": 2e-11, "elementwise": 4e-8, "attention": 3e-9, "constant": 5e-6},
        "tnl": {"flops": 3e-11, "elementwise": 9e-8, "attention": 0.0, "constant": 5e-6},
    }
)


class KnownLaw:
    """A Chinchilla law with fixed parameters and no interval."""

    def predict(self, N: np.ndarray, D: np.ndarray) -> np.ndarray:
        N, D = np.broadcast_arrays(np.asarray(N, float), np.asarray(D, float))
        return chinchilla_loss(PARAMS, N, D).reshape(N.shape)


def brute_force(rungs, hours: float) -> tuple[float, float]:
    """Loss on a 200k-point grid in log N with log throughput interpolated between rungs."""
    rungs = rungs.sort_values("params")
    log_n = np.log(rungs.params.to_numpy(float))
    log_rate = np.log(SPEED.tokens_per_s(rungs))
    grid = np.linspace(log_n[0], log_n[-1], 200_001)
    d = np.exp(np.interp(grid, log_n, log_rate)) * 3600 * hours
    loss = KnownLaw().predict(np.exp(grid), d)
    i = int(np.argmin(loss))
    return float(np.exp(grid[i])), float(loss[i])


@pytest.mark.parametrize("hours", [0.05, 2.0, 200.0])
def test_matches_a_brute_force_grid_search(hours: float) -> None:
    rungs = size_ladder("tnl", 256)
    answer = optimal_within(KnownLaw(), SPEED, rungs, hours)
    n_grid, loss_grid = brute_force(rungs, hours)
    assert answer.loss.value == pytest.approx(loss_grid, rel=1e-7)
    n_opt, d_opt = answer.N, answer.D
    assert n_opt == pytest.approx(n_grid, rel=2e-3)
    rate = np.interp(np.log(n_opt), np.log(rungs.params), np.log(SPEED.tokens_per_s(rungs)))
    assert d_opt == pytest.approx(np.exp(rate) * 3600 * hours, rel=1e-9)
    nearest = rungs.iloc[np.argmin(np.abs(np.log(rungs.params / answer.N)))]["name"]
    assert answer.nearest_size == nearest


def test_more_hours_buy_a_larger_model_and_a_lower_loss() -> None:
    rungs = size_ladder("llama", 256)
    short, long = (optimal_within(KnownLaw(), SPEED, rungs, h) for h in (0.5, 50.0))
    assert long.N > short.N and long.D > short.D and long.loss.value < short.loss.value


def test_linear_mixer_wins_at_long_context_with_the_same_law() -> None:
    """Same loss law for both: only the throughput differs, and at a long context llama's
    attention makes it slower per token, so tnl trains more tokens in the same hours."""
    answers = {
        arch: optimal_within(KnownLaw(), SPEED, size_ladder(arch, 8192), 2.0)
        for arch in ("llama", "tnl")
    }
    result = compare(answers, asked="llama")
    assert result.winner == "tnl" and "winner within 2 h: tnl" in result.note
    assert str(result).startswith("llama in 2 h")
    short = {a: optimal_within(KnownLaw(), SPEED, size_ladder(a, 64), 2.0) for a in answers}
    assert compare(short).winner == "llama"  # tnl's dearer FLOPs lose at a short context


class SizeOnlyLaw:
    """A law whose loss falls with N whatever D is: its optimum in any hours is the largest
    rung, at tokens per parameter no run of a real study comes near."""

    def predict(self, N: np.ndarray, D: np.ndarray) -> np.ndarray:
        N, _ = np.broadcast_arrays(np.asarray(N, float), np.asarray(D, float))
        return 2.0 + 100.0 * N**-0.3


def test_an_answer_keeps_to_the_tokens_per_parameter_near_the_runs() -> None:
    """As a compute-optimal answer does (fits.allocation.ratio_window): the search keeps to
    the sizes whose tokens per parameter in these hours lie in the window (free, it took the
    largest rung on 0.0013 tokens per parameter), here the largest of them on a brute-force
    grid; with none in it, it refuses in one line."""
    rungs, hours = size_ladder("llama", 256), 0.05
    free = optimal_within(SizeOnlyLaw(), SPEED, rungs, hours)
    assert pytest.approx(rungs.params.max()) == free.N and free.D / free.N < 0.01
    kept = optimal_within(SizeOnlyLaw(), SPEED, rungs, hours, ratios=(20.0, 1e6))
    log_n = np.log(rungs.sort_values("params").params.to_numpy(float))
    grid = np.linspace(log_n[0], log_n[-1], 200_001)
    log_rate = np.log(SPEED.tokens_per_s(rungs.sort_values("params")))
    rate = np.exp(np.interp(grid, log_n, log_rate))
    inside = np.exp(grid)[rate * 3600 * hours / np.exp(grid) >= 20.0]
    assert kept.D / kept.N >= 20.0 and pytest.approx(inside.max(), rel=1e-3) == kept.N
    with pytest.raises(ScalingError, match="no size of llama's ladder trains on a number of"):
        optimal_within(SizeOnlyLaw(), SPEED, rungs, hours, ratios=(1e8, 1e9))


def test_interval_comes_from_the_law_draws() -> None:
    rng = np.random.default_rng(0)
    N = np.repeat(np.geomspace(3e4, 3e6, 6), 4)
    D = np.tile(np.geomspace(1e6, 3e8, 4), 6)
    loss = KnownLaw().predict(N, D) * np.exp(0.01 * rng.standard_normal(N.size))
    law = ChinchillaLaw(n_bootstrap=40, random_state=0).fit(N, D, loss)
    answer = optimal_within(law, SPEED, size_ladder("llama", 256), 1.0)
    assert answer.loss.lo < answer.loss.value < answer.loss.hi
    direct = law.predict_interval(answer.N, answer.D, level=0.9)
    assert answer.loss.lo == pytest.approx(float(direct.lo))
    assert answer.loss.interval == "confidence"


def test_refuses_bad_questions() -> None:
    with pytest.raises(ScalingError, match="hours must be positive"):
        optimal_within(KnownLaw(), SPEED, size_ladder("llama", 256), 0.0)
    with pytest.raises(ScalingError, match="exactly one architecture"):
        optimal_within(
            KnownLaw(), SPEED, pd.concat([size_ladder(a, 64) for a in ("llama", "tnl")]), 1.0
        )
    with pytest.raises(ScalingError, match="no architecture"):
        compare({})
    one = {"tnl": optimal_within(KnownLaw(), SPEED, size_ladder("tnl", 256), 1.0)}
    with pytest.raises(ScalingError, match="arch 'llama'"):
        compare(one, asked="llama")
    assert "no comparison" in compare(one).note


@pytest.mark.slow
def test_study_answers_within_hours_for_every_arch_and_logs_it() -> None:
    """Study.optimal_within on runs of two archs that follow one law and SPEED's timings."""
    rows = []
    for arch in ("llama", "tnl"):
        for name in ("5xs", "4xs", "3xs", "xxs", "xs", "s"):
            rung = size_ladder(arch, 256).set_index("name").loc[[name]].reset_index()
            for tokens in (3e5, 1e6, 3e6, 1e7):
                rows.append(rung.assign(tokens=tokens, tokens_per_s=SPEED.tokens_per_s(rung)))
    runs = pd.concat(rows, ignore_index=True)
    runs = runs.assign(
        loss=KnownLaw().predict(runs.params, runs.tokens),
        flops=runs.flops_per_token * runs.tokens,
        source="local",
    ).drop(columns=["name", "flops_per_token"])
    study = Study.from_frame(runs, n_bootstrap=20)
    answer = study.optimal_within(2.0, arch="tnl")
    assert set(answer.optima) == {"llama", "tnl"} and answer.asked == "tnl"
    direct = optimal_within(KnownLaw(), SPEED, size_ladder("tnl", 256), 2.0)
    assert pytest.approx(direct.N, rel=0.05) == answer.optima["tnl"].N
    assert answer.winner == compare({k: v for k, v in answer.optima.items()}).winner
    with study.log.connection(read_only=True) as con:
        logged = con.execute(
            "SELECT count(*) FROM predictions WHERE question LIKE '%optimal_within%'"
        ).fetchall()
    assert logged == [(1,)]
    tnl = answer.optima["tnl"]  # the loss as `predict loss` answers it: auto, calibrated
    asked = study.predict_loss(tnl.N, tnl.D, "tnl")
    assert (tnl.loss.value, tnl.loss.lo, tnl.loss.hi) == pytest.approx(
        (asked.value, asked.lo, asked.hi)
    )
    assert tnl.loss.interval == asked.interval and tnl.loss.fit_id == asked.fit_id
    # --where/--law pick the runs and form of the loss law; the timings stay all of them
    chosen = study.optimal_within(2.0, arch="tnl", where="tokens >= 1e6", law="chinchilla")
    law = study.fit("chinchilla", "tnl", where="tokens >= 1e6")
    assert chosen.optima["tnl"].loss.fit_id == law.fit_id != tnl.loss.fit_id
    assert law.selection["n_runs"] == 18  # 3 of the 4 horizons at each of the 6 sizes
    with pytest.raises(ScalingError, match="less than one sequence of 256: give more hours"):
        study.optimal_within(1e-9, arch="tnl")  # 1e-9 hours buy a fraction of a token
    with pytest.raises(ScalingError, match="no timed local runs of arch 'hgrn2'"):
        study.optimal_within(2.0, arch="hgrn2")
    # runs that all saw one corpus of 1e7 tokens: a 2-hour optimum beyond it says so
    capped = Study.from_frame(runs.assign(unique_tokens=1e7), n_bootstrap=20)
    best = capped.optimal_within(2.0, arch="tnl").optima["tnl"]
    assert best.D > 1e7 and tnl.loss.note == ""
    assert f"D = {best.D:.4g} tokens is {best.D / 1e7:.1f} epochs" in best.loss.note
    assert "caution:" in str(best)


@pytest.mark.slow
def test_cli_takes_exactly_one_of_compute_and_hours(tmp_path) -> None:
    db = str(tmp_path / "runs.duckdb")
    result = run_cli("predict", "optimal", "--compute", "1e20", "--hours", "2", "--db", db)
    assert result.returncode == 2 and "exactly one of --compute" in result.stderr + result.stdout
    assert "Traceback" not in result.stderr
    with connect(db):  # an empty run log
        pass
    result = run_cli("predict", "optimal", "--hours", "2", "--db", db)
    assert result.returncode == 2 and "no timed local runs" in result.stderr + result.stdout
