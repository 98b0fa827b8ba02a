"""Batched L-BFGS: many independent small minimisations advanced together.

The Chinchilla fit runs L-BFGS from thousands of starting points, and the bootstrap runs it
again for every resample. Each problem has only a handful of parameters, so looping over
`scipy.optimize.minimize` spends nearly all its time in Python overhead. Here every start is
one row of a matrix: the objective is evaluated for all active rows in one vectorised call,
the two-loop recursion runs on stacked histories, and each row stops on its own criteria.

Algorithm (Nocedal & Wright, Numerical Optimization, ch. 7 and 3): limited-memory BFGS with
the two-loop recursion and initial scaling gamma = s'y / y'y; a line search that brackets a
step meeting the weak Wolfe conditions (Armijo decrease and curvature, c1 = 1e-4, c2 = 0.9)
with safeguarded interpolation, so that curvature pairs have s'y > 0. All rows iterate in
lockstep, so the histories are one ring buffer; a row whose new pair is unusable (s'y <= 0,
possible only when the line search gives up on curvature) gets an empty slot that round.
A row whose direction is not a descent direction restarts from steepest descent. Stopping
rules follow L-BFGS-B: max |gradient| <= gtol, or a relative decrease below ftol.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

# fun(X, rows) -> (f, G): objective values (k,) and gradients (k, p) at the points X (k, p);
# rows (k,) are the indices of those points among all starts (for per-start data such as
# bootstrap weights).
BatchObjective = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class BatchResult:
    """Outcome of a batched minimisation, one row per start."""

    x: np.ndarray  # (S, p) final points
    fun: np.ndarray  # (S,) final objective values
    n_iter: np.ndarray  # (S,) iterations taken
    converged: np.ndarray  # (S,) stopped by gtol or ftol (not by max_iter or line-search failure)
    n_evals: int  # total number of rows evaluated, summed over calls


def minimize_batched(
    fun: BatchObjective,
    x0: np.ndarray,
    *,
    memory: int = 10,
    max_iter: int = 1000,
    gtol: float = 1e-5,
    ftol: float = 2.2e-9,
    fscale: float = 1.0,
    c1: float = 1e-4,
    c2: float = 0.9,
    max_line_search: int = 40,
) -> BatchResult:
    """Minimise one objective from every row of `x0` at once and return every end point.

    A row stops when max |g| <= gtol, or when an iteration lowers f by at most
    ftol * max(|f_old|, |f_new|, fscale) (L-BFGS-B's rule with fscale = 1; fscale = 0 makes
    it purely relative), or when the line search finds no acceptable step.
    """
    x_out = np.array(x0, dtype=float, copy=True)
    n_starts, dim = x_out.shape
    f_out, g_out = fun(x_out, np.arange(n_starts))
    n_evals = n_starts
    n_iter_out = np.zeros(n_starts, dtype=int)
    conv_out = np.abs(g_out).max(axis=1) <= gtol
    rows = np.flatnonzero(~conv_out & np.isfinite(f_out))

    # State of the rows still running, compacted so that no step gathers from full arrays.
    x, f, g = x_out[rows], f_out[rows], g_out[rows]
    s_hist = np.zeros((memory, rows.size, dim))  # ring buffer of curvature pairs
    y_hist = np.zeros((memory, rows.size, dim))
    rho = np.zeros((memory, rows.size))  # 1 / s'y, or 0 for an empty slot
    gamma = np.ones(rows.size)  # initial inverse-Hessian scale s'y / y'y of the newest pair
    has_pair = np.zeros(rows.size, dtype=bool)

    for it in range(max_iter):
        if rows.size == 0:
            break
        newest_first = [(it - 1 - j) % memory for j in range(memory)]
        d = -_two_loop(g, s_hist, y_hist, rho, gamma, newest_first)
        slope = np.einsum("kp,kp->k", g, d)
        bad = ~(slope < 0)  # stale history: restart this row from steepest descent
        if bad.any():
            rho[:, bad] = 0.0
            gamma[bad] = 1.0
            has_pair[bad] = False
            d[bad] = -g[bad]
            slope[bad] = -np.einsum("kp,kp->k", g[bad], g[bad])
        step = np.where(has_pair, 1.0, np.minimum(1.0, 1.0 / np.linalg.norm(g, axis=1)))

        x_new, f_new, g_new, ok, n = _line_search(
            fun, x, f, d, slope, step, rows, c1, c2, max_line_search
        )
        n_evals += n

        s = x_new - x
        y = g_new - g
        sy = np.einsum("kp,kp->k", s, y)
        yy = np.einsum("kp,kp->k", y, y)
        upd = ok & (sy > 1e-10 * yy)
        slot = it % memory
        s_hist[slot] = np.where(upd[:, None], s, 0.0)
        y_hist[slot] = np.where(upd[:, None], y, 0.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            rho[slot] = np.where(upd, 1.0 / sy, 0.0)
            gamma = np.where(upd, sy / yy, gamma)
        has_pair |= upd

        decrease = f - f_new
        scale = np.maximum(np.maximum(np.abs(f), np.abs(f_new)), fscale)
        x = np.where(ok[:, None], x_new, x)
        f = np.where(ok, f_new, f)
        g = np.where(ok[:, None], g_new, g)
        conv = ok & ((np.abs(g).max(axis=1) <= gtol) | (decrease <= ftol * scale))
        finished = conv | ~ok  # a failed line search stops the row where it is, as L-BFGS-B does
        if finished.any():
            done = rows[finished]
            x_out[done], f_out[done], g_out[done] = x[finished], f[finished], g[finished]
            n_iter_out[done] = it + 1
            conv_out[done] = conv[finished]
            keep = ~finished
            rows, x, f, g = rows[keep], x[keep], f[keep], g[keep]
            s_hist, y_hist, rho = s_hist[:, keep], y_hist[:, keep], rho[:, keep]
            gamma, has_pair = gamma[keep], has_pair[keep]
    else:
        n_iter_out[rows] = max_iter
    x_out[rows], f_out[rows] = x, f  # rows that ran out of iterations
    return BatchResult(x=x_out, fun=f_out, n_iter=n_iter_out, converged=conv_out, n_evals=n_evals)


def _two_loop(
    g: np.ndarray,
    s: np.ndarray,
    y: np.ndarray,
    rho: np.ndarray,
    gamma: np.ndarray,
    newest_first: list[int],
) -> np.ndarray:
    """Apply the L-BFGS inverse-Hessian approximation to every row of g (empty slots: rho 0)."""
    q = g.copy()
    alpha = {}
    for j in newest_first:
        alpha[j] = rho[j] * np.einsum("kp,kp->k", s[j], q)
        q -= alpha[j][:, None] * y[j]
    r = gamma[:, None] * q
    for j in reversed(newest_first):
        beta = rho[j] * np.einsum("kp,kp->k", y[j], r)
        r += (alpha[j] - beta)[:, None] * s[j]
    return r


def _line_search(
    fun: BatchObjective,
    x: np.ndarray,
    f: np.ndarray,
    d: np.ndarray,
    slope: np.ndarray,
    step: np.ndarray,
    rows: np.ndarray,
    c1: float,
    c2: float,
    max_evals: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    """Weak-Wolfe bracketing line search for every row, with safeguarded interpolation.

    Each row keeps a bracket [lo, hi] on the step: a step that breaks the Armijo condition
    becomes hi, one that satisfies it but still descends steeply (curvature condition
    fails) becomes lo. The next trial is the minimiser of the quadratic through
    (lo, f_lo, f'_lo) and (hi, f_hi) inside the bracket, or a secant extrapolation of f'
    beyond lo while no hi is known.
    """
    k = x.shape[0]
    x_new = np.empty_like(x)
    f_new = np.full(k, np.inf)
    g_new = np.empty_like(x)
    ok = np.zeros(k, dtype=bool)
    lo = np.zeros(k)
    f_lo = f.copy()
    df_lo = slope.copy()
    hi = np.full(k, np.inf)
    f_hi = np.full(k, np.inf)
    pending = np.arange(k)
    step = step.copy()
    n_evals = 0
    for _ in range(max_evals):
        xt = x[pending] + step[pending, None] * d[pending]
        ft, gt = fun(xt, rows[pending])
        n_evals += pending.size
        t = step[pending]
        dft = np.einsum("kp,kp->k", gt, d[pending])
        armijo = np.isfinite(ft) & (ft <= f[pending] + c1 * t * slope[pending])
        armijo &= ft <= f_lo[pending]
        curv = dft >= c2 * slope[pending]
        # Remember the best Armijo point: it is used if the curvature condition is never met.
        better = armijo & (ft < f_new[pending])
        b = pending[better]
        x_new[b], f_new[b], g_new[b], ok[b] = xt[better], ft[better], gt[better], True
        done = armijo & curv
        shrink = ~armijo
        hi[pending[shrink]] = t[shrink]
        f_hi[pending[shrink]] = ft[shrink]
        grow = armijo & ~curv
        lo[pending[grow]] = t[grow]
        f_lo[pending[grow]] = ft[grow]
        df_lo[pending[grow]] = dft[grow]
        pending = pending[~done]
        if pending.size == 0:
            break
        step[pending] = _next_step(
            lo[pending], f_lo[pending], df_lo[pending], hi[pending], f_hi[pending], slope[pending]
        )
    return x_new, f_new, g_new, ok, n_evals


def _next_step(
    lo: np.ndarray,
    f_lo: np.ndarray,
    df_lo: np.ndarray,
    hi: np.ndarray,
    f_hi: np.ndarray,
    slope0: np.ndarray,
) -> np.ndarray:
    """Next trial step: interpolate inside [lo, hi], or extrapolate past lo if hi is unknown."""
    width = hi - lo
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        curvature = 2.0 * (f_hi - f_lo - df_lo * width)
        t_in = lo - df_lo * width * width / curvature
        t_in = np.where(np.isfinite(t_in), t_in, lo + 0.5 * width)
        t_in = np.clip(t_in, lo + 0.1 * width, lo + 0.5 * width)
        # Secant root of f' using f'(0) and f'(lo); at least doubles, at most x10.
        t_out = lo * slope0 / (slope0 - df_lo)
        t_out = np.where(np.isfinite(t_out), t_out, 4.0 * lo)
        t_out = np.clip(t_out, 2.0 * lo, 10.0 * lo)
    return np.where(np.isfinite(hi), t_in, t_out)
