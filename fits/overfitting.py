"""Lovelace et al. (2026), Prescriptive Scaling Laws for Data Constrained Training: repeats overfit.

A run that sees U unique tokens for D > U tokens repeats them R = D/U - 1 times. Chinchilla's
form counts every token as fresh; this law adds the excess loss of repetition, a penalty that
grows with the repeats and with the model's size against its unique data:

    L = E + A / N^alpha + B / D^beta + P R^delta (N / U)^kappa

(arXiv 2605.01640, as quoted in Weng's survey "Scaling Laws, Carefully", 2026). Unlike
Muennighoff et al.'s discount (fits.data_constrained), under which repeated tokens and excess
parameters are worth less but never harmful, the penalty lets the loss rise with more epochs
or a larger model on the same unique tokens, as heavily repeated runs do.

Fitted in the two stages `data-constrained` uses (fits.two_stage): the Chinchilla law on the
runs that do not repeat, then (log P, delta, kappa) on the runs that do, the base held fixed
(Huber on log loss, batched L-BFGS from `starting_phi`'s 18 starts), the best polished. Where
D <= U, or U is unknown (NaN), the law is the base Chinchilla law; its compute-optimal
allocation is the base's (unlimited unique data).
"""

from __future__ import annotations

import itertools
import math
from typing import Any, ClassVar, Self

import numpy as np

from fits import validate
from fits.chinchilla import ChinchillaLaw, _loss
from fits.errors import FitError
from fits.gridfit import GRID_TOL
from fits.laws import TERM_SHARE
from fits.lbfgs import minimize_batched
from fits.objective_blocks import mask_nonfinite
from fits.two_stage import TwoStageLaw, polished_best, unlimited_as_inf

PARAM_NAMES = ("E", "A", "B", "alpha", "beta", "P", "delta", "kappa")
LOG_MAX_FLOAT = math.log(np.finfo(float).max)  # 709.78: e^x overflows past it
# Starts: delta and kappa on a grid; P such that the penalty at the repeated runs' median
# repeats and capacity ratio is each share of their median loss.
DELTAS = (0.5, 1.0, 2.0)
KAPPAS = (0.0, 0.5, 1.0)
SHARES = (0.01, 0.1)


