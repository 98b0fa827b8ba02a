"""The sums over a schedule that the schedule laws are made of, fast and naive.

A schedule is a 1-D array of per-step LRs: lrs[t] drives update t, and the loss of step t is
measured after it. Its peak (the first maximum) ends the warmup: the decay terms start there.

The Multi-Power Law's loss drop (Luo et al. 2025, eq. 2, with S_k(t) the LR area of steps k..t)

    LD(t) = B * sum_{k = w+1..t} (lrs[k-1] - lrs[k]) * (1 - (1 + C lrs[k]^-gamma S_k(t))^-beta)

is a double sum: O(T^2) as written (`loss_drop_naive`). `loss_drop` computes the same in
O(Q T) with Q (about 30-60) nodes: the kernel is written as a Laplace integral,

    (1 + c S)^-beta = c^-beta / Gamma(beta) * int_0^inf u^(beta-1) e^(-u/c) e^(-u S) du,

so that on fixed nodes u_j each term decays like e^(-u_j S_k(t)), and S_k(t) = P(t) - P(k-1)
makes each node a first-order recurrence over steps (a running sum). The integral is taken by
the trapezoid rule in log u, whose error falls exponentially with the node density; the nodes
span the schedule's own range of 1/c + S, and the slowest ones (which barely decay over the
whole schedule) are summed as a polynomial instead. The result agrees with the double sum to
about 1e-10 of the loss drop's size (tests/test_schedule_laws.py checks it), in O(Q T) work:
no closed form exists for this kernel, so 'exact' here means to that tolerance.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import gammaln

_STEP = 0.4  # trapezoid spacing in log u: relative error about exp(-pi^2 / STEP) ~ 2e-11
_STEP_POWER = 0.5  # ... and the spacing shrinks like beta^-0.5 for beta > 1
_FAST = 30.0  # the fastest node decays by e^-30 over the shortest y
_SLOW = 1e-2  # slow nodes (u y <= 0.01 for every y) are summed as a polynomial in y ...
_DEGREE = 4  # ... of this degree: truncation 0.01^5 / 5! ~ 1e-13 of their share
_BLOCK_EFOLDS = 600.0  # most decay inside one block of `_decaying_sums`


def warmup_end(lrs: np.ndarray) -> int:
    """Index of the schedule's peak (its first maximum): the decay terms start after it."""
    return int(np.argmax(lrs))


def areas(lrs: np.ndarray) -> np.ndarray:
    """P(t): the LR area of steps 0..t (warmup included), the Multi-Power Law's S1 + S_W."""
    return np.cumsum(lrs)


def loss_drop_naive(lrs: np.ndarray, beta: float, gamma: float, C: float) -> np.ndarray:
    """LD(t) / B by the double sum as the paper writes it: the reference, O(T^2)."""
    lrs = np.asarray(lrs, dtype=float)
    w = warmup_end(lrs)
    out = np.zeros(len(lrs))
    for t in range(w + 1, len(lrs)):
        total = 0.0
        for k in range(w + 1, t + 1):
            drop = lrs[k - 1] - lrs[k]
            if drop == 0.0:
                continue
            area = float(np.sum(lrs[k : t + 1]))
            total += drop * _g(lrs[k], area, beta, gamma, C)
        out[t] = total
    return out


def _g(lr: float, area: float, beta: float, gamma: float, C: float) -> float:
    """G(lr^-gamma S) = 1 - (1 + C lr^-gamma S)^-beta, with G = 1 for lr = 0 < S."""
    if area <= 0.0:
        return 0.0
    if lr <= 0.0:
        return 1.0
    return 1.0 - (1.0 + C * lr**-gamma * area) ** -beta


def loss_drop(lrs: np.ndarray, beta: float, gamma: float, C: float) -> np.ndarray:
    """LD(t) / B for every step in O(Q T): the same numbers as `loss_drop_naive`."""
    lrs = np.asarray(lrs, dtype=float)
    T = len(lrs)
    w = warmup_end(lrs)
    out = np.zeros(T)
    if w + 1 >= T:
        return out
    k = np.arange(w + 1, T)
    drop = lrs[k - 1] - lrs[k]
    live = drop != 0.0
    k, drop = k[live], drop[live]
    if len(k) == 0:
        return out
    P = areas(lrs)
    # sum_k drop_k: G's constant part, from step k on
    out += _from_steps(k, drop, T)
    zero = lrs[k] <= 0.0
    if zero.any():  # c = inf: G = 1 once some positive LR follows (S > 0), else 0
        out -= _zero_lr_terms(lrs, k[zero], drop[zero], P)
    k, drop = k[~zero], drop[~zero]
    if len(k):
        out -= _kernel_sum(lrs, P, k, drop, beta, gamma, C)
    return out


def _from_steps(k: np.ndarray, values: np.ndarray, T: int) -> np.ndarray:
    """sum over k' <= t of values[k'] for every t (values placed at steps k)."""
    placed = np.zeros(T)
    np.add.at(placed, k, values)
    return np.cumsum(placed)


def _zero_lr_terms(lrs: np.ndarray, k: np.ndarray, drop: np.ndarray, P: np.ndarray) -> np.ndarray:
    """sum of drop_k (1 - G) for zero-LR steps k: drop_k until the area after k turns positive."""
    T = len(lrs)
    starts = _from_steps(k, drop, T)
    # the first step r >= k with P(r) > P(k-1): from there on the term's G is 1
    ends_at = np.searchsorted(P, P[k - 1], side="right")
    keep = ends_at < T
    return starts - _from_steps(ends_at[keep], drop[keep], T)


