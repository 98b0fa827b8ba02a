"""Wall-time estimates from measured runs: tokens per second as a power of FLOPs per token.

log(tokens/s) = a + b log(FLOPs/token), least squares over finished runs. With a single
model size measured, b = -1 (a constant FLOP rate). b is kept in [-2, 0]: a bigger model
never trains more tokens per second, and small noisy samples must not extrapolate wildly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Throughput:
    intercept: float
    slope: float
    n_runs: int

    @classmethod
    def fit(cls, flops_per_token: np.ndarray, tokens_per_s: np.ndarray) -> Throughput | None:
        """None when no run has been measured yet."""
        x = np.log(np.asarray(flops_per_token, dtype=float))
        y = np.log(np.asarray(tokens_per_s, dtype=float))
        keep = np.isfinite(x) & np.isfinite(y)
        x, y = x[keep], y[keep]
        if len(x) == 0:
            return None
        slope = -1.0
        if np.ptp(x) > 0:
            slope = float(np.clip(np.polyfit(x, y, 1)[0], -2.0, 0.0))
        return cls(float(np.mean(y - slope * x)), slope, len(x))

    def seconds(self, flops_per_token: np.ndarray, tokens: np.ndarray) -> np.ndarray:
        """Predicted wall seconds of runs of these sizes and horizons."""
        rate = np.exp(self.intercept + self.slope * np.log(np.asarray(flops_per_token, float)))
        return np.asarray(tokens, dtype=float) / rate
