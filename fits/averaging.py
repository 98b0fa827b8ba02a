"""Model averaging of loss-law forms by stacking on their nested out-of-range errors.

No candidate form is the true law of a real data set (the M-open setting), so the forms are
not weighted by how probable each is (BMA, or pseudo-BMA, which both pile their weight on one
form as data grow) but by stacking: the weights on the simplex that minimise the error of the
averaged prediction on runs the forms were not fitted to (Breiman 1996, "Stacked
regressions"; Yao et al. 2018, "Using stacking to average Bayesian predictive distributions").
The runs are the held-out runs of the nested backtests (fits.extrapolation), so the weights
reward extrapolation, which is what a user asks of the law.

- Forms are compared on the same splits only: a form that failed a split some other form
  completed is left out of the average (and says so), rather than compared on fewer splits.
- The average is taken in log loss, log L = sum_k w_k log L_k, so a held-out run's error under
  the average is sum_k w_k e_k of the forms' log errors, and stacking minimises, on the
  simplex, the sum over splits of the mean over the split's held-out runs of
  |sum_k w_k e_k|, every split weighing the same: a linear program, solved exactly. Absolute,
  not squared, error: runs have outliers (the forms are fitted with a Huber loss near absolute
  error for that reason), and squared errors let a few outlying held-out runs set the weights
  (on Epoch's 245 points two of them gave 72% of the squared objective); absolute error is
  also the proper score of a median, the middle of the interval.
- The weights are stacked on the largest cut along each coordinate (the nested split with the
  most training runs: C, N and D at their largest quantile), not on every cut. Cross-validation
  estimates how a form does when fitted on its training runs, and a form with more parameters
  gains more from more runs, so smaller training sets favour the simpler forms (the training-
  size bias of cross-validation: Arlot & Celisse 2010, "A survey of cross-validation
  procedures for model selection", sections 5 and 8). The largest cuts are the nearest to the
  fit on all runs whose forms the weights combine; the smaller cuts still score the average
  for its calibration.
- A form whose weight comes out under MIN_WEIGHT (1%) is left out and the rest renormalised:
  at weight w it moves the average's log loss by w times its gap to the other forms (under
  0.05% in loss for forms 5% apart), less than one run's noise, while its bootstrap costs as
  much as at full weight (Farseer's: 10 s of CPU on Epoch's 245 points at weight 0.0012).
- The errors used to calibrate the average are cross-validated over splits: each split's
  errors are those of the weights stacked on the largest cuts of the other splits, so the
  calibration does not see weights tuned on the very runs it scores.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from typing import Any, ClassVar, Self

import numpy as np
import pandas as pd

from fits.bootstrap import RandomState
from fits.errors import FitError
from fits.lad import least_absolute
from fits.laws import LOSS_LAWS, LossLaw

SPLIT = ["coord", "q"]
MIN_WEIGHT = 0.01  # a lighter form moves the average by under 1% of its gap to the others


def largest_of(splits: Collection[tuple[str, float]]) -> set[tuple[str, float]]:
    """Of splits (coord, q), the largest cut along each coordinate: the most training runs."""
    top: dict[str, float] = {}
    for coord, q in splits:
        top[coord] = max(q, top.get(coord, q))
    return set(top.items())


def common_splits(
    nested: Mapping[str, pd.DataFrame], light: Collection[str] = ()
) -> tuple[list[str], dict[str, str]]:
    """The forms that completed every split any form completed, and why the others are out.
    A `light` form was backtested on the largest cuts alone (fits.auto: it had no weight
    there, so its smaller cuts could not move the average) and is held to those."""
    done = {name: set(map(tuple, frame[SPLIT].drop_duplicates().to_numpy())) for name, frame
            in nested.items() if not frame.empty}  # fmt: skip
    every = set().union(*done.values()) if done else set()
    largest = largest_of(every)
    kept = [name for name, splits in done.items()
            if splits == (largest if name in light else every)]  # fmt: skip
    left = {
        name: f"completed {len(done.get(name, ()))} of the {len(every)} nested splits"
        for name in nested
        if name not in kept
    }
    return kept, left


def error_matrix(nested: Mapping[str, pd.DataFrame], forms: list[str]) -> pd.DataFrame:
    """One row per (split, held-out run) with each form's log error as a column (NaN on the
    splits a light form was not backtested on), and the split's distances (the same for every
    form); not a form's scatter, which is not the average's."""
    fullest = max(forms, key=lambda name: len(nested[name]))  # the first of the longest
    first = nested[fullest].set_index([*SPLIT, "row"])
    errors = pd.DataFrame(
        {name: nested[name].set_index([*SPLIT, "row"]).log_error for name in forms}
    )
    return first.drop(columns=["log_error", "scatter"]).join(errors).reset_index()


def split_weights(frame: pd.DataFrame) -> np.ndarray:
    """Each held-out run's weight: 1 / (number of runs in its split x number of splits)."""
    sizes = frame.groupby(SPLIT).row.transform("size").to_numpy(dtype=float)
    return 1.0 / (sizes * frame.groupby(SPLIT).ngroups)


