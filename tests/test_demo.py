"""The showcase end to end at a tiny horizon: real sweep, real runs, real fits."""

import ast
from pathlib import Path

import duckdb
import pytest

from scaling import demo
from tests.conftest import call_cli

ROOT = Path(__file__).resolve().parents[1]


def test_demo_configs_cover_sizes_and_horizons_with_lr_falling_with_width():
    configs = demo.demo_configs()
    widths = {c.model.d_model for c in configs}
    assert len(widths) >= 3 and len({c.train.tokens for c in configs}) >= 2
    assert {c.model.arch for c in configs} == {"llama"}
    for c in configs:
        assert c.train.lr * c.model.d_model == demo.LR_TIMES_WIDTH


def test_the_api_never_imports_the_cli():
    """Dependencies point one way (cli -> scaling -> runners, fits, store)."""
    for package in ("scaling", "runners", "fits", "store"):
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom):
                    names = [node.module or ""]
                else:
                    continue
                assert not any(n == "cli" or n.startswith("cli.") for n in names), path


@pytest.mark.slow
def test_demo_trains_the_sweep_once_and_answers(tmp_path, monkeypatch, capsys):
    """`scaling demo` into a pipe: its stages and one plain line per run, then the answers;
    a second start trains nothing."""
    monkeypatch.setattr(demo, "DEMO_TOKENS", [8_192, 16_384, 32_768])
    db = tmp_path / "demo.duckdb"
    code, out, err = call_cli(["demo", "--db", str(db)], capsys)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("stage 1 of 2: train")
    started = [line for line in lines if line.startswith("started ")]
    assert len(started) == 9
    # each line names the precision the run trains in, as the runs table logs it
    with duckdb.connect(str(db), read_only=True) as con:
        precisions = con.execute("SELECT DISTINCT precision FROM runs").fetchall()
    assert len(precisions) == 1 and precisions[0][0] in ("bf16", "fp32")
    assert all(line.endswith(precisions[0][0]) for line in started)
    assert sum(line.startswith("finished ") and ": done, val loss" in line for line in lines) == 9
    answers = out[out.index("stage 2 of 2: fit a law") :]
    assert "Chinchilla fit on 9 demo runs" in answers and "prediction interval" in answers
    # these runs are 8-33k tokens, so the optimum at 1e16 lies past their D/N and is refused
    assert "no compute-optimal answer" in answers and "beyond the runs" in answers
    assert "backtest chinchilla" in answers and "nan" not in answers

    with duckdb.connect(str(db), read_only=True) as con:
        created = con.execute("SELECT max(created_at) FROM runs").fetchone()
    table = demo.run_demo(db)  # resumes: nothing left to train
    assert len(table) == 9 and set(table.status) == {"done"}
    assert table.params.is_monotonic_increasing
    with duckdb.connect(str(db), read_only=True) as con:
        in_sweep = con.execute("SELECT count(*) FROM sweep_runs WHERE sweep = 'demo'").fetchone()
        assert con.execute("SELECT max(created_at) FROM runs").fetchone() == created
    assert in_sweep == (9,)
