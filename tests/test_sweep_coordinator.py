"""The coordinator end to end, in process: real DuckDB file, real training of tiny models."""

from __future__ import annotations

import math

import pytest

from runners.config import ModelConfig, RunConfig, TrainConfig
from runners.corpus import load_corpus
from runners.results import config_row
from runners.sweeps.designs import Planner
from runners.sweeps.executors import cores
from runners.sweeps.spec import loads_spec
from scaling.sweeps.book import plan_sweep, sweep_status
from scaling.sweeps.coordinator import SweepOptions, run_sweep
from store.db import connect
from store.runs import mark_running, read_curves, read_runs

# Real `scaling` subprocesses and training: the fast lane (-m "not slow") skips them.
pytestmark = pytest.mark.slow

WORKERS = min(2, cores())
OPTIONS = SweepOptions(workers=WORKERS, threads=1)


def tiny(lr: float = 3e-3, tokens: int = 4096, corpus: str = "default", seq_len: int = 32):
    return RunConfig(
        ModelConfig(d_model=32, n_layers=1, n_heads=2, seq_len=seq_len),
        TrainConfig(tokens=tokens, lr=lr, batch_size=8, eval_tokens=1024, corpus=corpus),
    ).resolved()


def run_id(config: RunConfig) -> str:
    corpus = load_corpus(config.train.corpus)
    return config.run_id(corpus.sha256)


def test_done_diverged_failed_are_recorded_and_the_sweep_goes_on(tmp_path):
    db = tmp_path / "log.duckdb"
    small = tmp_path / "small.txt"  # trains, but its validation split is shorter than seq_len
    small.write_text("".join(f"line {i} of a small corpus\n" for i in range(250)))
    ok, exploding = tiny(3e-3), tiny(30.0)
    failing = RunConfig(
        ModelConfig(d_model=32, n_layers=1, n_heads=2, seq_len=1024),
        TrainConfig(tokens=2048, lr=3e-3, batch_size=1, eval_tokens=1024, corpus=str(small)),
    ).resolved()
    configs = [ok, exploding, failing]
    corpus = load_corpus("default")
    with connect(db) as con:  # a coordinator died while training `ok`
        mark_running(con, config_row(ok, corpus.name, corpus.sha256, "mixed"))

    report = run_sweep("mixed", lambda *_: configs, db, OPTIONS)

    assert report.trained == {"done": 1, "diverged": 1, "failed": 1} and report.left == 0
    with connect(db, read_only=True) as con:
        runs = read_runs(con, sweep="mixed").set_index("run_id")
        curves = read_curves(con)
    assert runs.loc[run_id(ok), "status"] == "done"
    assert runs.loc[run_id(exploding), "status"] == "diverged"
    assert runs.loc[run_id(failing), "status"] == "failed"
    assert "validation split" in runs.loc[run_id(failing), "error"]
    curve = curves[curves.run_id == run_id(ok)]
    assert curve.step.max() == ok.steps and curve.tokens.max() == ok.tokens

    again = run_sweep("mixed", lambda *_: configs, db, OPTIONS)
    assert again.trained.total() == 0 and again.left == 0
    retried = run_sweep("mixed", lambda *_: configs, db, SweepOptions(retry_failed=True))
    assert retried.trained == {"failed": 1}
    frame, holder = sweep_status(db)
    assert holder is None
    counts = frame.set_index("sweep").loc["mixed"]
    assert (counts.done, counts.diverged, counts.failed, counts.running) == (1, 1, 1, 0)


def test_lr_scan_refines_until_the_optimum_is_bracketed(tmp_path):
    db = tmp_path / "log.duckdb"
    spec = loads_spec(
        """
        name = "refine"
        [fixed]
        seq_len = 32
        batch_size = 8
        eval_tokens = 4096
        [axes]
        size = [{ d_model = 32, n_layers = 1, n_heads = 2 }]
        tokens = 8192
        lr = { logspace = [1e-3, 2e-3, 2] }   # well below this model's optimum (~1e-2)
        [design]
        kind = "lr_scan"
        refine = true
        max_runs = 8
        """
    )
    report = run_sweep(spec.name, Planner(spec), db, SweepOptions(workers=1, threads=1))

    assert report.left == 0 and report.planned > 2
    with connect(db, read_only=True) as con:
        runs = read_runs(con, sweep="refine").sort_values("lr")
    assert len(runs) == report.planned < 8
    losses = runs.final_val_loss.fillna(math.inf).to_numpy()
    best = losses.argmin()
    assert 0 < best < len(runs) - 1, runs[["lr", "status", "final_val_loss"]]
    assert losses[best - 1] > losses[best] < losses[best + 1]

    replan = plan_sweep(spec.name, Planner(spec), db)
    assert len(replan.runs) == report.planned and set(replan.runs.status) <= {"done", "diverged"}
    assert run_sweep(spec.name, Planner(spec), db, OPTIONS).trained.total() == 0


def test_a_spent_time_budget_starts_nothing_and_says_so(tmp_path):
    options = SweepOptions(workers=1, threads=1, time_budget_s=0.0)
    report = run_sweep("budget", lambda *_: [tiny()], tmp_path / "log.duckdb", options)
    assert (report.trained.total(), report.left, report.stopped_by) == (0, 1, "time budget")
