"""The schedule a fitted law predicts to end lowest: non-increasing after a fixed warmup.

The decay is a monotone piecewise-linear curve in log LR through KNOTS knots, denser towards
the end of training where the laws put the sharp part of the optimum (Luo et al. find a
WSD-like shape). Each knot lowers the log LR by a non-negative amount (a softplus of a free
variable), the first knot sits at the peak, and the LR never goes under FLOOR of the peak:
so every candidate is a valid schedule and the search is unconstrained. The peak is the
highest LR the law was fitted on: above it the law would extrapolate in LR, which none of
its terms was measured for.
"""

from __future__ import annotations

import numpy as np
from scipy import optimize

from fits.errors import FitError
from fits.schedule.laws import ScheduleLaw

KNOTS = 10
FLOOR = 1e-3


def warmup_ramp(warmup: int, peak: float) -> np.ndarray:
    """The linear warmup the runners use: step s runs at peak (s + 1) / warmup."""
    return peak * np.arange(1, warmup + 1) / max(warmup, 1)


def decay_from_knots(z: np.ndarray, n: int, peak: float) -> np.ndarray:
    """n post-warmup LRs from the free variables z (one per knot after the first)."""
    where = 1.0 - (1.0 - np.linspace(0.0, 1.0, len(z) + 1)) ** 2  # denser near the end
    drops = np.logaddexp(0.0, z)  # softplus: each knot at or below the previous one
    log_lr = np.maximum(np.log(peak) - np.r_[0.0, np.cumsum(drops)], np.log(FLOOR * peak))
    return np.exp(np.interp(np.linspace(0.0, 1.0, n), where, log_lr))


def optimal_schedule(
    law: ScheduleLaw, steps: int, warmup: int | None = None, peak: float | None = None
) -> np.ndarray:
    """Per-step LRs of the non-increasing-after-warmup schedule with the lowest predicted
    final loss under `law` at `steps` steps (warmup and peak default to the fitted runs')."""
    warmup = law.warmup_ if warmup is None else warmup
    peak = law.peak_lr_ if peak is None else peak
    if steps <= warmup + 1:
        raise FitError(f"{steps} steps leave nothing after a {warmup}-step warmup")
    ramp = warmup_ramp(warmup, peak)
    n = steps - warmup

    def final_loss(z: np.ndarray) -> float:
        return float(law.predict(np.r_[ramp, decay_from_knots(z, n, peak)])[-1])

    best = None
    for start in (-4.0, 0.0):  # nearly constant, and a steady decay
        res = optimize.minimize(final_loss, np.full(KNOTS, start), method="L-BFGS-B")
        if best is None or res.fun < best.fun:
            best = res
    assert best is not None
    return np.r_[ramp, decay_from_knots(best.x, n, peak)]
