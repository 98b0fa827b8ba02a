"""Schedule laws: the loss at every step of a run from its per-step learning rates.

Two published forms (in fits.schedule.forms), one estimator contract (DESIGN.md section 5):

- `MultiPowerLaw` (Luo et al., ICLR 2025, arXiv 2503.12811):
  L(t) = L0 + A (S1(t) + S_W)^-alpha - LD(t), S1 + S_W the LR area of steps 0..t and LD the
  loss drop of the decay (fits.schedule.kernel).
- `AnnealingLaw` (Tissue et al. 2024, arXiv 2408.11029): L(t) = L0 + A S1^-alpha - C S2, S1 the
  forward area (the same LR area) and S2 the annealing area: the sum over steps of the
  momentum m_t = lambda m_{t-1} + (lrs[t-1] - lrs[t]) of the LR's decay since the peak.

`fit(curves)` takes a frame of run, step, lr, loss in which every step from 0 of each run
carries its LR and loss is NaN where it was not measured. Points up to each run's peak (the
warmup) are left out, as both papers do; every run weighs the same whatever its number of
points, and residuals are relative (the fit is in log loss). The linear parameters (L0, A and
B or C) are solved exactly for every trial of the nonlinear ones (variable projection).

Intervals are calibrated by holding out whole schedules: each run is refitted out, the law
from the other runs predicts its curve, and the equal-tailed quantiles of the log ratios
measured / predicted (each held-out run weighing the same) widen every prediction. The same
refits give jackknife standard errors of the parameters.
"""

from __future__ import annotations

import copy
import math
from statistics import NormalDist
from typing import Any, ClassVar, Self

import numpy as np
import pandas as pd
from scipy import optimize

from fits.base import Fit, holding_point
from fits.errors import FitError
from fits.schedule.curves import Curve, check_schedule, curves_from_frame, positive_curve
from fits.schedule.kernel import areas, warmup_end

_COARSE_POINTS = 200  # starts are searched at about this many measured points per run


