"""Backtests of the LR and batch-size laws: held-out (N, D) groups, ratio and loss penalty."""

import json
import os
import re
import subprocess
import sys
from itertools import product

import numpy as np
import pandas as pd
import pytest

from fits.hparam_backtest import largest_compute, score_groups
from fits.lr import scan_optimum, scan_parabola
from scaling import Study, datasets
from scaling.errors import ScalingError
from tests.conftest import REPO, run_cli

GRID = np.geomspace(1e-4, 1e-1, 13)  # ratio 10^0.25 between neighbours


def quadratic(x, x_opt, curv, floor):
    return floor + curv * (np.log(x) - np.log(x_opt)) ** 2


def test_parabola_penalty_matches_the_closed_form():
    x_opt, curv, floor = GRID[6], 0.03, 2.5
    parabola, n_fit, _ = scan_parabola(GRID, quadratic(GRID, x_opt, curv, floor))
    assert n_fit == 3
    assert parabola.vertex == pytest.approx(x_opt, rel=1e-10)
    assert parabola.minimum == pytest.approx(floor, rel=1e-12)
    for offset in (-1.7, -0.2, 0.0, 0.4, 3.0):  # 3.0 reads the parabola far past the window
        penalty = parabola.penalty(x_opt * np.exp(offset))
        assert penalty == pytest.approx(curv * offset**2 / floor, rel=1e-8, abs=1e-13)


def test_scoring_reads_both_penalties_and_flags_extrapolation():
    x_opt, curv, floor = GRID[6], 0.03, 2.5
    runs = pd.DataFrame({"N": 1e8, "D": 1e10, "bs": 64, "lr": GRID})
    runs["loss"] = quadratic(GRID, x_opt, curv, floor)
    inside, outside = GRID[8], GRID[-1] * 2  # a sampled LR two steps up; past the grid
    predicted = pd.DataFrame(
        {"N": 1e8, "D": [1e10, 1e10], "predicted": [inside, outside], "lo": 0.0, "hi": 1.0}
    )
    out = score_groups(runs, predicted, ["N", "D"], "lr", "bs")
    expected = [curv * np.log(p / x_opt) ** 2 / floor * 100 for p in (inside, outside)]
    np.testing.assert_allclose(out.penalty_pct, expected, rtol=1e-8)
    # At a sampled LR the grid penalty is that run's loss over the best run's, exactly.
    assert out.grid_penalty_pct[0] == pytest.approx(expected[0], rel=1e-10)
    assert list(out.in_range) == [True, False] and np.isnan(out.grid_penalty_pct[1])
    np.testing.assert_allclose(out.actual, x_opt, rtol=1e-10)
    np.testing.assert_allclose(out.ratio, [inside / x_opt, outside / x_opt], rtol=1e-10)
    assert out.bracketed.all() and out.covered.all() and (out.bs == 64).all()


def test_batch_size_scan_optimum_is_named_in_its_notes():
    x = np.array([32.0, 64.0, 128.0])
    edge = scan_optimum(x, np.array([2.0, 2.1, 2.2]), name="batch size")
    assert not edge["bracketed"]
    assert (
        edge["note"]
        == "best batch size is the lowest sampled; vertex outside the sampled batch sizes"
    )
    assert edge["opt"] == 32.0


def test_holdout_takes_the_largest_compute_groups():
    rng = np.random.default_rng(1)
    groups = pd.DataFrame({"N": rng.uniform(1e6, 1e9, 11), "D": rng.uniform(1e8, 1e11, 11)})
    compute = 6 * groups.N * groups.D
    for fraction, n_held in ((0.25, 3), (0.5, 6), (0.01, 1)):  # round(f n), at least 1
        held = largest_compute(groups, fraction)
        assert held.sum() == n_held
        assert compute[held].min() > compute[~held].max()


LAW = {"a": 2.0, "alpha": -0.6, "beta": 0.25}  # lr* = a N^alpha D^beta
SIZES, TOKENS = (1e7, 3e7, 1e8, 3e8), (1e9, 4e9, 1.6e10)


def synthetic_runs() -> pd.DataFrame:
    """LR scans whose loss is an exact parabola in log LR around a known LR* law."""
    rows = []
    for N, D in product(SIZES, TOKENS):
        lr_opt = LAW["a"] * N ** LAW["alpha"] * D ** LAW["beta"]
        lrs = lr_opt * np.geomspace(0.1, 10, 9) * 1.17  # the grid does not centre on LR*
        floor = 1.8 + 400 / N**0.3 + 400 / D**0.3
        loss = quadratic(lrs, lr_opt, 0.02, floor)
        rows.append(pd.DataFrame({"N": N, "D": D, "lr": lrs, "loss": loss, "batch_size": 32}))
    return pd.concat(rows).assign(seq_len=1024).reset_index(drop=True)


@pytest.mark.parametrize("method", ["vertex", "near-optimal"])
def test_known_law_is_recovered_on_the_held_out_groups(method):
    runs = synthetic_runs()
    result = Study.from_frame(runs).backtest("lr-law", method=method)
    frame = result.frame
    largest = sorted(product(SIZES, TOKENS), key=lambda g: g[0] * g[1])[-3:]
    assert list(zip(frame.N, frame.D, strict=True)) == largest  # ordered by compute
    assert result.n_train == 9 and result.formula == "lr = a * N^alpha * D^beta"
    truth = [LAW["a"] * N ** LAW["alpha"] * D ** LAW["beta"] for N, D in largest]
    np.testing.assert_allclose(frame.actual, truth, rtol=1e-8)
    if method == "vertex":  # the vertex of an exact parabola is exact, so is the law
        np.testing.assert_allclose(frame.ratio, 1.0, rtol=1e-6)
        np.testing.assert_allclose(frame.penalty_pct, 0.0, atol=1e-9)
    else:  # near-optimal runs straddle LR* unevenly on this grid: close, not exact
        np.testing.assert_allclose(frame.ratio, 1.0, rtol=0.1)
        assert (frame.penalty_pct < 0.05).all()
    assert frame.in_range.all() and frame.bracketed.all()


