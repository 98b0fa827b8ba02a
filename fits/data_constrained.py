"""Muennighoff et al. (2023), Scaling Data-Constrained Language Models: repeated data is worth less.

A run that sees U unique tokens for D > U tokens repeats its data R_D = D/U - 1 times. Its
effective data D' = U + U R_D* (1 - exp(-R_D / R_D*)) grows ever slower with repeats (at most
U (1 + R_D*)), and parameters beyond the compute-optimal size for U, U_N = min(N, N_opt(U)),
are discounted the same way: N' = U_N + U_N R_N* (1 - exp(-R_N / R_N*)), R_N = N/U_N - 1.
The loss is the Chinchilla form in N' and D': E + A / N'^alpha + B / D'^beta.

A run that does not repeat (D <= U) has N' = N and D' = D: the law is Chinchilla's exactly
there (the base law is fitted on those runs, over-parameterised ones included).

Fitted in the paper's two stages: the Chinchilla law on the single-epoch runs (fits.chinchilla,
with its bootstrap), then R_D* and R_N* on the repeated runs with the base law held fixed
(Huber on log loss, batched L-BFGS over log R*). R_N* is fitted only when some repeated run
is larger than N_opt(U); otherwise it is held at infinity (no discount) and the summary says
so. Bootstrap: each base draw is paired with a resample of the repeated runs, refitted from
the full-data optimum. Column U is the run's unique tokens; NaN means unlimited.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Self

import numpy as np

from fits.chinchilla import ChinchillaLaw, _loss
from fits.gridfit import GRID_TOL
from fits.lbfgs import minimize_batched
from fits.objective_blocks import mask_nonfinite
from fits.two_stage import TwoStageLaw, polished_best, unlimited_as_inf

PARAM_NAMES = ("E", "A", "B", "alpha", "beta", "R_D_star", "R_N_star")
_LOG_R_STARTS = np.log([1.0, 3.0, 10.0, 30.0, 100.0])


def n_opt_for_tokens(base: np.ndarray, U: np.ndarray) -> np.ndarray:
    """Compute-optimal N for D_opt = U under Chinchilla params rows (k, 5): G^(1+b/a) U^(b/a)
    with b/a = beta/alpha (from D_opt = X^b / G, N_opt = G X^a at X = C/6)."""
    p = np.asarray(base, dtype=float)
    _, A, B, alpha, beta = (p[..., i, None] for i in range(5))
    with np.errstate(all="ignore"):
        G = (alpha * A / (beta * B)) ** (1.0 / (alpha + beta))
        return G ** (1.0 + beta / alpha) * np.asarray(U, dtype=float) ** (beta / alpha)


def _discount(unique: np.ndarray, repeats: np.ndarray, r_star: np.ndarray) -> np.ndarray:
    """U + U R* (1 - exp(-R / R*)); R* = inf (no discount) gives U (1 + R)."""
    with np.errstate(all="ignore"):
        decayed = np.where(np.isinf(r_star), repeats, -r_star * np.expm1(-repeats / r_star))
        return unique * (1.0 + decayed)


def _effective(
    params: np.ndarray, N: np.ndarray, D: np.ndarray, U: np.ndarray
) -> tuple[np.ndarray, ...]:
    """N', D', and what they are made of (U_N, R_N, R_D, repeated), broadcast to (k, n)."""
    p = np.asarray(params, dtype=float)
    r_d, r_n = p[..., 5, None], p[..., 6, None]
    N, D = np.asarray(N, dtype=float), np.asarray(D, dtype=float)
    U = unlimited_as_inf(U)
    repeated = D > U
    with np.errstate(all="ignore"):
        u_n = np.where(repeated, np.minimum(N, n_opt_for_tokens(p[..., :5], U)), N)
        rep_n = np.where(repeated, np.maximum(0.0, N / u_n - 1.0), 0.0)
        rep_d = np.where(repeated, D / U - 1.0, 0.0)
    n_eff = np.where(repeated, _discount(u_n, rep_n, r_n), N)
    d_eff = np.where(repeated, _discount(np.where(repeated, U, 1.0), rep_d, r_d), D)
    return n_eff, d_eff, u_n, rep_n, rep_d, repeated


def data_constrained_loss(
    params: np.ndarray, N: np.ndarray, D: np.ndarray, U: np.ndarray
) -> np.ndarray:
    """E + A / N'^alpha + B / D'^beta for params rows (k, 7) at N, D and unique tokens U."""
    n_eff, d_eff, *_ = _effective(params, N, D, U)
    return _loss(np.asarray(params, dtype=float)[..., :5], n_eff, d_eff)


class _RepeatObjective:
    """Huber on log loss of the repeated runs over phi = log R_D* [, log R_N*], base fixed.

    base: (R, 5) Chinchilla rows and weights (R, n) or None; start i uses row `row_of[i]`.
    Gradient: dL/d log R* = -exponent * coef * X'^(-exponent-1) * dX'/d log R*, with
    dX'/d log R* = U_X (R* (1 - e^(-R/R*)) - R e^(-R/R*)).
    """

    def __init__(
        self,
        base: np.ndarray,
        N: np.ndarray,
        D: np.ndarray,
        U: np.ndarray,
        log_loss: np.ndarray,
        delta: float,
        weights: np.ndarray | None,
        row_of: np.ndarray,
        fit_n: bool,
    ) -> None:
        self.base, self.N, self.D, self.U = base, N, D, U
        self.log_loss, self.delta, self.weights = log_loss, delta, weights
        self.row_of, self.fit_n = row_of, fit_n

    def __call__(self, phi: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        base = self.base[self.row_of[rows]]
        with np.errstate(all="ignore"):  # a step to a huge log R* is inf: no decay, or bad
            r_d = np.exp(phi[:, 0])
            r_n = np.exp(phi[:, 1]) if self.fit_n else np.full(len(phi), np.inf)
            params = np.column_stack([base, r_d, r_n])
            n_eff, d_eff, u_n, rep_n, rep_d, _ = _effective(params, self.N, self.D, self.U)
            E, A, B, alpha, beta = (base[:, i, None] for i in range(5))
            loss = E + A * n_eff**-alpha + B * d_eff**-beta
            r = np.log(loss) - self.log_loss
            psi = np.clip(r, -self.delta, self.delta)
            w = 1.0 if self.weights is None else self.weights[self.row_of[rows]]
            f = np.sum(w * psi * (r - 0.5 * psi), axis=1)
            dlog = w * psi / loss
            grads = [self._grad(dlog, B, beta, d_eff, self.U, rep_d, r_d)]
            if self.fit_n:
                grads.append(self._grad(dlog, A, alpha, n_eff, u_n, rep_n, r_n))
            g = np.column_stack(grads)
        return mask_nonfinite(f, g)

    @staticmethod
    def _grad(
        dlog: np.ndarray,
        coef: np.ndarray,
        exponent: np.ndarray,
        x_eff: np.ndarray,
        unique: np.ndarray,
        repeats: np.ndarray,
        r_star: np.ndarray,
    ) -> np.ndarray:
        r_star = r_star[:, None]
        e = np.exp(-repeats / r_star)
        dx = unique * (r_star * (1.0 - e) - repeats * e)
        return np.sum(dlog * -exponent * coef * x_eff ** (-exponent - 1.0) * dx, axis=1)


class DataConstrainedLaw(TwoStageLaw):
    """Chinchilla in effective parameters and data under repetition (see the module docstring).

    Configuration: see `LossLaw`; the base law uses all of it.

    Attributes (after fit)
    ----------------------
    params_ {E, A, B, alpha, beta, R_D_star, R_N_star} (R_N_star inf when not fitted),
    bootstrap_params_ ((n_bootstrap, 7) or None), fit_r_n_, and those of `TwoStageLaw`.
    """

    law = "data-constrained"
    formula = "L = E + A / N'^alpha + B / D'^beta, N' and D' discounted for repeated data"
    param_names: ClassVar[tuple[str, ...]] = PARAM_NAMES
    exponents: ClassVar[dict[str, str]] = {"alpha": "N", "beta": "D"}
    bounds: ClassVar[dict[str, tuple[float, float]]] = {
        "R_D_star": (1e-2, 1e4),
        "R_N_star": (1e-2, 1e4),
    }
    min_repeated = 3
    repeat_params = "R_D* and R_N*"

    def _start(self) -> np.ndarray:
        return np.log([self.params_["R_D_star"], self.params_["R_N_star"]])

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
        """R_D* (and R_N*) on the repeated runs with the base law fixed; sets the fit."""
        Nr, Dr, Ur, log_loss = N[repeated], D[repeated], U[repeated], np.log(loss[repeated])
        base_row = base._params_row()[None, :]
        fit_n = bool((Nr > n_opt_for_tokens(base_row, Ur)[0]).any())
        dims = 2 if fit_n else 1
        if start is None:
            starts = np.array(np.meshgrid(*[_LOG_R_STARTS] * dims)).reshape(dims, -1).T
        else:
            starts = np.where(np.isfinite(start), start, np.log(10.0))[None, :dims]
        objective = _RepeatObjective(
            base_row, Nr, Dr, Ur, log_loss, self.delta, None, np.zeros(len(starts), int), fit_n
        )
        phi, f = polished_best(objective, starts)
        self.fit_r_n_ = fit_n
        with np.errstate(over="ignore"):  # a runaway R* is inf: repeats worth fresh tokens
            r_star = np.exp(phi) if fit_n else np.array([np.exp(phi[0]), math.inf])
        draws = None
        if self.n_bootstrap > 0 and base.bootstrap_params_ is not None:
            draws = self._bootstrap(base, Nr, Dr, Ur, log_loss, phi)
        self._set_stages(base, N, D, repeated, np.r_[base_row[0], r_star], f, draws)
        self._refuse_unidentified()
        return self

    def _bootstrap(
        self,
        base: ChinchillaLaw,
        Nr: np.ndarray,
        Dr: np.ndarray,
        Ur: np.ndarray,
        log_loss: np.ndarray,
        phi: np.ndarray,
    ) -> np.ndarray:
        """Each base draw with a resample of the repeated runs, refitted from the optimum."""
        base_draws, counts = self._paired_resamples(base, Nr.size)
        n_draws = base_draws.shape[0]
        objective = _RepeatObjective(
            base_draws, Nr, Dr, Ur, log_loss, self.delta, counts, np.arange(n_draws),
            self.fit_r_n_,
        )  # fmt: skip
        res = minimize_batched(objective, np.tile(phi, (n_draws, 1)), **GRID_TOL)
        r_star = np.exp(res.x)
        if not self.fit_r_n_:
            r_star = np.column_stack([r_star[:, 0], np.full(n_draws, np.inf)])
        r_star[~np.isfinite(res.fun)] = np.nan
        return np.column_stack([base_draws, r_star])

    # -- the law ---------------------------------------------------------------------------
    def loss_of(self, params: np.ndarray, *cols: np.ndarray) -> np.ndarray:
        return data_constrained_loss(params, *cols)

    def _held(self, name: str) -> bool:
        return name == "R_N_star" and not self.fit_r_n_

    # -- reporting and serialisation -------------------------------------------------------
    def _summary_header(self) -> list[str]:
        lines = super()._summary_header()
        lines.append(
            f"two stages: Chinchilla on {self.n_single_} single-epoch runs, then R_D*"
            f"{', R_N*' if self.fit_r_n_ else ''} on {self.n_repeated_} runs that repeat data"
        )
        if not self.fit_r_n_:
            lines.append("R_N* held at infinity: no repeated run is larger than N_opt(U)")
        return lines

    def _state(self) -> dict[str, Any]:
        return {**super()._state(), "fit_r_n": self.fit_r_n_}

    def _load_state(self, state: dict[str, Any]) -> None:
        super()._load_state(state)
        self.fit_r_n_ = bool(state["fit_r_n"])
        if not self.fit_r_n_:
            self.params_["R_N_star"] = math.inf
            if self.bootstrap_params_ is not None:
                self.bootstrap_params_[:, PARAM_NAMES.index("R_N_star")] = math.inf
