"""The run log under faults: foreign and damaged files, hard links, full and read-only disks,
dead owners. Real DuckDB files, real processes, real (tmpfs) file systems."""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from scaling import datasets
from scaling.sweeps.book import sweep_status
from store import pending
from store.db import connect, memory
from store.errors import StoreError
from store.imports import import_file
from store.lock import lock_holder, sweep_lock
from store.runs import mark_running, owner, owner_alive, read_curves, record_run, run_status
from tests.conftest import REPO, call_cli, run_cli
from tests.mounts import fill, remount_read_only, tmpfs


def _example_log(path: Path) -> Path:
    with connect(path) as con:
        import_file(con, datasets.path("chinchilla-epoch"))
    return path


def _files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


@pytest.mark.slow
def test_an_sqlite_file_is_refused_and_nothing_is_written_outside_its_folder(tmp_path):
    folder, home = tmp_path / "logs", tmp_path / "home"
    folder.mkdir()
    home.mkdir()
    path = folder / "other.db"
    with sqlite3.connect(path) as con:
        con.execute("CREATE TABLE runs (x INTEGER)")
    assert path.read_bytes().startswith(b"SQLite format 3\0")
    env = {**os.environ, "PYTHONPATH": str(REPO), "HOME": str(home)}
    for args in (["runs"], ["sql", "SELECT 1"], ["import", "--example", "chinchilla-epoch"]):
        done = subprocess.run(
            [sys.executable, "-m", "cli", *args, "--db", str(path)],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 2, (args, done.stderr)
        refusal = f"error: {path} is not a DuckDB run log (it is an SQLite database)"
        assert done.stderr.strip() == refusal
    assert _files(home) == set()  # DuckDB made no ~/.duckdb/extensions folder
    assert _files(folder) == {"other.db"}


def test_every_connection_the_product_opens_installs_and_loads_no_extension(tmp_path):
    setting = "SELECT current_setting('autoinstall_known_extensions'), " \
        "current_setting('autoload_known_extensions')"  # fmt: skip
    with connect(tmp_path / "log.duckdb") as con:
        assert con.execute(setting).fetchone() == (False, False)
    assert memory().execute(setting).fetchone() == (False, False)
    with pytest.raises(duckdb.Error, match="httpfs"):  # a URL is not fetched
        memory().execute("SELECT * FROM read_csv('http://127.0.0.1:9/x.csv')")


def _damage(path: Path, how: str) -> None:
    con = duckdb.connect(str(path))
    if how == "empty schema_version":
        con.execute("DELETE FROM schema_version")
    elif how == "negative schema_version":
        con.execute("UPDATE schema_version SET version = -1")
    elif how == "dropped runs table":
        con.execute("DROP VIEW best_lr")
        con.execute("DROP TABLE runs")
    con.close()
    if how == "truncated":
        os.truncate(path, path.stat().st_size // 2)


@pytest.mark.parametrize(
    ("how", "says"),
    [
        ("empty schema_version", "is damaged: its schema_version table is empty"),
        ("negative schema_version", "is damaged: schema_version holds -1, not a schema version"),
        ("dropped runs table", "is damaged: best_lr, runs missing; restore it from a copy"),
        ("truncated", "is damaged (could not read enough bytes from file)"),
    ],
)
def test_a_damaged_log_is_named_as_such_by_every_command(tmp_path, capsys, how, says):
    path = _example_log(tmp_path / "log.duckdb")
    _damage(path, how)
    for args in (
        ["runs"],
        ["fit", "chinchilla"],  # a truncated log was "a bad --where clause" here
        ["import", "--example", "chinchilla-epoch"],
        ["sweep", "status"],
        ["sql", "SELECT * FROM runs"],
    ):
        code, _, err = call_cli([*args, "--db", str(path)], capsys)
        assert code == 2, (args, err)
        assert err.startswith(f"error: {path} {says}"), (args, err)
        assert len(err.strip().splitlines()) == 1, err


HOLD_LOCK = """
import sys, time
from pathlib import Path
from store.lock import sweep_lock
with sweep_lock(Path(sys.argv[1])):
    print("held", flush=True)
    time.sleep(60)
"""


@pytest.mark.slow
def test_a_hard_link_to_the_run_log_shares_its_sweep_lock(tmp_path):
    real = tmp_path / "a" / "log.duckdb"
    real.parent.mkdir()
    with connect(real):
        pass
    hard = tmp_path / "hard.duckdb"  # another folder, another name, the same inode
    os.link(real, hard)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(real)], env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        refused = pytest.raises(StoreError, match=f"using {hard}: pid {holder.pid}\\b")
        with refused, sweep_lock(hard):
            pass
        assert lock_holder(hard) == f"pid {holder.pid}"
    finally:
        holder.kill()
        holder.wait()
    with sweep_lock(hard):  # free again once the holder is gone, and held under both names
        assert lock_holder(real) is not None


@pytest.mark.slow
def test_a_read_only_file_system_is_named_and_reads_still_work(tmp_path, capsys):
    with tmpfs(tmp_path / "ro", "8m") as mount:
        path = _example_log(mount / "log.duckdb")
        (tmp_path / "s.toml").write_text('name = "s"\n[axes]\nlr = [1e-3]\n')
        remount_read_only(mount)
        code, out, err = call_cli(["runs", "--db", str(path)], capsys)
        assert code == 0 and "245 runs" in out, err
        for args in (
            ["import", "--example", "chinchilla-epoch"],
            ["run", "--d-model", "32", "--n-layers", "1", "--n-heads", "2", "--tokens", "20k"],
            ["sweep", "run", str(tmp_path / "s.toml")],
        ):
            code, _, err = call_cli([*args, "--db", str(path)], capsys)
            assert code == 2, (args, err)
            assert err.startswith(f"error: {path} is on a read-only file system"), (args, err)
            assert len(err.strip().splitlines()) == 1, err


ROW = {"run_id": "r1", "arch": "llama", "params": 10, "tokens": 100, "status": "done"}


def test_a_full_disk_at_commit_says_so_and_the_log_stays_as_it_was(tmp_path):
    with tmpfs(tmp_path / "full", "4m") as mount:
        path = mount / "log.duckdb"
        with connect(path) as con:
            record_run(con, ROW, [{"step": 1, "tokens": 10, "train_loss": 3.0}])
        filler = fill(mount)
        full = pytest.raises(StoreError, match=f"^no space left on device for {path}")
        curve = [{"step": s, "tokens": s, "train_loss": 1.0} for s in range(20_000)]
        with full, connect(path) as con:  # before: a TransactionException from the ROLLBACK
            record_run(con, {**ROW, "run_id": "r2"}, curve)
        full = pytest.raises(StoreError, match=f"^no space left on device for {path}")
        with full, connect(path) as con:
            mark_running(con, {**ROW, "run_id": "r3", "status": "pending"})
        filler.unlink()
        with connect(path, read_only=True) as con:
            assert con.execute("SELECT run_id, status FROM runs").fetchall() == [("r1", "done")]
            assert len(read_curves(con)) == 1


def test_kept_results_are_recorded_by_the_next_start_once(tmp_path):
    path = tmp_path / "log.duckdb"
    with connect(path) as con:
        record_run(con, {**ROW, "status": "done", "final_val_loss": 2.0}, [])
    curve = [{"step": 1, "tokens": 10, "train_loss": 3.0, "val_loss": 3.1, "lr": 1e-3}]
    folder = pending.save(path, [({**ROW, "run_id": "r2", "final_val_loss": 2.5}, curve)], "s")
    failed = {**ROW, "status": "failed", "error": "boom"}  # a failure never replaces a done run
    pending.save(path, [(failed, [])], None)
    assert folder == path.with_name("log.duckdb.pending")
    with connect(path) as con:
        assert pending.recover(con, path) == 1
        assert pending.recover(con, path) == 0
        rows = con.execute("SELECT run_id, status, final_val_loss FROM runs ORDER BY 1").fetchall()
        members = con.execute("SELECT sweep, run_id FROM sweep_runs").fetchall()
        assert len(read_curves(con, ["r2"])) == 1
    assert rows == [("r1", "done", 2.0), ("r2", "done", 2.5)]
    assert members == [("s", "r2")]
    assert list(folder.iterdir()) == []


@pytest.mark.slow
def test_a_dead_owner_is_told_from_a_live_one(tmp_path):
    path = tmp_path / "log.duckdb"
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    host = socket.gethostname()
    with connect(path) as con:
        mark_running(con, {**ROW, "run_id": "mine", "sweep": "s"})
        mark_running(con, {**ROW, "run_id": "dead", "sweep": "s"}, f"pid {gone.pid} on {host}")
        owners = dict(con.execute("SELECT run_id, owner FROM runs").fetchall())
        assert run_status(con, "dead") == "running"
    assert owners["mine"] == owner() and owner_alive(owner()) is True
    assert owner_alive(owners["dead"]) is False
    assert owner_alive(f"pid {os.getpid()} on another-host") is None
    frame, holder = sweep_status(path, "s")
    assert holder is None
    assert frame[["running", "orphaned"]].values.tolist() == [[2, 1]]
    done = run_cli("runs", "--db", str(path))
    assert done.returncode == 0, done.stderr
    assert f"1 running run(s) were left by a process that is gone (pid {gone.pid} on" in done.stdout


def test_a_full_disk_stops_a_run_or_a_sweep_before_it_starts(tmp_path, capsys):
    (tmp_path / "s.toml").write_text('name = "s"\n[axes]\nlr = [1e-3]\n')
    with tmpfs(tmp_path / "full", "4m") as mount:
        path = mount / "log.duckdb"
        with connect(path):
            pass
        fill(mount)
        for args in (  # the sweep lock's holder text, then mark_running
            ["sweep", "run", str(tmp_path / "s.toml")],
            ["run", "--d-model", "32", "--n-layers", "1", "--n-heads", "2", "--tokens", "20k"],
        ):
            code, _, err = call_cli([*args, "--db", str(path)], capsys)
            assert code == 2, (args, err)
            assert err.strip() == f"error: no space left on device for {path}: free some " \
                "space and run again"  # fmt: skip
        with connect(path, read_only=True) as con:
            assert con.execute("SELECT count(*) FROM runs").fetchone() == (0,)
