"""The Ray executor on a real local Ray cluster gives the local executor's results exactly.

Both executors train with one torch thread per run, so the curves are bit-identical: CPU
kernels are deterministic for a fixed thread count.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from store.db import connect

pytest.importorskip("ray")
pytestmark = pytest.mark.ray

ROOT = Path(__file__).resolve().parents[1]
SPEC = """
name = "ray"
[fixed]
seq_len = 32
batch_size = 8
eval_tokens = 1024
[axes]
size = [{ d_model = 32, n_layers = 1, n_heads = 2 }]
tokens = [4096, 8192]
lr = [3e-3, 1e-2]
"""


def _env() -> dict[str, str]:
    # Ray workers inherit the head's environment: they must import this checkout's code.
    # A throwaway cluster on loopback needs no token (Ray would otherwise share one via ~/.ray).
    return {**os.environ, "PYTHONPATH": str(ROOT), "RAY_AUTH_MODE": "disabled"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _sweep(tmp_path: Path, db: str, *args: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "cli", "sweep", "run", "spec.toml", "--db", db, "--threads", "1",
         *args],
        cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


def _results(db: Path) -> tuple[list, list]:
    with connect(db, read_only=True) as con:
        runs = con.execute(
            "SELECT run_id, status, final_val_loss, final_train_loss FROM runs ORDER BY run_id"
        ).fetchall()
        curves = con.execute("SELECT * FROM curves ORDER BY run_id, step").fetchall()
    return runs, curves


@pytest.fixture
def ray_head():
    """A one-node Ray cluster on loopback, in its own process group, stopped at the end."""
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths are limited
    port = _free_port()
    head = subprocess.Popen(
        [sys.executable, "-c", "import sys; from ray.scripts.scripts import main; "
         "sys.argv[0] = 'ray'; main()",
         "start", "--head", "--block", "--node-ip-address", "127.0.0.1", "--port", str(port),
         "--num-cpus", "2", "--include-dashboard", "false", "--disable-usage-stats",
         "--temp-dir", temp],
        env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert head.poll() is None and time.monotonic() < deadline, "no Ray head"
                time.sleep(0.2)
        yield f"127.0.0.1:{port}"
    finally:
        head.send_signal(signal.SIGTERM)  # `ray start --block` stops what it started
        try:
            head.wait(45)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait()
        shutil.rmtree(temp, ignore_errors=True)


@pytest.mark.slow
def test_ray_executor_equals_local_executor(tmp_path, ray_head):
    (tmp_path / "spec.toml").write_text(SPEC)
    _sweep(tmp_path, "ray.duckdb", "--executor", "ray", "--ray-address", ray_head, "--workers", "2")
    _sweep(tmp_path, "local.duckdb", "--workers", "1")

    ray_runs, ray_curves = _results(tmp_path / "ray.duckdb")
    local_runs, local_curves = _results(tmp_path / "local.duckdb")
    assert len(ray_runs) == 4 and {r[1] for r in ray_runs} == {"done"}
    assert ray_runs == local_runs
    assert ray_curves == local_curves
