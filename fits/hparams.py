"""Hyperparameter laws y = c * prod_j x_j^(s_j k_j), fitted by OLS in log space (statsmodels).

One estimator covers the published forms; the factories fix their names and signs:
- Step Law (Li et al. 2025): lr* = a N^alpha D^beta, and BS* = c D^gamma.
- Bjorck et al.: LR*(D) = B D^-beta, one fit per model size (`fit_per_group`).
- Porian et al.: LR*(N) = a N^alpha and BS*(N) = c N^gamma.

log y = log c + sum_j s_j k_j log x_j is linear, so OLS gives the coefficients with their
standard errors, t confidence intervals and R^2. A sign s_j = -1 lets a law be written with a
minus in the exponent, as its paper does (Bjorck's beta is reported positive). `predict`
returns the point estimate; `predict_interval` the confidence interval of the mean of log y,
mapped back by exp (so it is an interval for the geometric-mean y at that point), or with
`kind="prediction"` the prediction interval of one new y there (the mean's variance plus the
residual variance): what a new (N, D) group's optimum is promised, since groups scatter
about the law by more than the law's mean is uncertain.

Points in clusters (`clusters`: the columns naming one, e.g. Step Law's near-optimal runs, several
to an (N, D) group) are not independent: a group's runs share its offset from the law, so OLS's
covariance, which counts them as separate draws, is too small. Where some cluster holds two or
more points the covariance is then the cluster-robust sandwich (statsmodels `cov_type="cluster"`)
and t quantiles take G - 1 degrees of freedom for G clusters, the usual small-G remedy.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Self

import numpy as np
import pandas as pd

from fits import validate
from fits.base import Estimate, IntervalFit, _num, check_kind, runs_only
from fits.errors import FitError
from fits.quantiles import t_quantile


class LogLinearLaw(IntervalFit):
    """y = coef * prod_j x_j^(sign_j * exponent_j), least squares on logs.

    Parameters
    ----------
    variables: names of the predictor columns, e.g. ("N", "D").
    target: name of the predicted quantity, e.g. "lr": the column `fit(runs)` reads it from.
    coef: name of the multiplicative constant.
    exponents: names of the exponents, one per variable (default "k_<variable>").
    signs: +1 or -1 per variable: the exponent in the formula is sign * exponent.
    level: confidence level of `intervals_` and the default of `predict_interval`.

    Attributes (after fit)
    ----------------------
    params_ {coef, exponents...} in the law's sign convention, stderr_ (the constant's by the
    delta method), intervals_ (t intervals; the constant's is exp of the log-space one),
    beta_ and cov_ (log-space OLS coefficients and covariance, cluster-robust where points
    share a cluster), df_resid_ (n - k - 1: the residual variance's), df_t_ (the t quantiles':
    G - 1 where clustered, else df_resid_), n_clusters_, rsquared_, objective_ (SSR in log
    space), n_points_.
    clusters: columns of the fitted frame whose values name one cluster of dependent points.
    """

    law = "loglinear"
    formula = "y = coef * prod x_j^(sign_j exponent_j)"

    def __init__(
        self,
        *,
        variables: Sequence[str] = ("x",),
        target: str = "y",
        coef: str = "c",
        exponents: Sequence[str] | None = None,
        signs: Sequence[int] | None = None,
        level: float = 0.90,
        clusters: Sequence[str] = (),
    ) -> None:
        self.variables = list(variables)
        self.clusters = list(clusters)
        self.target = target
        self.coef = coef
        self.exponents = (
            [f"k_{v}" for v in self.variables] if exponents is None else list(exponents)
        )
        self.signs = [1] * len(self.variables) if signs is None else [int(s) for s in signs]
        self.level = level
        if not (len(self.exponents) == len(self.signs) == len(self.variables)):
            raise ValueError("need one exponent name and one sign per variable")
        if any(s not in (1, -1) for s in self.signs):
            raise ValueError(f"signs must be +1 or -1, got {self.signs}")
        names = [self.coef, *self.exponents]
        if len(set(names)) != len(names):
            raise ValueError(f"parameter names must be distinct: {names}")

    @property
    def law_formula(self) -> str:
        """This law written out, e.g. 'lr = a * N^alpha * D^beta'."""
        terms = [
            f"{v}^{'-' if s < 0 else ''}{e}"
            for v, e, s in zip(self.variables, self.exponents, self.signs, strict=True)
        ]
        return f"{self.target} = {' * '.join([self.coef, *terms])}"

    def fit(self, X: pd.DataFrame | Mapping[str, Any], y: Any = None) -> Self:
        """Fit on predictors X (columns named as `variables`) and target y, or on a runs table
        alone (`fit(runs)`: y is its `target` column); returns self."""
        runs = runs_only(X, y)
        if runs is not None:
            validate.columns(runs, [self.target])
            y = runs[self.target]
        level = validate.level(self.level)
        logs = self._log_design(X)
        y = validate.positive(y, self.target)
        validate.same_length(X=logs[:, 0], **{self.target: y})
        k = len(self.variables)
        validate.at_least(y.size, k + 2, f"points to fit {k + 1} coefficients with an error")
        import statsmodels.api as sm  # here: its import takes a second of every command's start

        design = sm.add_constant(logs, has_constant="add")
        if np.linalg.matrix_rank(design) < design.shape[1]:
            raise FitError(
                f"predictors {self.variables} are collinear in log space: no separate exponents"
            )
        validate.distinct(y, 2, f"{self.target} values", self.target.replace("_", " "))
        ids = self._cluster_ids(X, y.size)
        self.n_clusters_ = y.size if ids is None else int(ids.max()) + 1
        if ids is None:
            res = sm.OLS(np.log(y), design).fit()
        else:
            res = sm.OLS(np.log(y), design).fit(cov_type="cluster", cov_kwds={"groups": ids})
        self.beta_ = np.asarray(res.params, dtype=float)  # log-space coefficients
        self.cov_ = np.asarray(res.cov_params(), dtype=float)
        self.df_resid_ = int(res.df_resid)
        self.df_t_ = self.df_resid_ if ids is None else self.n_clusters_ - 1
        self.rsquared_ = float(res.rsquared)
        self.n_points_ = int(y.size)
        self.objective_ = float(res.ssr)
        self.level_ = level
        self._set_params()
        return self

    def _cluster_ids(self, X: pd.DataFrame | Mapping[str, Any], n: int) -> np.ndarray | None:
        """Each point's cluster number, or None where no cluster holds two points."""
        if not self.clusters:
            return None
        frame = pd.DataFrame(X)
        validate.columns(frame, self.clusters)
        ids = frame.groupby(self.clusters, sort=True, dropna=False).ngroup().to_numpy()
        return None if ids.max() + 1 == n else ids

    def _log_design(self, X: pd.DataFrame | Mapping[str, Any]) -> np.ndarray:
        """Columns log x_j, with positivity and spread checks per variable."""
        cols = []
        for v in self.variables:
            if v not in X:
                have = ", ".join(map(str, getattr(X, "columns", X.keys())))
                raise FitError(f"missing column {v!r} (have: {have})")
            x = validate.positive(X[v], v)
            validate.distinct(x, 2, f"{v} values", v)
            cols.append(np.log(x))
        validate.same_length(**dict(zip(self.variables, cols, strict=True)))
        return np.column_stack(cols)

    def _set_params(self) -> None:
        """Natural-scale params, stderr and t intervals from the log-space OLS."""
        se = np.sqrt(np.diag(self.cov_))
        t = t_quantile(0.5 + self.level_ / 2, self.df_t_)
        sign = np.array([1.0, *self.signs])
        est = self.beta_ * sign  # exponents in the law's own sign convention
        lo = np.minimum((self.beta_ - t * se) * sign, (self.beta_ + t * se) * sign)
        hi = np.maximum((self.beta_ - t * se) * sign, (self.beta_ + t * se) * sign)
        names = [self.coef, *self.exponents]
        # The constant is exp(intercept): its interval maps through exp, its error by delta.
        self.params_ = {names[0]: float(np.exp(est[0]))}
        self.params_.update({n: float(v) for n, v in zip(names[1:], est[1:], strict=True)})
        self.stderr_ = {names[0]: float(np.exp(est[0]) * se[0])}
        self.stderr_.update({n: float(v) for n, v in zip(names[1:], se[1:], strict=True)})
        self.intervals_ = {names[0]: (float(np.exp(lo[0])), float(np.exp(hi[0])))}
        self.intervals_.update(
            {n: (float(a), float(b)) for n, a, b in zip(names[1:], lo[1:], hi[1:], strict=True)}
        )

    def predict(self, X: pd.DataFrame | Mapping[str, Any]) -> np.ndarray:
        """Point prediction exp(x' beta) at the rows of X."""
        self._check_fitted()
        design = self._predict_design(X)
        return np.exp(design @ self.beta_)

    def predict_interval(
        self,
        X: pd.DataFrame | Mapping[str, Any],
        level: float | None = None,
        kind: str = "confidence",
    ) -> Estimate:
        """Point prediction and the t interval in log space, exp'd: of the mean
        (`confidence`), or of one new observation (`prediction`: residual variance SSR/df
        added)."""
        self._check_fitted()
        level = validate.level(self.level_ if level is None else level)
        design = self._predict_design(X)
        mean = design @ self.beta_
        var = np.einsum("ij,jk,ik->i", design, self.cov_, design)
        if check_kind(kind) == "prediction":
            var = var + self.objective_ / self.df_resid_
        se = np.sqrt(var)
        t = t_quantile(0.5 + level / 2, self.df_t_)
        return Estimate(np.exp(mean), np.exp(mean - t * se), np.exp(mean + t * se), level, kind)

    def _predict_design(self, X: pd.DataFrame | Mapping[str, Any]) -> np.ndarray:
        cols = []
        for v in self.variables:
            if v not in X:
                raise KeyError(f"missing column {v!r} for prediction")
            cols.append(np.log(np.atleast_1d(np.asarray(X[v], dtype=float))))
        logs = np.column_stack(np.broadcast_arrays(*cols))
        return np.column_stack([np.ones(logs.shape[0]), logs])

    def _summary_header(self) -> list[str]:
        return [
            f"{type(self).__name__}: {self.law_formula}",
            f"points: {self.n_points_}    R^2: {self.rsquared_:.4f}    "
            f"SSR (log space): {self.objective_:.6g}",
            f"OLS on log {self.target}; t intervals with {self.df_t_} df"
            + (
                f" ({self.n_clusters_} clusters, cluster-robust)"
                if self.n_clusters_ < self.n_points_
                else ""
            ),
        ]

    def _state(self) -> dict[str, Any]:
        return {
            "log_coefficients": self.beta_,
            "cov": self.cov_,
            "df_resid": self.df_resid_,
            "df_t": self.df_t_,
            "n_clusters": self.n_clusters_,
            "rsquared": self.rsquared_,
        }

    def _load_state(self, state: dict[str, Any]) -> None:
        self.beta_ = np.asarray(state["log_coefficients"], dtype=float)
        self.cov_ = np.asarray(state["cov"], dtype=float)
        self.df_resid_ = int(state["df_resid"])
        self.df_t_ = int(state.get("df_t", self.df_resid_))
        self.n_clusters_ = int(state.get("n_clusters", self.n_points_))
        self.rsquared_ = _num(state["rsquared"])


def step_law_lr(level: float = 0.90, clusters: Sequence[str] = ()) -> LogLinearLaw:
    """Step Law's optimal learning rate: lr* = a N^alpha D^beta."""
    return LogLinearLaw(
        variables=("N", "D"),
        target="lr",
        coef="a",
        exponents=("alpha", "beta"),
        level=level,
        clusters=clusters,
    )


def batch_size_law(
    variable: str = "D", level: float = 0.90, clusters: Sequence[str] = ()
) -> LogLinearLaw:
    """Optimal batch size: BS* = c D^gamma (Step Law), or c N^gamma with variable='N' (Porian)."""
    return LogLinearLaw(
        variables=(variable,),
        target="batch_size",
        coef="c",
        exponents=("gamma",),
        level=level,
        clusters=clusters,
    )


def porian_lr(level: float = 0.90, clusters: Sequence[str] = ()) -> LogLinearLaw:
    """Porian et al.'s optimal learning rate against model size: LR*(N) = a N^alpha."""
    return LogLinearLaw(
        variables=("N",),
        target="lr",
        coef="a",
        exponents=("alpha",),
        level=level,
        clusters=clusters,
    )


def bjorck_lr(level: float = 0.90, clusters: Sequence[str] = ()) -> LogLinearLaw:
    """Bjorck et al.'s optimal learning rate against tokens at one size: LR*(D) = B D^-beta."""
    return LogLinearLaw(
        variables=("D",),
        target="lr",
        coef="B",
        exponents=("beta",),
        signs=(-1,),
        level=level,
        clusters=clusters,
    )


LR_FORMS: dict[str, Callable[..., LogLinearLaw]] = {
    "step": step_law_lr, "porian": porian_lr, "bjorck": bjorck_lr,
}  # fmt: skip


def lr_law(
    points: pd.DataFrame, form: str = "auto", level: float = 0.90, clusters: Sequence[str] = ()
) -> LogLinearLaw:
    """An LR law of `form` (LR_FORMS); `auto`: the form over the variables (N, D) that vary
    among the points (both: Step Law, N: Porian, D or neither: Bjorck); clusters: see
    LogLinearLaw."""
    if form == "auto":
        varying = lr_variables(points)
        forms = (name for name, make in LR_FORMS.items() if tuple(make().variables) == varying)
        form = next(forms, "bjorck")
    if form not in LR_FORMS:
        raise FitError(f"unknown LR-law form {form!r}: auto, {', '.join(LR_FORMS)}")
    return LR_FORMS[form](level=level, clusters=clusters)


def lr_variables(points: pd.DataFrame) -> tuple[str, ...]:
    """The variables of an LR law, N and D, that vary among the points."""
    return tuple(v for v in ("N", "D") if points[v].nunique() > 1)


def fit_per_group(
    make: Callable[[], LogLinearLaw], frame: pd.DataFrame, by: str | Sequence[str], target: str
) -> dict[Any, LogLinearLaw]:
    """One law per group (e.g. Bjorck's LR*(D) per model size): {group key: fitted law}."""
    validate.columns(frame, [*([by] if isinstance(by, str) else by), target])
    return {key: make().fit(group, group[target]) for key, group in frame.groupby(by, sort=True)}


def near_optimal_runs(
    frame: pd.DataFrame,
    by: Sequence[str],
    loss: str,
    rel_tol: float = 0.0025,
) -> pd.DataFrame:
    """Runs whose loss is within rel_tol of their group's minimum (Step Law keeps 0.25%)."""
    validate.columns(frame, [*by, loss])
    finite = frame[np.isfinite(frame[loss].astype(float))]
    best = finite.groupby(list(by))[loss].transform("min")
    return finite[finite[loss] <= best * (1.0 + rel_tol)]