def test_runs_without_a_batch_size_are_one_lr_scan_per_group():
    runs = synthetic_runs().drop(columns=["batch_size", "seq_len"])
    result = Study.from_frame(runs).backtest("lr-law")
    np.testing.assert_allclose(result.frame.ratio, 1.0, rtol=1e-6)
    assert result.frame.batch_size.isna().all()


def test_one_model_size_is_answered_with_a_caution_or_refused_where_its_groups_are_too_few():
    """Step Law's largest size alone (165 runs, two token counts): the batch-size law through
    its two (N, D) groups' near-optimal runs fitted them exactly, 1.42e8 [1.42e8, 1.42e8], and
    is now refused in one line, as is the near-optimal LR law, and so are groups of one run
    each (each its own best, no optimum found); the vertex LR law (15 groups,
    one per batch size) answers, and at ten times the size it says it assumed that the optimum
    does not move with N, which no point could show. At the size itself it says nothing."""
    runs = datasets.load("step-law").assign(seq_len=2048)
    one = runs[runs["N"].eq(runs["N"].max())]
    study = Study.from_frame(one, n_bootstrap=20)
    need = r"^need near-optimal runs in at least 3 \(N, D\) groups .* in D .*, found 2$"
    with pytest.raises(ScalingError, match=need):
        study.optimal_batch_size(1e12)
    with pytest.raises(ScalingError, match=need):
        study.optimal_lr(1e10, 1e12, method="near-optimal")
    alone = Study.from_frame(runs.groupby(["N", "D"]).head(1), n_bootstrap=20)  # one run a group
    with pytest.raises(ScalingError, match=r"values of batch_size to fit a law in D .*, found 0$"):
        alone.optimal_batch_size(1e12)
    n, d = float(one.N.iloc[0]), 1e12
    farther = study.optimal_lr(10 * n, d)
    assert "has N = 1.07e+09: it cannot say how the optimum moves with N" in farther.note
    here = study.optimal_lr(n, d)
    assert here.note == "" and (here.value, here.lo, here.hi) == (
        farther.value,
        farther.lo,
        farther.hi,
    )


@pytest.fixture(scope="module")
def step_db(tmp_path_factory):
    path = tmp_path_factory.mktemp("steplaw") / "log.duckdb"
    columns = "loss=smooth loss,seq_len=2048"
    done = run_cli("import", "--example", "step-law", "--columns", columns, "--db", str(path))
    assert done.returncode == 0, done.stderr
    return path


@pytest.mark.slow
def test_cli_backtests_the_lr_law_on_step_law(step_db):
    done = run_cli("backtest", "lr-law", "--json", "--db", str(step_db))
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    source = datasets.load("step-law")
    pairs = source[["N", "D"]].drop_duplicates().astype(float)
    largest = pairs.assign(C=pairs.N * pairs.D).nlargest(4, "C")
    assert out["n_test"] == 4 and out["n_train"] == 13 and out["method"] == "vertex"
    held = {(g["N"], g["D"]) for g in out["groups"]}
    assert held == set(zip(largest.N, largest.D, strict=True))
    for group in out["groups"]:
        assert group["ratio"] == pytest.approx(group["predicted"] / group["actual"])
        assert group["lo"] < group["predicted"] < group["hi"]
        assert group["grid_penalty_pct"] >= 0
        assert group["bracketed"] == (group["penalty_pct"] is not None)
    table = run_cli("backtest", "bs-law", "--db", str(step_db))
    assert table.returncode == 0, table.stderr
    assert "held-out (N, D) groups" in table.stdout and "batch_size = c * D^gamma" in table.stdout


@pytest.mark.slow
def test_cli_refuses_too_few_training_groups_in_one_line(step_db):
    # The 215M-parameter model has 4 (N, D) groups: holding out half leaves 2.
    done = run_cli(
        "backtest", "lr-law", "--where", "params < 2.2e8", "--fraction", "0.5",
        "--db", str(step_db),
    )  # fmt: skip
    assert done.returncode == 2
    assert "2 of 4 (N, D) groups left to fit on, need at least 3" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
    wrong = run_cli("backtest", "bs-law", "--method", "vertex", "--db", str(step_db))
    assert wrong.returncode == 2 and "near-optimal" in wrong.stderr


@pytest.mark.slow
def test_the_lr_law_backtest_table_fits_80_columns(step_db):
    """13 columns at 80: one line per held-out group, headers whole, nothing folded."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "80"}
    done = subprocess.run(
        [sys.executable, "-m", "cli", "backtest", "lr-law", "--db", str(step_db)],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert max(map(len, lines)) <= 80
    header = next(line for line in lines if "actual" in line).split()
    assert header[:7] == ["N", "D", "bs", "pred", "actual", "ratio", "in"]
    rows = [line for line in lines if re.match(r"\s*[\d.]+[MB] +[\d.]+[MB] ", line)]
    assert len(rows) == 4  # the 4 held-out groups, one line each
