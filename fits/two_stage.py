"""Laws of repeated data fitted in two stages: Chinchilla where data do not repeat, then the rest.

Muennighoff et al. (fits.data_constrained) and Lovelace et al. (fits.overfitting) both keep
Chinchilla's law for runs that see each token once and add what repetition does on top. Both
are fitted the way Muennighoff et al. fit theirs: the Chinchilla law (fits.chinchilla, with its
grid and bootstrap) on the runs that do not repeat data, then the law's own repeat parameters
on the runs that do, the base held fixed. A bootstrap draw pairs each base draw with a resample
of the repeated runs. This module holds what the two share: the runs' checks, the stages'
bookkeeping, the compute-optimal allocation (the base's: unlimited unique data), the stored
state. Column U is a run's unique tokens; NaN means unlimited.
"""

from __future__ import annotations

from typing import Any, ClassVar, Self

import numpy as np
import pandas as pd

from fits import validate
from fits.base import Fit, _num, runs_only
from fits.bootstrap import as_generator, param_uncertainty, resample_weights
from fits.chinchilla import ChinchillaLaw, _loss, compute_optimal_allocation
from fits.errors import FitError
from fits.gridfit import GRID_TOL, POLISH_TOL
from fits.laws import LossLaw
from fits.lbfgs import BatchObjective, minimize_batched


def unlimited_as_inf(U: Any) -> np.ndarray:
    """Unique tokens with NaN (unlimited) as inf, so that D > U marks the runs that repeat."""
    U = np.asarray(U, dtype=float)
    return np.where(np.isnan(U), np.inf, U)


def polished_best(objective: BatchObjective, starts: np.ndarray) -> tuple[np.ndarray, float]:
    """The second stage's optimum: every start run (L-BFGS-B's tolerances), the best end point
    polished until float64 stops improving; (phi, objective)."""
    res = minimize_batched(objective, starts, **GRID_TOL)
    best = int(np.argmin(np.where(np.isfinite(res.fun), res.fun, np.inf)))
    tight = minimize_batched(objective, res.x[best][None, :], **POLISH_TOL)
    if tight.fun[0] <= res.fun[best]:
        return tight.x[0], float(tight.fun[0])
    return res.x[best], float(res.fun[best])


NO_REPEATS = "needs runs that repeat data (D > unique tokens); none do"  # both forms' refusal


