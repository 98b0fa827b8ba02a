"""Farseer (Li et al. 2025, arXiv 2506.10972): the data term's coefficient and exponent depend on N.

    L(N, D) = exp(s N^q + S) + exp(B N^b + Q) D^(-exp(A N^a + E))

Nine parameters. The first term is the loss at unlimited data for a model of N parameters;
the second is the data term, whose log-coefficient B N^b + Q and log-exponent A N^a + E both
vary with N, so the law can bend where Chinchilla's sum of two power laws cannot (Chinchilla
is the special case of a constant data term, s N^q small). N and D are in raw counts, as the
authors fit them (the family is not invariant to the unit of D).

Fitted as the other laws (fits.gridfit): Huber (delta 1e-3) on log loss, batched L-BFGS from a
grid of starts, the best polished, bootstrap warm-started from the distinct local optima.
Optimiser coordinates: each c N^p term is c' exp(k z) with z the standardised log N (c' = c
e^(p m), k = p s for log N = m + s z): the same family, better conditioned. The starting grid
is set in those coordinates and scaled to the runs' loss (module `starting_phi`).

Compute-optimal allocation has no closed form: it is found numerically (`LossLaw.allocation_of`,
`fits.allocation`); no interior minimum is no allocation (NaN, which the identification checks
refuse).
"""

from __future__ import annotations

import itertools
import math
from typing import Any, ClassVar, Self

import numpy as np
import pandas as pd

from fits.allocation import ratio_window
from fits.errors import FitError
from fits.gridfit import GridLaw, standardize
from fits.laws import TERM_SHARE
from fits.objective_blocks import mask_nonfinite, start_blocks, start_weights

PARAM_NAMES = ("s", "q", "S", "B", "b", "Q", "A", "a", "E")
# Nine parameters, three of them functions of N with a level, a scale and a power each: fewer
# model sizes than this cannot show a power of N bending, fewer runs than this leave under
# three runs per parameter.
MIN_SIZES = 5
MIN_TOKEN_COUNTS = 3
MIN_RUNS = 27
BEYOND = 3.0  # decades past the runs' largest N and D where a fit must predict a finite loss
_PER_DECADE = 8  # grid points per decade of that check
# Starts per objective evaluation block: keeps the (starts x points) temporaries in cache
# (fits.objective_blocks.start_blocks bounds them on large sets).
_CHUNK = 64


def _log_grid(lo: float, hi: float) -> np.ndarray:
    """lo to hi in even log steps, _PER_DECADE a decade (ends included)."""
    return np.geomspace(lo, hi, math.ceil(math.log10(hi / lo)) * _PER_DECADE + 1)


def farseer_loss(params: np.ndarray, N: np.ndarray, D: np.ndarray) -> np.ndarray:
    """exp(s N^q + S) + exp(B N^b + Q) D^(-exp(A N^a + E)), params rows (k, 9) against N, D
    of shape (n,) or (k, n)."""
    p = np.asarray(params, dtype=float)
    s, q, S, B, b, Q, A, a, E = (p[..., i, None] for i in range(9))
    log_n, log_d = np.log(np.asarray(N, dtype=float)), np.log(np.asarray(D, dtype=float))
    with np.errstate(all="ignore"):  # degenerate draws give inf/nan, which intervals leave out
        beta = np.exp(A * np.exp(a * log_n) + E)
        return np.exp(s * np.exp(q * log_n) + S) + np.exp(B * np.exp(b * log_n) + Q - beta * log_d)


class _FarseerProblem:
    """phi = (c1, k1, S, c2, k2, Q, c3, k3, E): c N^p = c' exp(k z), z standardised log N."""

    def __init__(self, log_n: np.ndarray, log_d: np.ndarray) -> None:
        self.m, self.s, self.z = standardize(log_n)
        self.log_d = np.asarray(log_d, dtype=float)

    def to_phi(self, theta: np.ndarray) -> np.ndarray:
        t = np.array(theta, dtype=float)
        with np.errstate(all="ignore"):
            for c, k in ((0, 1), (3, 4), (6, 7)):
                t[..., c] = t[..., c] * np.exp(t[..., k] * self.m)
                t[..., k] = t[..., k] * self.s
        return t

    def to_theta(self, phi: np.ndarray) -> np.ndarray:
        t = np.array(phi, dtype=float)
        with np.errstate(all="ignore"):
            for c, k in ((0, 1), (3, 4), (6, 7)):
                t[..., k] = t[..., k] / self.s
                t[..., c] = t[..., c] * np.exp(-t[..., k] * self.m)
        return t

    def objective(
        self,
        log_loss: np.ndarray,
        delta: float,
        weights: np.ndarray | None = None,
        weight_row: np.ndarray | None = None,
    ) -> _FarseerObjective:
        return _FarseerObjective(self, log_loss, delta, weights, weight_row)


