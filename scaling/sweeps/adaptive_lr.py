"""Adaptive design for an LR question: which (N, D) groups to scan next so that the interval on
the optimal LR at the target narrows most per unit cost.

The LR law is Step Law's form, log lr* = log a + alpha log N + beta log D (fits.hparams), fitted
by OLS on the optima of the groups whose scan bracketed one (over N alone while every group has
one D, and so on). Its answer at the target is the prediction interval of one new group's
optimum, t_{df} * s * sqrt(1 + x0' (X'X)^-1 x0) in log LR (LogLinearLaw.predict_interval with
kind="prediction"): groups scatter about the law by more than the law's mean is uncertain, and
the backtests of that interval held 11 of 12 Step Law groups. Its relative width is
2 sinh(half-width), as for the loss.

A candidate group at x = (1, log N, log D) updates (X'X)^-1 by Sherman-Morrison and adds one
degree of freedom; s^2 is held at the current fit's (the criterion cannot know the new group's
residual). A group far out along N or D shrinks x0' (X'X)^-1 x0 most, one inside the groups'
cloud barely at all, and the t quantile falls with every group: so the greedy round
(scaling.sweeps.rounds.greedy_round) spends on the groups that pin the exponents, per unit cost.
What s itself will be is not modelled: with few groups the interval is set by s and t, and
more groups only measure them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from fits import FitError, LogLinearLaw
from fits.hparams import lr_law, lr_variables
from fits.quantiles import t_quantile
from scaling.errors import ScalingError
from scaling.sweeps.rounds import RoundPlan, Target, greedy_round


@dataclass(frozen=True)
class LRLawState:
    """The LR law fitted on the bracketed groups' optima."""

    model: LogLinearLaw
    groups: int

    @property
    def variables(self) -> tuple[str, ...]:
        return tuple(self.model.variables)

    def describe(self) -> str:
        model = self.model
        terms = " ".join(
            f"{v}^{sign * model.params_[e]:.3f}"
            for v, e, sign in zip(model.variables, model.exponents, model.signs, strict=True)
        )
        scatter = math.sqrt(self.model.objective_ / self.model.df_resid_)
        return (
            f"LR law lr* = {self.model.params_[self.model.coef]:.3g} {terms} on {self.groups} "
            f"bracketed groups (scatter {scatter:.3f} in log LR)"
        )

    def known_within(self, N: np.ndarray, D: np.ndarray, level: float = 0.90) -> np.ndarray:
        """The factor within which the law promises each (N, D)'s optimal LR: hi / lr*."""
        frame = pd.DataFrame({"N": N, "D": D})
        est = self.model.predict_interval(frame, level, kind="prediction")
        return np.asarray(est.hi) / np.asarray(est.estimate)


def fit_lr_law(groups: pd.DataFrame, level: float = 0.90) -> LRLawState:
    """The LR law on groups (columns N, D, lr_opt) over the variables that vary among them."""
    varying = lr_variables(groups)
    if not varying or len(groups) < len(varying) + 2:
        raise ScalingError(
            f"the LR law needs bracketed optima at 2+ sizes or token counts, and "
            f"{len(varying) + 2}+ groups; have {len(groups)}"
        )
    model = lr_law(groups, "auto", level)
    try:
        model.fit(groups[list(varying)], groups.lr_opt.to_numpy(float))
    except FitError as exc:
        raise ScalingError(f"cannot fit the LR law: {exc}") from None
    return LRLawState(model, len(groups))


class LRDesign:
    """The groups' (X'X)^-1 and the target's prediction-interval width given them."""

    def __init__(self, law: LRLawState, groups: pd.DataFrame, target: Target, level: float):
        if not target.on_lr_law:
            raise ScalingError(f"the LR design answers an lr target, not {target.ask!r}")
        self.law, self.level = law, level
        model = law.model
        self.s2 = model.objective_ / model.df_resid_
        self.df = model.df_resid_
        rows = _rows(law, groups.N.to_numpy(), groups.D.to_numpy())
        self.inverse = np.linalg.inv(rows.T @ rows)
        self.x0 = _rows(law, np.array(target.N), np.array(target.D))[0]

    def estimate(self) -> float:
        return float(np.exp(self.x0 @ self.law.model.beta_))

    def _width(self, q: np.ndarray | float, df: int) -> np.ndarray:
        t = t_quantile(0.5 + self.level / 2, df)
        return 2.0 * np.sinh(t * np.sqrt(self.s2 * (1.0 + np.asarray(q))))

    def width(self) -> float:
        return float(self._width(self.x0 @ self.inverse @ self.x0, self.df))

    def widths_with(self, N: np.ndarray, D: np.ndarray) -> np.ndarray:
        """Width after adding each candidate group alone (Sherman-Morrison, one more df)."""
        x = _rows(self.law, N, D)  # (M, p)
        u = x @ self.inverse  # (M, p)
        q = self.x0 @ self.inverse @ self.x0 - (u @ self.x0) ** 2 / (
            1.0 + np.einsum("mi,mi->m", u, x)
        )
        return self._width(q, self.df + 1)

    def add(self, N: float, D: float) -> None:
        x = _rows(self.law, np.array([N]), np.array([D]))[0]
        u = self.inverse @ x
        self.inverse = self.inverse - np.outer(u, u) / (1.0 + x @ u)
        self.df += 1


def plan_lr_round(
    groups: pd.DataFrame,
    candidates: pd.DataFrame,
    target: Target,
    law: LRLawState,
    round_size: int = 4,
    budget: float = math.inf,
    level: float = 0.90,
) -> RoundPlan:
    """The next groups to scan (candidates: N, D, cost of the whole scan), greedy on the
    drop of the target LR's interval width per unit cost."""
    design = LRDesign(law, groups, target, level)
    width_now = design.width()
    picks = greedy_round(design, candidates, round_size, budget)
    return RoundPlan(picks, width_now, design.estimate(), law)


def _rows(law: LRLawState, N: np.ndarray, D: np.ndarray) -> np.ndarray:
    """Design rows (1, log of each variable of the law): (M, p)."""
    values = {"N": np.asarray(N, dtype=float), "D": np.asarray(D, dtype=float)}
    cols = [np.log(values[v]) for v in law.variables]
    return np.column_stack([np.ones(len(cols[0])), *cols])
