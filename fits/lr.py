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
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Self

import numpy as np
import pandas as pd

from fits import validate
from fits.base import Fit

RESULT_COLUMNS = ("lr_opt", "loss_opt", "n_points", "n_fit", "n_diverged", "bracketed", "note")


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
    keys = list(group_keys)
    validate.columns(runs, [*keys, lr, loss])
    if min_points < 3:
        raise ValueError("a parabola needs min_points >= 3")
    lrs = validate.positive(runs[lr], lr)
    frame = pd.DataFrame({"_lr": lrs, "_loss": runs[loss].astype(float).to_numpy()})
    diverged = ~np.isfinite(frame["_loss"].to_numpy())
    if status is not None and status in runs.columns:
        diverged |= runs[status].astype(str).str.lower().eq("diverged").to_numpy()
    frame["_loss"] = np.where(diverged, np.nan, frame["_loss"])
    for k in keys:
        frame[k] = runs[k].to_numpy()

    rows = []
    groups = frame.groupby(keys, sort=True, dropna=False) if keys else [((), frame)]
    for key, group in groups:
        per_lr = group.groupby("_lr", sort=True)["_loss"].mean()  # NaN only if all diverged
        result = _group_optimum(per_lr.index.to_numpy(), per_lr.to_numpy(), n_neighbors, min_points)
        key = key if isinstance(key, tuple) else (key,)
        rows.append({**dict(zip(keys, key, strict=True)), **result})
    return pd.DataFrame(rows, columns=[*keys, *RESULT_COLUMNS])


def _group_optimum(
    lr: np.ndarray, loss: np.ndarray, n_neighbors: int, min_points: int
) -> dict[str, object]:
    """Vertex of the parabola in log LR around the best point of one group (LRs sorted)."""
    finite = np.isfinite(loss)
    n_points, n_diverged = int(finite.sum()), int((~finite).sum())
    out: dict[str, object] = {"n_points": n_points, "n_diverged": n_diverged}
    if n_points == 0:
        return {
            **out,
            "lr_opt": np.nan,
            "loss_opt": np.nan,
            "n_fit": 0,
            "bracketed": False,
            "note": "no finite loss (all runs diverged)",
        }
    best = int(np.nanargmin(loss))
    fallback = {"lr_opt": float(lr[best]), "loss_opt": float(loss[best])}
    if n_points < min_points:
        return {
            **out,
            **fallback,
            "n_fit": 0,
            "bracketed": False,
            "note": f"too few finite points ({n_points} < {min_points}): best sampled LR",
        }

    # Every sampled LR other than the best one is worse (finite and higher, or diverged),
    # so the best is bracketed exactly when it is not the lowest or highest sampled LR.
    notes = []
    if best == 0:
        notes.append("best LR is the lowest sampled")
    if best == lr.size - 1:
        notes.append("best LR is the highest sampled")

    fin_idx = np.flatnonzero(finite)
    size = min(max(2 * n_neighbors + 1, min_points), fin_idx.size)
    start = int(np.searchsorted(fin_idx, best)) - (size - 1) // 2
    start = min(max(start, 0), fin_idx.size - size)  # slide the window inside the data
    use = fin_idx[start : start + size]
    u = np.log(lr[use])
    c2, c1, c0 = np.polyfit(u, loss[use], 2)
    out["n_fit"] = int(use.size)
    if not c2 > 0:
        notes.append("parabola opens downward")
        return {**out, **fallback, "bracketed": False, "note": "; ".join(notes)}
    u_opt = -c1 / (2.0 * c2)
    vertex = {"lr_opt": float(np.exp(u_opt)), "loss_opt": float(c0 - c1 * c1 / (4.0 * c2))}
    if not (np.log(lr[0]) <= u_opt <= np.log(lr[-1])):
        notes.append("vertex outside the sampled LRs")
        return {**out, **fallback, "bracketed": False, "note": "; ".join(notes)}
    return {**out, **vertex, "bracketed": not notes, "note": "; ".join(notes)}


class LROptima(Fit):
    """The optimal LR of every group of runs that differ only in LR, as an estimator.

    `fit(runs)` keeps `optimal_lr`'s table as `table_` (one row per group; see that function
    for the columns); there are no law parameters, so `params_` is empty and the summary is
    the table. Configuration: the group keys and the parabola's window (`optimal_lr`).
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
        self.table_ = optimal_lr(
            runs, self.group_keys, n_neighbors=self.n_neighbors, min_points=self.min_points
        )
        self.params_, self.stderr_, self.intervals_ = {}, {}, {}
        self.level_ = validate.level(self.level)
        self.n_points_ = len(runs)
        self.objective_ = math.nan
        return self

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
