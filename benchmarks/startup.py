"""Start-up cost of the `scaling` command, as a ratio against `python -c pass`.

    python benchmarks/startup.py [REPEATS]     # default 5 runs of each command

Each command runs in a fresh interpreter (`python -m cli ...` from this checkout); the
figure is the median of CPU seconds (user + system, of the child), which a loaded machine
inflates less than wall time, beside the median wall time. The goal (issue 24): `--help`
and `sql` within 0.5 s; `predict loss` on a log without runs times the fitting stack's import,
and `sweep plan` a sweep's planning, which counts its runs without importing torch.
"""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def measure(argv: list[str], repeats: int) -> tuple[float, float]:
    """Median CPU and wall seconds of `python ARGV` over `repeats` fresh processes."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cpu, wall = [], []
    for _ in range(repeats):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        done = subprocess.run([sys.executable, *argv], env=env, cwd=REPO, capture_output=True)
        if done.returncode not in (0, 2):  # 2: a one-line refusal, which is timed as well
            raise RuntimeError(f"{argv} failed: {done.stderr.decode()[-500:]}")
        wall.append(time.perf_counter() - started)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return statistics.median(cpu), statistics.median(wall)


def main() -> None:
    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    with tempfile.TemporaryDirectory() as folder:
        db = Path(folder) / "runs.duckdb"
        sys.path.insert(0, str(REPO))
        from store.db import connect

        with connect(db):  # an empty run log for `sql` to open
            pass
        log = ["--db", str(db)]
        question = ["--N", "1e9", "--D", "2e10", *log]
        spec = Path(folder) / "grid.toml"
        spec.write_text(
            'name = "g"\n[fixed]\nseq_len = 32\n[axes]\nd_model = [32, 64]\n'
            'arch = ["llama", "tnl", "hgrn2", "cosformer2", "tnl_spread"]\n'
        )
        commands = {
            "python -c pass": ["-c", "pass"],
            "scaling --help": ["-m", "cli", "--help"],
            "scaling --version": ["-m", "cli", "--version"],
            "scaling sql 'SELECT 1'": ["-m", "cli", "sql", "SELECT 1", "--db", str(db)],
            "scaling fit --help": ["-m", "cli", "fit", "--help"],
            # plans a 10-run grid: counts each run's parameters and FLOPs, without torch
            "scaling sweep plan (10 runs)": ["-m", "cli", "sweep", "plan", str(spec), *log],
            # loads the fitting stack (fits, scaling.study) and refuses: the log has no runs
            "scaling predict loss (no runs)": ["-m", "cli", "predict", "loss", *question],
        }
        base_cpu, base_wall = measure(commands.pop("python -c pass"), repeats)
        print(f"python -c pass: {base_cpu:.3f} s CPU, {base_wall:.3f} s wall (the baseline)")
        for name, argv in commands.items():
            cpu, wall = measure(argv, repeats)
            print(
                f"{name}: {cpu:.3f} s CPU ({cpu / base_cpu:.1f}x the baseline), "
                f"{wall:.3f} s wall ({wall / base_wall:.1f}x)"
            )


if __name__ == "__main__":
    main()
