"""`scaling fit schedule`, `predict curve` and `predict schedule` end to end: real tiny runs
trained into a DuckDB run log by the real command, then the schedule questions asked of it."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import numpy as np
import pytest

from tests.conftest import run_cli

pytestmark = pytest.mark.slow

TINY = ["--d-model", "32", "--n-layers", "1", "--n-heads", "2", "--seq-len", "64",
        "--batch-size", "8", "--tokens", str(64 * 8 * 40), "--warmup", "3",
        "--eval-every", "3", "--eval-tokens", "512", "--lr", "3e-3", "--device", "cpu",
        "--precision", "fp32"]  # fmt: skip


@pytest.fixture(scope="module")
def log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    db = tmp_path_factory.mktemp("schedules") / "runs.duckdb"
    for schedule in ("constant", "cosine", "wsd"):
        done = run_cli("run", *TINY, "--schedule", schedule, "--db", str(db), timeout=1500)
        assert done.returncode == 0, done.stderr
    return db


def test_fit_schedule_stores_a_calibrated_law(log: Path) -> None:
    done = run_cli("fit", "schedule", "--law", "annealing", "--json", "--db", str(log))
    assert done.returncode == 0, done.stderr
    fit = json.loads(done.stdout)
    assert fit["law"] == "schedule" and fit["n_runs"] == 3
    assert {"L0", "A", "C", "alpha"} <= set(fit)
    assert len(fit["table"]) == 3  # each run held out once
    with duckdb.connect(str(log), read_only=True) as con:
        (record,) = con.execute(
            "SELECT record FROM fits WHERE fit_id = ?", [fit["fit_id"]]
        ).fetchone()
    assert json.loads(record)["law"] == "annealing"
    shown = run_cli("fit", "schedule", "--law", "annealing", "--db", str(log))
    assert "held-out schedules: 3" in shown.stdout and "each run held out" in shown.stdout


def test_predict_curve_prints_table_json_and_plot(log: Path, tmp_path: Path) -> None:
    png = tmp_path / "curve.png"
    args = ["predict", "curve", "--schedule", "wsd", "--steps", "120", "--law", "annealing"]
    done = run_cli(*args, "--json", "--plot", str(png), "--db", str(log))
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    curve = answer["curve"]
    assert curve["step"][-1] == 120 and len(curve["step"]) == 12
    lo, mid, hi = (np.array(curve[k]) for k in ("lo", "loss", "hi"))
    assert np.all(lo <= mid) and np.all(mid <= hi)
    assert png.stat().st_size > 10_000
    table = run_cli(*args, "--db", str(log))
    assert table.returncode == 0 and "final loss" in table.stdout
    assert "caution" not in table.stdout
    hotter = run_cli(*args, "--lr", "0.1", "--json", "--db", str(log))
    assert "peak LR 0.1 is above every run's (0.003)" in json.loads(hotter.stdout)["final"]["note"]


def test_predict_schedule_beats_or_matches_its_baselines(log: Path) -> None:
    args = ["predict", "schedule", "--steps", "40", "--law", "annealing", "--json"]
    done = run_cli(*args, "--db", str(log))
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    lrs = np.array(answer["lr"])
    assert len(lrs) == 40 and np.all(np.diff(lrs[lrs.argmax() :]) <= 1e-15)
    for name in ("cosine", "wsd"):  # the optimum under the law is no worse than a baseline
        assert answer["gains"][name]["value"] >= -1e-9
    shown = run_cli(*args[:-1], "--db", str(log)).stdout
    lines = [line for line in shown.splitlines() if line.startswith("  vs ")]
    assert len(lines) == 2 and all(", gain = " in line for line in lines)  # was "gain gain ="


def test_user_mistakes_are_one_line(log: Path) -> None:
    for args in (["predict", "curve", "--schedule", "wsd:shape=square", "--steps", "50"],
                 ["predict", "schedule", "--steps", "1"],
                 ["predict", "curve", "--schedule", "wsd", "--steps", "50", "--warmup", "50"],
                 ["fit", "schedule", "--law", "nope"],
                 # no machine holds a 1e12-step curve: refused, not killed for memory
                 ["predict", "curve", "--schedule", "wsd", "--steps", "1e12"],
                 ["predict", "schedule", "--steps", "1e12"]):  # fmt: skip
        done = run_cli(*args, "--db", str(log))
        assert done.returncode == 2, (args, done.stderr)
        assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
        if "1e12" in args:
            assert "1,000,000,000,000 steps would need about 300,000 GB" in done.stderr
