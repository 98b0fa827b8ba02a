"""Training throughput on one device as a function of architecture, shape and context.

FLOPs are a poor proxy for time at small scale ("Time Matters", 2024): norms, activations,
the softmax and per-step overheads cost time that FLOPs do not count. Per architecture,
seconds per trained token are modelled as a non-negative sum of costs:

    s = a * flops_per_token          (matmuls, forward and backward)
      + b * n_layers * d_model       (elementwise work and memory traffic per token)
      + e * n_layers * n_heads * seq_len   (attention scores; llama only, 0 for linear mixers)
      + c                            (fixed cost per token: data, launches, optimiser share)

fitted by non-negative least squares on relative residuals, so every term can only add time
and a larger shape is never predicted to be faster than its parts say. Terms the data cannot
separate (e.g. one layer count) are left at whatever non-negative split fits; `backtest`
measures how well the model extrapolates to shapes larger than those it saw.
"""

from __future__ import annotations

import math
from typing import Any, Self

import numpy as np
import pandas as pd
from scipy.optimize import nnls

from fits.base import Fit, runs_column
from fits.errors import FitError

TERMS = ("flops", "elementwise", "attention", "constant")
SHAPE_COLUMNS = ("arch", "d_model", "n_layers", "n_heads", "seq_len", "flops_per_token")
ATTENTION_ARCHS = ("llama",)  # archs whose per-token cost grows with the context


def features(frame: pd.DataFrame) -> np.ndarray:
    """The cost terms of each row (columns in TERMS order)."""
    missing = [c for c in SHAPE_COLUMNS if c not in frame.columns]
    if missing:
        raise FitError(f"throughput data lack column(s): {', '.join(missing)}")
    layers = frame["n_layers"].to_numpy(float)
    attention = frame["arch"].isin(ATTENTION_ARCHS).to_numpy()
    return np.column_stack(
        [
            frame["flops_per_token"].to_numpy(float),
            layers * frame["d_model"].to_numpy(float),
            np.where(attention, layers * frame["n_heads"] * frame["seq_len"], 0.0),
            np.ones(len(frame)),
        ]
    )


def with_flops_per_token(runs: pd.DataFrame) -> pd.DataFrame:
    """Run-log rows with flops_per_token = flops / tokens (the exact per-arch count)."""
    if "flops_per_token" in runs.columns:
        return runs
    return runs.assign(flops_per_token=runs["flops"] / runs["tokens"])


class ThroughputModel(Fit):
    """Seconds per token per architecture; `fit` takes run-log rows with tokens_per_s.

    params_ holds each arch's cost per term as "arch.term"; the model has no interval of its
    own (stderr_ and intervals_ are empty), `backtest` measures how far it can be trusted.
    """

    law = "throughput"
    formula = "seconds/token = a*F + b*L*d + e*L*h*n + c (per arch)"

    def fit(self, runs: pd.DataFrame) -> Self:
        data = with_flops_per_token(runs)
        if "tokens_per_s" not in data.columns:
            raise FitError("throughput data lack a tokens_per_s column")
        rate = data["tokens_per_s"].to_numpy(float)
        keep = np.isfinite(rate) & (rate > 0) & np.isfinite(features(data)).all(axis=1)
        data = data[keep]
        if data.empty:
            raise FitError("no runs with a measured tokens_per_s")
        coefs, n_runs, rel_rmse, objective = {}, {}, {}, 0.0
        for arch, group in data.groupby("arch"):
            seconds = 1.0 / group["tokens_per_s"].to_numpy(float)
            x = features(group)
            scale = np.where(x.max(axis=0) > 0, x.max(axis=0), 1.0)
            # relative residuals: each row divided by its own observed seconds per token
            coef, _ = nnls((x / scale) / seconds[:, None], np.ones(len(seconds)))
            coef = coef / scale
            relative = x @ coef / seconds - 1
            coefs[str(arch)] = dict(zip(TERMS, map(float, coef), strict=True))
            n_runs[str(arch)] = len(group)
            rel_rmse[str(arch)] = float(np.sqrt(np.mean(relative**2)))
            objective += float(np.sum(relative**2))
        self._set(coefs, n_runs, rel_rmse, objective)
        return self

    @classmethod
    def with_coefficients(cls, coef: dict[str, dict[str, float]]) -> ThroughputModel:
        """A model with known costs per term (e.g. a device's, measured elsewhere)."""
        model = cls()
        model._set(coef, dict.fromkeys(coef, 0), dict.fromkeys(coef, math.nan), math.nan)
        return model

    def _set(self, coef: dict[str, dict[str, float]], n_runs: dict[str, int],
             rel_rmse: dict[str, float], objective: float) -> None:  # fmt: skip
        """Every learned attribute at once, so a refit keeps nothing of the last fit."""
        self.coef_, self.n_runs_, self.rel_rmse_ = coef, n_runs, rel_rmse
        self.params_ = {f"{a}.{t}": v for a, terms in coef.items() for t, v in terms.items()}
        self.stderr_, self.intervals_ = {}, {}
        self.level_ = math.nan
        self.n_points_ = int(sum(n_runs.values()))
        self.objective_ = objective

    def seconds_per_token(self, shapes: pd.DataFrame) -> np.ndarray:
        """Predicted wall seconds per trained token of each row (columns SHAPE_COLUMNS)."""
        if not self.is_fitted():
            raise FitError("the throughput model is not fitted")
        unknown = sorted(set(shapes["arch"]) - set(self.coef_))
        if unknown:
            raise FitError(
                f"no throughput data for arch {', '.join(unknown)} "
                f"(fitted: {', '.join(sorted(self.coef_))})"
            )
        x = features(with_flops_per_token(shapes))
        coef = np.array([[self.coef_[a][t] for t in TERMS] for a in shapes["arch"]])
        return np.einsum("ij,ij->i", x, coef)

    def tokens_per_s(self, shapes: pd.DataFrame) -> np.ndarray:
        return 1.0 / self.seconds_per_token(shapes)

    def predict(self, shapes: pd.DataFrame) -> np.ndarray:
        """Tokens per second of each shape (the quantity `fit` was given)."""
        return self.tokens_per_s(shapes)

    def summary(self) -> str:
        self._check_fitted()
        lines = [f"{type(self).__name__}: {self.formula}"]
        for arch, coef in sorted(self.coef_.items()):
            terms = ", ".join(f"{t} {v:.3g}" for t, v in coef.items())
            lines.append(
                f"  {arch}: {terms}  ({self.n_runs_[arch]} runs, "
                f"in-sample relative RMSE {self.rel_rmse_[arch]:.1%})"
            )
        return "\n".join(lines)

    def _state(self) -> dict[str, Any]:
        return {"coef": self.coef_, "n_runs": self.n_runs_, "rel_rmse": self.rel_rmse_}

    def _load_state(self, state: dict[str, Any]) -> None:
        rel_rmse = {k: math.nan if v is None else float(v) for k, v in state["rel_rmse"].items()}
        self._set(state["coef"], state["n_runs"], rel_rmse, self.objective_)


