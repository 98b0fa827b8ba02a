"""`scaling sweep` as users and schedulers run it: real subprocesses, SIGKILL, two at once."""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import typer

from cli.sweep import duration
from runners.corpus import load_corpus
from runners.results import config_row
from runners.sweeps.designs import Planner
from runners.sweeps.executors import cores
from runners.sweeps.spec import load_spec
from store.db import connect
from store.lock import lock_path

# Real `scaling` subprocesses and training: the fast lane (-m "not slow") skips them.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
WORKERS = str(min(2, cores()))

SPEC = """
name = "crash"
[fixed]
seq_len = 32
batch_size = 8
eval_tokens = 1024
[axes]
size = [{ d_model = 32, n_layers = 1, n_heads = 2 }, { d_model = 48, n_layers = 1, n_heads = 2 }]
tokens = [4096, 8192]
lr = [1e-3, 1e-2]
"""


def scaling(
    *args: str, cwd: Path, timeout: float = 300, path: str = str(ROOT)
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        cwd=cwd,
        env={**_env(), "PYTHONPATH": path},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start(*args: str, cwd: Path) -> subprocess.Popen:
    """In a process group of its own, as a scheduler starts it."""
    return subprocess.Popen(
        [sys.executable, "-m", "cli", *args],
        cwd=cwd,
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"}


def test_durations_parse():
    assert duration("2h") == 7200 and duration("1h30m") == 5400 and duration("90") == 90
    with pytest.raises(typer.BadParameter):
        duration("soon")


def test_a_malformed_spec_is_one_red_line_and_exit_2(tmp_path):
    (tmp_path / "bad.toml").write_text('name = "bad"\n[axes]\nlr = [1e-3, -0.1]\n')
    result = scaling("sweep", "plan", "bad.toml", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == "error: spec.axes.lr: must be positive, got -0.1"


def test_executor_ray_without_ray_installed_is_a_clear_error(tmp_path):
    (tmp_path / "s.toml").write_text(SPEC)
    (tmp_path / "hide" / "ray").mkdir(parents=True)  # an import of ray that fails
    (tmp_path / "hide" / "ray" / "__init__.py").write_text("raise ImportError('no ray')\n")
    path = f"{tmp_path / 'hide'}{os.pathsep}{ROOT}"
    result = scaling("sweep", "run", "s.toml", "--executor", "ray", cwd=tmp_path, path=path)
    assert result.returncode == 2
    assert result.stderr.strip().startswith("error: --executor ray needs Ray: pip install")


def _snapshot(db: Path) -> list[tuple[int, int]]:
    paths = (db, db.with_name(db.name + ".wal"))
    return [(p.stat().st_mtime_ns, p.stat().st_size) if p.exists() else (0, 0) for p in paths]


def _counts(db: Path) -> tuple[int, int]:
    with connect(db, read_only=True) as con:
        done, running = con.execute(
            "SELECT count(*) FILTER (status = 'done'), count(*) FILTER (status = 'running') "
            "FROM runs"
        ).fetchone()
    return done, running


def test_sigkill_at_random_moments_loses_and_duplicates_nothing(tmp_path):
    (tmp_path / "crash.toml").write_text(SPEC.replace("[1e-3, 1e-2]", "[1e-3, 3e-3, 1e-2, 3e-2]"))
    db = tmp_path / "log.duckdb"
    command = ("sweep", "run", "crash.toml", "--db", str(db), "--workers", WORKERS)
    rng = random.Random(7)
    after_kills = []
    while len(after_kills) < 4:
        proc = start(*command, cwd=tmp_path)
        # Kill a random while after a random number of writes to the run log (commits come
        # at most once a second, so an attempt finishes a few runs at most, however fast the
        # machine): at start-up, mid-training, mid-commit.
        writes, last, target = 0, _snapshot(db), rng.randint(1, 3)
        while proc.poll() is None and writes < target:
            time.sleep(0.005)
            if (now := _snapshot(db)) != last:
                writes, last = writes + 1, now
        if len(after_kills) == 3:  # start-up writes can use up the count: the last kill waits
            done_before = after_kills[-1][0]  # for a commit of this start, so one lands mid-sweep
            while proc.poll() is None and _counts(db)[0] <= done_before:
                time.sleep(0.05)
        time.sleep(rng.uniform(0.0, 0.5))
        if proc.poll() is not None:
            break
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        after_kills.append(_counts(db))
    final = scaling(*command, cwd=tmp_path)
    assert final.returncode == 0, final.stderr

    spec = load_spec(tmp_path / "crash.toml")
    corpus = load_corpus("default")
    planned = {
        config_row(c, corpus.name, corpus.sha256)["run_id"]: c.resolved() for c in Planner(spec)()
    }
    with connect(db, read_only=True) as con:
        runs = dict(con.execute("SELECT run_id, status FROM runs").fetchall())
        members = con.execute("SELECT run_id, count(*) FROM sweep_runs GROUP BY 1").fetchall()
        curves = con.execute(
            "SELECT run_id, max(step), max(tokens), count(*), count(DISTINCT step) "
            "FROM curves GROUP BY run_id"
        ).fetchall()
    assert runs == dict.fromkeys(planned, "done")
    assert sorted(members) == sorted((run_id, 1) for run_id in planned)
    assert len(curves) == len(planned)
    for run_id, last_step, last_tokens, n_rows, n_steps in curves:
        config = planned[run_id]
        assert (last_step, last_tokens) == (config.steps, config.tokens)
        assert n_rows == n_steps
    assert len(after_kills) >= 3, "the sweep finished before it could be killed 3 times"
    assert any(0 < done < len(planned) for done, _ in after_kills), after_kills
    assert any(running for _, running in after_kills), after_kills  # reclaim was needed


def _wait_for_holder(path: Path, proc: subprocess.Popen) -> str:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if path.exists() and "pid" in (text := path.read_text()):
            return text
        time.sleep(0.05)
    raise AssertionError(f"the first coordinator never took the lock: {proc.stderr.read()}")


def test_a_second_coordinator_is_refused_and_told_who_holds_the_log(tmp_path):
    long = SPEC.replace("tokens = [4096, 8192]", "tokens = [2_000_000]")
    (tmp_path / "long.toml").write_text(long)
    db = tmp_path / "log.duckdb"
    first = start("sweep", "run", "long.toml", "--db", str(db), "--workers", WORKERS, cwd=tmp_path)
    try:
        _wait_for_holder(lock_path(db), first)
        second = scaling("sweep", "run", "long.toml", "--db", str(db), cwd=tmp_path, timeout=60)
        status = scaling("sweep", "status", "long.toml", "--db", str(db), cwd=tmp_path)
        assert first.poll() is None
        os.killpg(first.pid, signal.SIGTERM)  # as systemd stops a unit: the whole group
        assert first.wait(60) == 130
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
            first.wait()
    assert second.returncode == 2
    message = second.stderr.strip()
    assert message.startswith("error: another sweep coordinator is using"), message
    assert f"pid {first.pid} on {socket.gethostname()}, started " in message
    assert f"a coordinator is running: pid {first.pid}" in status.stdout
    with connect(db, read_only=True) as con:  # workers outlived the SIGTERM: nothing failed
        statuses = {s for (s,) in con.execute("SELECT status FROM runs").fetchall()}
    assert statuses == {"running"}


def test_plan_then_run_in_slices_then_status(tmp_path):
    (tmp_path / "s.toml").write_text(SPEC.replace("lr = [1e-3, 1e-2]", "lr = 3e-3"))
    db = ("--db", str(tmp_path / "log.duckdb"))
    plan = scaling("sweep", "plan", "s.toml", *db, cwd=tmp_path)
    assert plan.returncode == 0, plan.stderr
    assert "4 runs planned: 0 done, 0 diverged, 0 failed; 4 to run" in plan.stdout
    assert "wall time: no estimate" in plan.stdout

    sliced = scaling("sweep", "run", "s.toml", *db, "--max-runs", "1", cwd=tmp_path)
    assert sliced.returncode == 3, sliced.stderr
    assert "stopped by the max runs: 3 run(s) left" in sliced.stdout

    plan = scaling("sweep", "plan", "s.toml", *db, "--workers", "2", cwd=tmp_path)
    assert "4 runs planned: 1 done" in plan.stdout
    assert "estimated wall time:" in plan.stdout and "with 2 worker(s)" in plan.stdout
    planned = json.loads(scaling("sweep", "plan", "s.toml", *db, "--json", cwd=tmp_path).stdout)
    assert (planned["planned"], planned["finished"]["done"], planned["to_run"]) == (4, 1, 3)
    assert [r["status"] for r in planned["runs"]].count("done") == 1
    assert planned["estimated_wall_s"] > 0 and planned["flops_to_run"] < planned["flops"]

    rest = scaling("sweep", "run", "s.toml", *db, "--workers", WORKERS, cwd=tmp_path)
    assert rest.returncode == 0, rest.stderr
    assert "trained 3 run(s) (3 done)" in rest.stdout and "4 of 4 finished" in rest.stdout

    status = scaling("sweep", "status", "s.toml", *db, "--json", cwd=tmp_path)
    (sweep,) = json.loads(status.stdout)["sweeps"]
    assert (sweep["done"], sweep["planned"], sweep["left"], sweep["orphaned"]) == (4, 4, 0, 0)
    listed = json.loads(scaling("runs", *db, "--limit", "3", "--json", cwd=tmp_path).stdout)
    assert listed["n_runs"] == 4 and len(listed["runs"]) == 3
    assert all(r["sweep"] == "crash" and r["status"] == "done" for r in listed["runs"])
    status = scaling("sweep", "status", "s.toml", *db, cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    lines = status.stdout.splitlines()
    header = next(line for line in lines if line.startswith("sweep ")).split()
    row = next(line for line in lines if line.startswith("crash ")).split()
    assert header[2:4] == ["done", "running"] and header[-2:] == ["planned", "left"]
    assert row[2:4] + row[-2:] == ["4", "0", "4", "0"]  # last_finished in between has a space
    narrow = subprocess.run([sys.executable, "-m", "cli", "sweep", "status", "s.toml", *db],
                            cwd=tmp_path, env={**_env(), "COLUMNS": "80"}, capture_output=True,
                            text=True, timeout=300)  # fmt: skip
    lines = narrow.stdout.splitlines()
    i = next(i for i, line in enumerate(lines) if line.startswith("crash "))
    assert re.search(r" \d{4}-\d\d-\d\d \d\d:\d\d +4 +0$", lines[i]), lines  # to the minute
    assert i == len(lines) - 1 or not lines[i + 1].startswith(" ")  # nothing folded below it


def _workers(pid: int) -> list[int]:
    """The sweep worker processes whose parent is `pid` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            command = (entry / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue
        if parent == pid and b"spawn_main" in command:
            found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_workers_die_with_a_coordinator_killed_by_sigkill(tmp_path):
    long = SPEC.replace("tokens = [4096, 8192]", "tokens = [2_000_000]")
    (tmp_path / "long.toml").write_text(long)
    db = tmp_path / "log.duckdb"
    coordinator = start("sweep", "run", "long.toml", "--db", str(db), "--workers", WORKERS,
                        cwd=tmp_path)  # fmt: skip
    try:
        _wait_for_holder(lock_path(db), coordinator)
        deadline = time.monotonic() + 60
        while len(workers := _workers(coordinator.pid)) < int(WORKERS):
            assert time.monotonic() < deadline and coordinator.poll() is None
            time.sleep(0.1)
        time.sleep(1.0)  # still importing torch on a busy machine, or training
        coordinator.send_signal(signal.SIGKILL)  # the coordinator alone, not its group
        coordinator.wait()
        deadline = time.monotonic() + 5
        while any(map(_alive, workers)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(map(_alive, workers)), workers
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(coordinator.pid, signal.SIGKILL)
        coordinator.wait()
