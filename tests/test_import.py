import json

import duckdb
import pandas as pd
import pytest

from scaling import datasets
from store.db import connect
from store.errors import StoreError
from store.imports import import_file
from store.runs import read_runs
from tests.conftest import run_cli

CHINCHILLA = datasets.path("chinchilla-epoch")
STEP_LAW = datasets.path("step-law")
MU = datasets.path("mu-scaling")


def test_chinchilla_points_import_with_aliases_and_reimport_adds_nothing(db):
    source = pd.read_csv(CHINCHILLA)
    with connect(db) as con:
        assert import_file(con, CHINCHILLA, "chinchilla") == (245, [])
        assert import_file(con, CHINCHILLA, "chinchilla") == (245, [])
        runs = read_runs(con, source="imported:chinchilla")
    assert len(runs) == 245
    assert sorted(runs.params) == pytest.approx(sorted(source.N))
    assert sorted(runs.tokens) == pytest.approx(sorted(source.D))
    assert sorted(runs.flops) == pytest.approx(sorted(source.C))
    assert sorted(runs.final_val_loss) == pytest.approx(sorted(source.loss))
    assert set(runs.status) == {"done"}


def test_explicit_mapping_keeps_unmapped_columns_in_config(db):
    with connect(db) as con:
        count, _ = import_file(con, STEP_LAW, "steplaw", "loss=smooth loss")
        runs = read_runs(con, source="imported:steplaw")
    source = pd.read_csv(STEP_LAW)
    assert count == len(source) == len(runs)
    assert sorted(runs.final_val_loss) == pytest.approx(sorted(source["smooth loss"]))
    assert sorted(runs.lr) == pytest.approx(sorted(source.lr))
    assert sorted(runs.batch_size) == pytest.approx(sorted(source.bs))
    config = json.loads(runs.config.iloc[0])
    assert {"h", "numl", "loss", "exp_name"} <= set(config)


def test_mapping_may_be_an_expression(db):
    with connect(db) as con:
        import_file(con, MU, "mu", "loss=train_loss_at_20k_steps,params=params_millions*1e6")
        runs = read_runs(con, source="imported:mu").sort_values("d_model")
    source = pd.read_csv(MU).sort_values("width")
    assert list(runs.params) == pytest.approx(list(source.params_millions * 1e6))
    assert list(runs.d_model) == list(source.width)


def test_bad_rows_import_nothing_unless_skipped(tmp_path, db):
    bad = tmp_path / "bad.csv"
    bad.write_text("N,D,loss\n1e6,1e9,3.0\n-5,1e9,2.0\n2e6,abc,2.5\n3e6,1e9,\n4e6,2e9,2.2\n")
    with connect(db) as con:
        with pytest.raises(StoreError, match=r"line 3.*line 4.*line 5"):
            import_file(con, bad)
        assert read_runs(con).empty
        count, problems = import_file(con, bad, skip_bad=True)
    assert count == 2
    assert [p.split(":")[0] for p in problems] == ["line 3", "line 4", "line 5"]


@pytest.mark.slow  # runs `scaling import` in a subprocess
def test_parquet_and_jsonl_and_the_command(tmp_path, db):
    frame = pd.DataFrame({"params": [1e6, 2e6], "tokens": [1e8, 1e8], "loss": [3.1, 2.9]})
    parquet = tmp_path / "runs.parquet"
    duckdb.connect().register("f", frame).execute(f"COPY f TO '{parquet}' (FORMAT parquet)")
    jsonl = tmp_path / "runs.jsonl"
    jsonl.write_text("\n".join(json.dumps(r) for r in frame.to_dict("records")))
    for path in (parquet, jsonl):
        done = run_cli("import", str(path), "--source", path.suffix[1:], "--db", str(db))
        assert done.returncode == 0, done.stderr
    with connect(db, read_only=True) as con:
        assert len(read_runs(con, source="imported:parquet")) == 2
        assert len(read_runs(con, source="imported:jsonl")) == 2
    missing = run_cli("import", str(tmp_path / "nope.csv"), "--db", str(db))
    assert missing.returncode == 2 and "file not found" in missing.stderr
    unmapped = run_cli("import", str(MU), "--db", str(db))
    assert unmapped.returncode == 2 and "no loss column" in unmapped.stderr
