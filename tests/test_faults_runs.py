"""Runs and sweeps under faults: forced retrains that fail, device typos, a full disk at the
end of a run, a SIGKILLed run, a reader that holds the log. Real DuckDB files, real
training, real subprocesses."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import scaling.sweeps.coordinator as coordinator
from runners.errors import RunnerError
from runners.sweeps.executors import cores
from scaling.errors import ScalingError
from scaling.execute import run_and_record
from scaling.sweeps.coordinator import SweepOptions, run_sweep
from store import pending
from store.db import connect
from store.errors import StoreError
from store.runs import read_curves, read_runs
from tests.conftest import REPO, call_cli, tiny_config
from tests.mounts import fill, tmpfs

RUN = ["run", "--d-model", "32", "--n-layers", "1", "--n-heads", "2", "--seq-len", "64",
       "--batch-size", "8", "--eval-tokens", "2048"]  # fmt: skip
SPEC = """
name = "faults"
[fixed]
seq_len = 32
batch_size = 8
eval_tokens = 1024
[axes]
size = [{ d_model = 32, n_layers = 1, n_heads = 2 }]
tokens = [4096, 8192]
lr = [1e-3, 3e-3, 1e-2]
"""


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200", **extra}


def _start(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "cli", *args],
        env=env or _env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _scaling(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        env=env or _env(),
        capture_output=True,
        text=True,
        timeout=600,
    )


def _wait_for(predicate, proc: subprocess.Popen, what: str, limit: float = 120) -> None:
    deadline = time.monotonic() + limit
    while not predicate():
        assert proc.poll() is None, f"exited before {what}: {proc.communicate()}"
        assert time.monotonic() < deadline, f"no {what} after {limit} s"
        time.sleep(0.1)


def _statuses(db: Path) -> dict[str, str]:
    """Each run's status; none while the log is still being created."""
    try:
        with connect(db, read_only=True) as con:
            return dict(con.execute("SELECT run_id, status FROM runs").fetchall())
    except StoreError:
        return {}


def _snapshot(db: Path) -> tuple[list[tuple], int]:
    with connect(db, read_only=True) as con:
        runs = read_runs(con)
        n_curve = len(read_curves(con))
    columns = ["run_id", "status", "final_val_loss", "finished_at", "error"]
    return [tuple(r) for r in runs[columns].itertuples(index=False)], n_curve


@pytest.mark.slow
def test_a_forced_retrain_that_fails_keeps_the_finished_run(tmp_path, capsys):
    db = tmp_path / "log.duckdb"
    config = tiny_config()
    result, run_id = run_and_record(config, db)
    assert result is not None and result.status == "done"
    before = _snapshot(db)
    assert before[1] > 0

    code, _, err = call_cli([*RUN, "--force", "--device", "tpu", "--db", str(db)], capsys)
    assert code == 2
    assert err.strip() == "error: --device 'tpu': expected auto, cpu, cuda or cuda:N"
    with pytest.raises(RunnerError, match="tpu"):
        run_and_record(config, db, force=True, device="tpu")

    def out_of_memory(progress) -> None:  # the trainer raises mid-run, as an OOM does
        raise MemoryError(f"out of memory at step {progress.step}")

    with pytest.raises(ScalingError, match=f"retrain of run {run_id} failed .*keeps its finished"):
        run_and_record(config, db, force=True, progress=out_of_memory)
    assert _snapshot(db) == before


def test_a_device_typo_fails_a_sweep_before_anything_is_recorded(tmp_path, capsys):
    (tmp_path / "s.toml").write_text(SPEC)
    db = tmp_path / "log.duckdb"
    args = ["sweep", "run", str(tmp_path / "s.toml"), "--db", str(db), "--device", "tpu"]
    code, _, err = call_cli(args, capsys)
    assert code == 2
    assert err.strip() == "error: --device 'tpu': expected auto, cpu, cuda or cuda:N"
    assert not db.exists()


@pytest.mark.slow
def test_a_full_disk_at_the_end_of_a_run_keeps_the_result_for_the_next_start(tmp_path):
    spare = tmp_path / "tmp"  # where results go when the log's own disk is full
    spare.mkdir()
    env = _env(TMPDIR=str(spare))
    with tmpfs(tmp_path / "full", "6m") as mount:
        db = mount / "log.duckdb"
        args = [*RUN, "--tokens", "60k", "--db", str(db)]
        proc = _start(*args, env=env)
        _wait_for(lambda: "running" in _statuses(db).values(), proc, "running row")
        filler = fill(mount)
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 2, (out, err)
        message = err.strip()
        assert len(message.splitlines()) == 1, message
        assert message.startswith(f"error: no space left on device for {db}"), message
        (kept,) = (spare / "scaling-pending").iterdir()  # the log's own disk is full
        assert f"is kept in {kept} and recorded by the next" in message
        (saved,) = kept.glob("*.json")
        record = json.loads(saved.read_text())
        assert record["row"]["status"] == "done" and len(record["curve"]) > 10

        filler.unlink()
        again = _scaling(*args, env=env)
        assert again.returncode == 0, again.stderr
        assert "is already in the log as done" in again.stdout  # recovered, not trained again
        with connect(db, read_only=True) as con:
            runs = read_runs(con)
            curve = read_curves(con)
        assert runs[["run_id", "status"]].values.tolist() == [[saved.stem, "done"]]
        assert runs.final_val_loss.iloc[0] == record["row"]["final_val_loss"]
        assert len(curve) == len(record["curve"])
        assert list(kept.glob("*.json")) == []


