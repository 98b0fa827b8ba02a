"""Long runs survive a kill: real `scaling` subprocesses killed with SIGKILL and SIGTERM
resume from their checkpoints and end bit for bit where a run left alone ends (CPU)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from runners.checkpoint import Checkpointing, folder_for
from store.db import connect

ROOT = Path(__file__).resolve().parents[1]
STEPS = 300
RUN = (
    "run", "--d-model", "32", "--n-layers", "1", "--n-heads", "2", "--seq-len", "32",
    "--batch-size", "8", "--tokens", str(32 * 8 * STEPS), "--eval-tokens", "1024",
    "--eval-every", "25", "--schedule", "wsd:cooldown=0.3,shape=1-sqrt,floor=0",
    "--device", "cpu", "--precision", "fp32",
)  # fmt: skip
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200", "OMP_NUM_THREADS": "1"}


def scaling(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cli", *args], cwd=cwd, env=ENV, capture_output=True,
        text=True, timeout=600,
    )  # fmt: skip


def start(*args: str, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "cli", *args], cwd=cwd, env=ENV, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip


def checkpoint_step(path: Path) -> int | None:
    if not path.exists():
        return None
    return torch.load(path, weights_only=True)["loop"]["step"]


def wait_for_checkpoint(folder: Path, after: int = 0, timeout: float = 300) -> tuple[Path, int]:
    """The first checkpoint in `folder` past step `after`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for path in folder.glob("*.pt") if folder.exists() else ():
            step = checkpoint_step(path)
            if step is not None and step > after:
                return path, step
        time.sleep(0.05)
    raise AssertionError(f"no checkpoint past step {after} in {folder}")


def logged(db: Path) -> tuple[list[tuple], list[tuple]]:
    with connect(db, read_only=True) as con:
        runs = con.execute(
            "SELECT run_id, status, final_val_loss, final_train_loss FROM runs"
        ).fetchall()
        curve = con.execute(
            "SELECT run_id, step, tokens, train_loss, val_loss, lr FROM curves ORDER BY step"
        ).fetchall()
    return runs, curve


@pytest.mark.slow
def test_a_run_stopped_by_sigterm_and_killed_by_sigkill_ends_as_one_left_alone(tmp_path):
    alone = tmp_path / "alone.duckdb"
    result = scaling(*RUN, "--db", str(alone), "--checkpoint-every", "0", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "resumed" not in result.stdout
    assert not list(folder_for(alone).glob("*.pt"))  # nothing left once committed

    db = tmp_path / "killed.duckdb"
    folder = folder_for(db)
    command = (*RUN, "--db", str(db), "--checkpoint-every", "0.2s")
    # 1. SIGTERM: a checkpoint at the step it stops at, one line, exit 143
    proc = start(*command, cwd=tmp_path)
    wait_for_checkpoint(folder)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err
    (path,) = folder.glob("*.pt")
    stopped_at = checkpoint_step(path)
    assert stopped_at is not None and 0 < stopped_at < STEPS
    assert f"stopped at step {stopped_at:,} of {STEPS}" in out
    assert "run the same command to resume" in out and err == ""
    # 2. SIGKILL after the resumed run has written a later checkpoint
    proc = start(*command, cwd=tmp_path)
    _, killed_at = wait_for_checkpoint(folder, after=stopped_at)
    proc.kill()
    proc.communicate(timeout=60)
    (runs, _) = logged(db)
    assert [r[1] for r in runs] == ["running"]
    killed_at = checkpoint_step(path)  # the last one written before the kill
    assert killed_at is not None and stopped_at < killed_at < STEPS
    # 3. the same command resumes from there and ends where the run left alone ends
    result = scaling(*command, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"resumed at step {killed_at:,}" in result.stdout
    assert logged(db) == logged(alone)
    assert not list(folder.iterdir())  # nor a temporary file the SIGKILL cut short


SPEC = f"""
name = "resume"
[fixed]
d_model = 32
n_layers = 1
n_heads = 2
seq_len = 32
batch_size = 8
tokens = {32 * 8 * STEPS}
eval_tokens = 1024
eval_every = 25
precision = "fp32"
schedule = "cosine:floor=0"
"""


@pytest.mark.slow
def test_a_sweep_killed_resumes_its_running_run_from_its_checkpoint(tmp_path):
    (tmp_path / "s.toml").write_text(SPEC)
    alone, db = tmp_path / "alone.duckdb", tmp_path / "killed.duckdb"
    common = ("sweep", "run", "s.toml", "--workers", "1", "--threads", "1", "--device", "cpu")
    result = scaling(*common, "--db", str(alone), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    command = (*common, "--db", str(db), "--checkpoint-every", "0.2s")
    # SIGTERM to the process group, as a scheduler sends it: the worker checkpoints first
    proc = start(*command, cwd=tmp_path)
    path, _ = wait_for_checkpoint(folder_for(db))
    os.killpg(proc.pid, signal.SIGTERM)
    proc.communicate(timeout=120)
    stopped_at = checkpoint_step(path)
    assert stopped_at is not None and 0 < stopped_at < STEPS
    # SIGKILL of the coordinator (its worker dies with it) after a later checkpoint
    proc = start(*command, cwd=tmp_path)
    wait_for_checkpoint(folder_for(db), after=stopped_at)
    proc.kill()
    proc.communicate(timeout=60)
    killed_at = checkpoint_step(path)
    assert killed_at is not None and stopped_at < killed_at < STEPS
    result = scaling(*command, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert logged(db) == logged(alone)
    assert not list(folder_for(db).iterdir())  # nor a temporary file the SIGKILL cut short


def test_a_checkpoint_is_replaced_whole_or_not_at_all(tmp_path):
    """The file is written under another name and renamed: a reader sees the old or the new
    checkpoint, and a damaged one is ignored (the run starts over) rather than fatal."""
    checkpoints = Checkpointing(tmp_path / "c")
    header = {"config": {"a": 1}}
    checkpoints.save("r", {"format": 1, "run_id": "r", **header, "x": 1})
    checkpoints.save("r", {"format": 1, "run_id": "r", **header, "x": 2})
    assert checkpoints.load("r", {"a": 1})["x"] == 2
    assert [p.name for p in (tmp_path / "c").iterdir()] == ["r.pt"]
    assert checkpoints.load("r", {"a": 2}) is None  # another config: not this run's
    (tmp_path / "c" / "r.pt").write_bytes(b"torn")
    assert checkpoints.load("r", {"a": 1}) is None
    (tmp_path / "c" / ".r.pt.123.tmp").write_bytes(b"cut short by a kill")
    checkpoints.discard(["r", "never"])
    assert not list((tmp_path / "c").iterdir())
