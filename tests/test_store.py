import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from runners.corpus import load_corpus
from runners.train import train
from scaling import datasets
from store.db import connect
from store.errors import StoreError
from store.imports import import_file
from store.lock import lock_holder, lock_path, sweep_lock
from store.runs import mark_running, read_curves, read_runs, record_run, run_status
from store.schema import MIGRATIONS, SCHEMA_VERSION
from tests.conftest import REPO, run_cli, tiny_config


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


@pytest.mark.slow
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


def _damaged_copy(tmp_path: Path) -> Path:
    """A real run log with 245 runs, cut to half its size as a full disk or bad copy does."""
    path = tmp_path / "half.duckdb"
    with connect(path) as con:
        import_file(con, datasets.path("chinchilla-epoch"))
    os.truncate(path, path.stat().st_size // 2)
    return path


@pytest.mark.slow
def test_a_truncated_file_is_reported_as_damaged_by_every_command(tmp_path):
    path = _damaged_copy(tmp_path)
    with pytest.raises(StoreError, match=r"half\.duckdb is damaged"), connect(path) as con:
        read_runs(con)
    spec = tmp_path / "s.toml"
    spec.write_text('name = "s"\n[axes]\nlr = [1e-3]\n')
    for args in (
        ["runs"],
        ["sweep", "status"],
        ["import", "--example", "chinchilla-epoch"],
        ["run", "--d-model", "32", "--n-layers", "1", "--n-heads", "2", "--seq-len", "64",
         "--batch-size", "8", "--tokens", "20k"],
    ):  # fmt: skip
        done = run_cli(*args, "--db", str(path))
        assert done.returncode == 2, (args, done.stderr)
        assert done.stderr.startswith("error: ") and "half.duckdb is damaged" in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def _v1_file(path: Path) -> None:
    """A run log as release 1 of the schema wrote it, with one run in it."""
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE schema_version (version INTEGER, applied_at TIMESTAMP)")
    for sql in MIGRATIONS[0]:
        con.execute(sql)
    con.execute("INSERT INTO schema_version (version) VALUES (1)")
    con.execute(
        "INSERT INTO runs (run_id, status, params, final_val_loss) VALUES ('r1', 'done', 9, 2.5)"
    )
    con.close()


def test_a_file_at_the_previous_schema_gains_unique_tokens_and_keeps_its_runs(tmp_path):
    path = tmp_path / "old.duckdb"
    _v1_file(path)
    with pytest.raises(StoreError, match="schema version 1"), connect(path, read_only=True):
        pass
    with connect(path) as con:
        record_run(con, {"run_id": "r2", "status": "done", "unique_tokens": 11_718_424}, [])
    with connect(path, read_only=True) as con:
        rows = con.execute("SELECT run_id, params, unique_tokens FROM runs ORDER BY 1").fetchall()
        versions = con.execute("SELECT version FROM schema_version ORDER BY 1").fetchall()
    assert rows == [("r1", 9, None), ("r2", None, 11_718_424)]
    assert versions == [(v,) for v in range(1, SCHEMA_VERSION + 1)] and SCHEMA_VERSION >= 2


def test_a_local_run_records_the_unique_tokens_of_its_corpus(db):
    result = train(tiny_config())
    with connect(db) as con:
        record_run(con, result.row(), result.curve_rows())
        (unique,) = con.execute("SELECT unique_tokens FROM runs").fetchall()[0]
    corpus = load_corpus("default")
    assert unique == len(corpus.train) == corpus.n_tokens - len(corpus.val) > 11_000_000


HOLD_LOCK = """
import sys, time
from pathlib import Path
from store.lock import sweep_lock
with sweep_lock(Path(sys.argv[1])):
    print("held", flush=True)
    time.sleep(60)
"""


@pytest.mark.slow
def test_a_symlink_to_the_run_log_shares_its_sweep_lock(tmp_path):
    real = tmp_path / "sw4.duckdb"
    link = tmp_path / "link4.duckdb"
    link.symlink_to(real.name)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(real)], env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(StoreError, match=f"pid {holder.pid} "), sweep_lock(link):
            pass
        assert lock_holder(link) is not None and lock_path(link) == lock_path(real)
    finally:
        holder.kill()
        holder.wait()
    with sweep_lock(link):  # free again once the holder is gone
        pass