def _step(beta: float) -> float:
    """Trapezoid spacing in log u: finer for steep kernels, whose integrand grows off the axis."""
    return _STEP / max(1.0, beta) ** _STEP_POWER


def _nodes(y_min: float, y_max: float, beta: float) -> tuple[np.ndarray, np.ndarray, float]:
    """Trapezoid nodes u_j, weights, and the node u_0 where the slow tail begins.

    y^-beta = int e^(beta v - e^v y) dv / Gamma(beta) (u = e^v) on a grid of spacing h in
    v. Nodes with u <= u_0 = SLOW / y_max barely decay over the schedule: `_slow_moments`
    sums that infinite tail of the grid as a polynomial in y instead of node by node.
    """
    h = _step(beta)
    v0 = math.log(_SLOW / y_max)
    hi = -math.log(y_min) + math.log(_FAST)
    v = v0 + h * np.arange(1, int((hi - v0) / h) + 2)
    weights = h * np.exp(beta * v - gammaln(beta))
    return np.exp(v), weights, math.exp(v0)


def _slow_moments(u0: float, beta: float) -> np.ndarray:
    """m_n = sum over the grid's nodes u_j <= u0 of weight_j u_j^n, n = 0..DEGREE (geometric)."""
    h = _step(beta)
    n = np.arange(_DEGREE + 1)
    ratio = np.exp(-(beta + n) * h)
    return h * np.exp((beta + n) * math.log(u0) - gammaln(beta)) / (1.0 - ratio)


def _kernel_sum(
    lrs: np.ndarray,
    P: np.ndarray,
    k: np.ndarray,
    drop: np.ndarray,
    beta: float,
    gamma: float,
    C: float,
) -> np.ndarray:
    """sum_{k <= t} drop_k (1 + c_k S_k(t))^-beta, c_k = C lrs[k]^-gamma, for every t.

    With y = 1/c + S, (1 + c S)^-beta = c^-beta y^-beta and y^-beta = sum_j weight_j
    e^(-u_j y); node j's share H_j(t) = sum_k drop_k c_k^-beta e^(-u_j / c_k) e^(-u_j S_k(t))
    obeys H_j(t) = e^(-u_j lrs[t]) (H_j(t-1) + new_j(t)): one multiply-add per step and node,
    every factor at most 1 (`_decaying_sums` does it in blocks).
    """
    T = len(lrs)
    c = C * lrs[k] ** -gamma
    y_min = float(np.min(1.0 / c + lrs[k]))
    y_max = float(np.max(1.0 / c) + P[-1] - P[k[0] - 1])
    u, weight, u0 = _nodes(y_min, y_max, beta)
    first = int(k[0])
    L = _block_length(float(lrs[first:].max() * u.max()), T - first)
    n = -(-(T - first) // L) * L  # whole blocks
    rate = np.zeros((n, len(u)))
    rate[: T - first] = np.outer(lrs[first:], u)
    new = np.zeros((n, len(u)))
    new[k - first] = (drop * c**-beta)[:, None] * np.exp(-np.outer(1.0 / c, u))
    H = _decaying_sums(new, rate)[: T - first]
    out = np.zeros(T)
    out[first:] = H @ weight
    return out + _slow_sum(P, k, drop * c**-beta, 1.0 / c - P[k - 1], _slow_moments(u0, beta))


def _decaying_sums(new: np.ndarray, rate: np.ndarray) -> np.ndarray:
    """H[t] = sum_{k <= t} new[k] exp(-(rate[k] + ... + rate[t])), column by column.

    Steps go in blocks short enough that the decay within one stays under e^BLOCK_EFOLDS:
    inside a block each term is scaled up by the decay from the block's start to just before
    it (at most e^600, no overflow), summed, and scaled back down; the sum entering a block
    is carried in by one loop over blocks. `new` and `rate` hold whole blocks (zero-padded).
    """
    n, q = new.shape
    L = _block_length(float(rate.max()), n)
    new = new.reshape(-1, L, q)
    decay = np.exp(-np.cumsum(rate.reshape(-1, L, q), axis=1))  # from block start to t
    before = np.ones_like(decay)  # ... to t - 1
    before[:, 1:] = decay[:, :-1]
    inside = np.cumsum(new / before, axis=1) * decay
    carry = np.zeros(q)
    for b in range(len(inside)):  # the sum entering block b decays through it
        inside[b] += carry * decay[b]
        carry = inside[b, -1]
    return inside.reshape(n, q)


def _block_length(top_rate: float, n: int) -> int:
    """Steps per block of `_decaying_sums`: the most whose decay stays under e^BLOCK_EFOLDS."""
    return max(1, min(n, int(_BLOCK_EFOLDS / max(top_rate, 1e-300))))


def _slow_sum(
    P: np.ndarray, k: np.ndarray, amp: np.ndarray, a: np.ndarray, moments: np.ndarray
) -> np.ndarray:
    """sum_{k <= t} amp_k sum_n (-y)^n m_n / n! with y = a_k + P(t): binomial in P(t)."""
    T = len(P)
    out = np.zeros(T)
    for n, m_n in enumerate(moments):
        for i in range(n + 1):  # y^n = sum_i binom(n, i) P(t)^i a_k^(n-i)
            coef = (-1) ** n * m_n / math.factorial(n) * math.comb(n, i)
            out += coef * P**i * _from_steps(k, amp * a ** (n - i), T)
    return out