class _FarseerObjective:
    """Sum of Huber losses of log(T1 + T2) - log L with its gradient in phi.

    T1 = exp(c1 e^(k1 z) + S), T2 = exp(c2 e^(k2 z) + Q - beta log D), beta = exp(c3 e^(k3 z)
    + E); dF/dP = w psi / P with P = T1 + T2 and psi the clipped residual, and
    dP/dbeta = -T2 log D carries the exponent's three parameters.
    """

    def __init__(
        self,
        problem: _FarseerProblem,
        log_loss: np.ndarray,
        delta: float,
        weights: np.ndarray | None,
        weight_row: np.ndarray | None,
    ) -> None:
        # The three functions of N are evaluated once per model size and gathered: runs share
        # sizes (25 among Farseer's 404), and exp is most of the cost. Elementwise, so the
        # values are those of evaluating at every run.
        self.sizes, self.size_of = np.unique(problem.z, return_inverse=True)
        self.z, self.log_d = problem.z, problem.log_d
        self.log_loss = np.asarray(log_loss, dtype=float)
        self.delta = float(delta)
        self.weights = None if weights is None else np.asarray(weights, dtype=float)
        self.weight_row = weight_row

    def __call__(self, phi: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        k = phi.shape[0]
        f, g = np.empty(k), np.empty((k, 9))
        with np.errstate(all="ignore"):
            for sl in start_blocks(k, _CHUNK, len(self.log_loss)):
                w = start_weights(self.weights, self.weight_row, rows[sl])
                f[sl], g[sl] = self._block(phi[sl], w)
        return mask_nonfinite(f, g)

    def _block(self, phi: np.ndarray, w: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        sizes, log_d = self.sizes, self.log_d
        c1, k1, S, c2, k2, Q, c3, k3, E = (phi[:, i, None] for i in range(9))
        per_size = np.empty((5, phi.shape[0], sizes.size))
        p1, p2, p3, beta, t1 = per_size
        np.exp(k1 * sizes, out=p1)
        np.exp(k2 * sizes, out=p2)
        np.exp(k3 * sizes, out=p3)
        np.multiply(c3, p3, out=beta)
        beta += E
        np.exp(beta, out=beta)
        np.multiply(c1, p1, out=t1)
        t1 += S
        np.exp(t1, out=t1)
        # per run from here: each size's values gathered to its runs (C order, as before)
        p1, p2, p3, beta, t1 = np.take(per_size, self.size_of, axis=2)
        t2 = beta * log_d
        np.subtract(Q, t2, out=t2)
        t2 += c2 * p2
        np.exp(t2, out=t2)
        pred = t1 + t2
        r = np.log(pred)
        r -= self.log_loss
        psi = np.minimum(r, self.delta)
        np.maximum(psi, -self.delta, out=psi)
        # sum_i w_i huber(r_i) = sum_i w_i psi_i (r_i - psi_i / 2), psi = clip(r)
        r -= 0.5 * psi
        r *= psi
        if w is not None:
            r *= w
            psi *= w
        f = r.sum(axis=1)
        psi /= pred  # d F / d P per point, P = T1 + T2
        t1 *= psi  # d F / d u1 per point
        t2 *= psi  # d F / d u2 per point
        beta *= t2
        beta *= -log_d  # d F / d log beta per point
        grad = np.empty((phi.shape[0], 9))
        for col, (gu, p, c) in enumerate(((t1, p1, c1), (t2, p2, c2), (beta, p3, c3))):
            gu_p = gu * p
            grad[:, 3 * col] = gu_p.sum(axis=1)
            grad[:, 3 * col + 1] = c[:, 0] * (gu_p @ self.z)
            grad[:, 3 * col + 2] = gu.sum(axis=1)
        return f, grad


def starting_phi(problem: _FarseerProblem, log_loss: np.ndarray) -> np.ndarray:
    """405 starts in phi, scaled to the runs: at the median run the data term T2 is a fifth,
    half or four fifths of the loss, its exponent 0.1, 0.3 or 0.6, and each function of N is
    flat or bends either way by 0.3-0.5 per standard deviation of log N."""
    level = float(np.median(log_loss))
    log_d = float(np.median(problem.log_d))
    falling = [(0.0, 0.0), (0.3, -0.5), (-0.3, 0.5)]  # terms that fall (or stay) with N
    either = [(0.0, 0.0), (0.3, 0.5), (0.3, -0.5), (-0.3, 0.5), (-0.3, -0.5)]
    rows = []
    for (c1, k1), (c2, k2), (c3, k3), share, beta in itertools.product(
        falling, falling, either, (0.2, 0.5, 0.8), (0.1, 0.3, 0.6)
    ):
        S = level + math.log(1.0 - share) - c1
        Q = level + math.log(share) + beta * log_d - c2
        rows.append((c1, k1, S, c2, k2, Q, c3, k3, math.log(beta) - c3))
    return np.array(rows)


class FarseerLaw(GridLaw):
    """L(N, D) = exp(s N^q + S) + exp(B N^b + Q) D^(-exp(A N^a + E)) (see the module docstring).

    Configuration and fitted attributes: see `GridLaw`. params_ is {s, q, S, B, b, Q, A, a, E};
    theta_ is the same vector. Refused (FitError) on fewer than 5 model sizes, 3 token counts
    or 27 runs.
    """

    law = "farseer"
    formula = "L(N, D) = exp(s N^q + S) + exp(B N^b + Q) D^(-exp(A N^a + E))"
    param_names: ClassVar[tuple[str, ...]] = PARAM_NAMES
    allocation_note = "compute-optimal allocation: numerical minimum along C = 6 N D"

    def problem(self, log_n: np.ndarray, log_d: np.ndarray) -> _FarseerProblem:
        return _FarseerProblem(log_n, log_d)

    def starting_phi(self, problem: Any, log_loss: np.ndarray) -> np.ndarray:
        return starting_phi(problem, log_loss)

    def quick_refit(self, runs: pd.DataFrame, force: bool | None = None) -> Self:
        """A new fit on `runs` by the grid search `fit` runs, not warm-started: from this fit's
        optima (its Hessian's eigenvalues span ten decades) L-BFGS stalls short of the new
        runs' optimum, so a nested split kept what this fit learnt from the runs it held out
        (on Epoch's nested splits 1-23% above the grid's objective, one predicting its held-out
        runs 4.6x too high); the grid search is also faster here."""
        self._check_fitted()
        return self._unfitted(force).fit_frame(runs)

    def check_identifiable(self, N: np.ndarray, D: np.ndarray) -> None:
        sizes, tokens = np.unique(N).size, np.unique(D).size
        if sizes < MIN_SIZES or tokens < MIN_TOKEN_COUNTS or N.size < MIN_RUNS:
            raise FitError(
                f"farseer has 9 parameters: it needs {MIN_SIZES} model sizes, "
                f"{MIN_TOKEN_COUNTS} token counts and {MIN_RUNS} runs; these runs have "
                f"{sizes}, {tokens} and {N.size}"
            )

    def theta_to_params(self, theta: np.ndarray) -> np.ndarray:
        return np.asarray(theta, dtype=float)

    def params_to_theta(self, params: np.ndarray) -> np.ndarray:
        return np.asarray(params, dtype=float)

    def loss_of(self, params: np.ndarray, *cols: np.ndarray) -> np.ndarray:
        return farseer_loss(params, *cols)

    def identification_problems(self) -> list[str]:
        """The shared checks; loss that does not fall by TERM_SHARE across the runs' range of N
        (at their largest D) or of D (at their largest N): the runs do not show it falling; and
        loss that is not finite within BEYOND decades past the runs (explodes), or else that
        rises there along a ray of fixed tokens per parameter."""
        problems = super().identification_problems()
        if "N" not in self.data_range_:
            return problems
        (n_lo, n_hi), (d_lo, d_hi) = self.data_range_["N"], self.data_range_["D"]
        loss = self.predict(np.array([n_lo, n_hi, n_hi]), np.array([d_hi, d_hi, d_lo]))
        for column, before, after in (("N", loss[0], loss[1]), ("D", loss[2], loss[1])):
            if not after < before * (1 - TERM_SHARE):
                problems.append(
                    f"loss {before:.4g} -> {after:.4g} over the runs' range of {column}: "
                    f"it does not fall by {TERM_SHARE:.1%} (loss does not fall with {column})"
                )
        return problems + (
            self._explosions(n_lo, n_hi, d_lo, d_hi) or self._rises(n_lo, n_hi, d_lo, d_hi)
        )

    def _explosions(self, n_lo: float, n_hi: float, d_lo: float, d_hi: float) -> list[str]:
        """Where the loss is not finite on a grid from the runs' smallest N and D to BEYOND
        decades past their largest: a power of N far above the others (the fit made a term a
        switch that is nearly 0 across the runs) makes exp(B N^b) or exp(A N^a) overflow just
        past them, and every question there (and every average holding the form) gets an
        infinite loss. Physics: the loss of a trained model is finite."""
        grids = [_log_grid(lo, hi * 10**BEYOND) for lo, hi in ((n_lo, n_hi), (d_lo, d_hi))]
        N, D = (a.ravel() for a in np.meshgrid(*grids, indexing="ij"))
        bad = ~np.isfinite(self.predict(N, D))
        if not bad.any():
            return []
        first = np.argmin(np.where(bad, N, np.inf))
        return [
            f"loss is not finite at N = {N[first]:.3g}, D = {D[first]:.3g}, within {BEYOND:g} "
            f"decades past the runs (largest N {n_hi:.3g}): the law explodes beyond them"
        ]

    def _rises(self, n_lo: float, n_hi: float, d_lo: float, d_hi: float) -> list[str]:
        """Where the loss rises along a ray of fixed tokens per parameter (every ratio an
        answer may have, `ratio_window`) from where the ray reaches the runs' smallest N and D
        to BEYOND decades past their largest. A switch in the exponent's or the coefficient's
        power of N can drive the data exponent to 0 or the data term up just past the runs,
        so the loss climbs past anything they saw while staying finite (on Epoch's 68 runs
        under 4.25e8 parameters: 1.4e4 at 10x their N and D). Physics: a larger model on
        proportionally more tokens does no worse."""
        window = ratio_window(self.data_range_)
        if window is None:
            return []
        ratio = _log_grid(*window)[:, None]
        n_grid = _log_grid(n_lo, n_hi * 10**BEYOND)
        sizes = np.broadcast_to(n_grid[None, :], (ratio.size, n_grid.size))
        tokens = ratio * sizes
        on_ray = (tokens >= d_lo) & (tokens <= d_hi * 10**BEYOND)
        loss = np.full(sizes.shape, np.nan)
        loss[on_ray] = self.predict(sizes[on_ray], tokens[on_ray])
        first = np.argmax(on_ray, axis=1)[:, None]  # where each ray reaches the runs' N and D
        ray_start = np.take_along_axis(loss, first, axis=1)
        rises = on_ray & (loss > ray_start)
        if not rises.any():
            return []
        with np.errstate(invalid="ignore", divide="ignore"):  # rays that never reach the runs
            ratio_up = np.where(rises, loss / ray_start, 0.0)
        i, j = np.unravel_index(np.argmax(ratio_up), loss.shape)
        n0, d0 = sizes[i, first[i, 0]], tokens[i, first[i, 0]]
        return [
            f"loss {loss[i, j]:.4g} at N = {sizes[i, j]:.3g}, D = {tokens[i, j]:.3g} is above "
            f"its {ray_start[i, 0]:.4g} at N = {n0:.3g}, D = {d0:.3g} (the same "
            f"{ratio[i, 0]:.3g} tokens per parameter): a larger model on proportionally more "
            "tokens cannot do worse; the law rises beyond the runs"
        ]

    offset_name: ClassVar[str] = "the loss at unlimited N and D"  # its E is an exponent's

    def offset_interval(self) -> tuple[float, float] | None:
        """The loss at unlimited N and D, exp(S) where the first term levels off (q < 0) and
        0 where it falls without bound, with the low end of its bootstrap interval."""

        def limit(params: np.ndarray) -> np.ndarray:
            with np.errstate(over="ignore"):
                return np.where(params[:, 1] < 0, np.exp(params[:, 2]), 0.0)

        value = float(limit(self._params_row()[None, :])[0])
        if self.bootstrap_params_ is None:
            return value, value
        low = float(np.nanpercentile(limit(self.bootstrap_params_), 50 * (1 - self.level_)))
        return value, min(value, low)
