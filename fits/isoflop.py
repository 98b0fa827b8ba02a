"""Compute-optimal model size from runs, without assuming a loss law (Hoffmann et al. 1 and 2).

Approach 2 (`IsoFLOPFit`): runs share a compute budget (exact, or nearly equal: budgets are
grouped by log10 C rounded to `log10_resolution`, or by labels you pass). Per budget, loss is
fitted by a parabola in log N; its vertex is that budget's N_opt (a budget whose vertex lies
outside its sampled N range is flagged and, by default, left out). Then
N_opt = G C^a by OLS of log N_opt on log C, and D_opt = C / (k N_opt).

Approach 1 (`EnvelopeFit`): from loss curves (run, N, tokens so far, loss), compute is
k N tokens (or a flops column); bin compute log-uniformly, keep for each bin the point with the
lowest loss (the lower envelope over runs), and regress log N of those points on log C.

Both report G and a with OLS standard errors and t intervals (the regression is a
`LogLinearLaw`), and predict N_opt and D_opt at any C with a confidence interval of the mean.
"""

from __future__ import annotations

from typing import Any, Self

import numpy as np
import pandas as pd

from fits import validate
from fits.base import Estimate, IntervalFit, runs_column, runs_only
from fits.errors import FitError, each_reason_once
from fits.hparams import LogLinearLaw
from fits.lr import scan_optimum


class _ComputeOptimalFit(IntervalFit):
    """Shared part: the log-log regression N_opt = G C^a and predictions from it."""

    formula = "N_opt = G * C^a,  D_opt = C / (k * N_opt)"
    flops_per_token: float
    level: float

    def _fit_regression(self, C: np.ndarray, n_opt: np.ndarray, what: str) -> None:
        validate.at_least(C.size, 3, what)
        validate.distinct(n_opt, 2, "optimal model sizes", "N_opt")
        reg = LogLinearLaw(
            variables=("C",), target="N_opt", coef="G", exponents=("a",), level=self.level
        )
        self.regression_ = reg.fit({"C": C}, n_opt)
        self._copy_from_regression()

    def _copy_from_regression(self) -> None:
        reg = self.regression_
        self.params_ = dict(reg.params_)
        self.stderr_ = dict(reg.stderr_)
        self.intervals_ = dict(reg.intervals_)
        self.level_ = reg.level_
        self.objective_ = reg.objective_
        self.rsquared_ = reg.rsquared_
        lo, hi = self.intervals_["a"]
        self.derived_ = {"b": 1.0 - self.params_["a"]}  # D_opt = C / (k N_opt) grows as C^(1-a)
        self.derived_intervals_ = {"b": (1.0 - hi, 1.0 - lo)}

    def predict(self, C: Any) -> np.ndarray:
        """Compute-optimal model size N_opt at compute C (or at the runs' column C)."""
        self._check_fitted()
        C = np.asarray(runs_column(C, "C"), dtype=float)
        return self.regression_.predict({"C": C.reshape(-1)}).reshape(C.shape)

    def predict_interval(
        self, C: Any, level: float | None = None, kind: str = "confidence"
    ) -> Estimate:
        """N_opt at C with the regression's interval (log space): of its mean (`confidence`)
        or of one new budget's N_opt (`prediction`)."""
        self._check_fitted()
        C = np.asarray(runs_column(C, "C"), dtype=float)
        p = self.regression_.predict_interval({"C": C.reshape(-1)}, level, kind)
        shape = C.shape
        return Estimate(
            p.estimate.reshape(shape), p.lo.reshape(shape), p.hi.reshape(shape), p.level, kind
        )

    def compute_optimal(self, C: Any) -> tuple[np.ndarray, np.ndarray]:
        """(N_opt, D_opt) at compute C, with D_opt = C / (flops_per_token * N_opt)."""
        n_opt = self.predict(C)
        return n_opt, np.asarray(runs_column(C, "C"), float) / (self.flops_per_token * n_opt)

    def compute_optimal_interval(
        self, C: Any, level: float | None = None, kind: str = "confidence"
    ) -> tuple[Estimate, Estimate]:
        """N_opt and D_opt at C with intervals of `kind` (D's is C/(k N)'s, ends swapped)."""
        n = self.predict_interval(C, level, kind)
        c = np.asarray(runs_column(C, "C"), dtype=float) / self.flops_per_token
        d = Estimate(c / n.estimate, c / n.hi, c / n.lo, n.level, n.kind)
        return n, d

    def _summary_footer(self) -> list[str]:
        lo, hi = self.derived_intervals_["b"]
        return [
            f"R^2 of the log-log regression: {self.rsquared_:.4f}",
            f"D_opt exponent b = 1 - a = {self.derived_['b']:.6g}   [{lo:.6g}, {hi:.6g}]",
        ]

    def _regression_state(self) -> dict[str, Any]:
        return self.regression_.to_dict()

    def _load_regression(self, record: dict[str, Any]) -> None:
        self.regression_ = LogLinearLaw.from_dict(record)
        self._copy_from_regression()


