"""Speed of the schedule laws: the Multi-Power Law's loss-drop sum, a fit, a long prediction.

    python benchmarks/schedule_fit.py [--repeats 3] [--no-baseline]

Prints the machine (cores, CPU, numpy's SIMD level, load average), then:
(1) one evaluation of the loss drop LD(t) at every step of a 24k-step cosine schedule, O(Q T)
(fits.schedule.kernel.loss_drop) against the double sum as written, vectorised over k for
each t (O(T^2)), timed in the same run, with their largest difference; and the same sum with
its derivatives at the 2,400 measured steps only (what a fit evaluates);
(2) the time to fit MultiPowerLaw on three 24k-step curves (constant, cosine, two-stage; loss
every 10 steps), with and without the three held-out refits that calibrate its intervals,
against a baseline fitted in the same run the way the law was fitted before: the same
objective, starts and optimiser, but finite-difference Jacobians of residuals computed from
the loss drop at every step;
(3) the time to predict a 72k-step curve, the first call and the fastest of the repeats.
Times are wall clock and CPU time of this process (on a shared machine the CPU time is the
steadier figure); ours are the fastest of --repeats runs. Goals (issue 22): the fit <= 10 s
on 2 cores, the prediction well under 1 s. The curves are drawn from the law itself with
0.1% noise, so the fit's answer is checkable.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import optimize

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's fits

from machine import machine

from fits.schedule import MultiPowerLaw, loss_drop, loss_drop_grad
from fits.schedule.kernel import areas, warmup_end
from fits.schedule.laws import _from_z, _to_z

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


class FiniteDifferenceFit(MultiPowerLaw):
    """The baseline: the law fitted as before this benchmark's change, with scipy's
    finite-difference Jacobian (step 1e-4 in the search coordinates) of residuals whose loss
    drop is computed at every step and then read at the measured ones."""

    def _drop(
        self, lrs: np.ndarray, theta: np.ndarray, at: np.ndarray | None = None, grad: bool = False
    ) -> np.ndarray:
        every = loss_drop(lrs, *theta)
        return _no_slopes(every if at is None else every[at], grad)

    def _refine(
        self, data: Any, start: np.ndarray, coarse: bool, max_nfev: int
    ) -> tuple[np.ndarray, np.ndarray, float]:
        lo, hi = np.array(self._bounds).T

        def resid(z: np.ndarray) -> np.ndarray:
            with np.errstate(all="ignore"):
                X, y = self._design_values(data, _from_z(z, lo), coarse)
                r = X @ self._linear(X, y) - y
            return np.where(np.isfinite(r), r, 1e3)

        res = optimize.least_squares(
            resid, _to_z(np.clip(start, lo, hi), lo), bounds=(_to_z(lo, lo), _to_z(hi, lo)),
            method="trf", x_scale=1.0, diff_step=1e-4, max_nfev=max_nfev, xtol=1e-10, ftol=1e-12,
        )  # fmt: skip
        theta = _from_z(res.x, lo)
        X, y = self._design_values(data, theta, coarse)
        linear = self._linear(X, y)
        return theta, linear, float(np.sum((X @ linear - y) ** 2))

    def _design_values(self, data: Any, theta: np.ndarray, coarse: bool) -> Any:
        X, y, _ = self._design(data, theta, coarse)  # the derivative rows are zeros here
        return X, y

    def _coarse_drop(
        self, lrs: np.ndarray, steps: np.ndarray, theta: np.ndarray, grad: bool = False
    ) -> np.ndarray:
        return _no_slopes(MultiPowerLaw._coarse_drop(self, lrs, steps, theta), grad)


def _no_slopes(drop: np.ndarray, grad: bool) -> np.ndarray:
    """The drop term, with zero rows where the fit's derivatives go (finite differences
    replace them)."""
    return np.r_[[drop], np.zeros((3, len(drop)))] if grad else drop


def timed(fn: Any, *args: Any, repeats: int = 1) -> tuple[Any, float, float]:
    """(result, fastest wall time, fastest CPU time of this process) over `repeats` runs."""
    wall, cpu, out = np.inf, np.inf, None
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        out = fn(*args)
        wall, cpu = min(wall, time.perf_counter() - w0), min(cpu, time.process_time() - c0)
    return out, wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-baseline", action="store_true", help="skip the baseline fit")
    args = parser.parse_args()
    print(f"machine: {machine()}")

    lrs = schedule("cosine", 24_000)
    theta = (TRUE["beta"], TRUE["gamma"], TRUE["C"])
    fast, t_fast, _ = timed(loss_drop, lrs, *theta, repeats=args.repeats)
    slow, t_slow, _ = timed(naive_drop, lrs, *theta)
    print(f"loss drop, 24k-step cosine, every step: O(QT) {t_fast:.3f} s, double sum "
          f"{t_slow:.2f} s, ratio {t_slow / t_fast:.0f}x, largest difference "
          f"{np.max(np.abs(fast - slow)):.1e} (LD up to {np.max(np.abs(slow)):.2e})")  # fmt: skip
    measured = np.arange(9, len(lrs), 10)
    _, t_at, _ = timed(loss_drop_grad, lrs, *theta, measured, repeats=args.repeats)
    print(f"  with its 3 derivatives at the 2,400 measured steps only: {t_at:.3f} s")

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

    print(f"fit on three 24k-step curves (load average {os.getloadavg()[0]:.1f}):")
    _, w_core, c_core = timed(MultiPowerLaw(calibrate=False).fit, curves, repeats=args.repeats)
    model, w_total, c_total = timed(MultiPowerLaw().fit, curves, repeats=args.repeats)
    print(f"  ours: {w_core:.2f} s wall ({c_core:.2f} s CPU); with the three held-out refits "
          f"that calibrate the band {w_total:.2f} s wall ({c_total:.2f} s CPU) "
          "(goal <= 10 s)")  # fmt: skip
    if not args.no_baseline:
        base, w_base, c_base = timed(FiniteDifferenceFit().fit, curves)
        print(f"  baseline (finite differences, drop at every step), with the refits: "
              f"{w_base:.2f} s wall ({c_base:.2f} s CPU): ours {w_base / w_total:.1f}x faster "
              f"wall, {c_base / c_total:.1f}x CPU; objective ours {model.objective_:.10e}, "
              f"baseline {base.objective_:.10e}")  # fmt: skip
    fitted = {k: round(v, 4) for k, v in model.params_.items()}
    print(f"  fitted {fitted}\n  true   {TRUE}")

    long = schedule("cosine", 72_000)
    _, w_first, c_first = timed(model.predict, long)
    _, w_predict, c_predict = timed(model.predict, long, repeats=args.repeats)
    print(f"predict a 72k-step curve: first call {w_first:.3f} s wall ({c_first:.3f} s CPU), "
          f"fastest {w_predict:.3f} s wall ({c_predict:.3f} s CPU) "
          "(goal well under 1 s)")  # fmt: skip
    t_naive_72k = t_slow * 9  # the double sum grows as T^2
    print(f"  the double sum at 72k steps would take about {t_naive_72k:.0f} s "
          f"(24k timing x 9): ratio about {t_naive_72k / w_first:.0f}x "
          "to the first call")  # fmt: skip
    print(f"load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
