"""Standing property: no generated input draws a traceback from the CLI.

Hypothesis drives the argument parsing of `scaling run`, `sweep plan` (with generated specs),
`predict`, `fit`, `sql`, `runs` and `import` over bad values (the generators are
cli/fuzzing.py's). Every call is in-process (`cli.app.main`) and refused before anything
trains: a refusal is exit 2 with one line on stderr; an accepted `sweep plan` must plan only
runs the run log can hold. benchmarks/fuzz_cli.py runs the same generators for many more inputs.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from cli.fuzzing import (
    call,
    log_intact,
    plan_outcome,
    prepare_log,
    query_argv,
    resolve,
    run_argv,
    spec_text,
)

FUZZ = settings(  # derandomized: CI sees the same inputs; benchmarks/fuzz_cli.py explores
    max_examples=100,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture(scope="module")
def log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    db = tmp_path_factory.mktemp("fuzz") / "runs.duckdb"
    prepare_log(db)
    return db


@FUZZ
@given(argv=run_argv())
@pytest.mark.slow
def test_scaling_run_refuses_bad_values_in_one_line(argv: list[str], tmp_path: Path) -> None:
    outcome = call([*argv, "--db", str(tmp_path / "never.duckdb")])
    assert outcome.problem() is None and outcome.code == 2, (outcome, outcome.traceback)


@FUZZ
@given(text=spec_text())
@pytest.mark.slow
def test_sweep_plan_refuses_or_plans_only_runs_the_log_holds(text: str, tmp_path: Path) -> None:
    outcome = plan_outcome(text, tmp_path)
    assert outcome.problem() is None, (text, outcome, outcome.traceback)


@FUZZ
@given(argv=query_argv())
@pytest.mark.slow
def test_queries_refuse_bad_values_in_one_line(argv: list[str], log: Path) -> None:
    outcome = call([*resolve(argv, log), "--db", str(log)])
    assert outcome.problem() is None, (outcome, outcome.traceback)
    assert log_intact(log), outcome
