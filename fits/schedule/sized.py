"""The Multi-Power Law fitted jointly across model sizes, its amplitudes tied to N.

    L(t; N) = E + K n^-g + A n^-a (S1(t) + S_W)^-alpha - B n^-b LD(t; beta, gamma, C)

with n = N / n_ref (n_ref: the geometric mean of the fitted sizes, so that the amplitudes are
those of a middle size), S1 + S_W the LR area of steps 0..t and LD the Multi-Power Law's loss
drop (Luo et al., ICLR 2025, arXiv 2503.12811; fits.schedule.kernel), both on the run's own
per-step LRs. At one size it is the Multi-Power Law with L0 = E + K n^-g, A n^-a and B n^-b.

Why this split. The Multi-Power Law's three amplitudes (L0, A, B) are linear parameters and
what a change of size moves: L0 is the loss that size reaches with unlimited steps, so it
takes the N-limited form of the Chinchilla law, E + K N^-g (E, the irreducible loss, shared;
three sizes at least identify an offset power law). A and B scale how far the LR area and the
decay take the loss; each gets a power of N, which holds the Chinchilla case (the data term
the same for every size given the tokens) as a = k alpha when each size trains at an LR law's
LR, lr = c N^-k, and does not force it. The shape of the curve in LR-area units (alpha, beta,
gamma, C) is shared by every size. Every size's LR enters through its schedule, so the law
predicts a size it has not seen from that size's schedule: the LR law's LR, or any other.

What is fitted. Points up to each run's peak (the warmup) are left out, as for the one-size
law. Residuals are relative (log loss) and every measured point weighs the same: runs that
share steps (WSD branches and their stable run) should be given once each, a branch's loss
NaN before it leaves its stable run, so that a branch adds only its cooldown; weighing each
run the same would count a branch's few cooldown points as much as a whole curve. E, K, A, B
are solved by bounded linear least squares for each trial of the nonlinear parameters
(variable projection, the Jacobian of fits.schedule.laws), searched from a few starts.

The fit needs a column `N` in the contract's curves frame (run, step, lr, loss), one value per
run, and at least three distinct sizes; otherwise FitError says so in one line.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Self

import numpy as np
import pandas as pd
from scipy import optimize

from fits.errors import FitError
from fits.schedule.curves import Curve, curves_from_frame, positive_curve
from fits.schedule.forms import MultiPowerLaw
from fits.schedule.kernel import areas, loss_drop_grad
from fits.schedule.laws import _from_z, _projected, _to_z, band

MIN_SIZES = 3  # an offset power law in N, E + K N^-g, has three parameters


@dataclass(frozen=True)
class SizedCurve:
    """One run's curve (after its warmup) and its size in units of n_ref."""

    curve: Curve
    n: float