def repeat_features(
    N: np.ndarray, D: np.ndarray, U: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(repeated, log R, log N/U): which runs repeat data, their log repeats and log capacity
    ratio (0 where they do not repeat: the penalty is then left out, not evaluated)."""
    N, D = np.asarray(N, dtype=float), np.asarray(D, dtype=float)
    U = unlimited_as_inf(U)
    repeated = D > U
    with np.errstate(all="ignore"):
        log_r = np.where(repeated, np.log(np.where(repeated, D / U - 1.0, 1.0)), 0.0)
        log_ratio = np.where(repeated, np.log(N / np.where(repeated, U, 1.0)), 0.0)
    return repeated, log_r, log_ratio


def penalty(params: np.ndarray, N: np.ndarray, D: np.ndarray, U: np.ndarray) -> np.ndarray:
    """P R^delta (N/U)^kappa for params rows (k, 8) at N, D, U; 0 where D <= U."""
    p = np.asarray(params, dtype=float)
    P, delta, kappa = (p[..., i, None] for i in (5, 6, 7))
    repeated, log_r, log_ratio = repeat_features(N, D, U)
    with np.errstate(all="ignore"):
        return np.where(repeated, P * np.exp(delta * log_r + kappa * log_ratio), 0.0)


def overfitting_loss(params: np.ndarray, N: np.ndarray, D: np.ndarray, U: np.ndarray) -> np.ndarray:
    """E + A / N^alpha + B / D^beta + P R^delta (N/U)^kappa for params rows (k, 8)."""
    p = np.asarray(params, dtype=float)
    return _loss(p[..., :5], np.asarray(N, dtype=float), np.asarray(D, dtype=float)) + penalty(
        p, N, D, U
    )


class _PenaltyObjective:
    """Huber on log loss of the repeated runs over phi = (log P, delta, kappa), base fixed.

    base_loss: (R, n) the base law's loss at the repeated runs for each base row; start i uses
    row `row_of[i]` (and its weights, (R, n), when given). With q = exp(phi . (1, log R,
    log N/U)) the penalty and L = base + q: dF/dphi = sum w psi q / L (1, log R, log N/U).
    """

    def __init__(
        self,
        base_loss: np.ndarray,
        log_r: np.ndarray,
        log_ratio: np.ndarray,
        log_loss: np.ndarray,
        delta: float,
        weights: np.ndarray | None,
        row_of: np.ndarray,
    ) -> None:
        self.base_loss, self.log_loss, self.delta = base_loss, log_loss, delta
        self.features = np.stack([np.ones_like(log_r), log_r, log_ratio])  # (3, n)
        self.weights, self.row_of = weights, row_of

    def __call__(self, phi: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        base = self.base_loss[self.row_of[rows]]
        with np.errstate(all="ignore"):
            q = np.exp(phi @ self.features)
            loss = base + q
            r = np.log(loss) - self.log_loss
            psi = np.clip(r, -self.delta, self.delta)
            w = 1.0 if self.weights is None else self.weights[self.row_of[rows]]
            f = np.sum(w * psi * (r - 0.5 * psi), axis=1)
            g = (w * psi * q / loss) @ self.features.T
        return mask_nonfinite(f, g)


def starting_phi(log_r: np.ndarray, log_ratio: np.ndarray, loss: np.ndarray) -> np.ndarray:
    """The starts of the penalty fit, (18, 3) rows of (log P, delta, kappa)."""
    mid_r, mid_ratio, mid_loss = np.median(log_r), np.median(log_ratio), np.median(loss)
    return np.array([
        (math.log(share * mid_loss) - delta * mid_r - kappa * mid_ratio, delta, kappa)
        for delta, kappa, share in itertools.product(DELTAS, KAPPAS, SHARES)
    ])  # fmt: skip


class OverfittingLaw(TwoStageLaw):
    """Chinchilla in total tokens plus a penalty for repeated data (see the module docstring).

    Configuration: see `LossLaw`; the base law uses all of it.

    Attributes (after fit)
    ----------------------
    params_ {E, A, B, alpha, beta, P, delta, kappa}, bootstrap_params_ ((n_bootstrap, 8) or
    None), penalty_share_ (the penalty's largest share of the loss at a repeated run), and
    those of `TwoStageLaw`.
    """

    law = "overfitting"
    formula = "L = E + A / N^alpha + B / D^beta + P R^delta (N/U)^kappa, R = D/U - 1 repeats"
    param_names: ClassVar[tuple[str, ...]] = PARAM_NAMES
    exponents: ClassVar[dict[str, str]] = {"alpha": "N", "beta": "D"}
    min_repeated = 4  # three penalty parameters and one run more
    repeat_params = "P, delta and kappa"

    def _start(self) -> np.ndarray:
        p = self.params_
        return np.array([math.log(p["P"]), p["delta"], p["kappa"]])

    def _checked(
        self, N: Any, D: Any, U: Any, loss: Any
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The shared checks; two repeat counts and two capacity ratios N/U at least among
        the repeated runs, or delta or kappa is not identified."""
        N, D, U, loss, repeated = super()._checked(N, D, U, loss)
        _, log_r, log_ratio = repeat_features(N[repeated], D[repeated], U[repeated])
        for name, values in (("repeat counts", log_r), ("capacity ratios N/U", log_ratio)):
            validate.distinct(values, 2, f"{name} among the runs that repeat data", name)
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
        """(log P, delta, kappa) on the repeated runs with the base law fixed; sets the fit."""
        Nr, Dr, Ur, lossr = N[repeated], D[repeated], U[repeated], loss[repeated]
        _, log_r, log_ratio = repeat_features(Nr, Dr, Ur)
        base_row = base._params_row()[None, :]
        starts = starting_phi(log_r, log_ratio, lossr) if start is None else start[None, :]
        objective = _PenaltyObjective(_loss(base_row, Nr, Dr), log_r, log_ratio, np.log(lossr),
                                      self.delta, None, np.zeros(len(starts), int))  # fmt: skip
        phi, f = polished_best(objective, starts)
        if not np.isfinite(f):
            raise FitError("no start of the penalty fit converged: the runs do not determine it")
        if not phi[0] < LOG_MAX_FLOAT:  # P = e^phi[0] past any float: a runaway, not a fit
            raise FitError(f"the penalty's scale ran away (log P = {phi[0]:.3g}): the runs that "
                           "repeat data do not determine it")  # fmt: skip
        row = np.r_[base_row[0], math.exp(phi[0]), phi[1], phi[2]]
        extra = penalty(row[None, :], Nr, Dr, Ur)[0]
        self.penalty_share_ = float(np.nanmax(extra / (_loss(base_row, Nr, Dr)[0] + extra)))
        draws = None
        if self.n_bootstrap > 0 and base.bootstrap_params_ is not None:
            draws = self._bootstrap(base, Nr, Dr, lossr, log_r, log_ratio, phi)
        self._set_stages(base, N, D, repeated, row, f, draws)
        self._refuse_unidentified()
        return self

    def _bootstrap(
        self,
        base: ChinchillaLaw,
        Nr: np.ndarray,
        Dr: np.ndarray,
        lossr: np.ndarray,
        log_r: np.ndarray,
        log_ratio: np.ndarray,
        phi: np.ndarray,
    ) -> np.ndarray:
        """Each base draw with a resample of the repeated runs, refitted from the optimum."""
        base_draws, counts = self._paired_resamples(base, Nr.size)
        n_draws = base_draws.shape[0]
        base_loss = _loss(base_draws, Nr, Dr)
        objective = _PenaltyObjective(base_loss, log_r, log_ratio, np.log(lossr), self.delta,
                                      counts, np.arange(n_draws))  # fmt: skip
        res = minimize_batched(objective, np.tile(phi, (n_draws, 1)), **GRID_TOL)
        found = np.column_stack([np.exp(res.x[:, 0]), res.x[:, 1:]])
        found[~np.isfinite(res.fun)] = np.nan
        return np.column_stack([base_draws, found])

    # -- the law ---------------------------------------------------------------------------
    def loss_of(self, params: np.ndarray, *cols: np.ndarray) -> np.ndarray:
        return overfitting_loss(params, *cols)

    def identification_problems(self) -> list[str]:
        """The shared checks; a delta that is not positive (the penalty would not vanish
        without repeats); a penalty under TERM_SHARE of the loss at every repeated run (the
        runs show no overfitting, so P, delta and kappa are not identified)."""
        problems = super().identification_problems()
        if not self.params_["delta"] > 0:
            problems.append(
                f"delta = {self.params_['delta']:.3g} is not positive (the penalty does not "
                "vanish without repeats)"
            )
        if not self.penalty_share_ >= TERM_SHARE:
            problems.append(
                f"the penalty is under {TERM_SHARE:.1%} of the loss at every run that repeats "
                "data: the runs show no overfitting"
            )
        return problems

    # -- reporting and serialisation -------------------------------------------------------
    def _summary_header(self) -> list[str]:
        lines = super()._summary_header()
        lines.append(
            f"two stages: Chinchilla on {self.n_single_} single-epoch runs, then P, delta, "
            f"kappa on {self.n_repeated_} runs that repeat data (the penalty up to "
            f"{self.penalty_share_:.1%} of a run's loss)"
        )
        return lines

    def _state(self) -> dict[str, Any]:
        return {**super()._state(), "penalty_share": self.penalty_share_}

    def _load_state(self, state: dict[str, Any]) -> None:
        super()._load_state(state)
        self.penalty_share_ = float(state["penalty_share"])
