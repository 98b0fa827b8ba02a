"""Speed of the numerical compute-optimal allocation (fits.allocation) on bootstrap draws.

A crossover's interval searches the allocation of every bootstrap draw of two averaged laws at
97 budgets (8 per decade over 1e15..1e27): 1,000 draws x 97 budgets per law. The reference is
the search as it stood before 6 December 2026, restated here: a 481-point grid in log N
across the window whatever its width, then 40 golden-section steps that evaluate both probes
each step. Ours spaces the grid 0.1 nats apart and evaluates one new probe per step. (Both
run inside fits.allocation.allocation, which now searches the whole range again only for
the draws with no minimum in the window, not for all of them: that saving is in both
columns.)

Fits `auto` on the architecture study's llama and tnl runs (benchmarks/data), then times
`fits.crossing_draws` and `frontier_draws` on 50 budgets with each search (best of --repeats,
taken in turn), and prints the ratio and how far the answers are apart. Usage:

    python benchmarks/allocation_speed.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from machine import machine  # noqa: E402

import fits.allocation  # noqa: E402
from fits import LossLaw, crossing_draws  # noqa: E402
from scaling.study import Study  # noqa: E402

REFERENCE_POINTS = 481
GOLDEN_STEPS = 40


def reference_minimum(
    loss_of: Any, p: np.ndarray, log_x: np.ndarray, first: np.ndarray, last: np.ndarray
) -> np.ndarray:
    """The search before: REFERENCE_POINTS grid points, two loss evaluations per golden step."""
    span = last - first
    lo, hi, inside = fits.allocation.grid_minimum(loss_of, p, log_x, first, span, REFERENCE_POINTS)
    ratio = (math.sqrt(5.0) - 1.0) / 2.0
    with np.errstate(all="ignore"):
        for _ in range(GOLDEN_STEPS):
            m1, m2 = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
            left = loss_of(p, np.exp(m1), np.exp(log_x - m1)) <= loss_of(
                p, np.exp(m2), np.exp(log_x - m2)
            )
            hi, lo = np.where(left, m2, hi), np.where(left, lo, m1)
    return np.where(inside, (lo + hi) / 2.0, np.nan)


def timed(repeats: int, searches: dict[str, Any], job: Any) -> dict[str, tuple[float, Any]]:
    """Best wall time and the answer of job() under each search, the searches taken in turn."""
    ours = fits.allocation._interior_minimum
    best: dict[str, tuple[float, Any]] = {}
    try:
        for _ in range(repeats):
            for name, search in searches.items():
                fits.allocation._interior_minimum = search
                start = time.perf_counter()
                answer = job()
                took = time.perf_counter() - start
                if name not in best or took < best[name][0]:
                    best[name] = (took, answer)
    finally:
        fits.allocation._interior_minimum = ours
    return best


def max_relative_gap(a: np.ndarray, b: np.ndarray) -> str:
    both = np.isfinite(a) & np.isfinite(b)
    apart = int((np.isfinite(a) != np.isfinite(b)).sum())
    gap = float(np.max(np.abs(a[both] / b[both] - 1.0))) if both.any() else math.nan
    return f"max relative gap {gap:.1e}, {apart} finite in one only"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"machine: {machine()}", flush=True)
    runs = duckdb.read_parquet(str(REPO / "benchmarks/data/architecture_runs.parquet")).df()
    study = Study.from_frame(runs)
    llama, tnl = (study.fit("auto", arch).model for arch in ("llama", "tnl"))
    assert isinstance(llama, LossLaw) and isinstance(tnl, LossLaw)
    searches = {"reference": reference_minimum, "ours": fits.allocation._interior_minimum}
    budgets = np.geomspace(1e15, 1e27, 50)
    jobs: dict[str, Callable[[], np.ndarray]] = {
        "crossing draws, llama vs tnl": lambda: crossing_draws(llama, tnl, 1e15, 1e27),
        "frontier draws, llama": lambda: llama.frontier_draws(budgets),
        "frontier draws, tnl": lambda: tnl.frontier_draws(budgets),
    }
    for what, job in jobs.items():
        best = timed(args.repeats, searches, job)
        (ref_s, ref), (our_s, our) = best["reference"], best["ours"]
        print(f"{what}: reference {ref_s:.2f} s, ours {our_s:.2f} s, "
              f"ratio {our_s / ref_s:.2f}; {max_relative_gap(our, ref)}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
