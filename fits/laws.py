"""The common base of every loss law L(N, D[, U]) and the registry the API looks laws up in.

A loss law answers three questions from its parameters: the loss of one run (`predict`), the
compute-optimal allocation at C = 6ND (`compute_optimal`), and the loss on that frontier
(`frontier`). Each has a draws version built from the bootstrap rows of the parameters, so
intervals and anything derived from them (a crossing of two frontiers, fits.crossing) come
from one place.
A subclass supplies the math: `loss_of(params, *columns)` on rows of parameters, and `fit`;
`allocation_of(params, C)` searches the loss numerically unless the form overrides it with a
closed form. Everything else here is shared.

A fit the data cannot identify is refused (`FitError`) unless the law was built with
`force=True`; then it is kept, and `identification_problems()` and the summary say why it
should not be trusted.
"""

from __future__ import annotations

import copy
import math
from typing import Any, ClassVar, Self

import numpy as np
import pandas as pd

from fits import validate
from fits.allocation import allocation, allocation_problems, ratio_window
from fits.base import Estimate, IntervalFit, check_kind
from fits.bootstrap import RandomState, percentile_interval
from fits.errors import FitError, UnidentifiedFit

LOSS_LAWS: dict[str, type[LossLaw]] = {}
# An exponent below this is not a power law over any range of data: loss does not fall.
MIN_EXPONENT = 1e-3
FLAT_SHARE = 0.01  # an offset E below this share of the loss at the largest run is not seen
TERM_SHARE = 1e-3  # a term under this share of the loss at every corner of the runs is not seen


