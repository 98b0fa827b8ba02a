"""The showcase end to end at a tiny horizon: real sweep, real runs, real fits."""

import ast
from pathlib import Path

import duckdb
import pytest

from scaling import demo

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
def test_demo_trains_the_sweep_once_and_answers(tmp_path, monkeypatch):
    monkeypatch.setattr(demo, "DEMO_TOKENS", [8_192, 16_384, 32_768])
    db = tmp_path / "demo.duckdb"
    table = demo.run_demo(db)
    assert len(table) == 9 and set(table.status) == {"done"}
    assert table.params.is_monotonic_increasing
    con = duckdb.connect(str(db), read_only=True)
    in_sweep = con.execute("SELECT count(*) FROM sweep_runs WHERE sweep = 'demo'").fetchone()
    created = con.execute("SELECT max(created_at) FROM runs").fetchone()
    con.close()
    assert in_sweep == (9,)

    again = demo.run_demo(db)  # resumes: nothing left to train
    assert again.run_id.tolist() == table.run_id.tolist()
    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("SELECT max(created_at) FROM runs").fetchone() == created
    con.close()

    fit, loss, optimal, backtest, _ = demo.demo_answers(db)
    assert fit.startswith("Chinchilla fit on 9 demo runs")
    assert "prediction interval" in loss and "nan" not in loss
    # these runs are 8-33k tokens, so the optimum at 1e16 lies past their D/N and is refused
    assert "no compute-optimal answer" in optimal and "beyond the runs" in optimal
    assert backtest.startswith("backtest chinchilla")
