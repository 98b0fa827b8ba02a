"""Single-variable law L(x) = E + A x^-alpha by nonlinear least squares.

Covers Kaplan-style L(N), L(D), L(C) (often with E fixed at 0: L = (x_c / x)^alpha, i.e.
A = x_c^alpha) and Mu-scaling's loss-vs-width law L = a x^b + c (A = a, alpha = -b, E = c).

Fitting: x is divided by its geometric mean x0, so the optimiser sees A' = A x0^-alpha of
order one. For fixed alpha the model is linear in (E, A'), so a profile over a grid of alpha
(each point a linear least-squares solve) finds the basin of the global optimum without
guessing starts; scipy's least_squares then refines (E, A', alpha) jointly from the best
profile points. Uncertainty: the Jacobian covariance s^2 (J'J)^-1 with s^2 = SSR / (n - p)
and t intervals, or bootstrap percentile intervals when n_bootstrap > 0.
"""

from __future__ import annotations

from typing import Any, Self

import numpy as np
from scipy import optimize

from fits import validate
from fits.base import Estimate, IntervalFit, check_kind, runs_column, runs_only
from fits.bootstrap import (
    RandomState,
    as_generator,
    percentile_interval,
    resample_weights,
    robust_spread,
)
from fits.errors import FitError, UnidentifiedFit
from fits.quantiles import t_quantile

PARAM_NAMES = ("E", "A", "alpha")
_ALPHA_GRID = np.concatenate([np.linspace(-3.0, -0.01, 150), np.linspace(0.01, 5.0, 250)])
_N_REFINE = 3  # best local minima of the alpha profile refined jointly


def power_law(params: np.ndarray, x: np.ndarray) -> np.ndarray:
    """E + A x^-alpha for params rows (..., 3) = (E, A, alpha), broadcast against x."""
    p = np.asarray(params, dtype=float)
    E, A, alpha = (p[..., i, None] for i in range(3))
    return E + A * np.asarray(x, dtype=float).reshape(-1) ** -alpha


def unscale(scaled: np.ndarray, x0: float) -> np.ndarray:
    """(E, A', alpha) -> (E, A, alpha) with A = A' x0^alpha (x divided by x0); works on rows."""
    s = np.asarray(scaled, dtype=float)
    return np.stack([s[..., 0], s[..., 1] * x0 ** s[..., 2], s[..., 2]], axis=-1)


def unscale_cov(cov: np.ndarray, scaled: np.ndarray, x0: float, e_fixed: bool) -> np.ndarray:
    """The covariance of the free scaled parameters to (E, A, alpha) by the delta method; a
    fixed E gets zero variance."""
    _, A_s, alpha = scaled
    # d(E, A, alpha) / d(E, A', alpha)
    T = np.array([[1.0, 0.0, 0.0], [0.0, x0**alpha, A_s * x0**alpha * np.log(x0)], [0.0, 0.0, 1.0]])
    full = np.zeros((3, 3))
    idx = [1, 2] if e_fixed else [0, 1, 2]
    full[np.ix_(idx, idx)] = cov
    return T @ full @ T.T


