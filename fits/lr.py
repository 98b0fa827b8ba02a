"""Optimal learning rate per group of runs: a parabola in log LR through the best points.

Per group (e.g. arch, N, D, batch size) the runs are ordered by LR. Runs with a NaN/inf loss
or status "diverged" are not data for the parabola, but they are worse than any finite loss:
a diverged run above the best LR brackets the optimum from above. Several runs at one LR
(seeds) are averaged over their finite losses; an LR all of whose runs diverged counts as
diverged.

The parabola loss = c0 + c1 u + c2 u^2 (u = log LR) is fitted to the best finite point and
`n_neighbors` finite neighbours on each side (taken from one side when the best is at an
edge), at least 3 points. Its vertex is lr_opt. A group is `bracketed` only if a worse
sampled LR (finite or diverged) lies on both sides of the best one, the parabola opens
upwards, and the vertex lies within the sampled LRs; otherwise `note` says why, and lr_opt
falls back to the best sampled LR when there is no usable vertex.

`scan_optimum` and `LogParabola` do the same for any one-dimensional scan (e.g. loss against
batch size at a fixed LR); a backtest reads the loss penalty of a predicted value off them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Self

import numpy as np
import pandas as pd

from fits import validate
from fits.base import Fit

RESULT_COLUMNS = ("lr_opt", "loss_opt", "n_points", "n_fit", "n_diverged", "bracketed", "note")


@dataclass(frozen=True)
class LogParabola:
    """loss = c0 + c1 u + c2 u^2 with u = log x: a scan's fitted loss against log LR (or BS)."""

    c0: float
    c1: float
    c2: float

    def __call__(self, x: np.ndarray | float) -> np.ndarray:
        u = np.log(np.asarray(x, dtype=float))
        return self.c0 + self.c1 * u + self.c2 * u * u

    @property
    def vertex(self) -> float:
        """x at the minimum; NaN when the parabola does not open upwards."""
        return float(np.exp(-self.c1 / (2.0 * self.c2))) if self.c2 > 0 else np.nan

    @property
    def minimum(self) -> float:
        """Loss at the vertex; NaN when the parabola does not open upwards."""
        return float(self.c0 - self.c1 * self.c1 / (4.0 * self.c2)) if self.c2 > 0 else np.nan

    def penalty(self, x: np.ndarray | float) -> np.ndarray:
        """Relative loss above the minimum of using x instead of the vertex: c2 (u - u*)^2 / min."""
        return (self(x) - self.minimum) / self.minimum


def scan(
    runs: pd.DataFrame, x: str = "lr", loss: str = "loss", status: str | None = "status"
) -> pd.Series:
    """Mean finite loss per distinct x, sorted by x; NaN where every run at that x diverged.

    A run diverged if its loss is NaN/inf or its `status` (when given and present) says so.
    x is read to 12 significant digits, so 0.008 and 0.008000000000000002 are one value.
    """
    validate.columns(runs, [x, loss])
    values = runs[loss].astype(float).to_numpy()
    diverged = ~np.isfinite(values)
    if status is not None and status in runs.columns:
        diverged |= runs[status].astype(str).str.lower().eq("diverged").to_numpy()
    xs = validate.positive(runs[x], x)
    frame = pd.DataFrame({"x": xs, "loss": np.where(diverged, np.nan, values)})
    same = frame.groupby([float(f"{v:.12g}") for v in xs], sort=True)
    return pd.Series(same["loss"].mean().to_numpy(), index=same["x"].min().to_numpy(), name=loss)


