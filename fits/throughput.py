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

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import nnls

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


@dataclass
class ThroughputModel:
    """Seconds per token per architecture; `fit` takes run-log rows with tokens_per_s."""

    coef_: dict[str, dict[str, float]] = field(default_factory=dict)
    n_runs_: dict[str, int] = field(default_factory=dict)
    rel_rmse_: dict[str, float] = field(default_factory=dict)

    def fit(self, runs: pd.DataFrame) -> ThroughputModel:
        data = with_flops_per_token(runs)
        if "tokens_per_s" not in data.columns:
            raise FitError("throughput data lack a tokens_per_s column")
        rate = data["tokens_per_s"].to_numpy(float)
        keep = np.isfinite(rate) & (rate > 0) & np.isfinite(features(data)).all(axis=1)
        data = data[keep]
        if data.empty:
            raise FitError("no runs with a measured tokens_per_s")
        for arch, group in data.groupby("arch"):
            seconds = 1.0 / group["tokens_per_s"].to_numpy(float)
            x = features(group)
            scale = np.where(x.max(axis=0) > 0, x.max(axis=0), 1.0)
            # relative residuals: each row divided by its own observed seconds per token
            coef, _ = nnls((x / scale) / seconds[:, None], np.ones(len(seconds)))
            coef = coef / scale
            fitted = x @ coef
            self.coef_[str(arch)] = dict(zip(TERMS, map(float, coef), strict=True))
            self.n_runs_[str(arch)] = len(group)
            self.rel_rmse_[str(arch)] = float(np.sqrt(np.mean((fitted / seconds - 1) ** 2)))
        return self

    def seconds_per_token(self, shapes: pd.DataFrame) -> np.ndarray:
        """Predicted wall seconds per trained token of each row (columns SHAPE_COLUMNS)."""
        if not self.coef_:
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

    def summary(self) -> str:
        lines = ["throughput model: seconds/token = a*F + b*L*d + e*L*h*n + c (per arch)"]
        for arch, coef in sorted(self.coef_.items()):
            terms = ", ".join(f"{t} {v:.3g}" for t, v in coef.items())
            lines.append(
                f"  {arch}: {terms}  ({self.n_runs_[arch]} runs, "
                f"in-sample relative RMSE {self.rel_rmse_[arch]:.1%})"
            )
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {"coef": self.coef_, "n_runs": self.n_runs_, "rel_rmse": self.rel_rmse_}


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
