"""Chinchilla law L(N, D) = E + A / N^alpha + B / D^beta, fitted as Hoffmann et al. approach 3.

The published procedure (Hoffmann et al. 2022, as reproduced by Besiroglu et al. 2024):
with A = e^a, B = e^b, E = e^e, minimise over theta = (a, b, e, alpha, beta)

    sum_i  Huber_delta( LSE(a - alpha log N_i, b - beta log D_i, e) - log L_i ),  delta = 1e-3,

by L-BFGS from every point of a 4,500-point grid (alpha, beta in 0..2 step 0.5; e in -1..1
step 0.5; a, b in 0..25 step 5), and keep the best. Here all starts run together in the
batched L-BFGS of fits.lbfgs with the analytic gradient, stopping on the L-BFGS-B default
criteria; the best end point is then polished with tight tolerances.

Bootstrap (intervals on parameters and on anything derived from them): each resample is a
vector of integer weights on the points. Refitting every resample from all 4,500 grid points
would cost 1,000 full fits, so each resample instead starts from the full-data optimum and the
next best distinct local optima found on the full grid (`n_local_optima` starts in all). A
resample perturbs the objective only a little, so its optimum lies in one of those basins;
the test suite checks this against full-grid refits of individual resamples.
"""

from __future__ import annotations

import itertools
import math
from typing import Any, Self

import numpy as np

from fits import validate
from fits.base import Fit, Prediction, _num
from fits.bootstrap import (
    RandomState,
    as_generator,
    finite_or_nan,
    map_chunks,
    percentile_interval,
    resample_weights,
    resolve_n_jobs,
)
from fits.errors import FitError
from fits.lbfgs import BatchResult, minimize_batched

PARAM_NAMES = ("E", "A", "B", "alpha", "beta")
DERIVED_NAMES = ("a", "b", "G")

# L-BFGS-B's defaults (factr = 1e7 -> ftol = 2.2e-9, pgtol = 1e-5): the published procedure.
_GRID_TOL = {"gtol": 1e-5, "ftol": 2.2e-9, "fscale": 1.0}
# Polishing the winner: stop only when float64 cannot make progress.
_POLISH_TOL = {"gtol": 1e-10, "ftol": 1e-15, "fscale": 0.0}
# Two end points closer than this (max-norm in theta) are the same local optimum.
_DISTINCT_TOL = 0.05
# Starts per objective evaluation block: keeps the (starts x points) temporaries in cache.
_CHUNK = 96


def starting_grid() -> np.ndarray:
    """The published 4,500-point starting grid as rows of theta = (a, b, e, alpha, beta)."""
    exps = np.arange(0.0, 2.0 + 1e-9, 0.5)
    es = np.arange(-1.0, 1.0 + 1e-9, 0.5)
    coefs = np.arange(0.0, 25.0 + 1e-9, 5.0)
    grid = itertools.product(exps, exps, es, coefs, coefs)
    return np.array([(a, b, e, alpha, beta) for alpha, beta, e, a, b in grid])


def theta_to_params(theta: np.ndarray) -> np.ndarray:
    """(a, b, e, alpha, beta) rows -> (E, A, B, alpha, beta) rows."""
    theta = np.asarray(theta, dtype=float)
    with np.errstate(over="ignore"):  # a degenerate bootstrap refit may overflow to inf
        scales = np.exp(theta[..., [2, 0, 1]])
    return np.concatenate([scales, theta[..., 3:5]], axis=-1)


def params_to_theta(params: np.ndarray) -> np.ndarray:
    """(E, A, B, alpha, beta) rows -> (a, b, e, alpha, beta) rows."""
    params = np.asarray(params, dtype=float)
    return np.stack(
        [
            np.log(params[..., 1]),
            np.log(params[..., 2]),
            np.log(params[..., 0]),
            params[..., 3],
            params[..., 4],
        ],
        axis=-1,
    )


def chinchilla_loss(params: np.ndarray, N: np.ndarray, D: np.ndarray) -> np.ndarray:
    """E + A/N^alpha + B/D^beta for params rows (..., 5) against N, D (broadcast)."""
    p = np.asarray(params, dtype=float)
    E, A, B, alpha, beta = (p[..., i, None] for i in range(5))
    N = np.asarray(N, dtype=float).reshape(-1)
    D = np.asarray(D, dtype=float).reshape(-1)
    with np.errstate(all="ignore"):  # degenerate draws give inf/nan, which intervals leave out
        return E + A / N**alpha + B / D**beta


