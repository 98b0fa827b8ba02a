"""Where the compute-optimal frontiers of two loss laws cross: the crossover a user asks of
two architectures, for the fitted laws and for each pair of their bootstrap draws at once.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from fits.laws import LossLaw

# Budgets per decade at which two frontiers are compared before a root finder refines the first
# sign change: a pair crossing twice within one cell is missed. 8 gave the same 1,000 crossing
# draws as 20 (the grid before) on every pair of the study's architectures, in 40% of the time.
CROSSING_PER_DECADE = 8
CROSSING_TOL = 1e-12  # a crossing's log C is refined until its bracket is this narrow
_CROSSING_STEPS = 100  # at most (bisection alone would need 38 from one cell)


def frontier_crossing(
    law_a: LossLaw, law_b: LossLaw, lo_c: float, hi_c: float, draws: bool = False
) -> np.ndarray:
    """First C in [lo_c, hi_c] where the frontiers of two laws cross (NaN where none).

    One value for the fitted parameters, or with `draws` one per pair of bootstrap rows: every
    pair's crossing refined at once (`bracketed_roots`), each pair's frontiers at its own budget.
    """
    pa = law_a._draws() if draws else law_a._params_row()[None, :]
    pb = law_b._draws() if draws else law_b._params_row()[None, :]
    k = min(len(pa), len(pb))
    pa, pb = pa[:k], pb[:k]
    decades = math.log10(hi_c / lo_c)
    grid = np.geomspace(lo_c, hi_c, max(2, math.ceil(CROSSING_PER_DECADE * decades) + 1))
    diff = law_a.frontier_of(pa, grid) - law_b.frontier_of(pb, grid)
    change = np.sign(diff[:, :-1]) * np.sign(diff[:, 1:]) < 0
    rows = np.flatnonzero(change.any(axis=1))
    first = change[rows].argmax(axis=1)

    def gap(which: np.ndarray, log_c: np.ndarray) -> np.ndarray:
        at, c = rows[which], np.exp(log_c)[:, None]
        return law_a.frontier_of(pa[at], c)[:, 0] - law_b.frontier_of(pb[at], c)[:, 0]

    out = np.full(k, np.nan)
    out[rows] = np.exp(bracketed_roots(gap, np.log(grid[first]), np.log(grid[first + 1]),
                                       diff[rows, first], diff[rows, first + 1]))  # fmt: skip
    return out


def bracketed_roots(
    gap: Any, lo: np.ndarray, hi: np.ndarray, f_lo: np.ndarray, f_hi: np.ndarray
) -> np.ndarray:
    """A root of gap(rows, x) in each [lo, hi] whose ends' values f_lo, f_hi differ in sign,
    every row at once: the Illinois method (regula falsi that halves the value of an end kept
    twice, so both ends close in), bisecting where the secant leaves the bracket or a value is
    not finite; a row stops when its bracket is under CROSSING_TOL or gap is 0 at x. A
    crossover's draws took 7 calls of gap where bisection takes 38 (brentq on each row alone
    about 7 each), and each call searches an allocation per row."""
    lo, hi, f_lo, f_hi = (np.array(v, dtype=float) for v in (lo, hi, f_lo, f_hi))
    sign_lo = np.sign(f_lo)
    moved = np.zeros(lo.size)  # +1: the low end moved last, -1: the high end
    for _ in range(_CROSSING_STEPS):
        rows = np.flatnonzero(hi - lo > CROSSING_TOL)
        if rows.size == 0:
            break
        a, b, fa, fb = lo[rows], hi[rows], f_lo[rows], f_hi[rows]
        with np.errstate(all="ignore"):
            x = b - fb * (b - a) / (fb - fa)
        x = np.where(np.isfinite(x) & (x > a) & (x < b), x, (a + b) / 2.0)
        fx = gap(rows, x)
        up = np.sign(fx) == sign_lo[rows]  # the root lies above x
        again = np.where(up, moved[rows] > 0, moved[rows] < 0)  # an end kept twice: halve it
        lo[rows], hi[rows] = np.where(up, x, a), np.where(up, b, x)
        f_lo[rows] = np.where(up, fx, np.where(again, fa / 2.0, fa))
        f_hi[rows] = np.where(up, np.where(again, fb / 2.0, fb), fx)
        moved[rows] = np.where(up, 1.0, -1.0)
        root = rows[fx == 0]  # hit exactly: the bracket closes there
        lo[root] = hi[root] = x[fx == 0]
    return (lo + hi) / 2.0


def crossing_draws(law_a: LossLaw, law_b: LossLaw, lo_c: float, hi_c: float) -> np.ndarray:
    """Bootstrap draws of where two frontiers cross, a pair that does not cross in range put
    at the end it must cross beyond: lo_c where at lo_c it already ranks the two laws as the
    fitted pair does above its crossing, hi_c where as below it. Percentiles of the crossing
    pairs alone condition on crossing in range, and can leave out the point estimate."""
    crossing = frontier_crossing(law_a, law_b, lo_c, hi_c, draws=True)
    k = len(crossing)
    gap = law_a.frontier_draws([lo_c])[:k, 0] - law_b.frontier_draws([lo_c])[:k, 0]
    fitted_gap = float(law_a.frontier(lo_c) - law_b.frontier(lo_c))
    beyond = np.where(np.sign(gap) == np.sign(fitted_gap), hi_c, lo_c)
    beyond = np.where(np.isfinite(gap), beyond, np.nan)
    return np.where(np.isfinite(crossing), crossing, beyond)
