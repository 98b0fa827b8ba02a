"""Speed of the schedule laws: the Multi-Power Law's loss-drop sum, a fit, a long prediction.

    python benchmarks/schedule_fit.py

Prints (1) one evaluation of the loss drop LD(t) at every step of a 24k-step cosine schedule,
O(Q T) (fits.schedule.kernel.loss_drop) against the double sum as written, vectorised over k
for each t (O(T^2)), timed in the same run, with their largest difference; (2) the time to fit
MultiPowerLaw on three 24k-step curves (constant, cosine, two-stage; loss every 10 steps), with
and without the three held-out refits that calibrate its intervals; (3) the time to predict a
72k-step curve. Goals (issue 22): the fit <= 10 s on 2 cores, the prediction well under 1 s.
The curves are drawn from the law itself with 0.1% noise, so the fit's answer is checkable.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from fits.schedule import MultiPowerLaw, loss_drop
from fits.schedule.kernel import areas, warmup_end

PEAK, WARMUP = 3e-4, 500
TRUE = {"L0": 2.5, "A": 0.4, "alpha": 0.5, "B": 400.0, "beta": 0.6, "gamma": 0.6, "C": 2.0}


def schedule(kind: str, steps: int) -> np.ndarray:
    p = np.linspace(0, 1, steps - WARMUP)
    shape = {
        "constant": np.ones_like(p),
        "cosine": 0.1 + 0.45 * (1 + np.cos(np.pi * p)),
        "two-stage": np.where(p < 0.7, 1.0, 0.1),
    }[kind]
    return PEAK * np.r_[np.arange(1, WARMUP + 1) / WARMUP, shape]


def law(lrs: np.ndarray) -> np.ndarray:
    t = TRUE
    drop = loss_drop(lrs, t["beta"], t["gamma"], t["C"])
    return t["L0"] + t["A"] * areas(lrs) ** -t["alpha"] - t["B"] * drop


def naive_drop(lrs: np.ndarray, beta: float, gamma: float, C: float) -> np.ndarray:
    """The double sum, one vectorised row per step t: O(T^2) work."""
    w = warmup_end(lrs)
    P = areas(lrs)
    k = np.arange(w + 1, len(lrs))
    drops, c = lrs[k - 1] - lrs[k], C * lrs[k] ** -gamma
    out = np.zeros(len(lrs))
    for t in range(w + 1, len(lrs)):
        n = t - w
        area = P[t] - P[k[:n] - 1]
        out[t] = np.sum(drops[:n] * (1 - (1 + c[:n] * area) ** -beta))
    return out


def timed(fn, *args):
    start = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - start


def main() -> None:
    lrs = schedule("cosine", 24_000)
    args = (TRUE["beta"], TRUE["gamma"], TRUE["C"])
    fast, t_fast = timed(loss_drop, lrs, *args)
    slow, t_slow = timed(naive_drop, lrs, *args)
    print(f"loss drop, 24k-step cosine: O(QT) {t_fast:.3f} s, double sum {t_slow:.2f} s, "
          f"ratio {t_slow / t_fast:.0f}x, largest difference {np.max(np.abs(fast - slow)):.1e} "
          f"(LD up to {np.max(np.abs(slow)):.2e})")  # fmt: skip

    rng = np.random.default_rng(0)
    frames = []
    for kind in ("constant", "cosine", "two-stage"):
        lrs = schedule(kind, 24_000)
        loss = np.full(len(lrs), np.nan)
        every = np.arange(9, len(lrs), 10)
        loss[every] = law(lrs)[every] * (1 + 0.001 * rng.standard_normal(len(every)))
        frames.append(pd.DataFrame({"run": kind, "step": np.arange(len(lrs)), "lr": lrs,
                                    "loss": loss}))  # fmt: skip
    curves = pd.concat(frames, ignore_index=True)

    _, t_core = timed(MultiPowerLaw(calibrate=False).fit, curves)
    model, t_total = timed(MultiPowerLaw().fit, curves)
    print(f"fit on three 24k-step curves: {t_core:.2f} s; with the three held-out refits "
          f"that calibrate the band {t_total:.2f} s (goal <= 10 s)")  # fmt: skip
    fitted = {k: round(v, 4) for k, v in model.params_.items()}
    print(f"  fitted {fitted}\n  true   {TRUE}")

    long = schedule("cosine", 72_000)
    _, t_predict = timed(model.predict, long)
    print(f"predict a 72k-step curve: {t_predict:.3f} s (goal well under 1 s)")
    t_naive_72k = t_slow * 9  # the double sum grows as T^2
    print(
        f"  the double sum at 72k steps would take about {t_naive_72k:.0f} s "
        f"(24k timing x 9): ratio about {t_naive_72k / t_predict:.0f}x"
    )


if __name__ == "__main__":
    main()