def scan_parabola(
    x: np.ndarray, loss: np.ndarray, n_neighbors: int = 1, min_points: int = 3
) -> tuple[LogParabola, int, float] | None:
    """Parabola in log x through the best finite point of a scan and its finite neighbours.

    x sorted and distinct, NaN loss = diverged. Takes `n_neighbors` on each side (from one side
    when the best is at an edge), at least `min_points`; returns it with the number of points
    used and its sum of squared residuals, or None when the scan has fewer than `min_points`
    finite points.
    """
    x, loss = np.asarray(x, dtype=float), np.asarray(loss, dtype=float)
    fin_idx = np.flatnonzero(np.isfinite(loss))
    if fin_idx.size < min_points:
        return None
    best = int(np.nanargmin(loss))
    size = min(max(2 * n_neighbors + 1, min_points), fin_idx.size)
    start = int(np.searchsorted(fin_idx, best)) - (size - 1) // 2
    start = min(max(start, 0), fin_idx.size - size)  # slide the window inside the data
    use = fin_idx[start : start + size]
    c2, c1, c0 = np.polyfit(np.log(x[use]), loss[use], 2)
    parabola = LogParabola(float(c0), float(c1), float(c2))
    return parabola, int(use.size), float(np.sum((loss[use] - parabola(x[use])) ** 2))


def optimal_lr(
    runs: pd.DataFrame,
    group_keys: Sequence[str] = ("arch", "N", "D", "batch_size"),
    *,
    lr: str = "lr",
    loss: str = "loss",
    status: str | None = "status",
    n_neighbors: int = 1,
    min_points: int = 3,
) -> pd.DataFrame:
    """One row per group: keys, lr_opt, loss_opt, n_points, n_fit, n_diverged, bracketed, note.

    n_points counts the distinct LRs with a finite loss, n_fit those used by the parabola,
    n_diverged the LRs whose runs all diverged. Group keys missing from `runs` are an error;
    pass only the keys your data has. `status` may be None or absent from the frame.
    """
    table = _optima(runs, group_keys, lr, loss, status, n_neighbors, min_points)
    return table.drop(columns="sse")


def _optima(
    runs: pd.DataFrame, group_keys: Sequence[str], lr: str, loss: str, status: str | None,
    n_neighbors: int, min_points: int,
) -> pd.DataFrame:  # fmt: skip
    """optimal_lr's table with each group's parabola sse (its residual sum of squares)."""
    keys = list(group_keys)
    validate.columns(runs, [*keys, lr, loss])
    if min_points < 3:
        raise ValueError("a parabola needs min_points >= 3")
    validate.positive(runs[lr], lr)

    rows = []
    groups = runs.groupby(keys, sort=True, dropna=False) if keys else [((), runs)]
    for key, group in groups:
        per_lr = scan(group, lr, loss, status)  # NaN only if all diverged
        result = scan_optimum(per_lr.index.to_numpy(), per_lr.to_numpy(), n_neighbors, min_points)
        result["lr_opt"] = result.pop("opt")
        key = key if isinstance(key, tuple) else (key,)
        rows.append({**dict(zip(keys, key, strict=True)), **result})
    return pd.DataFrame(rows, columns=[*keys, *RESULT_COLUMNS, "sse"])  # drops `parabola`


def scan_optimum(
    x: np.ndarray,
    loss: np.ndarray,
    n_neighbors: int = 1,
    min_points: int = 3,
    name: str = "LR",
) -> dict[str, object]:
    """Optimum of one scan (x sorted and distinct, NaN loss = diverged), as in `optimal_lr`.

    Returns opt, loss_opt, n_points, n_fit, n_diverged, bracketed, note, and the fitted
    `parabola` (a LogParabola, None when there are too few finite points) with its `sse` (0
    without one); `name` is what the notes call x.
    """
    finite = np.isfinite(loss)
    n_points, n_diverged = int(finite.sum()), int((~finite).sum())
    out: dict[str, object] = {
        "n_points": n_points, "n_diverged": n_diverged, "parabola": None, "sse": 0.0,
    }  # fmt: skip
    if n_points == 0:
        return {
            **out,
            "opt": np.nan,
            "loss_opt": np.nan,
            "n_fit": 0,
            "bracketed": False,
            "note": "no finite loss (all runs diverged)",
        }
    best = int(np.nanargmin(loss))
    fallback = {"opt": float(x[best]), "loss_opt": float(loss[best])}
    fitted = scan_parabola(x, loss, n_neighbors, min_points)
    if fitted is None:
        return {
            **out,
            **fallback,
            "n_fit": 0,
            "bracketed": False,
            "note": f"too few finite points ({n_points} < {min_points}): best sampled {name}",
        }

    # Every sampled x other than the best one is worse (finite and higher, or diverged),
    # so the best is bracketed exactly when it is not the lowest or highest sampled x.
    notes = []
    if best == 0:
        notes.append(f"best {name} is the lowest sampled")
    if best == x.size - 1:
        notes.append(f"best {name} is the highest sampled")
    parabola, out["n_fit"], out["sse"] = fitted
    out["parabola"] = parabola
    if not parabola.c2 > 0:
        notes.append("parabola opens downward")
        return {**out, **fallback, "bracketed": False, "note": "; ".join(notes)}
    vertex = {"opt": parabola.vertex, "loss_opt": parabola.minimum}
    if not (x[0] <= parabola.vertex <= x[-1]):
        notes.append(f"vertex outside the sampled {name}s")
        return {**out, **fallback, "bracketed": False, "note": "; ".join(notes)}
    return {**out, **vertex, "bracketed": not notes, "note": "; ".join(notes)}