class IsoFLOPFit(_ComputeOptimalFit):
    """Approach 2: parabola minimum per compute budget, then N_opt = G C^a.

    Parameters
    ----------
    log10_resolution: budgets are grouped by round(log10 C / resolution); 0.05 groups
        compute within about +-6%. Ignored when `budget` labels are passed to fit.
    flops_per_token: k in C = k N D, used when C is not given and for D_opt.
    min_points: distinct model sizes a budget needs for its parabola (>= 3).
    exclude_unbracketed: leave out budgets whose minimum lies outside their sampled N.
    n_neighbors: None fits each budget's parabola to all its sizes (Hoffmann et al.); k fits it
        to the best size and k neighbours on each side (fits.lr.scan_optimum, as an LR scan),
        for profiles sampled far past their minimum on one side, where the loss flattens and
        a global parabola bends the wrong way. The budget is then used only if a worse size
        lies on both sides of the best.
    level: confidence level of the intervals.

    Attributes (after fit)
    ----------------------
    params_ {G, a}, stderr_, intervals_, derived_ {b = 1 - a}, derived_intervals_,
    rsquared_, objective_ (SSR of log N_opt), n_points_ (runs), regression_ (the
    LogLinearLaw), budgets_ (one row per budget: C, n_points, N_min, N_max, N_opt, D_opt,
    loss_opt, bracketed, used, note).
    """

    law = "isoflop"

    def __init__(
        self,
        *,
        log10_resolution: float = 0.05,
        flops_per_token: float = 6.0,
        min_points: int = 3,
        exclude_unbracketed: bool = True,
        n_neighbors: int | None = None,
        level: float = 0.90,
    ) -> None:
        self.log10_resolution = log10_resolution
        self.flops_per_token = flops_per_token
        self.min_points = min_points
        self.exclude_unbracketed = exclude_unbracketed
        self.n_neighbors = n_neighbors
        self.level = level

    def fit(
        self,
        N: Any,
        loss: Any = None,
        C: Any | None = None,
        *,
        D: Any | None = None,
        budget: Any | None = None,
    ) -> Self:
        """Fit from runs (N, final loss) with compute C, or tokens D (C = k N D), or from a
        runs table alone (`fit(runs)`: columns N, loss and C, or D); returns self.

        budget: optional labels saying which runs share a budget (overrides the rounding).
        """
        runs = runs_only(N, loss, C, D, budget)
        if runs is not None:
            validate.columns(runs, ["N", "loss"])
            N, loss, C, D = runs["N"], runs["loss"], runs.get("C"), runs.get("D")
        validate.level(self.level)
        if self.min_points < 3:
            raise ValueError("a parabola needs min_points >= 3")
        N = validate.positive(N, "N")
        loss = validate.positive(loss, "loss")
        if C is None:
            if D is None:
                raise FitError("need the compute C of every run, or its tokens D")
            C = self.flops_per_token * N * validate.positive(D, "D")
        C = validate.positive(C, "C")
        validate.same_length(N=N, loss=loss, C=C)
        if budget is None:
            labels = np.round(np.log10(C) / self.log10_resolution).astype(np.int64)
        else:
            labels = np.asarray(budget)
            validate.same_length(N=N, budget=labels)

        rows = []
        for label in pd.unique(labels):
            g = labels == label
            rows.append(self._budget_minimum(N[g], loss[g], C[g]))
        table = pd.DataFrame(rows).sort_values("C", ignore_index=True)
        table["used"] = table["has_vertex"] & (table["bracketed"] | (not self.exclude_unbracketed))
        self.budgets_ = table.drop(columns="has_vertex")
        used = self.budgets_[self.budgets_["used"]]
        if len(used) < 3:
            unused = self.budgets_[~self.budgets_["used"]]
            reasons = each_reason_once(zip(unused["C"], unused["note"], strict=True), _budgets)
            raise FitError(
                f"need at least 3 compute budgets with a usable minimum, found {len(used)}"
                + (f" ({reasons})" if reasons else "")
            )
        self.n_points_ = int(N.size)
        self._fit_regression(
            used["C"].to_numpy(), used["N_opt"].to_numpy(), "compute budgets with a usable minimum"
        )
        return self

    def _budget_minimum(self, N: np.ndarray, loss: np.ndarray, C: np.ndarray) -> dict[str, Any]:
        """Vertex of loss ~ parabola(log N) for one budget, with flags."""
        c_budget = float(np.exp(np.log(C).mean()))
        row: dict[str, Any] = {
            "C": c_budget,
            "n_points": int(N.size),
            "N_min": float(N.min()),
            "N_max": float(N.max()),
            "N_opt": np.nan,
            "D_opt": np.nan,
            "loss_opt": np.nan,
            "bracketed": False,
            "has_vertex": False,
            "note": "",
        }
        n_sizes = np.unique(N).size
        if n_sizes < self.min_points:
            sizes = "size" if n_sizes == 1 else "sizes"
            row["note"] = f"only {n_sizes} distinct model {sizes} (need {self.min_points})"
            return row
        if self.n_neighbors is not None:
            return self._local_minimum(N, loss, row, self.n_neighbors)
        x = np.log(N)
        c2, c1, c0 = np.polyfit(x, loss, 2)
        if not c2 > 0:
            row["note"] = "parabola opens downward: no minimum"
            return row
        x_opt = -c1 / (2.0 * c2)
        with np.errstate(over="ignore"):
            n_opt = float(np.exp(x_opt))
        if not 0.0 < n_opt < np.inf:  # a curvature of rounding noise: loss only rises or falls
            row["note"] = "loss has no minimum at any model size (it only rises or only falls)"
            return row
        row.update(
            N_opt=n_opt,
            D_opt=c_budget / (self.flops_per_token * n_opt),
            loss_opt=float(c0 - c1 * c1 / (4.0 * c2)),
            has_vertex=True,
            bracketed=bool(x.min() <= x_opt <= x.max()),
        )
        if not row["bracketed"]:
            row["note"] = "minimum outside the sampled N range"
        return row

    def _local_minimum(
        self, N: np.ndarray, loss: np.ndarray, row: dict[str, Any], n_neighbors: int
    ) -> dict[str, Any]:
        """The vertex of the parabola through the best size and its neighbours."""
        per_size = pd.Series(loss).groupby(N).mean()  # sorted by N; repeats averaged
        found = scan_optimum(
            per_size.index.to_numpy(),
            per_size.to_numpy(),
            n_neighbors,
            self.min_points,
            "N",
        )
        if not found["bracketed"]:
            row["note"] = str(found["note"])
            return row
        n_opt = float(found["opt"])  # type: ignore[arg-type]
        row.update(
            N_opt=n_opt,
            D_opt=row["C"] / (self.flops_per_token * n_opt),
            loss_opt=float(found["loss_opt"]),  # type: ignore[arg-type]
            has_vertex=True,
            bracketed=True,
        )
        return row

    def _summary_header(self) -> list[str]:
        used = int(self.budgets_["used"].sum())
        return [
            f"{type(self).__name__}: {self.formula} (k = {self.flops_per_token:g})",
            f"runs: {self.n_points_}    budgets: {len(self.budgets_)}, used {used}"
            f"    SSR (log N_opt): {self.objective_:.6g}",
        ]

    def _state(self) -> dict[str, Any]:
        return {
            "regression": self._regression_state(),
            "budgets": self.budgets_.to_dict(orient="list"),
        }

    def _load_state(self, state: dict[str, Any]) -> None:
        self._load_regression(state["regression"])
        self.budgets_ = pd.DataFrame(state["budgets"])


