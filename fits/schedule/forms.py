"""The two published schedule laws on the shared machinery of fits.schedule.laws.

- `MultiPowerLaw` (Luo et al., ICLR 2025, arXiv 2503.12811), its loss drop summed by
  fits.schedule.kernel.
- `AnnealingLaw` (Tissue et al. 2024, arXiv 2408.11029), its annealing area a momentum sum.
"""

from __future__ import annotations

from typing import Any, ClassVar, Self

import numpy as np
import pandas as pd

from fits.errors import FitError
from fits.schedule.kernel import areas, loss_drop, loss_drop_grad, warmup_end
from fits.schedule.laws import ScheduleLaw

_COARSE_STEPS = 400  # starts are searched with the drop summed over about this many blocks


class MultiPowerLaw(ScheduleLaw):
    """L(t) = L0 + A (S1 + S_W)^-alpha - B sum_k (lr_{k-1} - lr_k) G(lr_k^-gamma S_k(t)),
    G(x) = 1 - (C x + 1)^-beta (Luo et al. 2025).

    Parameters
    ----------
    level: the level of `intervals_` and the default of `predict_interval`.
    calibrate: refit without each run to calibrate `predict_interval` (False: no intervals,
        a fit as fast as the law allows).
    """

    law = "multi-power"
    formula = (
        "L(t) = L0 + A*(S1+S_W)^-alpha"
        " - B*sum_k (lr_k-1 - lr_k)*(1 - (C*lr_k^-gamma*S_k(t) + 1)^-beta)"
    )
    linear_names = ("L0", "A", "B")
    nonlinear_names = ("alpha", "beta", "gamma", "C")
    _bounds = ((1e-3, 5.0), (1e-3, 5.0), (0.0, 2.0), (1e-6, 1e6))

    def _drop(
        self, lrs: np.ndarray, theta: np.ndarray, at: np.ndarray | None = None, grad: bool = False
    ) -> np.ndarray:
        beta, gamma, C = theta
        if grad:
            return loss_drop_grad(lrs, beta, gamma, C, at)
        return loss_drop(lrs, beta, gamma, C, at)

    def _coarse_drop(
        self, lrs: np.ndarray, steps: np.ndarray, theta: np.ndarray, grad: bool = False
    ) -> np.ndarray:
        """The double sum over blocks of steps instead of steps (each block's LR drop at its
        last LR), at the asked steps only: for the search of starting points."""
        beta, gamma, C = theta
        w = warmup_end(lrs)
        r = max(1, (len(lrs) - w) // _COARSE_STEPS)
        ends = np.arange(w + r, len(lrs), r)  # last step of each block
        if len(ends) == 0:
            return np.zeros((4, len(steps)) if grad else len(steps))
        starts = ends - r + 1
        drops = lrs[starts - 1] - lrs[ends]
        ends, starts, drops = ends[drops != 0], starts[drops != 0], drops[drops != 0]
        P = areas(lrs)
        area = P[steps][:, None] - P[starts - 1][None, :]
        live = (steps[:, None] >= ends[None, :]) & (area > 0)
        positive = lrs[ends] > 0  # a block ending at LR 0 has dropped fully once S > 0
        value = np.sum(np.where(live, drops, 0.0), axis=1)
        if not positive.any():
            return np.r_[[value], np.zeros((3, len(steps)))] if grad else value
        log_lr = np.log(lrs[ends[positive]])
        weight = np.where(live[:, positive], drops[positive], 0.0)
        cS = C * np.exp(-gamma * log_lr) * np.maximum(area[:, positive], 0.0)
        log_base = np.log1p(cS)
        kernel = np.exp(-beta * log_base)  # (1 + c S)^-beta
        value -= np.sum(weight * kernel, axis=1)
        if not grad:
            return value
        # d/dbeta of 1 - K is K log(1 + cS); c d/dc of it is beta K cS / (1 + cS)
        by_log_c = weight * beta * kernel * cS / (1.0 + cS)
        return np.stack(
            [
                value,
                np.sum(weight * kernel * log_base, axis=1),
                -(by_log_c @ log_lr),
                np.sum(by_log_c, axis=1) / C,
            ]
        )

    def _starts(self) -> list[np.ndarray]:
        return [
            np.array([alpha, beta, gamma, C])
            for alpha in (0.3, 0.7)
            for beta in (0.5,)
            for gamma in (0.3, 0.7)
            for C in (0.3, 3.0)
        ]


class AnnealingLaw(ScheduleLaw):
    """L(t) = L0 + A S1^-alpha - C S2, S2 = sum of m_t = decay m_{t-1} + (lr_{t-1} - lr_t)
    from the peak on (Tissue et al. 2024).

    Parameters
    ----------
    decay: the momentum's lambda (the paper uses 0.999), or None to choose it by the fit
        among DECAYS (a run of a few thousand steps forgets faster than the paper's runs).
    level: the level of `intervals_` and the default of `predict_interval`.
    calibrate: refit without each run to calibrate `predict_interval`.
    """

    law = "annealing"
    formula = "L(t) = L0 + A*S1^-alpha - C*S2"
    linear_names = ("L0", "A", "C")
    nonlinear_names = ("alpha",)
    _bounds = ((1e-3, 5.0),)
    DECAYS: ClassVar[tuple[float, ...]] = (0.9, 0.95, 0.98, 0.99, 0.995, 0.999)

    def __init__(
        self, *, decay: float | None = None, level: float = 0.90, calibrate: bool = True
    ) -> None:
        super().__init__(level=level, calibrate=calibrate)
        self.decay = decay

    def fit(self, curves: pd.DataFrame) -> Self:
        if self.decay is not None:
            if not 0 <= self.decay < 1:
                raise FitError(f"decay must be in [0, 1), got {self.decay}")
            self.decay_ = float(self.decay)
            return super().fit(curves)
        best: tuple[float, dict[str, Any]] | None = None
        for decay in self.DECAYS:
            self.decay_ = decay
            super().fit(curves)
            if best is None or self.objective_ < best[0]:
                best = (self.objective_, {**self.__dict__})
        assert best is not None
        self.__dict__.update(best[1])
        return self

    def _drop(
        self, lrs: np.ndarray, theta: np.ndarray, at: np.ndarray | None = None, grad: bool = False
    ) -> np.ndarray:
        area = annealing_area(lrs, self.decay_)
        area = area if at is None else area[at]
        return area[None] if grad else area

    def _starts(self) -> list[np.ndarray]:
        return [np.array([0.5])]

    def _summary_header(self) -> list[str]:
        return [*super()._summary_header(), f"momentum decay lambda: {self.decay_:g}"]

    def _state(self) -> dict[str, Any]:
        return {**super()._state(), "decay": self.decay_}

    def _load_state(self, state: dict[str, Any]) -> None:
        super()._load_state(state)
        self.decay_ = float(state["decay"])


def annealing_area(lrs: np.ndarray, decay: float) -> np.ndarray:
    """S2(t) = sum_{i <= t} m_i, m_i = decay m_{i-1} + (lrs[i-1] - lrs[i]) after the peak."""
    from scipy import signal  # here: it imports scipy.stats, a second of every command's start

    w = warmup_end(lrs)
    drops = np.zeros(len(lrs))
    drops[w + 1 :] = lrs[w:-1] - lrs[w + 1 :]
    momentum = signal.lfilter([1.0], [1.0, -decay], drops)
    return np.cumsum(momentum)
