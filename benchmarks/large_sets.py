"""Does `auto` stay usable on a large set of runs? Time and peak memory on synthetic sets.

    python benchmarks/large_sets.py [--sizes 1000 5000] [--bootstrap 1000]

Runs drawn from a known Chinchilla law (E 1.8, A 480, alpha 0.34, B 2100, beta 0.28) with 1%
log-normal noise, N from 1e7 to 3e9 and 3 to 300 tokens per parameter. Each size is fitted in
its own process (`Study.from_frame(...).fit("auto")`), so that its peak resident memory (this
process and its fit's workers, the largest of each) is its own. Prints the machine, then per
size the wall time, the two peaks, and the answer at 1e11 parameters on 2e12 tokens against
the law's value there (2.642).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from machine import machine


def law(N: np.ndarray, D: np.ndarray) -> np.ndarray:
    return 1.8 + 480 / N**0.34 + 2100 / D**0.28


def one(size: int, bootstrap: int) -> dict[str, float]:
    """Fit `auto` on `size` runs in this process; its time, peaks and answer."""
    from scaling.study import Study

    rng = np.random.default_rng(0)
    N = 10 ** rng.uniform(7, 9.5, size)
    D = N * 10 ** rng.uniform(0.5, 2.5, size)
    runs = pd.DataFrame({"N": N, "D": D, "loss": law(N, D) * np.exp(rng.normal(0, 0.01, size))})
    t0 = time.perf_counter()
    study = Study.from_frame(runs, n_bootstrap=bootstrap)
    fitted = study.fit("auto")
    seconds = time.perf_counter() - t0
    answer = study.loss_at(fitted, 1e11, 2e12)
    peak = {who: resource.getrusage(w).ru_maxrss / 1024 for who, w in
            (("process", resource.RUSAGE_SELF), ("workers", resource.RUSAGE_CHILDREN))}  # fmt: skip
    return {"seconds": seconds, **peak, "point": answer.value, "lo": answer.lo, "hi": answer.hi}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[1000, 5000])
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.one, args.bootstrap)))
        return
    print(f"machine: {machine()}", flush=True)
    truth = float(law(np.array(1e11), np.array(2e12)))
    for size in args.sizes:
        command = [sys.executable, __file__, "--one", str(size), "--bootstrap", str(args.bootstrap)]
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        r = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"{size:6d} runs: {r['seconds']:6.1f} s, peak {r['process']:5.0f} MB (workers "
              f"{r['workers']:4.0f} MB); at 1e11 on 2e12: {r['point']:.3f} [{r['lo']:.3f}, "
              f"{r['hi']:.3f}] (law {truth:.3f})", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