@pytest.mark.slow
def test_a_run_killed_by_sigkill_is_told_from_a_live_one(tmp_path):
    db = tmp_path / "log.duckdb"
    proc = _start(*RUN, "--tokens", "2M", "--db", str(db))
    try:
        _wait_for(lambda: "running" in _statuses(db).values(), proc, "running row")
        alive = _scaling("runs", "--db", str(db))
        assert alive.returncode == 0 and "running" in alive.stdout, alive.stderr
        assert "left by a process that is gone" not in alive.stdout
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    dead = _scaling("runs", "--db", str(db))
    assert dead.returncode == 0, dead.stderr
    assert f"1 running run(s) were left by a process that is gone (pid {proc.pid} on" in dead.stdout


HOLD_READER = """
import sys, time, duckdb
con = duckdb.connect(sys.argv[1], read_only=True)
print("reading", flush=True)
time.sleep(float(sys.argv[2]))
"""


def _reader(db: Path, seconds: float) -> subprocess.Popen:
    """A notebook: a read-only connection held open for `seconds`."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD_READER, str(db), str(seconds)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout.readline().strip() == "reading"
    return proc


@pytest.mark.slow
def test_a_long_reader_neither_stalls_nor_stops_a_sweep(tmp_path):
    (tmp_path / "s.toml").write_text(SPEC)
    db = tmp_path / "log.duckdb"
    workers = str(min(2, cores()))
    sweep = _start("sweep", "run", str(tmp_path / "s.toml"), "--db", str(db), "--workers", workers)
    _wait_for(lambda: "running" in _statuses(db).values(), sweep, "first runs handed out")
    hold_s = 40.0  # idle, all six runs came back within 2.3 s of the hold: 17x to spare
    reader = _reader(db, hold_s)
    held_from = time.time()
    out, err = sweep.communicate(timeout=600)
    held_to = time.time()
    reader.wait()
    assert sweep.returncode == 0, err
    assert f"the run log is held by process {reader.pid}" in out
    with connect(db, read_only=True) as con:
        finished = con.execute("SELECT epoch(finished_at) FROM runs WHERE status = 'done'").df()
    assert len(finished) == 6  # every run committed, none dropped
    # runs went on being handed out while the reader held the log: more came back in that
    # time than the sweep has workers
    during = finished.iloc[:, 0].between(held_from, held_from + hold_s - 1)
    assert during.sum() > int(workers), (finished, held_from, held_to)


@pytest.mark.slow
def test_a_reader_that_never_lets_go_loses_no_finished_run(tmp_path, monkeypatch):
    db = tmp_path / "log.duckdb"
    with connect(db):
        pass
    configs = [tiny_config(lr=lr) for lr in (1e-3, 3e-3)]
    monkeypatch.setattr(coordinator, "COMMIT_WAIT_S", 3.0)
    readers: list[subprocess.Popen] = []

    class OpenNotebook(coordinator.Observer):
        """A notebook opens the log as soon as the sweep hands out its first run."""

        def started(self, run) -> None:
            if not readers:
                readers.append(_reader(db, 600))

    try:
        with pytest.raises(StoreError, match=r"held by process \d+ .* for 3 s; 2 finished run"):
            run_sweep("held", lambda *_: configs, db, SweepOptions(workers=1, threads=1),
                      OpenNotebook())  # fmt: skip
    finally:
        for reader in readers:
            reader.kill()
            reader.wait()
    assert len(list(pending.pending_folders(db)[0].glob("*.json"))) == 2
    again = run_sweep("held", lambda *_: configs, db, SweepOptions(workers=1, threads=1))
    assert again.trained.total() == 0 and again.left == 0
    assert set(_statuses(db).values()) == {"done"} and len(_statuses(db)) == 2


@pytest.mark.slow
def test_a_full_disk_mid_sweep_stops_it_in_one_line_and_keeps_its_results(tmp_path):
    (tmp_path / "s.toml").write_text(SPEC)
    spare = tmp_path / "tmp"
    spare.mkdir()
    env = _env(TMPDIR=str(spare))
    with tmpfs(tmp_path / "full", "8m") as mount:
        db = mount / "log.duckdb"
        args = ["sweep", "run", str(tmp_path / "s.toml"), "--db", str(db), "--workers", "1"]
        sweep = _start(*args, env=env)
        _wait_for(lambda: "done" in _statuses(db).values(), sweep, "first committed run")
        filler = fill(mount)
        out, err = sweep.communicate(timeout=600)
        assert sweep.returncode == 2, (out, err)
        assert len(err.strip().splitlines()) == 1, err
        assert err.startswith(f"error: no space left on device for {db}"), err
        filler.unlink()
        again = _scaling(*args, env=env)
        assert again.returncode == 0, again.stderr
        assert "6 of 6 finished" in again.stdout
        with connect(db, read_only=True) as con:
            curves = con.execute("SELECT run_id, count(*), count(DISTINCT step) FROM curves "
                                 "GROUP BY 1").fetchall()  # fmt: skip
        assert set(_statuses(db).values()) == {"done"} and len(curves) == 6
        assert all(n == distinct for _, n, distinct in curves)


@pytest.mark.slow
def test_a_report_onto_a_full_disk_is_one_line(tmp_path, capsys):
    db = tmp_path / "log.duckdb"
    code, _, err = call_cli(["import", "--example", "chinchilla-epoch", "--db", str(db)], capsys)
    assert code == 0, err
    with tmpfs(tmp_path / "full", "1m") as mount:
        fill(mount)
        out = mount / "report"
        code, _, err = call_cli(["report", "--out", str(out), "--bootstrap", "20", "--db",
                                 str(db)], capsys)  # fmt: skip
        assert code == 2
        assert err.strip().startswith(f"error: cannot write the report in {out}: No space left")