def stack(errors: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Simplex weights w minimising sum_i weights_i |errors_i . w| (errors: runs x forms),
    each under MIN_WEIGHT then set to 0 and the rest renormalised."""
    w = np.clip(least_absolute(errors, np.zeros(len(errors)), weights, simplex=True), 0.0, None)
    w = w / w.sum()
    w[w < MIN_WEIGHT] = 0.0
    return w / w.sum()


def largest_cuts(frame: pd.DataFrame) -> np.ndarray:
    """Rows of the splits with the most training runs along each coordinate (its largest q)."""
    return (frame.q == frame.groupby("coord").q.transform("max")).to_numpy()


def stack_largest(frame: pd.DataFrame, forms: list[str], rows: np.ndarray) -> np.ndarray:
    """The stacking weights on the largest cuts among `rows` (on all of `rows` when none of
    them is a largest cut). A light form, backtested on the largest cuts alone, has no errors
    on the others: where they are all that is left it cannot be weighed there and takes 0."""
    chosen = rows & largest_cuts(frame)
    chosen = chosen if chosen.any() else rows
    errors = frame[forms].to_numpy(dtype=float)[chosen]
    weighed = ~np.isnan(errors).any(axis=0)
    w = np.zeros(len(forms))
    w[weighed] = stack(errors[:, weighed], split_weights(frame[chosen]))
    return w


def split_keys(frame: pd.DataFrame) -> pd.Series:
    """Each row's split, (coord, q)."""
    return frame[SPLIT].apply(tuple, axis=1)


def cross_weights(
    frame: pd.DataFrame, forms: list[str], keys: pd.Series
) -> dict[tuple[Any, ...], np.ndarray]:
    """Each split's stacking weights, stacked on the largest cuts of the other splits (on all
    of them when there is only one): the weights its held-out runs are predicted with. keys:
    split_keys(frame)."""
    splits = keys.unique()
    out = {}
    for split in splits:
        others = (keys != split).to_numpy() if len(splits) > 1 else np.ones(len(frame), bool)
        out[split] = stack_largest(frame, forms, others)
    return out


def held_out_errors(frame: pd.DataFrame, forms: list[str]) -> np.ndarray:
    """The average's log error on every row, each split's with its cross_weights. A light
    form's missing errors (NaN) count 0: its weight is 0 on every split it lacks."""
    errors = frame[forms].to_numpy(dtype=float)
    keys = split_keys(frame)
    out = np.empty(len(frame))
    for split, w in cross_weights(frame, forms, keys).items():
        mine = (keys == split).to_numpy()
        missing = np.isnan(errors[mine])
        if (missing & (w > 0)).any():
            raise ValueError(f"a form of positive weight was not backtested on split {split}")
        out[mine] = np.where(missing, 0.0, errors[mine]) @ w
    return out


def in_data_errors(
    frame: pd.DataFrame, forms: list[str], residuals: Mapping[str, np.ndarray]
) -> np.ndarray:
    """The full fit's log error at each held-out row of `frame` (from `average`), for the
    average each split's is predicted with: sum_k w_k r_k[row], w its split's cross_weights and
    r_k form k's residuals fitted on all runs (fits.calibration scores the error less this)."""
    keys = split_keys(frame)
    fitted = np.column_stack([np.asarray(residuals[name], dtype=float) for name in forms])
    rows = frame.row.to_numpy(dtype=int)
    out = np.empty(len(frame))
    for split, w in cross_weights(frame, forms, keys).items():
        mine = (keys == split).to_numpy()
        out[mine] = fitted[rows[mine]] @ w
    return out


def stacking_weights(
    nested: Mapping[str, pd.DataFrame], light: Collection[str] = ()
) -> tuple[dict[str, float], pd.DataFrame, dict[str, str]]:
    """The forms' stacking weights (on the largest cuts), their error matrix (error_matrix)
    and the forms left out (common_splits); what `average` needs before the average's errors,
    and all that fits.auto needs to know which forms to backtest on the smaller cuts."""
    forms, left = common_splits(nested, light)
    if not forms:
        return {}, pd.DataFrame(), left
    frame = error_matrix(nested, forms)
    w = stack_largest(frame, forms, np.ones(len(frame), bool))
    return dict(zip(forms, map(float, w), strict=True)), frame, left


def average(
    nested: Mapping[str, pd.DataFrame], light: Collection[str] = ()
) -> tuple[dict[str, float], pd.DataFrame, dict[str, str]]:
    """Stacking weights of the forms, the average's nested errors, and the forms left out.

    nested: form -> its nested backtest (fits.extrapolation.nested_backtest); light: the forms
    backtested on the largest cuts alone (see common_splits). The returned
    frame is a nested backtest of the average itself (log_error cross-validated over splits,
    see the module docstring), with each form's error as a column beside it.
    """
    weights, frame, left = stacking_weights(nested, light)
    if weights:
        frame["log_error"] = held_out_errors(frame, list(weights))
    return weights, frame, left


class AveragedLaw(LossLaw):
    """exp(sum_k w_k log L_k(N, D)): the stacked average of fitted loss laws, itself a law.

    Its parameter rows are the forms' rows side by side (forms of weight 0 are dropped), so a
    bootstrap draw of the average is the forms' draws of one index, and every question a law
    answers (loss, interval draws, the compute-optimal allocation, found numerically along
    C = 6 N D) is answered of the average. Build it with `AveragedLaw.of(models, weights)`
    from fitted forms (fits.auto stacks the weights on nested backtests), or fit it with the
    weights given: `AveragedLaw(weights={...}).fit(runs)` fits each form of positive weight
    (as scikit-learn's VotingRegressor does with its weights).
    """

    law = "average"
    form = False
    formula = "log L = sum_k w_k log L_k (stacked on nested out-of-range errors)"
    param_names: ClassVar[tuple[str, ...]] = ()

    forms_: dict[str, LossLaw]
    weights_: dict[str, float]

    def __init__(
        self,
        *,
        weights: Mapping[str, float] | None = None,
        level: float = 0.90,
        n_bootstrap: int = 1000,
        random_state: RandomState = 0,
        force: bool = False,
    ) -> None:
        self.weights = None if weights is None else dict(weights)
        self.level = level
        self.n_bootstrap = n_bootstrap
        self.random_state = random_state
        self.force = force

    @classmethod
    def of(cls, models: Mapping[str, LossLaw], weights: Mapping[str, float]) -> AveragedLaw:
        """The average of fitted laws with their stacking weights (those of weight 0 left out);
        its settings are theirs, so `AveragedLaw(**settings).fit(runs)` would fit it again."""
        first = next(models[k] for k, w in weights.items() if w > 0)
        new = cls(weights=weights, level=first.level_, n_bootstrap=first.n_bootstrap,
                  random_state=first.random_state, force=first.force)  # fmt: skip
        new._average(models, weights)
        return new

    def fit(self, runs: pd.DataFrame) -> Self:
        """Fit every form of positive weight on runs (columns N, D[, U], loss), with this
        average's level, bootstrap, seed and force, and average them with `weights`."""
        if not self.weights:
            raise FitError("an average needs its forms' weights (fits.auto stacks them)")
        unknown = sorted(set(self.weights) - set(LOSS_LAWS))
        if unknown:
            raise FitError(f"no loss law {', '.join(unknown)}: known {', '.join(LOSS_LAWS)}")
        config: dict[str, Any] = {
            "level": self.level,
            "n_bootstrap": self.n_bootstrap,
            "random_state": self.random_state,
            "force": self.force,
        }
        forms = {k: LOSS_LAWS[k](**config).fit_frame(runs) for k, w in self.weights.items()
                 if w > 0}  # fmt: skip
        self._average(forms, self.weights)
        return self

    def fit_frame(self, runs: pd.DataFrame) -> Self:
        return self.fit(runs)

    def _average(self, models: Mapping[str, LossLaw], weights: Mapping[str, float]) -> None:
        """Every learned attribute from fitted forms and their weights (a refit replaces all)."""
        self.weights_ = dict(weights)
        self.forms_ = {k: models[k] for k, w in weights.items() if w > 0}
        self._set_fitted()

    def frame_columns(self, runs: pd.DataFrame) -> list[np.ndarray]:
        """N, D and U (NaN, unlimited, where the runs have no U column)."""
        U = runs["U"] if "U" in runs else np.full(len(runs), np.nan)
        return [*super().frame_columns(runs), np.asarray(U, dtype=float)]

    def _set_fitted(self) -> None:
        forms = self.forms_.values()
        self.params_ = {f"{k}.{p}": v for k, m in self.forms_.items() for p, v in m.params_.items()
                        if p in m.param_names}  # fmt: skip
        self.stderr_, self.intervals_ = {}, {}
        self.level_ = float(self.level)
        self.n_points_ = max(m.n_points_ for m in forms)
        self.objective_ = math.nan
        self.data_range_ = next(iter(forms)).data_range_
        self.bootstrap_params_ = None

    def _params_row(self) -> np.ndarray:
        return np.concatenate([m._params_row() for m in self.forms_.values()])

    def _draws(self) -> np.ndarray:
        draws = [m._draws() for m in self.forms_.values()]
        n = min(len(d) for d in draws)
        return np.hstack([d[:n] for d in draws])

    def loss_of(self, params: np.ndarray, *cols: np.ndarray) -> np.ndarray:
        N, D = cols[0], cols[1]
        U = cols[2] if len(cols) > 2 else np.full(np.shape(N), np.nan)
        p = np.asarray(params, dtype=float)
        log, start = 0.0, 0
        with np.errstate(all="ignore"):
            for name, model in self.forms_.items():
                width = len(model._params_row())
                mine = p[:, start : start + width]
                args = (N, D, U) if "U" in model.columns else (N, D)
                log = log + self.weights_[name] * np.log(model.loss_of(mine, *args))
                start += width
            return np.exp(np.asarray(log, dtype=float))

    def identification_problems(self) -> list[str]:
        own = [f"{k}: {p}" for k, m in self.forms_.items() for p in m.identification_problems()]
        return own or super().identification_problems()

    def cautions(self) -> list[str]:
        return [f"{k}: {c}" for k, m in self.forms_.items() for c in m.cautions()]

    def offset_unseen(self) -> bool:
        return any(m.offset_unseen() for m in self.forms_.values())

    def prices_repeats(self) -> bool:
        return any(m.prices_repeats() for m in self.forms_.values())

    def _summary_header(self) -> list[str]:
        weights = ", ".join(f"{k} {w:.3f}" for k, w in self.weights_.items())
        return [f"{type(self).__name__}: {self.formula}", f"weights: {weights}"]

    def _state(self) -> dict[str, Any]:
        return {
            "weights": self.weights_,
            "forms": {k: m.to_dict() for k, m in self.forms_.items()},
        }

    def _load_state(self, state: dict[str, Any]) -> None:
        self.weights_ = {k: float(v) for k, v in state["weights"].items()}
        self.forms_ = {k: LossLaw.from_dict(r) for k, r in state["forms"].items()}
        self._set_fitted()