def allocation_exponents(alpha: np.ndarray, beta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """N_opt grows as C^a and D_opt as C^b with a = beta/(alpha+beta), b = alpha/(alpha+beta)."""
    return beta / (alpha + beta), alpha / (alpha + beta)


def compute_optimal_allocation(
    params: np.ndarray, C: np.ndarray, flops_per_token: float = 6.0
) -> tuple[np.ndarray, np.ndarray]:
    """Closed-form minimiser of L(N, D) subject to C = k N D (k = flops_per_token).

    Setting dL/dN = 0 on D = C/(kN) gives N_opt = G (C/k)^a, D_opt = G^-1 (C/k)^b with
    G = (alpha A / (beta B))^(1/(alpha+beta)). Rows of params broadcast against C.
    """
    p = np.asarray(params, dtype=float)
    _, A, B, alpha, beta = (p[..., i, None] for i in range(5))
    a, b = allocation_exponents(alpha, beta)
    X = np.asarray(C, dtype=float).reshape(-1) / flops_per_token
    with np.errstate(all="ignore"):  # degenerate draws give inf/nan, which intervals leave out
        G = (alpha * A / (beta * B)) ** (1.0 / (alpha + beta))
        return G * X**a, X**b / G


class HuberLSEObjective:
    """Sum of Huber losses of LSE(a - alpha log N, b - beta log D, e) - log L, with gradient.

    Called with a batch of theta rows (k, 5) and their start indices. Optional point
    weights: one vector (n,) for every start, or a matrix (R, n) of which start i uses row
    weight_row[i] (the bootstrap: one row of resampling counts per resample).
    The log-sum-exp is evaluated as log(e^u1 + e^u2 + e^u3) without max-shifting: an overflow
    or underflow gives an infinite objective, which the line search simply rejects.
    """

    def __init__(
        self,
        log_n: np.ndarray,
        log_d: np.ndarray,
        log_loss: np.ndarray,
        delta: float,
        weights: np.ndarray | None = None,
        weight_row: np.ndarray | None = None,
    ) -> None:
        self.neg_log_n = -np.asarray(log_n, dtype=float)
        self.neg_log_d = -np.asarray(log_d, dtype=float)
        self.log_loss = np.asarray(log_loss, dtype=float)
        self.delta = float(delta)
        self.weights = None if weights is None else np.asarray(weights, dtype=float)
        self.weight_row = weight_row
        if self.weights is not None and self.weights.ndim == 2 and weight_row is None:
            raise ValueError("a weight matrix needs weight_row: which row each start uses")
        ones = np.ones_like(self.neg_log_n)
        self._design_n = np.stack([ones, self.neg_log_n], axis=1)
        self._design_d = np.stack([ones, self.neg_log_d], axis=1)

    def __call__(self, theta: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Objective (k,) and gradient (k, 5) for theta rows (k, 5)."""
        k = theta.shape[0]
        f = np.empty(k)
        g = np.empty((k, 5))
        with np.errstate(over="ignore", under="ignore", divide="ignore", invalid="ignore"):
            for s in range(0, k, _CHUNK):
                sl = slice(s, s + _CHUNK)
                f[sl], g[sl] = self._block(theta[sl], self._weights_for(rows[sl]))
        bad = ~(np.isfinite(f) & np.isfinite(g).all(axis=1))
        f[bad] = np.inf
        g[bad] = 0.0
        return f, g

    def _weights_for(self, rows: np.ndarray) -> np.ndarray | None:
        if self.weights is None or self.weights.ndim == 1:
            return self.weights
        assert self.weight_row is not None  # checked in __init__
        return self.weights[self.weight_row[rows]]

    def _block(self, th: np.ndarray, w: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        e1 = th[:, [0, 3]] @ self._design_n.T  # a - alpha log N
        np.exp(e1, out=e1)  # A / N^alpha
        e2 = th[:, [1, 4]] @ self._design_d.T
        np.exp(e2, out=e2)  # B / D^beta
        ee = np.exp(th[:, 2])  # E
        z = np.add(e1, e2)
        z += ee[:, None]  # predicted loss
        r = np.log(z)
        r -= self.log_loss
        psi = np.minimum(r, self.delta)  # Huber derivative: clip(r, -delta, delta)
        np.maximum(psi, -self.delta, out=psi)
        # sum_i w_i huber(r_i) = sum_i w_i (psi_i r_i - psi_i^2 / 2), psi = clip(r)
        if w is None:
            f = np.einsum("ij,ij->i", psi, r) - 0.5 * np.einsum("ij,ij->i", psi, psi)
        else:
            w = np.broadcast_to(w, psi.shape)
            f = np.einsum("ij,ij->i", w, psi * (r - 0.5 * psi))
            psi *= w
        psi /= z  # d objective / d (predicted loss), weighted
        e1 *= psi
        e2 *= psi
        grad = np.empty((th.shape[0], 5))
        grad[:, [0, 3]] = e1 @ self._design_n
        grad[:, [1, 4]] = e2 @ self._design_d
        grad[:, 2] = ee * psi.sum(axis=1)
        return f, grad


class _Coordinates:
    """Optimiser coordinates: theta with log N and log D standardised.

    u = a - alpha log N = (a - alpha m) - (alpha s) (log N - m) / s, so the optimiser works on
    phi = (a - alpha m_N, b - beta m_D, e, alpha s_N, beta s_D). It is the same problem and the
    same grid, only better conditioned (a and alpha no longer move together), which saves
    L-BFGS iterations.
    """

    def __init__(self, log_n: np.ndarray, log_d: np.ndarray) -> None:
        self.m_n, self.s_n = float(log_n.mean()), float(log_n.std()) or 1.0
        self.m_d, self.s_d = float(log_d.mean()), float(log_d.std()) or 1.0

    def z_n(self, log_n: np.ndarray) -> np.ndarray:
        return (log_n - self.m_n) / self.s_n

    def z_d(self, log_d: np.ndarray) -> np.ndarray:
        return (log_d - self.m_d) / self.s_d

    def to_phi(self, theta: np.ndarray) -> np.ndarray:
        a, b, e, alpha, beta = np.moveaxis(np.asarray(theta, dtype=float), -1, 0)
        return np.stack(
            [a - alpha * self.m_n, b - beta * self.m_d, e, alpha * self.s_n, beta * self.s_d],
            axis=-1,
        )

    def to_theta(self, phi: np.ndarray) -> np.ndarray:
        p0, p1, e, p3, p4 = np.moveaxis(np.asarray(phi, dtype=float), -1, 0)
        alpha, beta = p3 / self.s_n, p4 / self.s_d
        return np.stack([p0 + alpha * self.m_n, p1 + beta * self.m_d, e, alpha, beta], axis=-1)


def _run_starts(objective: HuberLSEObjective, starts: np.ndarray) -> BatchResult:
    """Batched L-BFGS from the given starts with the published (L-BFGS-B default) tolerances."""
    return minimize_batched(objective, starts, **_GRID_TOL)


def _fit_resamples(
    z_n: np.ndarray,
    z_d: np.ndarray,
    log_loss: np.ndarray,
    delta: float,
    weights: np.ndarray,
    starts: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Best (phi, objective) for each weighted resample, every resample run from all `starts`."""
    n_res, n_st = weights.shape[0], starts.shape[0]
    weight_row = np.repeat(np.arange(n_res), n_st)
    objective = HuberLSEObjective(z_n, z_d, log_loss, delta, weights, weight_row)
    res = _run_starts(objective, np.tile(starts, (n_res, 1)))
    fun = np.where(np.isfinite(res.fun), res.fun, np.inf).reshape(n_res, n_st)
    best = fun.argmin(axis=1)
    phi = res.x.reshape(n_res, n_st, -1)[np.arange(n_res), best]
    # Polish each winner as the full-data fit is polished, so that a draw is that
    # resample's optimum and not a point where L-BFGS-B's tolerance happened to stop.
    polish = HuberLSEObjective(z_n, z_d, log_loss, delta, weights, np.arange(n_res))
    tight = minimize_batched(polish, phi, **_POLISH_TOL)
    better = tight.fun <= fun[np.arange(n_res), best]
    return np.where(better[:, None], tight.x, phi), np.minimum(tight.fun, fun.min(axis=1))


def _distinct_optima(
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


class ChinchillaLaw(Fit):
    """L(N, D) = E + A / N^alpha + B / D^beta by Hoffmann et al.'s approach 3 (see module doc).

    Parameters
    ----------
    delta: Huber threshold on log-loss residuals (published: 1e-3).
    level: confidence level of `intervals_` and the default of the interval methods.
    n_bootstrap: resamples of the points for intervals (0: point estimate only).
    n_local_optima: starts per bootstrap resample: the optimum and the next best distinct
        local optima of the full-data grid search.
    random_state: seed or numpy Generator for the resampling; resample i uses row i of
        resample_weights(n_points, n_bootstrap, as_generator(random_state)).
    n_jobs: worker processes for the grid search and the bootstrap (-1: all cores). The
        result does not depend on it beyond floating-point rounding (different batches sum
        in a different order): draws agree to about 1e-6 relative.

    Attributes (after fit)
    ----------------------
    params_: {E, A, B, alpha, beta}; theta_: (a, b, e, alpha, beta) with A = e^a, ...
    objective_: the minimised sum of Huber losses; n_points_: runs with positive weight.
    stderr_, intervals_: bootstrap standard deviation and percentile interval at level_
        ({} when n_bootstrap = 0); bootstrap_params_: (n_bootstrap, 5) draws, columns in
        PARAM_NAMES order, or None.
    derived_, derived_intervals_: allocation exponents a, b and coefficient G.
    best_start_: the grid point (E, A, B, alpha, beta) whose run reached the optimum.
    local_optima_, local_objectives_: the distinct optima that seed the bootstrap.
    n_starts_, n_converged_: grid starts run, and how many met the stopping criteria.
    """

    law = "chinchilla"
    formula = "L(N, D) = E + A / N^alpha + B / D^beta"

    def __init__(
        self,
        *,
        delta: float = 1e-3,
        level: float = 0.90,
        n_bootstrap: int = 1000,
        n_local_optima: int = 5,
        random_state: RandomState = 0,
        n_jobs: int | None = 1,
    ) -> None:
        self.delta = delta
        self.level = level
        self.n_bootstrap = n_bootstrap
        self.n_local_optima = n_local_optima
        self.random_state = random_state
        self.n_jobs = n_jobs

    def fit(
        self,
        N: Any,
        D: Any,
        loss: Any,
        sample_weight: Any | None = None,
    ) -> Self:
        """Fit on runs with N parameters, D training tokens and final loss; returns self.

        sample_weight: optional non-negative weight per run (e.g. resampling counts).
        """
        level = validate.level(self.level)
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
        validate.at_least(N.size, 6, "runs to fit 5 parameters")

        log_n, log_d, log_loss = np.log(N), np.log(D), np.log(loss)
        coords = _Coordinates(log_n, log_d)
        z_n, z_d = coords.z_n(log_n), coords.z_d(log_d)
        objective = HuberLSEObjective(z_n, z_d, log_loss, self.delta, weights)
        grid_phi = coords.to_phi(starting_grid())
        res = self._grid_search(objective, grid_phi)
        order = _distinct_optima(
            coords.to_theta(res.x), res.fun, res.converged, max(1, self.n_local_optima)
        )
        if order.size == 0:
            raise FitError("no start of the grid converged: the data do not determine the law")
        best = order[0]
        polished = minimize_batched(objective, res.x[best][None, :], **_POLISH_TOL)
        phi_best, f_best = res.x[best], res.fun[best]
        if polished.fun[0] <= f_best:
            phi_best, f_best = polished.x[0], polished.fun[0]
        starts = np.vstack([phi_best[None, :], res.x[order[1:]]])

        self.theta_ = coords.to_theta(phi_best)
        self.best_start_ = theta_to_params(starting_grid()[best])
        self.params_ = dict(zip(PARAM_NAMES, map(float, theta_to_params(self.theta_)), strict=True))
        self.objective_ = float(f_best)
        self.n_points_ = int(N.size)
        self.n_starts_ = int(grid_phi.shape[0])
        self.n_converged_ = int(res.converged.sum())
        self.local_optima_ = theta_to_params(coords.to_theta(starts))
        self.local_objectives_ = np.concatenate([[f_best], res.fun[order[1:]]])
        derived = self._derived(theta_to_params(self.theta_)[None, :])
        self.derived_ = {k: float(v[0]) for k, v in derived.items()}
        self.level_ = level
        self.bootstrap_params_: np.ndarray | None = None
        self.stderr_, self.intervals_, self.derived_intervals_ = {}, {}, {}
        if self.n_bootstrap > 0:
            rng = as_generator(self.random_state)
            base = np.ones(N.size) if weights is None else weights
            counts = resample_weights(N.size, int(self.n_bootstrap), rng) * base
            phi = self._refit_resamples(z_n, z_d, log_loss, counts, starts)
            self.bootstrap_params_ = theta_to_params(coords.to_theta(phi))
            self._set_uncertainty()
        return self

    # -- fitting internals -----------------------------------------------------------------
    def _grid_search(self, objective: HuberLSEObjective, grid_phi: np.ndarray) -> BatchResult:
        """Every grid start to convergence, split across processes when n_jobs > 1."""
        n_workers = resolve_n_jobs(self.n_jobs)
        parts = [np.arange(i, grid_phi.shape[0], n_workers) for i in range(n_workers)]
        results = map_chunks(_run_starts, [(objective, grid_phi[p]) for p in parts], self.n_jobs)
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
        self,
        z_n: np.ndarray,
        z_d: np.ndarray,
        log_loss: np.ndarray,
        counts: np.ndarray,
        starts: np.ndarray,
    ) -> np.ndarray:
        """Optimum (phi) of every resample; chunks of resamples go to worker processes."""
        n_workers = resolve_n_jobs(self.n_jobs)
        chunks = np.array_split(np.arange(counts.shape[0]), n_workers)
        jobs = [(z_n, z_d, log_loss, self.delta, counts[c], starts) for c in chunks if c.size]
        return np.vstack([phi for phi, _ in map_chunks(_fit_resamples, jobs, self.n_jobs)])

    @staticmethod
    def _derived(params: np.ndarray) -> dict[str, np.ndarray]:
        """Allocation exponents a, b and the coefficient G for params rows."""
        _, A, B, alpha, beta = params.T
        a, b = allocation_exponents(alpha, beta)
        with np.errstate(all="ignore"):  # degenerate draws: inf/nan, left out of intervals
            G = (alpha * A / (beta * B)) ** (1.0 / (alpha + beta))
        return {"a": a, "b": b, "G": G}

    def _set_uncertainty(self) -> None:
        draws = self.bootstrap_params_
        assert draws is not None
        lo, hi = percentile_interval(draws, self.level_)
        with np.errstate(over="ignore"):
            sd = np.nanstd(finite_or_nan(draws), axis=0, ddof=1)
        self.stderr_ = {n: float(v) for n, v in zip(PARAM_NAMES, sd, strict=True)}
        self.intervals_ = {n: (float(lo[i]), float(hi[i])) for i, n in enumerate(PARAM_NAMES)}
        derived = self._derived(draws)
        self.derived_intervals_ = {}
        for name, values in derived.items():
            dlo, dhi = percentile_interval(values, self.level_)
            self.derived_intervals_[name] = (float(dlo), float(dhi))

    # -- predictions -----------------------------------------------------------------------
    def _params_row(self) -> np.ndarray:
        self._check_fitted()
        return np.array([self.params_[n] for n in PARAM_NAMES])

    def _draws(self) -> np.ndarray:
        self._check_fitted()
        if self.bootstrap_params_ is None:
            raise FitError("no bootstrap draws: fit with n_bootstrap > 0 to get intervals")
        return self.bootstrap_params_

    def predict(self, N: Any, D: Any) -> np.ndarray:
        """Predicted loss at (N, D) (broadcast against each other)."""
        N, D = np.broadcast_arrays(np.asarray(N, dtype=float), np.asarray(D, dtype=float))
        return chinchilla_loss(self._params_row(), N, D).reshape(N.shape)

    def predict_interval(self, N: Any, D: Any, level: float | None = None) -> Prediction:
        """Predicted loss with a bootstrap percentile interval at `level` (default level_)."""
        level = validate.level(self.level_ if level is None else level)
        N, D = np.broadcast_arrays(np.asarray(N, dtype=float), np.asarray(D, dtype=float))
        lo, hi = percentile_interval(chinchilla_loss(self._draws(), N, D), level)
        est = self.predict(N, D)
        return Prediction(est, lo.reshape(N.shape), hi.reshape(N.shape), level)

    def compute_optimal(
        self, C: Any, flops_per_token: float = 6.0
    ) -> tuple[np.ndarray, np.ndarray]:
        """(N_opt, D_opt) minimising the fitted loss at compute C = flops_per_token * N * D."""
        C = np.asarray(C, dtype=float)
        n_opt, d_opt = compute_optimal_allocation(self._params_row(), C, flops_per_token)
        return n_opt.reshape(C.shape), d_opt.reshape(C.shape)

    def compute_optimal_interval(
        self, C: Any, level: float | None = None, flops_per_token: float = 6.0
    ) -> tuple[Prediction, Prediction]:
        """N_opt and D_opt at compute C, each with a bootstrap percentile interval."""
        level = validate.level(self.level_ if level is None else level)
        C = np.asarray(C, dtype=float)
        n_est, d_est = self.compute_optimal(C, flops_per_token)
        n_draws, d_draws = compute_optimal_allocation(self._draws(), C, flops_per_token)
        out = []
        for est, draws in ((n_est, n_draws), (d_est, d_draws)):
            lo, hi = percentile_interval(draws, level)
            out.append(Prediction(est, lo.reshape(C.shape), hi.reshape(C.shape), level))
        return out[0], out[1]

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
        out = ["compute-optimal allocation (C = 6 N D): N_opt = G (C/6)^a, D_opt = (C/6)^b / G"]
        for name in DERIVED_NAMES:
            lo, hi = self.derived_intervals_.get(name, (math.nan, math.nan))
            out.append(
                f"  {name} = {self.derived_[name]:.6g}"
                + (f"   [{lo:.6g}, {hi:.6g}]" if np.isfinite(lo) else "")
            )
        return out

    def _state(self) -> dict[str, Any]:
        return {
            "param_order": list(PARAM_NAMES),
            "bootstrap_params": self.bootstrap_params_,
            "derived": self.derived_,
            "derived_intervals": {k: list(v) for k, v in self.derived_intervals_.items()},
            "local_optima": self.local_optima_,
            "local_objectives": self.local_objectives_,
            "n_starts": self.n_starts_,
            "n_converged": self.n_converged_,
        }

    def _load_state(self, state: dict[str, Any]) -> None:
        order = [PARAM_NAMES.index(n) for n in state["param_order"]]
        draws = state.get("bootstrap_params")
        self.bootstrap_params_ = (
            None if draws is None else np.asarray(draws, dtype=float)[:, np.argsort(order)]
        )
        self.theta_ = params_to_theta(self._params_row())
        self.derived_ = {k: _num(v) for k, v in state["derived"].items()}
        self.derived_intervals_ = {
            k: (_num(v[0]), _num(v[1])) for k, v in state["derived_intervals"].items()
        }
        self.local_optima_ = np.asarray(state["local_optima"], dtype=float)[:, np.argsort(order)]
        self.local_objectives_ = np.asarray(state["local_objectives"], dtype=float)
        self.n_starts_ = int(state["n_starts"])
        self.n_converged_ = int(state["n_converged"])


def quick_refit_chinchilla(model: ChinchillaLaw, N: Any, D: Any, loss: Any) -> ChinchillaLaw:
    """A point fit on other runs, started from `model`'s local optima instead of the full grid.

    For the many refits of nested backtests: a subset of the runs moves the optimum only a
    little, so it lies in one of the basins the full-data grid found (the bootstrap's argument,
    see the module doc). Tens of times faster than the grid; no bootstrap.
    """
    N, D, loss = (validate.positive(v, k) for k, v in (("N", N), ("D", D), ("loss", loss)))
    validate.same_length(N=N, D=D, loss=loss)
    validate.distinct(N, 3, "model sizes", "N")
    validate.distinct(D, 3, "token counts", "D")
    validate.at_least(N.size, 6, "runs to fit 5 parameters")
    log_n, log_d = np.log(N), np.log(D)
    coords = _Coordinates(log_n, log_d)
    starts = coords.to_phi(params_to_theta(model.local_optima_))
    weights = np.ones((1, N.size))
    phi, fun = _fit_resamples(
        coords.z_n(log_n), coords.z_d(log_d), np.log(loss), model.delta, weights, starts
    )
    new = ChinchillaLaw(**{**model.get_params(), "n_bootstrap": 0})
    new.theta_ = coords.to_theta(phi[0])
    params = theta_to_params(new.theta_)
    new.params_ = dict(zip(PARAM_NAMES, map(float, params), strict=True))
    new.objective_ = float(fun[0])
    new.n_points_ = int(N.size)
    new.level_ = model.level_
    new.best_start_ = params
    new.n_starts_ = new.n_converged_ = int(starts.shape[0])
    new.local_optima_ = params[None, :]
    new.local_objectives_ = np.array([new.objective_])
    new.derived_ = {k: float(v[0]) for k, v in new._derived(params[None, :]).items()}
    new.bootstrap_params_ = None
    new.stderr_, new.intervals_, new.derived_intervals_ = {}, {}, {}
    return new