class SizedMultiPowerLaw:
    """The Multi-Power Law across sizes: shared shape, amplitudes tied to N by powers.

    Learned: params_ (E, K, A, B with N in units of n_ref_, then alpha, beta, gamma, C, g, a,
    b), n_ref_, sizes_ (the fitted N), n_points_, n_runs_, objective_ (sum of squared
    relative residuals), pinned_ (nonlinear parameters at a bound of their search, or
    linear ones at zero: the data did not identify them), and for the band (predict_interval)
    holdout_errors_, holdout_weights_ and holdout_sizes_ (each size refitted out in turn;
    empty below MIN_SIZES + 1 sizes or with calibrate=False), level_.
    """

    formula = (
        "L(t;N) = E + K*n^-g + A*n^-a*(S1+S_W)^-alpha - B*n^-b*LD(t; beta, gamma, C), n = N/n_ref"
    )
    linear_names = ("E", "K", "A", "B")
    nonlinear_names = ("alpha", "beta", "gamma", "C", "g", "a", "b")
    _bounds = (
        (1e-3, 5.0), (1e-3, 5.0), (0.0, 2.0), (1e-6, 1e6),  # the Multi-Power Law's own
        (1e-3, 3.0), (-3.0, 3.0), (-3.0, 3.0),  # g, a, b
    )  # fmt: skip

    def __init__(self, *, level: float = 0.90, calibrate: bool = True, max_nfev: int = 200) -> None:
        self.level = level
        self.calibrate = calibrate
        self.max_nfev = max_nfev

    # -- predicting ------------------------------------------------------------------------
    def predict(self, lrs: Any, N: float) -> np.ndarray:
        """The loss after every step of one schedule (per-step LRs) for a model of N params;
        FitError where the law's curve reaches a loss <= 0 (its parameters do not hold there)."""
        return positive_curve(self.law_at(N).curve(lrs), f" at N = {N:.4g}", self._pinned_note())

    def predict_interval(
        self, lrs: Any, N: float, level: float | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(lo, hi) at every step: the prediction widened by the errors the law made on whole
        sizes left out of its fit (the question it is for: a size not trained)."""
        level = self.level_ if level is None else level
        if not 0 < level < 1:
            raise FitError(f"level must be in (0, 1), got {level}")
        mid = self.predict(lrs, N)
        if len(self.holdout_errors_) == 0:
            raise FitError(
                f"the band is calibrated on sizes left out: fit at least {MIN_SIZES + 1} sizes"
            )
        return band(mid, self.holdout_errors_, self.holdout_weights_, level)

    def _pinned_note(self) -> str:
        return f" (at a bound: {', '.join(self.pinned_)})" if self.pinned_ else ""

    def law_at(self, N: float) -> MultiPowerLaw:
        """The one-size MultiPowerLaw this law gives at N (parameters only; no band)."""
        self._check_fitted()
        if not (math.isfinite(N) and N > 0):
            raise FitError(f"N must be a positive number, got {N}")
        theta = np.array([self.params_[k] for k in self.nonlinear_names])
        linear = np.array([self.params_[k] for k in self.linear_names])
        return _one_size(N / self.n_ref_, theta, linear)

    def _check_fitted(self) -> None:
        if not hasattr(self, "params_"):
            raise RuntimeError("SizedMultiPowerLaw is not fitted yet: call fit() first")

    # -- fitting ---------------------------------------------------------------------------
    def fit(self, curves: pd.DataFrame) -> Self:
        """Fit on the curves frame (run, step, lr, loss) with each run's size in column N."""
        data = _sized_curves(curves)
        sizes = sorted({c.n for c in data})
        if len(sizes) < MIN_SIZES:
            raise FitError(
                f"{len(sizes)} model size(s): tying the loss to N needs at least {MIN_SIZES}"
            )
        n_ref = math.exp(np.mean(np.log(sizes)))
        data = [SizedCurve(c.curve, c.n / n_ref) for c in data]
        n_points = sum(len(c.curve.steps) for c in data)
        if n_points <= len(self.linear_names) + len(self.nonlinear_names):
            raise FitError(f"{n_points} measured points cannot fit SizedMultiPowerLaw")
        best: tuple[float, np.ndarray, np.ndarray] | None = None
        for start in self._starts():
            theta, linear, cost = self._refine(data, start, max_nfev=40)
            if best is None or cost < best[0]:
                best = (cost, theta, linear)
        assert best is not None
        theta, linear, cost = self._refine(data, best[1], max_nfev=self.max_nfev)
        if not np.isfinite(cost):
            raise FitError("SizedMultiPowerLaw did not converge on these curves")
        names = self.linear_names + self.nonlinear_names
        self.params_ = dict(zip(names, map(float, np.r_[linear, theta]), strict=True))
        self.n_ref_ = n_ref
        self.sizes_ = [float(s) for s in sizes]
        self.n_points_ = n_points
        self.n_runs_ = len(data)
        self.objective_ = cost
        lo, hi = np.array(self._bounds).T
        at_bound = np.isclose(theta, lo, rtol=1e-2, atol=1e-6) | np.isclose(theta, hi, rtol=1e-2)
        self.pinned_ = [k for k, v in zip(self.linear_names, linear, strict=True) if v <= 0] + [
            k for k, v in zip(self.nonlinear_names, at_bound, strict=True) if v
        ]
        self.level_ = self.level
        self._calibrate(data if self.calibrate else [], theta)
        return self

    def _calibrate(self, data: list[SizedCurve], theta: np.ndarray) -> None:
        """Refit without each size in turn (when at least MIN_SIZES remain) and score its
        curves: log(measured / predicted) at their points, each size left out weighing the
        same and each of its runs the same. A refit whose curve reaches a loss <= 0 at the size
        left out scores that size at the largest error seen, not at none."""
        errors, weights, sizes_out = [], [], []
        sizes = sorted({c.n for c in data})
        for n in sizes if len(sizes) > MIN_SIZES else []:
            held = [c for c in data if c.n == n]
            t, linear, cost = self._refine([c for c in data if c.n != n], theta, max_nfev=40)
            if not np.isfinite(cost):
                continue
            for c in held:
                with np.errstate(invalid="ignore"):
                    predicted = _one_size(n, t, linear).curve(c.curve.lrs)[c.curve.steps]
                    e = np.log(c.curve.loss / predicted)
                errors.append(e)
                weights.append(np.full(len(e), 1.0 / (len(held) * len(e))))
            sizes_out.append(n * self.n_ref_)
        pooled = np.concatenate(errors) if errors else np.zeros(0)
        worst = np.nanmax(np.abs(pooled)) if np.isfinite(pooled).any() else 0.0
        self.holdout_errors_ = np.where(np.isfinite(pooled), pooled, worst)  # too low
        self.holdout_weights_ = np.concatenate(weights) if weights else np.zeros(0)
        self.holdout_sizes_ = sizes_out

    def _starts(self) -> list[np.ndarray]:
        return [
            np.array([alpha, 0.5, gamma, C, 0.3, 0.0, 0.0])
            for alpha in (0.3, 0.7)
            for gamma in (0.3, 0.7)
            for C in (0.3, 3.0)
        ]

    def _design(
        self, data: list[SizedCurve], theta: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Columns (1, n^-g, n^-a area^-alpha, -n^-b drop) at the measured points divided by
        the loss (relative residuals), the targets (ones) and the columns' derivatives by each
        nonlinear parameter."""
        alpha, beta, gamma, C, g, a, b = theta
        rows, targets, slopes = [], [], []
        for sized in data:
            curve, log_n = sized.curve, math.log(sized.n)
            area = areas(curve.lrs)[curve.steps]
            drop = loss_drop_grad(curve.lrs, beta, gamma, C, curve.steps)
            scale = 1.0 / curve.loss
            size_term = math.exp(-g * log_n) * scale
            forward = math.exp(-a * log_n) * area**-alpha * scale
            decay = -math.exp(-b * log_n) * drop * scale  # rows: the column, then by beta..C
            rows.append(np.column_stack([scale, size_term, forward, decay[0]]))
            targets.append(np.ones(len(scale)))
            slope = np.zeros((len(theta), len(scale), 4))
            slope[0, :, 2] = -np.log(area) * forward
            slope[1:4, :, 3] = decay[1:]
            slope[4, :, 1] = -log_n * size_term
            slope[5, :, 2] = -log_n * forward
            slope[6, :, 3] = -log_n * decay[0]
            slopes.append(slope)
        return np.vstack(rows), np.concatenate(targets), np.concatenate(slopes, axis=1)

    def _refine(
        self, data: list[SizedCurve], start: np.ndarray, max_nfev: int
    ) -> tuple[np.ndarray, np.ndarray, float]:
        """Least squares over the nonlinear parameters (in logs where they are positive)."""
        lo, hi = np.array(self._bounds).T
        z0 = _to_z(np.clip(start, lo, hi), lo)
        last: dict[bytes, tuple[np.ndarray, np.ndarray]] = {}

        def evaluate(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            if z.tobytes() not in last:
                theta = _from_z(z, lo)
                with np.errstate(all="ignore"):
                    X, y, slopes = self._design(data, theta)
                    r, J = _projected(X, y, slopes, _linear(X, y))
                    J = J * np.where(lo > 0, theta, 1.0)  # d theta / dz
                last.clear()
                last[z.tobytes()] = (np.where(np.isfinite(r), r, 1e3), np.nan_to_num(J, nan=0.0))
            return last[z.tobytes()]

        res = optimize.least_squares(
            lambda z: evaluate(z)[0], z0, jac=lambda z: evaluate(z)[1],
            bounds=(_to_z(lo, lo), _to_z(hi, lo)), method="trf", x_scale=1.0,
            max_nfev=max_nfev, xtol=1e-10, ftol=1e-12,
        )  # fmt: skip
        theta = _from_z(res.x, lo)
        with np.errstate(all="ignore"):
            X, y, _ = self._design(data, theta)
            linear = _linear(X, y)
            cost = float(np.sum((X @ linear - y) ** 2))
        return theta, linear, cost if np.isfinite(cost) else math.inf

    # -- reporting -------------------------------------------------------------------------
    def summary(self) -> str:
        """The parameters, the sizes and what the data left unidentified, as text."""
        self._check_fitted()
        lines = [
            f"SizedMultiPowerLaw: {self.formula}",
            f"sizes: {', '.join(f'{s:.4g}' for s in self.sizes_)}; n_ref = {self.n_ref_:.4g}",
            f"runs: {self.n_runs_}    points: {self.n_points_}    objective: {self.objective_:.6g}",
            *(f"  {k:<6} {v:.6g}" for k, v in self.params_.items()),
        ]
        if self.pinned_:
            lines.append(f"at a bound (not identified by these curves): {', '.join(self.pinned_)}")
        return "\n".join(lines)


def _one_size(n: float, theta: np.ndarray, linear: np.ndarray) -> MultiPowerLaw:
    """The one-size Multi-Power Law these parameters give at size n (units of n_ref):
    L0 = E + K n^-g, A n^-a, B n^-b and the shared shape; parameters only, no band."""
    alpha, beta, gamma, C, g, a, b = theta
    E, K, A, B = linear
    law = MultiPowerLaw(calibrate=False)
    law.params_ = {"L0": E + K * n**-g, "A": A * n**-a, "B": B * n**-b,
                   "alpha": alpha, "beta": beta, "gamma": gamma, "C": C}  # fmt: skip
    return law


def _linear(X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """E, K, A, B >= 0 by bounded linear least squares."""
    return optimize.lsq_linear(X, y, bounds=(0.0, np.inf), method="bvls").x


def _sized_curves(curves: pd.DataFrame) -> list[SizedCurve]:
    """The contract's curves with each run's N (one positive finite value per run)."""
    if "N" not in curves.columns:
        raise FitError("curves need a column N: each run's model size")
    sizes = curves.groupby("run", sort=True)["N"].agg(["min", "max"])
    bad = sizes[~((sizes["min"] == sizes["max"]) & (sizes["min"] > 0) & np.isfinite(sizes["min"]))]
    if len(bad):
        raise FitError(f"run {bad.index[0]}: N must be one positive number for the whole run")
    by_run = {str(run): float(n) for run, n in sizes["min"].items()}
    return [SizedCurve(c, by_run[c.run]) for c in curves_from_frame(curves)]
