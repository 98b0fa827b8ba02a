"""Compute-optimal allocation: where along a budget C = 6 N D the loss is least, and when
that is no answer.

Chinchilla's forms have it in closed form (fits.chinchilla); Farseer's form and the stacked
average do not, and search log N numerically (`allocation`). An answer is refused where the
loss has no minimum along the budget, where it is under one parameter or token, and where its
tokens per parameter lie RATIO_MARGIN beyond the runs' (`ratio_window`): the runs say nothing
about a trade-off that far from theirs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

RATIO_MARGIN = 100.0  # an allocation's D/N this far beyond the runs' is no answer
# log N grid of the allocation search, then golden-section refined between the best point's
# neighbours: 0.1 nats apart, as 481 points were across the whole range at C = 1e25 before
# the ratio window narrowed it; a minimum this grid misses lies within 10% in N of another.
_GRID_STEP = 0.1
_GOLDEN_STEPS = 40
_GRID_CELLS = 2_000_000  # (rows x budgets x grid points) per block of the allocation's grid


def ratio_window(data_range: Mapping[str, tuple[float, float]]) -> tuple[float, float] | None:
    """The tokens per parameter an allocation may answer with: RATIO_MARGIN beyond the widest
    D/N of the runs' box (their N and D ranges) either way; None without ranges (a record
    stored before they were kept)."""
    if "N" not in data_range:
        return None
    (n_lo, n_hi), (d_lo, d_hi) = data_range["N"], data_range["D"]
    return d_lo / n_hi / RATIO_MARGIN, d_hi / n_lo * RATIO_MARGIN


def allocation_problems(
    data_range: Mapping[str, tuple[float, float]], n_opt: np.ndarray, d_opt: np.ndarray
) -> list[str]:
    """Why an allocation is no answer: not finite, under one parameter or one token, or
    outside the `ratio_window` of runs with this data_range."""
    problems = []
    window = ratio_window(data_range)
    for n, d in zip(np.ravel(n_opt), np.ravel(d_opt), strict=True):
        if not (np.isfinite(n) and np.isfinite(d)):
            problems.append("the fitted loss has no minimum along this budget")
        elif n < 1 or d < 1:
            problems.append(f"N_opt = {n:.3g}, D_opt = {d:.3g}: below one parameter or token")
        elif window is not None and not window[0] <= d / n <= window[1]:
            problems.append(
                f"N_opt = {n:.3g}, D_opt = {d:.3g} is {d / n:.3g} tokens per parameter, "
                f"over {RATIO_MARGIN:g}x beyond the runs' {window[0] * RATIO_MARGIN:.3g}.."
                f"{window[1] / RATIO_MARGIN:.3g}"
            )
    return problems


def allocation(
    loss_of: Any,
    params: np.ndarray,
    C: np.ndarray,
    flops_per_token: float = 6.0,
    ratios: tuple[float, float] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(N_opt, D_opt), each (k, m): argmin over N of loss_of(params, N, C / (k N)), NaN where
    the minimum sits at an end of 1 <= N, D (no interior optimum). C (m,) is every row's
    budgets; C (k, m) gives each row of params its own (a bootstrap draw's crossing).

    Given `ratios` (lo, hi), an interior minimum with lo <= D/N <= hi comes first: a law fitted
    on runs can fall again toward an allocation no run comes near (Farseer's D exponent falling
    with N: a 1e19-parameter model on one token below the optimum near the runs), and that end
    is no answer. Only where the window holds no interior minimum is the whole range searched.
    """
    p = np.asarray(params, dtype=float)
    budgets = np.asarray(C, dtype=float)
    log_x = np.log(budgets.reshape(1, -1) if budgets.ndim < 2 else budgets) - math.log(
        flops_per_token
    )  # (1 or k, m)
    if ratios is None:
        log_n = _interior_minimum(loss_of, p, log_x, np.zeros_like(log_x), log_x)
    else:  # D/N = x / N^2
        first = np.maximum(0.0, (log_x - math.log(ratios[1])) / 2.0)
        last = np.minimum(log_x, (log_x - math.log(ratios[0])) / 2.0)
        log_n = _interior_minimum(loss_of, p, log_x, first, np.maximum(first, last))
        missed = np.isnan(log_n).any(axis=1)  # rows searched again over the whole range
        if missed.any():
            own = log_x[missed] if log_x.shape[0] > 1 else log_x
            wide = _interior_minimum(loss_of, p[missed], own, np.zeros_like(own), own)
            log_n[missed] = np.where(np.isnan(log_n[missed]), wide, log_n[missed])
    n_opt = np.exp(log_n)
    return n_opt, np.exp(log_x) / n_opt