class TwoStageLaw(LossLaw):
    """A Chinchilla base on the single-epoch runs and repeat parameters on the others.

    A subclass sets `min_repeated` (and the words for it, `repeat_params`) and supplies
    `_second_stage` (the repeat parameters from a start, or from its own starts when start is
    None), `_start` (this fit's repeat parameters as a start for a quick refit) and any extra
    state.

    Attributes (after fit): params_, stderr_, intervals_, bootstrap_params_, base_ (the fitted
    ChinchillaLaw of the single-epoch runs), n_single_, n_repeated_, objective_ (Huber sum
    over all runs), n_points_, data_range_.
    """

    columns: ClassVar[tuple[str, ...]] = ("N", "D", "U")
    min_repeated: ClassVar[int]
    repeat_params: ClassVar[str]

    def fit(self, N: Any, D: Any = None, U: Any = None, loss: Any = None) -> Self:
        """Fit on runs with N parameters, D tokens, U unique tokens (NaN: unlimited), loss,
        or on a runs table alone (`fit(runs)`: columns N, D, U, loss)."""
        runs = runs_only(N, D, U, loss)
        if runs is not None:
            return self.fit_frame(runs)
        N, D, U, loss, repeated = self._checked(N, D, U, loss)
        base = ChinchillaLaw(**self.get_params())
        try:
            base.fit(N[~repeated], D[~repeated], loss[~repeated])
        except FitError as exc:
            raise FitError(f"the base law on the single-epoch runs: {exc}") from exc
        return self._second_stage(base, N, D, U, loss, repeated, start=None)

    def _fit_columns(self, cols: list[np.ndarray], loss: np.ndarray) -> Self:
        return self.fit(cols[0], cols[1], cols[2], loss)

    def frame_columns(self, runs: pd.DataFrame) -> list[np.ndarray]:
        """N, D and U (NaN where the table has no unique-token count)."""
        if "U" not in runs.columns:
            runs = runs.assign(U=np.nan)
        return super().frame_columns(runs)

    def quick_refit(self, runs: pd.DataFrame, force: bool | None = None) -> Self:
        """A new fit on `runs`, no bootstrap: the base law's quick refit, then the repeat
        parameters from this fit's."""
        self._check_fitted()
        new = self._unfitted(force)
        N, D, U = new.frame_columns(runs)
        N, D, U, loss, repeated = new._checked(N, D, U, runs["loss"])
        single = pd.DataFrame({"N": N[~repeated], "D": D[~repeated], "loss": loss[~repeated]})
        base = self.base_.quick_refit(single, force)
        return new._second_stage(base, N, D, U, loss, repeated, start=self._start())

    def _checked(
        self, N: Any, D: Any, U: Any, loss: Any
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Validated N, D, U, loss and the mask of the runs that repeat data (D > U)."""
        N = validate.positive(N, "N")
        D = validate.positive(D, "D")
        loss = validate.positive(loss, "loss")
        U = validate.as_float_array(U, "U")
        validate.same_length(N=N, D=D, U=U, loss=loss)
        if (U <= 0).any():
            raise FitError("unique tokens U must be positive (NaN for unlimited)")
        repeated = unlimited_as_inf(U) < D
        if not repeated.any():
            raise FitError(NO_REPEATS)
        validate.at_least(int(repeated.sum()), self.min_repeated,
                          f"runs that repeat data to fit {self.repeat_params}")  # fmt: skip
        return N, D, U, loss, repeated

    def _second_stage(
        self,
        base: ChinchillaLaw,
        N: np.ndarray,
        D: np.ndarray,
        U: np.ndarray,
        loss: np.ndarray,
        repeated: np.ndarray,
        start: np.ndarray | None,
    ) -> Self:
        """The repeat parameters on the repeated runs with the base law fixed; sets the fit
        (by `_set_stages`)."""
        raise NotImplementedError

    def _start(self) -> np.ndarray:
        """This fit's repeat parameters in the second stage's coordinates."""
        raise NotImplementedError

    def _paired_resamples(
        self, base: ChinchillaLaw, n_repeated: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """The base law's bootstrap draws and, for each, a resample of the repeated runs
        (counts, one row per draw)."""
        base_draws = base._draws()
        rng = as_generator(self.random_state).spawn(1)[0]
        counts = resample_weights(n_repeated, base_draws.shape[0], rng).astype(float)
        return base_draws, counts

    def _set_stages(
        self,
        base: ChinchillaLaw,
        N: np.ndarray,
        D: np.ndarray,
        repeated: np.ndarray,
        row: np.ndarray,
        objective: float,
        draws: np.ndarray | None,
    ) -> None:
        """The fit of both stages: params row (base and repeat parameters), the second
        stage's objective, the bootstrap draws (None without), their intervals."""
        level = validate.level(self.level)
        self.base_ = base
        self.n_single_, self.n_repeated_ = int((~repeated).sum()), int(repeated.sum())
        self.params_ = dict(zip(self.param_names, map(float, row), strict=True))
        self.objective_ = float(base.objective_ + objective)
        self.n_points_ = int(N.size)
        self.level_ = level
        self._set_data_range(N=N, D=D)
        self.bootstrap_params_ = draws
        self.stderr_, self.intervals_ = {}, {}
        if draws is not None:
            self.stderr_, self.intervals_ = param_uncertainty(draws, self.param_names, level)

    # -- the law ---------------------------------------------------------------------------
    def allocation_of(
        self, params: np.ndarray, C: np.ndarray, flops_per_token: float = 6.0
    ) -> tuple[np.ndarray, np.ndarray]:
        """The base law's allocation: the frontier with unlimited unique data."""
        return compute_optimal_allocation(np.asarray(params)[..., :5], C, flops_per_token)

    def frontier_of(self, params: np.ndarray, C: np.ndarray) -> np.ndarray:
        n_opt, d_opt = self.allocation_of(params, C)
        return _loss(np.asarray(params)[..., :5], n_opt, d_opt)

    # -- serialisation ---------------------------------------------------------------------
    def _state(self) -> dict[str, Any]:
        return {
            "param_order": list(self.param_names),
            "bootstrap_params": self.bootstrap_params_,
            "base": self.base_.to_dict(),
            "n_single": self.n_single_,
            "n_repeated": self.n_repeated_,
            "data_range": {k: list(v) for k, v in self.data_range_.items()},
        }

    def _load_state(self, state: dict[str, Any]) -> None:
        order = np.argsort([self.param_names.index(n) for n in state["param_order"]])
        draws = state.get("bootstrap_params")
        self.bootstrap_params_ = None
        if draws is not None:
            self.bootstrap_params_ = np.array([[_num(v) for v in row] for row in draws])[:, order]
        base = Fit.from_dict(state["base"])
        assert isinstance(base, ChinchillaLaw)
        self.base_ = base
        self.n_single_, self.n_repeated_ = int(state["n_single"]), int(state["n_repeated"])
        self.data_range_ = {k: (float(v[0]), float(v[1])) for k, v in state["data_range"].items()}