class LossLaw(IntervalFit):
    """A law of final loss in run columns (N, D[, U]); see the module docstring.

    Subclasses set `law`, `columns` (run columns besides loss), `param_names`, `exponents`
    ({exponent name: the column it acts on}) and `bounds` ({name: (lo, hi)} where a value
    at or past a bound means the data did not pin it down).

    Configuration (every loss law takes the same)
    -------------
    delta: Huber threshold on log-loss residuals (published: 1e-3).
    level: confidence level of `intervals_` and the default of the interval methods.
    n_bootstrap: resamples of the runs for intervals (0: point estimate only).
    n_local_optima: distinct local optima of the full fit kept as warm starts.
    random_state: seed or numpy Generator for the resampling.
    n_jobs: worker processes for the grid search and the bootstrap (-1: all cores). The
        result does not depend on it: the work is cut into the same batches however many
        processes run them (fits.bootstrap.batches).
    force: keep a fit the data cannot identify (flagged) instead of raising FitError.
    """

    columns: ClassVar[tuple[str, ...]] = ("N", "D")
    form: ClassVar[bool] = True  # a form of its own (in LOSS_LAWS), not an average of forms
    param_names: ClassVar[tuple[str, ...]]
    exponents: ClassVar[dict[str, str]] = {}
    bounds: ClassVar[dict[str, tuple[float, float]]] = {}
    additive_offset: ClassVar[bool] = False  # L = E + terms, E in param_names (fits.offset)
    offset_name: ClassVar[str] = "E"  # what `offset_interval` is, in a caution

    bootstrap_params_: np.ndarray | None
    data_range_: dict[str, tuple[float, float]]

    def __init__(
        self,
        *,
        delta: float = 1e-3,
        level: float = 0.90,
        n_bootstrap: int = 1000,
        n_local_optima: int = 5,
        random_state: RandomState = 0,
        n_jobs: int | None = 1,
        force: bool = False,
    ) -> None:
        self.delta = delta
        self.level = level
        self.n_bootstrap = n_bootstrap
        self.n_local_optima = n_local_optima
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.force = force

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "law" in cls.__dict__ and cls.form:
            LOSS_LAWS[cls.law] = cls

    # -- the math a law supplies -----------------------------------------------------------
    def loss_of(self, params: np.ndarray, *cols: np.ndarray) -> np.ndarray:
        """Loss for params rows (k, p) at columns that broadcast against (k, n)."""
        raise NotImplementedError

    def allocation_of(
        self, params: np.ndarray, C: np.ndarray, flops_per_token: float = 6.0
    ) -> tuple[np.ndarray, np.ndarray]:
        """(N_opt, D_opt), each (k, m), minimising the loss at C = k N D for params rows at
        budgets C (m,), or each row at its own (k, m): the numerical search of
        `fits.allocation`, inside the runs' tokens-per-parameter window first; a form with a
        closed form overrides it."""
        validate.positive(np.ravel(C), "C")
        return allocation(self.loss_of, params, C, flops_per_token, ratio_window(self.data_range_))

    def frontier_of(self, params: np.ndarray, C: np.ndarray) -> np.ndarray:
        """Compute-optimal loss (k, m) for params rows (k, p) at budgets C (m,), or each row
        at its own budgets C (k, m)."""
        n_opt, d_opt = self.allocation_of(params, C)
        return self.loss_of(params, n_opt, d_opt)

    def quick_refit(self, runs: pd.DataFrame, force: bool | None = None) -> Self:
        """A new fitted estimator on `runs`, no bootstrap, warm-started from this fit; force
        (default: this fit's) keeps a fit the identification checks would refuse, flagged."""
        raise NotImplementedError

    def _unfitted(self, force: bool | None) -> Self:
        """A new estimator with this one's settings for a quick refit: no bootstrap, and force
        when given (else this one's)."""
        forced = {} if force is None else {"force": force}
        return type(self)(**{**self.get_params(), "n_bootstrap": 0, **forced})

    # -- data ------------------------------------------------------------------------------
    def frame_columns(self, runs: pd.DataFrame) -> list[np.ndarray]:
        """The law's columns of a runs table, as float arrays."""
        validate.columns(runs, list(self.columns))
        return [runs[c].to_numpy(dtype=float) for c in self.columns]

    def fit_frame(self, runs: pd.DataFrame) -> Self:
        """Fit on a runs table with the law's columns and `loss`; returns self (what
        `fit(runs)` does)."""
        validate.columns(runs, ["loss"])
        return self._fit_columns(self.frame_columns(runs), runs["loss"].to_numpy(dtype=float))

    def _fit_columns(self, cols: list[np.ndarray], loss: np.ndarray) -> Self:
        """`fit` on the law's columns in order (each law's `fit` names them)."""
        raise NotImplementedError

    def _set_data_range(self, **cols: np.ndarray) -> None:
        """The range of each column the fit saw (for distances of questions from the data)."""
        self.data_range_ = {k: (float(np.min(v)), float(np.max(v))) for k, v in cols.items()}

    # -- parameters ------------------------------------------------------------------------
    def _params_row(self) -> np.ndarray:
        self._check_fitted()
        return np.array([self.params_[n] for n in self.param_names])

    def _draws(self) -> np.ndarray:
        self._check_fitted()
        if self.bootstrap_params_ is None:
            raise FitError("no bootstrap draws: fit with n_bootstrap > 0 to get intervals")
        return self.bootstrap_params_

    # -- predictions -----------------------------------------------------------------------
    def predict(self, *cols: Any) -> np.ndarray:
        """Predicted loss at the given columns (broadcast against each other), or at the rows
        of one table of runs."""
        cols = self._columns_of(cols)
        arrays = np.broadcast_arrays(*(np.asarray(c, dtype=float) for c in cols))
        flat = [a.reshape(-1) for a in arrays]
        return self.loss_of(self._params_row()[None, :], *flat)[0].reshape(arrays[0].shape)

    def _columns_of(self, cols: tuple[Any, ...]) -> tuple[Any, ...]:
        """The law's columns: given, or read from a table of runs given alone."""
        if len(cols) == 1 and isinstance(cols[0], pd.DataFrame):
            return tuple(self.frame_columns(cols[0]))
        return cols

    def predict_frame(self, runs: pd.DataFrame) -> np.ndarray:
        """Point loss for every row of a runs table."""
        return self.predict(*self.frame_columns(runs))

    def loss_draws(self, runs: pd.DataFrame) -> np.ndarray:
        """(n_draws, n_rows) bootstrap draws of the law's loss at the rows of `runs`."""
        return self.loss_of(self._draws(), *self.frame_columns(runs))

    def predict_interval(
        self, *cols: Any, level: float | None = None, kind: str = "confidence"
    ) -> Estimate:
        """Predicted loss with a bootstrap percentile interval of the law at `level` (default
        level_): a confidence interval. The prediction interval of one run (the law widened
        by the runs' scatter about it, and by distance from them) is not the estimator's: the
        Study composes it (fits.prediction.run_interval)."""
        if check_kind(kind) == "prediction":
            raise FitError(
                f"{self.law} gives a confidence interval of the law (its bootstrap); the "
                "prediction interval of a run is the Study's (Study.predict_loss)"
            )
        level = validate.level(self.level_ if level is None else level)
        cols = self._columns_of(cols)
        arrays = np.broadcast_arrays(*(np.asarray(c, dtype=float) for c in cols))
        flat = [a.reshape(-1) for a in arrays]
        lo, hi = percentile_interval(self.loss_of(self._draws(), *flat), level)
        shape = arrays[0].shape
        return Estimate(
            self.predict(*arrays), lo.reshape(shape), hi.reshape(shape), level, "confidence"
        )

    def frontier(self, C: Any) -> np.ndarray:
        """Compute-optimal loss at budgets C (C = 6 N D)."""
        C = np.asarray(C, dtype=float)
        return self.frontier_of(self._params_row()[None, :], C.reshape(-1))[0].reshape(C.shape)

    def frontier_draws(self, C: Any) -> np.ndarray:
        """(n_draws, len(C)) bootstrap draws of the compute-optimal loss."""
        return self.frontier_of(self._draws(), np.asarray(C, dtype=float).reshape(-1))

    def compute_optimal(
        self, C: Any, flops_per_token: float = 6.0
    ) -> tuple[np.ndarray, np.ndarray]:
        """(N_opt, D_opt) minimising the fitted loss at compute C = flops_per_token * N * D."""
        C = np.asarray(C, dtype=float)
        n, d = self.allocation_of(self._params_row()[None, :], C.reshape(-1), flops_per_token)
        return n[0].reshape(C.shape), d[0].reshape(C.shape)

    def compute_optimal_interval(
        self, C: Any, level: float | None = None, flops_per_token: float = 6.0
    ) -> tuple[Estimate, Estimate]:
        """N_opt and D_opt at compute C, each with a bootstrap percentile interval; FitError
        when the allocation is no answer (`allocation_problems`)."""
        level = validate.level(self.level_ if level is None else level)
        C = np.asarray(C, dtype=float)
        n_est, d_est = self.compute_optimal(C, flops_per_token)
        problems = self.allocation_problems(n_est, d_est)
        if problems:
            raise FitError(f"no compute-optimal answer: {problems[0]}")
        n_draws, d_draws = self.allocation_of(self._draws(), C.reshape(-1), flops_per_token)
        out = []
        for est, draws in ((n_est, n_draws), (d_est, d_draws)):
            lo, hi = percentile_interval(draws, level)
            out.append(Estimate(est, lo.reshape(C.shape), hi.reshape(C.shape), level, "confidence"))
        return out[0], out[1]

    def allocation_problems(self, n_opt: np.ndarray, d_opt: np.ndarray) -> list[str]:
        """Why an allocation is no answer (`fits.allocation.allocation_problems`)."""
        return allocation_problems(self.data_range_, n_opt, d_opt)

    # -- identification --------------------------------------------------------------------
    def identification_problems(self) -> list[str]:
        """Why this fit cannot be trusted: non-finite or non-positive exponents, parameters
        at their bounds, a NaN compute-optimal allocation. Empty when it is identified."""
        self._check_fitted()
        problems = [
            f"{name} = {value:.3g} is not finite"
            for name, value in self.params_.items()
            if name in self.param_names and not np.isfinite(value) and name not in self.bounds
        ]
        for name, column in self.exponents.items():
            value = self.params_[name]
            if np.isfinite(value) and value <= 0:
                problems.append(
                    f"{name} = {value:.3g} is not positive (loss does not fall with {column})"
                )
            elif np.isfinite(value) and value < MIN_EXPONENT:
                problems.append(
                    f"{name} = {value:.3g} is below {MIN_EXPONENT:g} (loss hardly falls with "
                    f"{column})"
                )
        for name, (lo, hi) in self.bounds.items():
            value = self.params_[name]
            if not lo < value < hi and not (math.isinf(value) and self._held(name)):
                problems.append(f"{name} = {value:.3g} is not inside its bounds ({lo:g}..{hi:g})")
        if not problems:
            c_mid = self._probe_compute()
            if not np.all(np.isfinite([*self.compute_optimal(c_mid), self.frontier(c_mid)])):
                problems.append(f"the compute-optimal allocation at C = {c_mid:.3g} is NaN")
        return problems

    def _held(self, name: str) -> bool:
        """True for a parameter deliberately held fixed (not fitted) at an infinite value."""
        return False

    def _probe_compute(self) -> float:
        """A budget inside the data (geometric middle of 6 N D over the fitted range)."""
        if "N" not in self.data_range_:  # a record stored before ranges were kept
            return 1e21
        (n_lo, n_hi), (d_lo, d_hi) = self.data_range_["N"], self.data_range_["D"]
        return 6.0 * math.sqrt(n_lo * n_hi * d_lo * d_hi)

    def _refuse_unidentified(self) -> None:
        """Raise FitError listing the problems, unless built with force=True."""
        problems = self.identification_problems()
        if problems and not self.force:
            raise UnidentifiedFit(problems)

    def cautions(self) -> list[str]:
        """What an identified fit still does not measure: an offset E that the runs cannot tell
        from zero (`offset_unseen`). The runs then do not see the loss flatten: the law's limit
        is a guess, and it falls as a pure power law beyond them. Empty otherwise."""
        unseen = self._unseen_offset()
        if unseen is None:
            return []
        E, low, largest = unseen
        seen = f"{self.offset_name} = {E:.3g}" + (f" (interval from {low:.3g})" if low < E else "")
        return [
            f"{seen} cannot be told from zero beside the loss at the largest run "
            f"({largest:.3g}): the runs do not see the loss flatten, so the irreducible loss "
            "is not measured and beyond them the law falls without a floor"
        ]

    def prices_repeats(self) -> bool:
        """Whether the law's loss depends on the unique tokens U, so that tokens seen again are
        worth less than fresh ones; a law in N and D alone counts them the same."""
        return "U" in self.columns

    def offset_unseen(self) -> bool:
        """True when the offset E's estimate (or, with a bootstrap, its interval's low end) is
        under FLAT_SHARE of the loss at the largest run: the runs cannot tell it from zero."""
        return self._unseen_offset() is not None

    def _unseen_offset(self) -> tuple[float, float, float] | None:
        """(E, its interval's low end, the loss at the largest run) when the offset is unseen."""
        self._check_fitted()
        seen_offset = self.offset_interval()
        if seen_offset is None or self.columns != ("N", "D") or "N" not in self.data_range_:
            return None
        E, low = seen_offset
        n_hi, d_hi = self.data_range_["N"][1], self.data_range_["D"][1]
        largest = float(self.loss_of(self._params_row()[None, :], np.array([n_hi]),
                                     np.array([d_hi]))[0, 0])  # fmt: skip
        return (E, low, largest) if low < FLAT_SHARE * largest else None

    def offset_interval(self) -> tuple[float, float] | None:
        """The irreducible loss (the limit at unlimited N and D) and the low end of its
        interval (the estimate without a bootstrap); None for a law without one."""
        E = self.params_.get("E")
        return None if E is None else (E, min(E, self.intervals_.get("E", (E, E))[0]))

    def _summary_footer(self) -> list[str]:
        problems = self.identification_problems()
        cautions = [f"caution: {c}" for c in self.cautions()]
        if not problems:
            return cautions
        flagged = ["FLAGGED, kept with force=True; do not trust it:", *(f"  {p}" for p in problems)]
        return flagged + cautions


def training_compute(N: Any, D: Any) -> np.ndarray:
    """Training compute C = 6 N D: forward and backward pass, 6 FLOPs per parameter per token
    (inf past a float's range: farther from the runs than any)."""
    with np.errstate(over="ignore"):
        return 6.0 * np.asarray(N, dtype=float) * np.asarray(D, dtype=float)


def refit_predict(model: LossLaw, train: pd.DataFrame, test: pd.DataFrame) -> np.ndarray:
    """The nested backtests' fit-and-predict: a warm-started refit of `model` on `train`.

    A split asks only for the loss at its held-out runs, so a refit the identification checks
    would refuse to answer from (an exponent at its bound, no finite compute-optimal
    allocation) is kept and scored on that loss; refusing it dropped the split, and a form
    missing one split loses its weight (fits.averaging), for a reason that says nothing of its
    loss. A split whose predictions are not finite is still skipped (nested_backtest). The
    refit runs in one process: the splits are what runs in parallel (nested_backtests)."""
    alone = copy.copy(model)
    alone.n_jobs = 1
    return alone.quick_refit(train, force=True).predict_frame(test)
