"""Laws of L(N, D) fitted as Hoffmann et al.'s approach 3: Huber on log loss, grid of L-BFGS starts.

A law here supplies its parameter vector theta, a starting grid of theta, the map from theta
to its published parameters, and a `problem`: the optimiser's coordinates (theta with log N
and log D standardised, so that L-BFGS sees a well-conditioned problem) and the objective, a
sum of Huber losses between the law's log loss and the observed log loss, with its analytic
gradient. Everything else is shared and runs in the batched L-BFGS of fits.lbfgs:

- every grid start is run to the L-BFGS-B default tolerances and the best end point is
  polished until float64 stops improving;
- the best distinct local optima (`n_local_optima`) seed the bootstrap: a resample only
  perturbs the objective, so its optimum lies in one of those basins (the Chinchilla tests
  check this against full-grid refits);
- `quick_refit` refits other runs from those optima alone: the nested backtests' refits and
  the outlier screen's later passes (fits.auto).
"""

from __future__ import annotations

import copy
import math
from typing import Any, ClassVar, Protocol, Self

import numpy as np
import pandas as pd

from fits import validate
from fits.base import _num, runs_only
from fits.bootstrap import (
    as_generator,
    batches,
    map_chunks,
    param_uncertainty,
    percentile_interval,
    resample_weights,
)
from fits.errors import FitError
from fits.laws import LossLaw
from fits.lbfgs import BatchObjective, BatchResult, minimize_batched

# L-BFGS-B's defaults (factr = 1e7 -> ftol = 2.2e-9, pgtol = 1e-5): the published procedure.
GRID_TOL: dict[str, Any] = {"gtol": 1e-5, "ftol": 2.2e-9, "fscale": 1.0}
# Polishing the winner: stop only when float64 cannot make progress.
POLISH_TOL: dict[str, Any] = {"gtol": 1e-10, "ftol": 1e-15, "fscale": 0.0}
# Two end points closer than this (max-norm in theta) are the same local optimum.
_DISTINCT_TOL = 0.05


def standardize(log_x: np.ndarray) -> tuple[float, float, np.ndarray]:
    """Mean, standard deviation (1 for a constant column) and z-scores of a log column: the
    optimiser coordinates of the laws in N and D."""
    m, s = float(log_x.mean()), float(log_x.std()) or 1.0
    return m, s, (log_x - m) / s


class Problem(Protocol):
    """A law's optimiser coordinates phi and its objective on one data set."""

    def to_phi(self, theta: np.ndarray) -> np.ndarray: ...

    def to_theta(self, phi: np.ndarray) -> np.ndarray: ...

    def objective(
        self,
        log_loss: np.ndarray,
        delta: float,
        weights: np.ndarray | None = None,
        weight_row: np.ndarray | None = None,
    ) -> BatchObjective: ...


def run_starts(objective: BatchObjective, starts: np.ndarray) -> BatchResult:
    """Batched L-BFGS from the given starts with the published (L-BFGS-B default) tolerances."""
    return minimize_batched(objective, starts, **GRID_TOL)