class EnvelopeFit(_ComputeOptimalFit):
    """Approach 1: lower envelope of loss curves over compute, then N_opt = G C^a.

    Parameters
    ----------
    n_bins: log-uniform compute bins between the smallest and largest compute seen.
    flops_per_token: k in C = k N tokens when the curves carry no flops column.
    level: confidence level of the intervals.

    Attributes (after fit): as IsoFLOPFit, with envelope_ (one row per non-empty bin: bin,
    C, N, tokens, loss, run) in place of budgets_ and n_points_ counting curve points.
    """

    law = "envelope"

    def __init__(
        self, *, n_bins: int = 50, flops_per_token: float = 6.0, level: float = 0.90
    ) -> None:
        self.n_bins = n_bins
        self.flops_per_token = flops_per_token
        self.level = level

    def fit(
        self,
        curves: pd.DataFrame,
        *,
        run: str = "run_id",
        N: str = "N",
        tokens: str = "tokens",
        loss: str = "loss",
        flops: str | None = None,
    ) -> Self:
        """Fit from curve points (one row per logged step); returns self.

        Rows with a missing loss or zero tokens (nothing trained yet) are skipped; negative
        or infinite values are an error.
        """
        validate.level(self.level)
        validate.columns(curves, [run, N, tokens, loss, *([flops] if flops else [])])
        keep = curves[loss].notna() & (curves[tokens] != 0)
        if flops:
            keep &= curves[flops] != 0
        pts = curves[keep]
        validate.at_least(len(pts), 3, "curve points with a loss and tokens > 0")
        n = validate.positive(pts[N], N)
        toks = validate.positive(pts[tokens], tokens)
        losses = validate.positive(pts[loss], loss)
        c = validate.positive(pts[flops], flops) if flops else self.flops_per_token * n * toks
        validate.distinct(n, 2, "model sizes", N)

        log_c = np.log(c)
        edges = np.linspace(log_c.min(), log_c.max(), self.n_bins + 1)
        which = np.clip(np.searchsorted(edges, log_c, side="right") - 1, 0, self.n_bins - 1)
        order = np.lexsort((losses, which))  # by bin, then by loss
        first = np.r_[True, which[order][1:] != which[order][:-1]]
        best = order[first]
        self.envelope_ = pd.DataFrame(
            {
                "bin": which[best],
                "C": c[best],
                "N": n[best],
                "tokens": toks[best],
                "loss": losses[best],
                "run": pts[run].to_numpy()[best],
            }
        )
        self.n_points_ = len(pts)
        self._fit_regression(
            self.envelope_["C"].to_numpy(),
            self.envelope_["N"].to_numpy(),
            "non-empty compute bins on the envelope",
        )
        return self

    def _summary_header(self) -> list[str]:
        return [
            f"{type(self).__name__}: {self.formula} (k = {self.flops_per_token:g})",
            f"curve points: {self.n_points_}    envelope bins: {len(self.envelope_)}"
            f" of {self.n_bins}, {self.envelope_['run'].nunique()} runs on it"
            f"    SSR (log N): {self.objective_:.6g}",
        ]

    def _state(self) -> dict[str, Any]:
        return {
            "regression": self._regression_state(),
            "envelope": self.envelope_.to_dict(orient="list"),
        }

    def _load_state(self, state: dict[str, Any]) -> None:
        self._load_regression(state["regression"])
        self.envelope_ = pd.DataFrame(state["envelope"])


def _budgets(Cs: list[float]) -> str:
    """Budgets a refusal names: each of up to three, else how many and their range."""
    if len(Cs) <= 3:
        return ", ".join(f"C={C:.3g}" for C in Cs)
    return f"{len(Cs)} budgets, C={min(Cs):.3g} to {max(Cs):.3g}"
