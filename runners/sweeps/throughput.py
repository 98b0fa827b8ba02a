"""Wall-time estimates from measured runs: tokens per second as a power of FLOPs per token.

log(tokens/s) = a + b log(FLOPs/token), least squares over finished runs' training rates.
With a single model size measured, b = -1 (a constant FLOP rate). b is kept in [-2, 0]: a
bigger model never trains more tokens per second, and small noisy samples must not
extrapolate wildly. A run's estimate adds its evaluations (forward passes, a third of a
training token's cost each) and a fixed start-up; a sweep adds starting its workers: small
runs are dominated by these (a sweep estimated at 1 s without them took 19 s).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

EVAL_COST = 1 / 3  # a forward pass costs about a third of a training step, per token
RUN_START_S = 1.0  # per run: build the model, optimiser and held-out windows; commit
WORKER_START_S = 5.0  # per sweep: spawn workers, import torch, read the corpus


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

    def seconds(
        self, flops_per_token: np.ndarray, tokens: np.ndarray, eval_tokens: np.ndarray | float = 0
    ) -> np.ndarray:
        """Predicted wall seconds of runs of these sizes, horizons and evaluated tokens, each
        with its start-up (not the sweep's WORKER_START_S)."""
        rate = np.exp(self.intercept + self.slope * np.log(np.asarray(flops_per_token, float)))
        work = np.asarray(tokens, dtype=float) + EVAL_COST * np.asarray(eval_tokens, float)
        return RUN_START_S + work / rate