def fit_resamples(
    problem: Problem,
    log_loss: np.ndarray,
    delta: float,
    weights: np.ndarray,
    starts: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Best (phi, objective) for each weighted resample, every resample run from all `starts`."""
    n_res, n_st = weights.shape[0], starts.shape[0]
    weight_row = np.repeat(np.arange(n_res), n_st)
    objective = problem.objective(log_loss, delta, weights, weight_row)
    res = run_starts(objective, np.tile(starts, (n_res, 1)))
    fun = np.where(np.isfinite(res.fun), res.fun, np.inf).reshape(n_res, n_st)
    best = fun.argmin(axis=1)
    phi = res.x.reshape(n_res, n_st, -1)[np.arange(n_res), best]
    # Polish each winner as the full-data fit is polished, so that a draw is that
    # resample's optimum and not a point where L-BFGS-B's tolerance happened to stop.
    polish = problem.objective(log_loss, delta, weights, np.arange(n_res))
    tight = minimize_batched(polish, phi, **POLISH_TOL)
    better = tight.fun <= fun[np.arange(n_res), best]
    return np.where(better[:, None], tight.x, phi), np.minimum(tight.fun, fun.min(axis=1))


def distinct_optima(
    theta: np.ndarray, fun: np.ndarray, converged: np.ndarray, limit: int
) -> np.ndarray:
    """Indices of up to `limit` distinct converged end points, lowest objective first."""
    chosen: list[int] = []
    for i in np.argsort(fun, kind="stable"):
        if len(chosen) == limit:
            break
        if not (converged[i] and np.isfinite(fun[i])):
            continue
        if all(np.abs(theta[i] - theta[j]).max() > _DISTINCT_TOL for j in chosen):
            chosen.append(int(i))
    return np.array(chosen, dtype=int)


def checked_runs(
    N: Any, D: Any, loss: Any, sample_weight: Any | None, n_params: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """Validated N, D, loss (and weights), runs with zero weight dropped."""
    N = validate.positive(N, "N")
    D = validate.positive(D, "D")
    loss = validate.positive(loss, "loss")
    validate.same_length(N=N, D=D, loss=loss)
    weights = None
    if sample_weight is not None:
        weights = validate.finite(sample_weight, "sample_weight")
        validate.same_length(N=N, sample_weight=weights)
        if (weights < 0).any() or not (weights > 0).any():
            raise FitError("sample_weight must be >= 0 with at least one positive weight")
        used = weights > 0
        N, D, loss, weights = N[used], D[used], loss[used], weights[used]
    validate.distinct(N, 3, "model sizes", "N")
    validate.distinct(D, 3, "token counts", "D")
    validate.at_least(N.size, n_params + 1, f"runs to fit {n_params} parameters")
    return N, D, loss, weights


class GridLaw(LossLaw):
    """Base of the laws fitted by grid-started batched L-BFGS (see the module docstring).

    Configuration: see `LossLaw`; n_local_optima is the number of starts per bootstrap
    resample (and per quick refit): the optimum and the next best distinct local optima of
    the full-data grid search.

    Attributes (after fit)
    ----------------------
    params_ (the law's published parameters), theta_ (the optimiser's), objective_ (sum of
    Huber losses), n_points_, stderr_/intervals_ (bootstrap; {} without), bootstrap_params_
    ((n_bootstrap, p) draws in `param_names` order, or None), derived_/derived_intervals_,
    best_start_, local_optima_/local_objectives_, n_starts_, n_converged_, data_range_.
    """

    derived_names: ClassVar[tuple[str, ...]] = ()
    allocation_note: ClassVar[str] = ""

    # -- what a law supplies ---------------------------------------------------------------
    def starting_grid(self) -> np.ndarray:
        """Rows of theta to start L-BFGS from."""
        raise NotImplementedError

    def problem(self, log_n: np.ndarray, log_d: np.ndarray) -> Problem:
        """Optimiser coordinates and objective for runs at log N, log D."""
        raise NotImplementedError

    def starting_phi(self, problem: Any, log_loss: np.ndarray) -> np.ndarray:
        """Starts in the optimiser's coordinates (default: the starting grid, mapped)."""
        return problem.to_phi(self.starting_grid())

    def check_identifiable(self, N: np.ndarray, D: np.ndarray) -> None:
        """Raise FitError when runs this few cannot identify the law (beyond checked_runs)."""

    def theta_to_params(self, theta: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def params_to_theta(self, params: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def derived_of(self, params: np.ndarray) -> dict[str, np.ndarray]:
        """Quantities derived from params rows (allocation exponents...), by name."""
        return {}

    # -- fitting ---------------------------------------------------------------------------
    def fit(self, N: Any, D: Any = None, loss: Any = None, sample_weight: Any = None) -> Self:
        """Fit on runs with N parameters, D tokens and final loss, or on a table of them alone
        (`fit(runs)`); sample_weight: optional weight >= 0 per run (e.g. resample counts)."""
        if (runs := runs_only(N, D, loss, sample_weight)) is not None:
            return self.fit_frame(runs)
        level = validate.level(self.level)
        N, D, loss, weights = checked_runs(N, D, loss, sample_weight, len(self.param_names))
        self.check_identifiable(N, D)
        log_loss = np.log(loss)
        problem = self.problem(np.log(N), np.log(D))
        objective = problem.objective(log_loss, self.delta, weights)
        grid = self.starting_phi(problem, log_loss)
        res = self._grid_search(objective, grid)
        best = self._settle(problem, objective, res, strict=True)
        self.best_start_ = self.theta_to_params(problem.to_theta(grid[best]))
        self.n_starts_ = int(grid.shape[0])
        self._finish(N, D, level)
        if self.n_bootstrap > 0:
            self._bootstrap(problem, log_loss, weights)
        self._refuse_unidentified()
        return self

    def _bootstrap(self, problem: Problem, log_loss: np.ndarray, base: np.ndarray | None) -> None:
        """n_bootstrap resamples of the runs, each refitted from the fit's local optima."""
        starts = problem.to_phi(self.params_to_theta(self.local_optima_))
        rng = as_generator(self.random_state)
        base = np.ones(log_loss.size) if base is None else base
        counts = resample_weights(log_loss.size, int(self.n_bootstrap), rng) * base
        phi = self._refit_resamples(problem, log_loss, counts, starts)
        self.bootstrap_params_ = self.theta_to_params(problem.to_theta(phi))
        self._set_uncertainty()

    def _with_bootstrap(self, runs: pd.DataFrame, n_bootstrap: int) -> Self:
        """This fit (on `runs`, no bootstrap) with the n_bootstrap resamples `fit` would add."""
        self._check_fitted()
        new = copy.copy(self)
        new.n_bootstrap = n_bootstrap
        N, D = new.frame_columns(runs)
        N, D, loss, _ = checked_runs(N, D, runs["loss"], None, len(self.param_names))
        problem = new.problem(np.log(N), np.log(D))
        if n_bootstrap > 0:
            new._bootstrap(problem, np.log(loss), None)
        new._refuse_unidentified()
        return new

    def _fit_columns(self, cols: list[np.ndarray], loss: np.ndarray) -> Self:
        return self.fit(cols[0], cols[1], loss)

    def quick_refit(self, runs: pd.DataFrame, force: bool | None = None) -> Self:
        """A new fit on `runs`: no bootstrap, L-BFGS from this fit's best local optima (nested
        backtests refit many times), polished as a full fit is (unpolished, a Kaplan refit
        stopped 13% above its optimum); refused as `fit` is unless force (default: this fit's)."""
        self._check_fitted()
        new = self._unfitted(force)
        N, D = new.frame_columns(runs)
        N, D, loss, _ = checked_runs(N, D, runs["loss"], None, len(self.param_names))
        new.check_identifiable(N, D)
        log_loss = np.log(loss)
        problem = new.problem(np.log(N), np.log(D))
        objective = problem.objective(log_loss, self.delta)
        starts = problem.to_phi(self.params_to_theta(self.local_optima_))
        res = run_starts(objective, starts)
        best = new._settle(problem, objective, res, strict=False)
        new.best_start_ = self.local_optima_[best]
        new.n_starts_ = int(starts.shape[0])
        new._finish(N, D, validate.level(self.level))
        new._refuse_unidentified()
        return new

    def _settle(
        self,
        problem: Problem,
        objective: BatchObjective,
        res: BatchResult,
        strict: bool,
    ) -> int:
        """Polish the best end point; keep it and the next best distinct optima as starts
        (`local_optima_`). Returns the index of the best end point.

        strict: no converged start is an error (else the best finite end point is kept).
        """
        order = distinct_optima(
            problem.to_theta(res.x), res.fun, res.converged, max(1, self.n_local_optima)
        )
        if order.size == 0:
            if strict or not np.isfinite(res.fun).any():
                raise FitError("no start of the grid converged: the data do not determine the law")
            order = np.array([int(np.nanargmin(np.where(np.isfinite(res.fun), res.fun, np.nan)))])
        best = int(order[0])
        phi_best, f_best = res.x[best], res.fun[best]
        polished = minimize_batched(objective, phi_best[None, :], **POLISH_TOL)
        if polished.fun[0] <= f_best:
            phi_best, f_best = polished.x[0], polished.fun[0]
        starts = np.vstack([phi_best[None, :], res.x[order[1:]]])
        self.theta_ = problem.to_theta(phi_best)
        row = self.theta_to_params(self.theta_)
        self.params_ = dict(zip(self.param_names, map(float, row), strict=True))
        self.objective_ = float(f_best)
        self.n_converged_ = int(res.converged.sum())
        self.local_optima_ = self.theta_to_params(problem.to_theta(starts))
        self.local_objectives_ = np.concatenate([[f_best], res.fun[order[1:]]])
        self.derived_ = {k: float(v[0]) for k, v in self.derived_of(row[None, :]).items()}
        return best

    def _finish(self, N: np.ndarray, D: np.ndarray, level: float) -> None:
        """Bookkeeping shared by fit and quick_refit (no uncertainty yet)."""
        self.n_points_ = int(N.size)
        self.level_ = level
        self._set_data_range(N=N, D=D)
        self.bootstrap_params_ = None
        self.stderr_, self.intervals_ = {}, {}
        self.derived_intervals_: dict[str, tuple[float, float]] = {}

    def _grid_search(self, objective: BatchObjective, grid_phi: np.ndarray) -> BatchResult:
        """Every grid start to convergence, split across processes when n_jobs > 1."""
        parts = batches(grid_phi.shape[0])
        results = map_chunks(run_starts, [(objective, grid_phi[p]) for p in parts], self.n_jobs)
        x = np.empty_like(grid_phi)
        fun = np.empty(grid_phi.shape[0])
        n_iter = np.empty(grid_phi.shape[0], dtype=int)
        conv = np.empty(grid_phi.shape[0], dtype=bool)
        for p, r in zip(parts, results, strict=True):
            x[p], fun[p], n_iter[p], conv[p] = r.x, r.fun, r.n_iter, r.converged
        return BatchResult(
            x=x, fun=fun, n_iter=n_iter, converged=conv, n_evals=sum(r.n_evals for r in results)
        )

    def _refit_resamples(
        self, problem: Problem, log_loss: np.ndarray, counts: np.ndarray, starts: np.ndarray
    ) -> np.ndarray:
        """Optimum (phi) of every resample; batches of resamples go to worker processes."""
        parts = batches(counts.shape[0])
        jobs = [(problem, log_loss, self.delta, counts[p], starts) for p in parts]
        phi = np.empty((counts.shape[0], starts.shape[1]))
        for p, (found, _) in zip(parts, map_chunks(fit_resamples, jobs, self.n_jobs), strict=True):
            phi[p] = found
        return phi

    def _set_uncertainty(self) -> None:
        draws = self._draws()
        self.stderr_, self.intervals_ = param_uncertainty(draws, self.param_names, self.level_)
        self.derived_intervals_ = {}
        for name, values in self.derived_of(draws).items():
            dlo, dhi = percentile_interval(values, self.level_)
            self.derived_intervals_[name] = (float(dlo), float(dhi))

    # -- reporting and serialisation -------------------------------------------------------
    def _summary_header(self) -> list[str]:
        lines = super()._summary_header()
        lines[1] += f" (sum of Huber losses, delta={self.delta:g}, on log loss)"
        lines.append(f"grid: {self.n_starts_} L-BFGS starts, {self.n_converged_} converged")
        if self.bootstrap_params_ is not None:
            lines.append(
                f"bootstrap: {self.bootstrap_params_.shape[0]} resamples of the runs, "
                f"percentile intervals at {100 * self.level_:g}%"
            )
        else:
            lines.append("bootstrap: none (n_bootstrap=0), no uncertainty reported")
        return lines

    def _summary_footer(self) -> list[str]:
        out = [self.allocation_note] if self.allocation_note else []
        for name in self.derived_names:
            lo, hi = self.derived_intervals_.get(name, (math.nan, math.nan))
            out.append(
                f"  {name} = {self.derived_[name]:.6g}"
                + (f"   [{lo:.6g}, {hi:.6g}]" if np.isfinite(lo) else "")
            )
        return [*out, *super()._summary_footer()]

    def _state(self) -> dict[str, Any]:
        return {
            "param_order": list(self.param_names),
            "bootstrap_params": self.bootstrap_params_,
            "derived": self.derived_,
            "derived_intervals": {k: list(v) for k, v in self.derived_intervals_.items()},
            "local_optima": self.local_optima_,
            "local_objectives": self.local_objectives_,
            "n_starts": self.n_starts_,
            "n_converged": self.n_converged_,
            "data_range": {k: list(v) for k, v in self.data_range_.items()},
        }

    def _load_state(self, state: dict[str, Any]) -> None:
        order = np.argsort([self.param_names.index(n) for n in state["param_order"]])
        draws = state.get("bootstrap_params")
        self.bootstrap_params_ = None if draws is None else np.asarray(draws, float)[:, order]
        self.theta_ = self.params_to_theta(self._params_row())
        self.derived_ = {k: _num(v) for k, v in state["derived"].items()}
        self.derived_intervals_ = {
            k: (_num(v[0]), _num(v[1])) for k, v in state["derived_intervals"].items()
        }
        self.local_optima_ = np.asarray(state["local_optima"], dtype=float)[:, order]
        self.local_objectives_ = np.asarray(state["local_objectives"], dtype=float)
        self.n_starts_ = int(state["n_starts"])
        self.n_converged_ = int(state["n_converged"])
        ranges = state.get("data_range") or {}
        self.data_range_ = {k: (float(v[0]), float(v[1])) for k, v in ranges.items()}
