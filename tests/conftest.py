"""Shared fixtures: a fresh run-log path, tiny configs, and a CLI runner in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fits.bootstrap import resolve_n_jobs
from runners.config import ModelConfig, RunConfig, TrainConfig

REPO = Path(__file__).resolve().parents[1]


def pytest_configure(config: pytest.Config) -> None:
    """Each xdist worker takes its share of the cores for torch, and through OMP_NUM_THREADS
    for the subprocesses it starts: two workers each running torch's default of a thread per
    core spin-wait on each other (the muP coordinate checks ran 7x slower on 2 cores). A
    thread count the caller set is kept."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1 and "OMP_NUM_THREADS" not in os.environ:
        share = max(1, resolve_n_jobs(-1) // workers)  # -1: every core this process may use
        os.environ["OMP_NUM_THREADS"] = str(share)
        torch.set_num_threads(share)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "runs.duckdb"


def tiny_config(**train: object) -> RunConfig:
    """A model small enough to train a few hundred steps in seconds."""
    defaults = {"tokens": 64 * 16 * 20, "lr": 3e-3, "batch_size": 16, "eval_tokens": 4096}
    return RunConfig(
        ModelConfig(d_model=32, n_layers=1, n_heads=2, seq_len=64),
        TrainConfig(**{**defaults, **train}),
    )


def run_cli(
    *args: str, cwd: Path | None = None, timeout: float = 300, columns: int = 200
) -> subprocess.CompletedProcess:
    """Run the real `scaling` command in a subprocess (this checkout's code), on a terminal
    `columns` wide."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": str(columns)}
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def call_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Run `scaling ARGV` in this process: (exit code, stdout, stderr). Fast, for refusals."""
    from cli.app import main

    try:
        main(argv)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err