class ScheduleLaw(Fit):
    """L(t) = L0 + A area(t)^-alpha - B drop(t): what both laws share.

    Subclasses name the nonlinear parameters of the drop term, compute it, and say where the
    search for them starts; fitting, calibration and prediction live here.

    Learned besides params_: holdout_errors_ / holdout_weights_ (log measured / predicted on
    each run left out, each run weighing 1), holdout_params_ (the refits), peak_lr_ (the
    highest LR the runs saw) and warmup_ (their median number of steps up to the peak).
    """

    linear_names: ClassVar[tuple[str, str, str]]
    nonlinear_names: ClassVar[tuple[str, ...]]
    _bounds: ClassVar[tuple[tuple[float, float], ...]]  # of the nonlinear parameters

    def __init__(self, *, level: float = 0.90, calibrate: bool = True) -> None:
        self.level = level
        self.calibrate = calibrate

    # -- the law ---------------------------------------------------------------------------
    def _drop(
        self, lrs: np.ndarray, theta: np.ndarray, at: np.ndarray | None = None, grad: bool = False
    ) -> np.ndarray:
        """The drop term at the increasing steps `at` (default every step) for nonlinear
        parameters theta (alpha excluded); with grad, rows: the term, then its derivative by
        each of theta."""
        raise NotImplementedError

    def _starts(self) -> list[np.ndarray]:
        """Starting points of the nonlinear parameters (alpha first)."""
        raise NotImplementedError

    def _coarse_drop(
        self, lrs: np.ndarray, steps: np.ndarray, theta: np.ndarray, grad: bool = False
    ) -> np.ndarray:
        """An approximate drop term at `steps` (rows as `_drop`'s), cheap enough to search
        starting points with."""
        return self._drop(lrs, theta, steps, grad)

    def predict(self, lrs: Any) -> np.ndarray:
        """The loss after every step of one schedule (a 1-D array of per-step LRs); FitError
        where it reaches a loss <= 0 (`positive_curve`)."""
        return positive_curve(self.curve(lrs))

    def curve(self, lrs: Any) -> np.ndarray:
        """The law's value after every step of one schedule, unchecked: where its parameters
        do not hold (a drop term that outgrows L0 far past the runs) it reaches 0 and below.
        NaN while no LR has been applied (LR area 0): the model is untrained there, and the
        law's area^-alpha is infinite, not a loss."""
        self._check_fitted()
        lrs = check_schedule(lrs)
        with np.errstate(invalid="ignore"):
            curve = self._curve(lrs, self._theta())
        curve[areas(lrs) == 0] = np.nan
        return curve

    def unseen(self, lrs: Any) -> str:
        """What of a schedule the runs did not show the law (empty if nothing): a peak LR above
        every run's, or an LR area below any at which a run's loss was measured, where the
        law's area^-alpha rises without bound while a real run's loss stays below its
        untrained value; and the first steps, if they apply no LR."""
        lrs = check_schedule(lrs)
        peak, area = lrs.max(), areas(lrs)[-1]
        notes = []
        if peak > self.peak_lr_ * (1 + 1e-9):
            notes.append(f"its peak LR {peak:.3g} is above every run's ({self.peak_lr_:.3g})")
        if area < self.least_area_:
            notes.append(
                f"its LR area ({area:.3g}, the sum of its LRs) is below any at which the runs' "
                f"loss was measured ({self.least_area_:.3g})"
            )
        seen = "; ".join(notes) + (": the law has not seen it" if notes else "")
        untrained = int(np.argmax(lrs > 0))  # steps before the first LR > 0 (curve: NaN)
        steps = "step 1" if untrained == 1 else f"steps 1-{untrained:,}"
        blank = f"no loss at {steps}: no LR is applied yet (the model is untrained)"
        return "; ".join(part for part in (seen, blank if untrained else "") if part)

    def predict_interval(
        self, lrs: Any, level: float | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(lo, hi) at every step: the prediction widened by the held-out schedules' errors."""
        self._check_fitted()
        level = self.level_ if level is None else level
        if not 0 < level < 1:
            raise FitError(f"level must be in (0, 1), got {level}")
        if len(self.holdout_errors_) == 0:
            raise FitError("intervals are calibrated on held-out schedules: fit at least two runs")
        return band(self.predict(lrs), self.holdout_errors_, self.holdout_weights_, level)

    def _theta(self) -> np.ndarray:
        return np.array([self.params_[name] for name in self.nonlinear_names])

    def _curve(self, lrs: np.ndarray, theta: np.ndarray) -> np.ndarray:
        L0, A, B = (self.params_[name] for name in self.linear_names)
        with np.errstate(divide="ignore"):
            forward = areas(lrs) ** -theta[0]
        return L0 + A * forward - B * self._drop(lrs, theta[1:])

    # -- fitting ---------------------------------------------------------------------------
    def fit(self, curves: pd.DataFrame) -> Self:
        """Fit the law on every run's measured curve; returns self."""
        if not 0 < self.level < 1:
            raise FitError(f"level must be in (0, 1), got {self.level}")
        data = curves_from_frame(curves)
        n_points = sum(len(c.steps) for c in data)
        if n_points <= len(self.linear_names) + len(self.nonlinear_names):
            raise FitError(f"{n_points} measured points cannot fit {type(self).__name__}")
        theta, linear, objective = self._solve(data, self._search(data))
        self._set(theta, linear)
        self.objective_ = objective
        self.n_points_ = n_points
        self.n_runs_ = len(data)
        self.peak_lr_ = float(max(c.lrs.max() for c in data))
        self.least_area_ = float(min(areas(c.lrs)[c.steps[0]] for c in data))
        self.warmup_ = int(np.median([warmup_end(c.lrs) + 1 for c in data]))
        self.level_ = self.level
        self._calibrate(data if self.calibrate else data[:1], theta)
        return self

    def _set(self, theta: np.ndarray, linear: np.ndarray) -> None:
        names = self.linear_names + self.nonlinear_names
        self.params_ = dict(zip(names, map(float, np.r_[linear, theta]), strict=True))

    def _design(
        self, data: list[Curve], theta: np.ndarray, coarse: bool = False
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Columns (1, area^-alpha, -drop) at the measured points, scaled to relative error,
        the targets, and the columns' derivatives by each of theta."""
        rows, targets, slopes = [], [], []
        for curve in data:
            pick = np.arange(len(curve.steps))
            if coarse and len(curve.steps) > _COARSE_POINTS:
                pick = np.linspace(0, len(curve.steps) - 1, _COARSE_POINTS).round().astype(int)
            steps, loss = curve.steps[pick], curve.loss[pick]
            area = areas(curve.lrs)[steps]
            forward = area ** -theta[0]
            if coarse:
                drop = self._coarse_drop(curve.lrs, steps, theta[1:], grad=True)
            else:
                drop = self._drop(curve.lrs, theta[1:], steps, grad=True)
            scale = 1.0 / (loss * math.sqrt(len(steps)))  # each run weighs the same
            rows.append(
                np.column_stack([np.ones_like(forward), forward, -drop[0]]) * scale[:, None]
            )
            targets.append(loss * scale)
            slope = np.zeros((len(theta), len(steps), 3))
            slope[0, :, 1] = -np.log(area) * forward * scale
            slope[1:, :, 2] = -drop[1:] * scale
            slopes.append(slope)
        return np.vstack(rows), np.concatenate(targets), np.concatenate(slopes, axis=1)

    def _linear(self, X: np.ndarray, y: np.ndarray) -> np.ndarray:
        """L0, A, B >= 0 by bounded linear least squares."""
        return optimize.lsq_linear(X, y, bounds=(0.0, np.inf), method="bvls").x

    def _residuals(
        self, data: list[Curve], theta: np.ndarray, coarse: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """Residuals with the linear parameters solved for, and their Jacobian by theta."""
        X, y, slopes = self._design(data, theta, coarse)
        return _projected(X, y, slopes, self._linear(X, y))

    def _search(self, data: list[Curve]) -> np.ndarray:
        """The best start, each refined on the schedules averaged down (cheap, approximate)."""
        best, best_cost = None, np.inf
        for start in self._starts():
            theta, _, cost = self._refine(data, start, coarse=True, max_nfev=60)
            if cost < best_cost:
                best, best_cost = theta, cost
        assert best is not None
        return best

    def _solve(self, data: list[Curve], start: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
        theta, linear, cost = self._refine(data, start, coarse=False, max_nfev=100)
        if not np.isfinite(cost):
            raise FitError(f"{type(self).__name__} did not converge on these curves")
        return theta, linear, cost

    def _refine(
        self, data: list[Curve], start: np.ndarray, coarse: bool, max_nfev: int
    ) -> tuple[np.ndarray, np.ndarray, float]:
        """Least squares over the nonlinear parameters (in logs where they are positive)."""
        lo, hi = np.array(self._bounds).T
        z0 = _to_z(np.clip(start, lo, hi), lo)
        zlo, zhi = _to_z(lo, lo), _to_z(hi, lo)

        last: dict[bytes, tuple[np.ndarray, np.ndarray]] = {}

        def evaluate(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            """Residuals and their Jacobian by z, computed together (trf asks for both)."""
            if z.tobytes() not in last:
                theta = _from_z(z, lo)
                with np.errstate(all="ignore"):
                    r, J = self._residuals(data, theta, coarse)
                    J = J * np.where(lo > 0, theta, 1.0)  # d theta / dz
                last.clear()
                last[z.tobytes()] = (np.where(np.isfinite(r), r, 1e3), np.nan_to_num(J, nan=0.0))
            return last[z.tobytes()]

        res = optimize.least_squares(
            lambda z: evaluate(z)[0], z0, jac=lambda z: evaluate(z)[1], bounds=(zlo, zhi),
            method="trf", x_scale=1.0, max_nfev=max_nfev, xtol=1e-10, ftol=1e-12,
        )  # fmt: skip
        theta = _from_z(res.x, lo)
        X, y, _ = self._design(data, theta, coarse)
        linear = self._linear(X, y)
        return theta, linear, float(np.sum((X @ linear - y) ** 2))

    def _calibrate(self, data: list[Curve], theta: np.ndarray) -> None:
        """Refit without each run in turn: its errors calibrate the band, the refits the
        parameters' jackknife standard errors."""
        errors, weights, refits = [], [], []
        full = dict(self.params_)
        if len(data) >= 2:
            for i, held in enumerate(data):
                rest = data[:i] + data[i + 1 :]
                t, linear, _ = self._refine(rest, theta, coarse=False, max_nfev=40)
                self._set(t, linear)
                refits.append([self.params_[k] for k in full])
                predicted = self._curve(held.lrs, t)[held.steps]
                e = np.log(held.loss / predicted)
                errors.append(e)
                weights.append(np.full(len(e), 1.0 / len(e)))
        self.params_ = full
        self.holdout_params_ = [dict(zip(full, map(float, r), strict=True)) for r in refits]
        self.holdout_errors_ = np.concatenate(errors) if errors else np.zeros(0)
        self.holdout_weights_ = np.concatenate(weights) if weights else np.zeros(0)
        self.holdout_runs_ = [c.run for c in data] if errors else []
        n = len(refits)
        if n >= 3:
            draws = np.array(refits)
            se = np.sqrt((n - 1) / n * np.sum((draws - draws.mean(0)) ** 2, axis=0))
        else:
            se = np.full(len(full), np.nan)
        z = NormalDist().inv_cdf(0.5 + self.level / 2)
        self.stderr_ = dict(zip(full, map(float, se), strict=True))
        self.intervals_ = {
            k: (v - z * s, v + z * s) for (k, v), s in zip(full.items(), se, strict=True)
        }

    # -- reporting and serialisation -------------------------------------------------------
    def _summary_header(self) -> list[str]:
        lines = super()._summary_header()
        if len(self.holdout_errors_):
            lo, hi = _weighted_quantiles(
                self.holdout_errors_,
                self.holdout_weights_,
                [(1 - self.level_) / 2, (1 + self.level_) / 2],
            )
            lines.append(
                f"held-out schedules: {len(self.holdout_runs_)}; {100 * self.level_:g}% band "
                f"{100 * math.expm1(lo):+.2f}% .. {100 * math.expm1(hi):+.2f}% of the prediction"
            )
        lines.append("std err: jackknife over the held-out refits")
        return lines

    def _state(self) -> dict[str, Any]:
        return {
            "holdout_errors": self.holdout_errors_.tolist(),
            "holdout_weights": self.holdout_weights_.tolist(),
            "holdout_runs": list(self.holdout_runs_),
            "holdout_params": self.holdout_params_,
            "n_runs": self.n_runs_,
            "peak_lr": self.peak_lr_,
            "least_area": self.least_area_,
            "warmup": self.warmup_,
        }

    def _load_state(self, state: dict[str, Any]) -> None:
        self.holdout_errors_ = np.asarray(state.get("holdout_errors", []), dtype=float)
        self.holdout_weights_ = np.asarray(state.get("holdout_weights", []), dtype=float)
        self.holdout_runs_ = list(state.get("holdout_runs", []))
        self.holdout_params_ = [dict(p) for p in state.get("holdout_params", [])]
        self.n_runs_ = int(state.get("n_runs", 0))
        self.peak_lr_ = float(state.get("peak_lr", math.nan))
        self.least_area_ = float(state.get("least_area", math.nan))
        self.warmup_ = int(state.get("warmup", 0))

    def holdout_laws(self) -> list[Self]:
        """The law refitted without each run in turn (for the spread of derived answers)."""
        self._check_fitted()
        out = []
        for params in self.holdout_params_:
            other = copy.copy(self)
            other.params_ = dict(params)
            out.append(other)
        return out


def _projected(
    X: np.ndarray, y: np.ndarray, slopes: np.ndarray, linear: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Residuals X linear - y, linear solved for exactly, and their derivatives by the
    nonlinear parameters given dX (slopes[i] = dX/dtheta_i): the variable-projection Jacobian
    (Golub and Pereyra 1973) P_perp dX linear - (X^+)^T dX^T r on the linear parameters off
    their bound (those at it stay there)."""
    r = X @ linear - y
    free = linear > 0
    J = np.zeros((len(y), len(slopes)))
    U, s, Vt = np.linalg.svd(X[:, free], full_matrices=False)
    keep = s > s.max(initial=0.0) * 1e-12
    U, s, Vt = U[:, keep], s[keep], Vt[keep]
    for i, dX in enumerate(slopes):
        moved = dX @ linear
        J[:, i] = moved - U @ (U.T @ moved + (Vt @ (dX[:, free].T @ r)) / s)
    return r, J


def _to_z(theta: np.ndarray, lo: np.ndarray) -> np.ndarray:
    """Search coordinates: logs of the parameters bounded away from zero, others as they are."""
    return np.where(lo > 0, np.log(np.maximum(theta, 1e-300)), theta)


def _from_z(z: np.ndarray, lo: np.ndarray) -> np.ndarray:
    return np.where(lo > 0, np.exp(z), z)


def band(
    mid: np.ndarray, errors: np.ndarray, weights: np.ndarray, level: float
) -> tuple[np.ndarray, np.ndarray]:
    """`mid` times exp of the equal-tailed weighted quantiles at `level` of held-out log
    errors, stretched to hold `mid` where every held-out run erred one way
    (fits.base.holding_point)."""
    tail = (1 - level) / 2
    lo, hi = _weighted_quantiles(errors, weights, [tail, 1 - tail])
    return holding_point(mid, mid * math.exp(lo), mid * math.exp(hi))


def _weighted_quantiles(values: np.ndarray, weights: np.ndarray, qs: list[float]) -> list[float]:
    """Quantiles of a weighted sample (the weighted empirical CDF, midpoint rule)."""
    order = np.argsort(values)
    v, w = values[order], weights[order]
    cdf = (np.cumsum(w) - 0.5 * w) / w.sum()
    return [float(np.interp(q, cdf, v)) for q in qs]
