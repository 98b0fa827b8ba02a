"""`sweep plan`'s wall-time estimate: training at the measured rate, plus evaluation and
start-up (a sweep estimated at `0m 01s` without them took 19 s)."""

from __future__ import annotations

from datetime import datetime

import pytest

from runners.corpus import load_corpus
from runners.results import config_row
from runners.sweeps.designs import Planner
from runners.sweeps.spec import loads_spec
from runners.train import train
from scaling.sweeps.book import evaluated_tokens, plan_sweep
from scaling.sweeps.timing import EVAL_COST, RUN_START_S, WORKER_START_S
from store.db import connect
from store.runs import record_run
from tests.conftest import call_cli, tiny_config

SPEC = """
name = "est"
[fixed]
seq_len = 32
batch_size = 8
eval_tokens = 1000
[axes]
size = [{ d_model = 32, n_layers = 1, n_heads = 2 }]
tokens = [4096, 40960]
"""


@pytest.mark.slow
def test_evaluated_tokens_count_what_training_scores():
    config = tiny_config(eval_every=7, eval_tokens=1000)  # 20 steps: evals at 7, 14 and 20
    result = train(config)
    n_evals = sum(p.val_loss is not None for p in result.curve)
    assert n_evals == 3
    assert evaluated_tokens(config) == n_evals * 16 * 64  # 1000 tokens -> 16 windows of 64


@pytest.fixture
def measured(tmp_path):
    """A run log with one finished run at a training rate of 1,000 tokens/s."""
    db = tmp_path / "runs.duckdb"
    config = tiny_config()
    corpus = load_corpus("default")
    row = config_row(config, corpus.name, corpus.sha256)
    row.update(status="done", final_val_loss=3.0, wall_s=99.0, tokens_per_s=1000.0,
               finished_at=datetime(2026, 1, 1), device="cpu")  # fmt: skip
    with connect(db) as con:
        record_run(con, row, [])
    return db, row["flops"] / row["tokens"]


def test_estimate_adds_evaluation_and_start_up(measured):
    db, flops_per_token = measured
    spec = loads_spec(SPEC)
    plan = plan_sweep("est", Planner(spec), db)
    for run in plan.runs.itertuples():
        rate = 1000.0 * flops_per_token / (run.flops / run.tokens)  # constant FLOP rate
        work = run.tokens + EVAL_COST * run.eval_tokens
        assert run.est_s == pytest.approx(RUN_START_S + work / rate)
        assert run.eval_tokens > 0


def test_plan_prints_the_estimate_and_what_it_is_made_of(measured, tmp_path, capsys):
    db, _ = measured
    spec = tmp_path / "est.toml"
    spec.write_text(SPEC)
    code, out, _ = call_cli(["sweep", "plan", str(spec), "--db", str(db)], capsys)
    assert code == 0
    assert f"plus start-up ({WORKER_START_S:.0f} s, then {RUN_START_S:.0f} s a run)" in out
    code, out, _ = call_cli(["sweep", "plan", str(spec), "--db", str(tmp_path / "no.db")], capsys)
    assert code == 0 and "wall time: no estimate (no finished local runs" in " ".join(out.split())
