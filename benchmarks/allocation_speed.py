"""Speed of the numerical compute-optimal allocation (fits.allocation) and of a crossover's
bootstrap draws.

A crossover's interval searches the allocation of every bootstrap draw of two averaged laws at
97 budgets (8 per decade over 1e15..1e27), then refines each draw's first sign change. The
reference is the code as it stood before 6 December 2026, restated here: a 481-point grid in
log N across the window whatever its width, 40 golden-section steps that evaluate both
probes, and scipy's brentq on each crossing draw in turn, its frontiers searched one draw at a
time. Ours spaces the grid 0.1 nats apart, evaluates one new probe per step, and refines every
crossing draw at once (fits.crossing.bracketed_roots), each at its own budget. (Both run inside
fits.allocation.allocation, which now searches the whole range again only for the draws with
no minimum in the window, not for all of them: that saving is in both columns.)

Fits `auto` on the architecture study's tnl and hgrn2 runs (benchmarks/data), then times the
frontier of 1,000 draws at 50 budgets, and the crossing draws of the pair (50 of which cross
in range), the old way and ours (best of --repeats, taken in turn), and prints the ratio and
how far the answers are apart. Usage:

    python benchmarks/allocation_speed.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
from scipy.optimize import brentq

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from machine import machine  # noqa: E402

import fits.allocation  # noqa: E402
from fits import LossLaw, frontier_crossing  # noqa: E402
from fits.crossing import CROSSING_PER_DECADE  # noqa: E402
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


def reference_crossing(law_a: LossLaw, law_b: LossLaw, lo_c: float, hi_c: float) -> np.ndarray:
    """The crossing draws before: brentq on each draw whose frontiers change sign, in turn."""
    pa, pb = law_a._draws(), law_b._draws()
    k = min(len(pa), len(pb))
    grid = np.geomspace(lo_c, hi_c, math.ceil(CROSSING_PER_DECADE * math.log10(hi_c / lo_c)) + 1)
    diff = law_a.frontier_of(pa[:k], grid) - law_b.frontier_of(pb[:k], grid)
    out = np.full(k, np.nan)
    for i, row in enumerate(diff):
        change = np.flatnonzero(np.sign(row[:-1]) * np.sign(row[1:]) < 0)
        if change.size:

            def gap(log_c: float, i: int = i) -> float:
                c = np.array([math.exp(log_c)])
                return float(law_a.frontier_of(pa[i : i + 1], c)[0, 0]
                             - law_b.frontier_of(pb[i : i + 1], c)[0, 0])  # fmt: skip

            j = change[0]
            out[i] = math.exp(brentq(gap, math.log(grid[j]), math.log(grid[j + 1])))
    return out


def timed(repeats: int, jobs: dict[str, Callable[[], np.ndarray]]) -> dict[str, tuple[float, Any]]:
    """Best wall time and answer of each job, the jobs taken in turn; the reference job runs
    with the reference search."""
    ours = fits.allocation._interior_minimum
    best: dict[str, tuple[float, Any]] = {}
    try:
        for _ in range(repeats):
            for name, job in jobs.items():
                search = reference_minimum if name == "reference" else ours
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
    tnl, hgrn2 = (study.fit("auto", arch).model for arch in ("tnl", "hgrn2"))
    assert isinstance(tnl, LossLaw) and isinstance(hgrn2, LossLaw)
    budgets = np.geomspace(1e15, 1e27, 50)
    cases: dict[str, dict[str, Callable[[], np.ndarray]]] = {
        f"frontier draws, {arch}": dict.fromkeys(("reference", "ours"),
                                                 partial(law.frontier_draws, budgets))
        for arch, law in (("tnl", tnl), ("hgrn2", hgrn2))
    }  # fmt: skip
    cases["crossing draws, tnl vs hgrn2"] = {
        "reference": partial(reference_crossing, tnl, hgrn2, 1e15, 1e27),
        "ours": partial(frontier_crossing, tnl, hgrn2, 1e15, 1e27, draws=True),
    }
    for what, jobs in cases.items():
        best = timed(args.repeats, jobs)
        (ref_s, ref), (our_s, our) = best["reference"], best["ours"]
        crossing = f"; {np.isfinite(our).sum()} draws cross" if "crossing" in what else ""
        print(f"{what}: reference {ref_s:.2f} s, ours {our_s:.2f} s, ratio {our_s / ref_s:.2f}; "
              f"{max_relative_gap(our, ref)}{crossing}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