class RateLaw(Fit):
    """Tokens per second as a power of FLOPs per token, for estimating a sweep's wall time:
    log(tokens/s) = intercept + slope log(FLOPs/token), least squares over measured runs.

    With a single model size measured, slope = -1 (a constant FLOP rate). The slope is kept in
    [-2, 0]: a bigger model never trains more tokens per second, and small noisy samples must
    not extrapolate wildly. `fit` takes rows with flops_per_token and tokens_per_s.
    """

    law = "rate"
    formula = "tokens/s = exp(intercept) * (FLOPs/token)^slope"

    def fit(self, runs: pd.DataFrame) -> Self:
        x = np.log(runs["flops_per_token"].to_numpy(float))
        y = np.log(runs["tokens_per_s"].to_numpy(float))
        keep = np.isfinite(x) & np.isfinite(y)
        x, y = x[keep], y[keep]
        if len(x) == 0:
            raise FitError("no runs with a measured tokens_per_s")
        slope = -1.0
        if np.ptp(x) > 0:
            slope = float(np.clip(np.polyfit(x, y, 1)[0], -2.0, 0.0))
        intercept = float(np.mean(y - slope * x))
        self.params_ = {"intercept": intercept, "slope": slope}
        self.stderr_, self.intervals_ = {}, {}
        self.level_ = math.nan
        self.n_points_ = len(x)
        self.objective_ = float(np.sum((y - intercept - slope * x) ** 2))
        return self

    def predict(self, flops_per_token: Any) -> np.ndarray:
        """Tokens per second at these FLOPs per token (or the runs' column of them)."""
        self._check_fitted()
        log_fpt = np.log(np.asarray(runs_column(flops_per_token, "flops_per_token"), float))
        return np.exp(self.params_["intercept"] + self.params_["slope"] * log_fpt)


def backtest(runs: pd.DataFrame, fraction: float = 0.25) -> pd.DataFrame:
    """Fit on each arch's smaller shapes, predict its largest `fraction` (by FLOPs per
    token, whole shapes held out together) and return actual vs predicted tokens_per_s."""
    if not 0 < fraction < 1:
        raise FitError(f"holdout fraction must be between 0 and 1, got {fraction}")
    data = with_flops_per_token(runs)
    train, test = [], []
    for _, group in data.groupby("arch"):
        sizes = np.sort(group["flops_per_token"].unique())
        if len(sizes) < 3:
            raise FitError("backtest needs at least 3 distinct shapes per architecture")
        n_test = max(1, round(fraction * len(sizes)))
        held = group["flops_per_token"] >= sizes[-n_test]
        train.append(group[~held])
        test.append(group[held])
    model = ThroughputModel().fit(pd.concat(train))
    held_out = pd.concat(test)
    predicted = model.tokens_per_s(held_out)
    out = held_out[list(SHAPE_COLUMNS)].assign(
        actual=held_out["tokens_per_s"].to_numpy(float), predicted=predicted
    )
    out["rel_error"] = out.predicted / out.actual - 1
    return out.reset_index(drop=True)
