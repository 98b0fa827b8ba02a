import duckdb
import pytest

from runners.train import train
from store.db import connect
from store.errors import StoreError
from store.runs import mark_running, read_curves, read_runs, record_run, run_status
from store.schema import SCHEMA_VERSION
from tests.conftest import tiny_config


def test_run_and_curve_are_written_and_read_back(db):
    result = train(tiny_config())
    with connect(db) as con:
        record_run(con, result.row("s1"), result.curve_rows(), sweep="s1")
    with connect(db, read_only=True) as con:
        runs = read_runs(con, sweep="s1")
        curve = read_curves(con, [result.run_id])
    assert len(runs) == 1
    row = runs.iloc[0]
    assert row.run_id == result.run_id and row.status == "done"
    assert row.params == result.counts.params and row.tokens == result.config.tokens
    assert row.flops == result.counts.flops_per_token * result.config.tokens
    assert row.final_val_loss == result.final_val_loss
    assert row.corpus_sha256 == result.corpus_sha256
    assert list(curve.step) == [p.step for p in result.curve]
    assert list(curve.train_loss) == [p.train_loss for p in result.curve]
    assert curve.val_loss.iloc[-1] == result.final_val_loss


def test_a_failed_commit_leaves_no_partial_run(db):
    result = train(tiny_config())
    bad_curve = [*result.curve_rows(), result.curve_rows()[0]]  # duplicate (run_id, step)
    with connect(db) as con:
        mark_running(con, result.row())
        with pytest.raises(duckdb.Error):
            record_run(con, result.row(), bad_curve)
        assert run_status(con, result.run_id) == "running"
        assert len(read_curves(con, [result.run_id])) == 0


def test_schema_version_is_recorded_and_reopening_is_idempotent(db):
    for _ in range(2):
        with connect(db) as con:
            versions = con.execute("SELECT version FROM schema_version").fetchall()
    assert versions == [(v,) for v in range(1, SCHEMA_VERSION + 1)]


def test_foreign_corrupt_and_newer_files_are_refused(tmp_path):
    foreign = tmp_path / "foreign.duckdb"
    duckdb.connect(str(foreign)).execute("CREATE TABLE t (x INT)").close()
    with pytest.raises(StoreError, match="not a scaling run log"), connect(foreign):
        pass
    corrupt = tmp_path / "corrupt.duckdb"
    corrupt.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match="not a DuckDB run log"), connect(corrupt):
        pass
    newer = tmp_path / "newer.duckdb"
    with connect(newer) as con:
        con.execute("INSERT INTO schema_version (version) VALUES (?)", [SCHEMA_VERSION + 1])
    with pytest.raises(StoreError, match="upgrade scaling"), connect(newer):
        pass


def test_read_only_connection_cannot_write(db):
    with connect(db):
        pass
    with connect(db, read_only=True) as con, pytest.raises(duckdb.Error, match="read-only"):
        con.execute("DELETE FROM runs")


def test_missing_log_is_a_clear_error(tmp_path):
    missing = tmp_path / "none.duckdb"
    with pytest.raises(StoreError, match="no run log"), connect(missing, read_only=True):
        pass


def test_best_lr_view_picks_the_lowest_loss(db):
    with connect(db) as con:
        for lr, loss in ((1e-3, 2.5), (3e-3, 2.1), (1e-2, 2.7)):
            row = {"run_id": f"r{lr}", "arch": "llama", "params": 10, "tokens": 100,
                   "batch_size": 8, "parametrization": "sp", "lr": lr, "status": "done",
                   "final_val_loss": loss}  # fmt: skip
            record_run(con, row, [])
        best = con.execute("SELECT lr, final_val_loss, n_runs FROM best_lr").fetchall()
    assert best == [(3e-3, 2.1, 3)]