class PowerLaw(IntervalFit):
    """L(x) = E + A x^-alpha.

    Parameters
    ----------
    E: None to fit the offset, or a number to hold it fixed (0 for a pure power law).
    level: confidence level of `intervals_` and the default of `predict_interval`.
    n_bootstrap: resamples for percentile intervals (0: Jacobian covariance only).
    random_state: seed or numpy Generator for the bootstrap.
    force: keep a fit whose loss does not fall with x (A alpha <= 0), flagged, instead of
        raising FitError.
    x, y: the columns `fit(runs)` reads (default: loss against compute C).

    Attributes (after fit)
    ----------------------
    params_ {E, A, alpha} (a fixed E included), stderr_ and intervals_ at level_ for the
    fitted ones, cov_ (3x3 covariance of E, A, alpha; zero for a fixed E), df_resid_,
    objective_ (sum of squared residuals), n_points_, bootstrap_params_ (draws or None).
    Mu-scaling's L = a x^b + c reads a = A, b = -alpha, c = E.
    """

    law = "power"
    formula = "L(x) = E + A * x^-alpha"

    def __init__(
        self,
        *,
        E: float | None = None,
        level: float = 0.90,
        n_bootstrap: int = 0,
        random_state: RandomState = 0,
        force: bool = False,
        x: str = "C",
        y: str = "loss",
    ) -> None:
        self.E = E
        self.level = level
        self.n_bootstrap = n_bootstrap
        self.random_state = random_state
        self.force = force
        self.x = x
        self.y = y

    @property
    def free_names(self) -> tuple[str, ...]:
        """Names of the parameters the fit estimates (E drops out when fixed)."""
        return PARAM_NAMES if self.E is None else PARAM_NAMES[1:]

    def fit(self, x: Any, y: Any = None) -> Self:
        """Fit y = E + A x^-alpha on positive x, or on a runs table alone (`fit(runs)`: its
        columns named by the x and y settings); returns self."""
        runs = runs_only(x, y)
        name = "x" if runs is None else self.x  # a refusal names the runs' column
        if runs is not None:
            validate.columns(runs, [self.x, self.y])
            x, y = runs[self.x], runs[self.y]
        level = validate.level(self.level)
        x = validate.positive(x, name)
        y = validate.finite(y, "y")
        validate.same_length(x=x, y=y)
        if self.E is not None and not (np.isfinite(self.E) and y.min() > self.E):
            raise FitError(
                f"a fixed E must be a number below every y (E + A x^-alpha > E), got "
                f"E = {self.E:.4g} with the smallest y {y.min():.4g}"
            )
        n_free = len(self.free_names)
        validate.distinct(x, n_free, f"{name} values", name)
        validate.at_least(x.size, n_free + 1, f"points to fit {n_free} parameters with an error")

        # Huge or degenerate values overflow in the profile and the solver; those starts
        # score inf and lose, so numpy's notes about them are noise.
        with np.errstate(all="ignore"):
            x0 = float(np.exp(np.log(x).mean()))
            w = np.ones_like(x)
            scaled, ssr = self._solve(x / x0, y, w, starts=None)
            cov_scaled = self._covariance(scaled, x / x0, y)
            self.x0_ = x0
            natural = map(float, unscale(scaled, x0))
            self.params_ = dict(zip(PARAM_NAMES, natural, strict=True))
            self.objective_ = float(ssr)
            self.n_points_ = int(x.size)
            self.df_resid_ = int(x.size - n_free)
            self.cov_ = unscale_cov(cov_scaled, scaled, x0, self.E is not None)
            self.level_ = level
            self.bootstrap_params_: np.ndarray | None = None
            if self.n_bootstrap > 0:
                self.bootstrap_params_ = self._bootstrap(x / x0, y, scaled, x0)
            self._set_uncertainty()
        problems = self.identification_problems()
        if problems and not self.force:
            raise UnidentifiedFit(problems)
        return self

    def identification_problems(self) -> list[str]:
        """Why the fit cannot be trusted, as the loss laws ask: a loss that falls as a power
        of x toward a floor needs A > 0, alpha > 0 and E >= 0 (A < 0 with alpha < 0 also
        falls, but without bound, into negative loss), and finite parameters."""
        self._check_fitted()
        E, A, alpha = (self.params_[k] for k in PARAM_NAMES)
        if not np.isfinite([E, A, alpha]).all():
            return [f"E = {E:.3g}, A = {A:.3g}, alpha = {alpha:.3g}: not finite"]
        problems = []
        if not (A > 0 and alpha > 0):
            problems.append(
                f"A = {A:.3g}, alpha = {alpha:.3g}: loss does not fall as a power of x "
                "(need A > 0 and alpha > 0)"
            )
        if E < 0:
            problems.append(f"E = {E:.3g}: a negative irreducible loss (need E >= 0)")
        return problems

    def _summary_footer(self) -> list[str]:
        problems = self.identification_problems()
        return ["FLAGGED, kept with force=True:", *problems] if problems else []

    # -- fitting internals -----------------------------------------------------------------
    def _residual_fns(self, xs: np.ndarray, y: np.ndarray, sw: np.ndarray) -> tuple[Any, Any]:
        """Weighted residual and Jacobian in the free scaled parameters (E?, A', alpha)."""

        def unpack(p: np.ndarray) -> tuple[float, float, float]:
            return (p[0], p[1], p[2]) if self.E is None else (float(self.E), p[0], p[1])

        def resid(p: np.ndarray) -> np.ndarray:
            E, A, alpha = unpack(p)
            return sw * (E + A * xs**-alpha - y)

        def jac(p: np.ndarray) -> np.ndarray:
            _, A, alpha = unpack(p)
            t = xs**-alpha
            cols = [t, -A * t * np.log(xs)]
            if self.E is None:
                cols.insert(0, np.ones_like(xs))
            return sw[:, None] * np.column_stack(cols)

        return resid, jac

    def _profile_starts(self, xs: np.ndarray, y: np.ndarray, sw: np.ndarray) -> list[np.ndarray]:
        """Best local minima of SSR(alpha), with (E, A') solved linearly at each alpha."""
        ssr = np.full(_ALPHA_GRID.size, np.inf)
        sols = []
        for i, alpha in enumerate(_ALPHA_GRID):
            t = xs**-alpha
            if self.E is None:
                X = np.column_stack([np.ones_like(xs), t]) * sw[:, None]
                target = y * sw
            else:
                X = (t * sw)[:, None]
                target = (y - self.E) * sw
            coef, *_ = np.linalg.lstsq(X, target, rcond=None)
            sols.append(coef)
            ssr[i] = np.sum((X @ coef - target) ** 2)
        is_min = np.r_[True, ssr[1:] <= ssr[:-1]] & np.r_[ssr[:-1] <= ssr[1:], True]
        picks = [i for i in np.argsort(ssr) if is_min[i]][:_N_REFINE]
        return [np.r_[sols[i], _ALPHA_GRID[i]] for i in picks]

    def _solve(
        self,
        xs: np.ndarray,
        y: np.ndarray,
        w: np.ndarray,
        starts: list[np.ndarray] | None,
    ) -> tuple[np.ndarray, float]:
        """Best scaled (E, A', alpha) and its weighted SSR over the given or profiled starts."""
        sw = np.sqrt(w)
        resid, jac = self._residual_fns(xs, y, sw)
        if starts is None:
            starts = self._profile_starts(xs, y, sw)
        best, best_ssr = None, np.inf
        for p0 in starts:
            res = optimize.least_squares(
                resid, p0, jac=jac, method="lm", xtol=1e-14, ftol=1e-14, gtol=1e-14
            )
            ssr = float(np.sum(res.fun**2))
            if np.isfinite(ssr) and ssr < best_ssr:
                best, best_ssr = res.x, ssr
        if best is None:
            raise FitError("least squares did not converge from any start")
        full = best if self.E is None else np.r_[self.E, best]
        return full, best_ssr

    def _covariance(self, scaled: np.ndarray, xs: np.ndarray, y: np.ndarray) -> np.ndarray:
        """s^2 (J'J)^-1 in the free scaled parameters, s^2 = SSR / (n - p)."""
        resid, jac = self._residual_fns(xs, y, np.ones_like(xs))
        free = scaled if self.E is None else scaled[1:]
        J = jac(free)
        r = resid(free)
        dof = xs.size - free.size
        s2 = float(r @ r) / dof
        return s2 * np.linalg.pinv(J.T @ J)

    def _bootstrap(
        self, xs: np.ndarray, y: np.ndarray, scaled: np.ndarray, x0: float
    ) -> np.ndarray:
        """Refits on resampled points from the full-data optimum; unidentifiable draws skipped."""
        rng = as_generator(self.random_state)
        counts = resample_weights(xs.size, int(self.n_bootstrap), rng)
        start = scaled if self.E is None else scaled[1:]
        need = len(self.free_names)
        draws = []
        for w in counts:
            if np.unique(xs[w > 0]).size < need:
                continue
            p, _ = self._solve(xs, y, w.astype(float), starts=[start])
            draws.append(unscale(p, x0))
        if not draws:
            raise FitError("no bootstrap resample had enough distinct x values to refit")
        return np.array(draws)

    def _set_uncertainty(self) -> None:
        names = self.free_names
        idx = [PARAM_NAMES.index(n) for n in names]
        if self.bootstrap_params_ is not None:
            draws = self.bootstrap_params_
            lo, hi = percentile_interval(draws, self.level_)
            se = robust_spread(draws)
        else:
            se = np.sqrt(np.clip(np.diag(self.cov_), 0.0, None))
            t = t_quantile(0.5 + self.level_ / 2, self.df_resid_)
            est = np.array([self.params_[n] for n in PARAM_NAMES])
            lo, hi = est - t * se, est + t * se
        self.stderr_ = {n: float(se[i]) for n, i in zip(names, idx, strict=True)}
        self.intervals_ = {n: (float(lo[i]), float(hi[i])) for n, i in zip(names, idx, strict=True)}

    # -- predictions -----------------------------------------------------------------------
    def _params_row(self) -> np.ndarray:
        self._check_fitted()
        return np.array([self.params_[n] for n in PARAM_NAMES])

    def predict(self, x: Any) -> np.ndarray:
        """E + A x^-alpha at x (or at the runs' column x)."""
        x = np.asarray(runs_column(x, self.x), dtype=float)
        return power_law(self._params_row(), x).reshape(x.shape)

    def predict_draws(self, x: Any) -> np.ndarray:
        """(n_draws, len(x)) bootstrap draws of the law at x."""
        self._check_fitted()
        if self.bootstrap_params_ is None:
            raise FitError("the power-law fit has no bootstrap draws: fit it with n_bootstrap > 0")
        with np.errstate(all="ignore"):  # degenerate draws give inf/nan, left out of intervals
            return power_law(self.bootstrap_params_, np.asarray(runs_column(x, self.x), float))

    def predict_interval(
        self, x: Any, level: float | None = None, kind: str = "confidence"
    ) -> Estimate:
        """Estimate with an interval at `level` (default level_) of the mean (`confidence`)
        or of one new y (`prediction`).

        Confidence: from the bootstrap draws when there are any, else by the delta method with
        the Jacobian covariance and a t quantile on the residual degrees of freedom.
        Prediction: the delta method's variance of the mean plus the residual variance
        SSR / df, with the same t quantile (the draws measure the mean only).
        """
        level = validate.level(self.level_ if level is None else level)
        x = np.asarray(runs_column(x, self.x), dtype=float)
        est = self.predict(x)
        if self.bootstrap_params_ is not None and check_kind(kind) == "confidence":
            lo, hi = percentile_interval(power_law(self.bootstrap_params_, x), level)
        else:
            _, A, alpha = self._params_row()
            xf = x.reshape(-1)
            grad = np.column_stack([np.ones_like(xf), xf**-alpha, -A * xf**-alpha * np.log(xf)])
            var = np.einsum("ij,jk,ik->i", grad, self.cov_, grad)
            if check_kind(kind) == "prediction":
                var = var + self.objective_ / self.df_resid_
            t = t_quantile(0.5 + level / 2, self.df_resid_)
            lo, hi = est.reshape(-1) - t * np.sqrt(var), est.reshape(-1) + t * np.sqrt(var)
        return Estimate(est, lo.reshape(x.shape), hi.reshape(x.shape), level, kind)

    # -- reporting and serialisation -------------------------------------------------------
    def _summary_header(self) -> list[str]:
        lines = super()._summary_header()
        lines[1] += " (sum of squared residuals)"
        if self.E is not None:
            lines.append(f"E fixed at {self.E:g}")
        lines.append(
            f"intervals: bootstrap percentile, {self.bootstrap_params_.shape[0]} resamples"
            if self.bootstrap_params_ is not None
            else f"intervals: Jacobian covariance, t with {self.df_resid_} df"
        )
        return lines

    def _state(self) -> dict[str, Any]:
        return {
            "param_order": list(PARAM_NAMES),
            "cov": self.cov_,
            "df_resid": self.df_resid_,
            "x0": self.x0_,
            "bootstrap_params": self.bootstrap_params_,
        }

    def _load_state(self, state: dict[str, Any]) -> None:
        order = np.argsort([PARAM_NAMES.index(n) for n in state["param_order"]])
        self.cov_ = np.asarray(state["cov"], dtype=float)[np.ix_(order, order)]
        self.df_resid_ = int(state["df_resid"])
        self.x0_ = float(state["x0"])
        draws = state.get("bootstrap_params")
        self.bootstrap_params_ = None if draws is None else np.asarray(draws, float)[:, order]
