"""What replaying an adaptive sweep costs, with its rounds' fits read from the run log and
with them fitted again (the baseline: the log with the sweep's `fits` rows deleted, as a
log written before scaling.sweeps.round_fits is).

Trains the 20-run test sweep of tests/test_adaptive.py once (budget 0.015 hours, 2 workers,
about a minute), then times each command in a fresh process on a copy of that log:
`sweep status`, `sweep suggest`, and a `sweep run` that trains nothing. The baseline's copy
is restored before each of its commands (a replaying `sweep run` stores the fits again).

    python benchmarks/sweep_replay.py [REPEATS]     # default 3 of each, medians
"""

from __future__ import annotations

import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # this checkout, not an installed copy

from machine import machine  # noqa: E402

from store.db import connect  # noqa: E402

ENV = {**os.environ, "PYTHONPATH": str(REPO)}


def spec_text() -> str:
    """The adaptive spec of tests/test_adaptive.py with a budget of 0.015 hours."""
    source = (REPO / "tests" / "test_adaptive.py").read_text()
    match = re.search(r'SPEC = """(.*?)"""', source, re.S)
    assert match is not None
    spec = match.group(1).replace("{{", "{").replace("}}", "}").replace("{budget}", "1e12")
    return spec.replace("budget_flops = 1e12", "budget_hours = 0.015")


def scaling(*argv: str) -> float:
    """Wall seconds of `scaling ARGV` in a fresh interpreter."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "cli", *argv], env=ENV, cwd=REPO,
                          capture_output=True, text=True)  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"scaling {' '.join(argv)} failed: {done.stderr[-500:]}")
    return time.perf_counter() - started


def main() -> None:
    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    print(machine())
    with tempfile.TemporaryDirectory() as folder:
        spec, trained = Path(folder) / "spec.toml", Path(folder) / "trained.duckdb"
        spec.write_text(spec_text())
        wall = scaling("sweep", "run", str(spec), "--db", str(trained), "--workers", "2",
                       "--threads", "1")  # fmt: skip
        with connect(trained, read_only=True) as con:
            n_runs, n_fits = con.execute(
                "SELECT (SELECT count(*) FROM runs), "
                "(SELECT count(*) FROM fits WHERE selection->>'adaptive_sweep' = 'adapt')"
            ).fetchone()
        print(f"trained: {n_runs} runs in {wall:.1f} s; {n_fits} round fits stored")
        stored, refit = Path(folder) / "stored.duckdb", Path(folder) / "refit.duckdb"
        shutil.copy(trained, stored)
        for command in ("status", "suggest", "run"):
            times: dict[str, list[float]] = {"fitted again": [], "read back": []}
            for _ in range(repeats):
                shutil.copy(trained, refit)
                with connect(refit) as con:
                    con.execute("DELETE FROM fits WHERE selection->>'adaptive_sweep' = 'adapt'")
                times["fitted again"].append(scaling("sweep", command, str(spec), "--db",
                                                     str(refit)))  # fmt: skip
                times["read back"].append(scaling("sweep", command, str(spec), "--db",
                                                  str(stored)))  # fmt: skip
            base, new = (statistics.median(times[k]) for k in ("fitted again", "read back"))
            print(f"sweep {command}: fits read back {new:.2f} s, fitted again {base:.2f} s "
                  f"({base / new:.1f}x)")  # fmt: skip


if __name__ == "__main__":
    main()