class LROptima(Fit):
    """The optimal LR of every group of runs that differ only in LR, as an estimator.

    `fit(runs)` keeps `optimal_lr`'s table as `table_` (one row per group; see that function
    for the columns) and `predict(runs)` reads each row's group optimum off it; `params_`
    holds each group's optimum (named by its keys) and `objective_` the parabolas' residual
    sum of squares. Configuration: the group keys and the parabola's window (`optimal_lr`).
    It gives no interval: a scan's optimum is read, not estimated with an error.
    """

    law = "lr"
    formula = "lr* per group: vertex of a parabola in log LR through the best points"

    def __init__(
        self,
        *,
        group_keys: Sequence[str] = ("arch", "N", "D", "batch_size"),
        n_neighbors: int = 1,
        min_points: int = 3,
        level: float = 0.90,
    ) -> None:
        self.group_keys = list(group_keys)
        self.n_neighbors = n_neighbors
        self.min_points = min_points
        self.level = level

    def fit(self, runs: pd.DataFrame) -> Self:
        """Per-group optima of `runs` (columns: the group keys, lr, loss, status); returns self."""
        table = _optima(runs, self.group_keys, "lr", "loss", "status", self.n_neighbors,
                        self.min_points)  # fmt: skip
        self.table_ = table.drop(columns="sse")
        self._set_params()
        self.stderr_, self.intervals_ = {}, {}
        self.level_ = validate.level(self.level)
        self.n_points_ = len(runs)
        self.objective_ = float(table["sse"].sum())
        return self

    def _set_params(self) -> None:
        """Each group's optimum, named by its keys: lr_opt[llama, 1e+06, ...]."""
        keys = self.table_[self.group_keys].astype(str).agg(", ".join, axis=1)
        self.params_ = {f"lr_opt[{k}]": float(v) for k, v in zip(keys, self.table_.lr_opt,
                                                                   strict=True)}  # fmt: skip

    def predict(self, runs: pd.DataFrame) -> np.ndarray:
        """The optimal LR of each row's group (NaN for a group the fit did not see)."""
        self._check_fitted()
        validate.columns(runs, self.group_keys)
        optima = self.table_[[*self.group_keys, "lr_opt"]]
        return runs[self.group_keys].merge(optima, "left", self.group_keys).lr_opt.to_numpy()

    def summary(self) -> str:
        self._check_fitted()
        n_bracketed = int(self.table_["bracketed"].astype(bool).sum())
        return "\n".join(
            [
                f"{type(self).__name__}: {self.formula}",
                f"runs: {self.n_points_}    groups: {len(self.table_)}, "
                f"{n_bracketed} with a bracketed optimum",
            ]
        )

    def _state(self) -> dict[str, Any]:
        return {"table": self.table_.to_dict("records")}

    def _load_state(self, state: dict[str, Any]) -> None:
        self.table_ = pd.DataFrame(state["table"], columns=[*self.group_keys, *RESULT_COLUMNS])
        self._set_params()