def _interior_minimum(
    loss_of: Any, p: np.ndarray, log_x: np.ndarray, first: np.ndarray, last: np.ndarray
) -> np.ndarray:
    """log N (k, m) minimising the loss along each budget x = C / flops_per_token between
    log N = first and last (each (1 or k, m), as log_x), NaN where the minimum is at an end.
    A grid _GRID_STEP apart (`grid_minimum`), then golden-section search between the grid
    neighbours of the best point, one new loss per step, every budget at once."""
    span = last - first
    points = max(3, math.ceil(float(span.max(initial=0.0)) / _GRID_STEP) + 1)
    lo, hi, inside = grid_minimum(loss_of, p, log_x, first, span, points)

    def loss(log_n: np.ndarray) -> np.ndarray:
        return loss_of(p, np.exp(log_n), np.exp(log_x - log_n))

    ratio = (math.sqrt(5.0) - 1.0) / 2.0
    with np.errstate(all="ignore"):
        m1, m2 = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
        f1, f2 = loss(m1), loss(m2)
        for _ in range(_GOLDEN_STEPS):
            left = f1 <= f2  # the minimum lies in [lo, m2]: m1 becomes its upper probe
            hi, lo = np.where(left, m2, hi), np.where(left, lo, m1)
            probe = np.where(left, hi - ratio * (hi - lo), lo + ratio * (hi - lo))
            f_probe = loss(probe)
            m1, m2 = np.where(left, probe, m2), np.where(left, m1, probe)
            f1, f2 = np.where(left, f_probe, f2), np.where(left, f1, f_probe)
    return np.where(inside, (lo + hi) / 2.0, np.nan)


def grid_minimum(
    loss_of: Any, p: np.ndarray, log_x: np.ndarray, first: np.ndarray, span: np.ndarray,
    points: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """The grid stage of the allocation search: log N from first to first + span in `points`
    steps along each budget x (log_x, first, span each (1 or k, m)); returns the best point's
    neighbours (lo, hi), each (k, m), and whether the best lies strictly inside. Every budget
    at once, in blocks of budgets that bound the (rows x budgets x grid) memory: one call of
    loss_of per block, not one per budget, which for few rows is all the time."""
    fraction = np.linspace(0.0, 1.0, points)
    k, m = p.shape[0], log_x.shape[1]
    per_block = max(1, _GRID_CELLS // (k * points))
    best = np.empty((k, m), dtype=int)
    finite = np.empty((k, m), dtype=bool)
    with np.errstate(all="ignore"):
        for s in range(0, m, per_block):
            block = slice(s, s + per_block)
            log_n = first[:, block, None] + span[:, block, None] * fraction  # (1 or k, b, points)
            log_d = (log_x[:, block, None] - log_n).reshape(log_n.shape[0], -1)
            log_n = np.broadcast_to(log_n.reshape(log_n.shape[0], -1), (k, log_d.shape[1]))
            values = loss_of(p, np.exp(log_n), np.exp(log_d))
            values = np.where(np.isfinite(values), values, np.inf).reshape(k, -1, points)
            best[:, block] = values.argmin(axis=2)
            finite[:, block] = np.isfinite(values.min(axis=2))
    step = span / (points - 1)
    at = first + fraction[best] * span
    inside = (best > 0) & (best < points - 1) & finite & (span > 0)
    return at - step, at + step, inside
