"""Wall-time estimates from measured runs: tokens per second as a power of FLOPs per token
(fits.throughput.RateLaw, fitted on finished runs' training rates). A run's estimate adds its
evaluations (forward passes, a third of a training token's cost each) and a fixed start-up; a
sweep adds starting its workers: small runs are dominated by these (a sweep estimated at 1 s
without them took 19 s).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from fits.errors import FitError
from fits.throughput import RateLaw

EVAL_COST = 1 / 3  # a forward pass costs about a third of a training step, per token
RUN_START_S = 1.0  # per run: build the model, optimiser and held-out windows; commit
WORKER_START_S = 5.0  # per sweep: spawn workers, import torch, read the corpus


@dataclass(frozen=True)
class Throughput:
    """The sweep's rate law and what it costs to start a run."""

    law: RateLaw

    @property
    def n_runs(self) -> int:
        return self.law.n_points_

    @classmethod
    def fit(cls, flops_per_token: np.ndarray, tokens_per_s: np.ndarray) -> Throughput | None:
        """None when no run has been measured yet."""
        runs = pd.DataFrame({"flops_per_token": flops_per_token, "tokens_per_s": tokens_per_s})
        try:
            return cls(RateLaw().fit(runs))
        except FitError:
            return None

    def seconds(
        self, flops_per_token: np.ndarray, tokens: np.ndarray, eval_tokens: np.ndarray | float = 0
    ) -> np.ndarray:
        """Predicted wall seconds of runs of these sizes, horizons and evaluated tokens, each
        with its start-up (not the sweep's WORKER_START_S)."""
        rate = self.law.predict(flops_per_token)
        work = np.asarray(tokens, dtype=float) + EVAL_COST * np.asarray(eval_tokens, float)
        return RUN_START_S + work / rate
