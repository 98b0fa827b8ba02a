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

A fit needs the drop only where the loss was measured: the recurrence then runs from one
measured step to the next (each step's new term decayed to the next measured step on its own),
which is the same sum regrouped. `loss_drop_grad` adds the derivatives by beta, gamma and C,
the same node sums with other amplitudes and weights (d/dc of the Laplace form brings a
factor u, d/dbeta the log of the weights), so that fits need no finite differences.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import sparse
from scipy.special import digamma, gammaln

_STEP = 0.4  # trapezoid spacing in log u: relative error about exp(-pi^2 / STEP) ~ 2e-11
_STEP_POWER = 0.5  # ... and the spacing shrinks like beta^-0.5 for beta > 1
_FAST = 30.0  # the fastest node decays by e^-30 over the shortest y
_SLOW = 1e-2  # slow nodes (u y <= 0.01 for every y) are summed as a polynomial in y ...
_DEGREE = 4  # ... of this degree: truncation 0.01^5 / 5! ~ 1e-13 of their share
_BLOCK_EFOLDS = 300.0  # most decay inside one block of `_node_sums`
_CHUNK = 2048  # rows `_node_sums` holds at once


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


def loss_drop(
    lrs: np.ndarray, beta: float, gamma: float, C: float, at: np.ndarray | None = None
) -> np.ndarray:
    """LD(t) / B at the increasing steps `at` (default every step) in O(Q T): the numbers of
    `loss_drop_naive`."""
    return _loss_drop_terms(lrs, beta, gamma, C, at, grad=False)[0]


def loss_drop_grad(
    lrs: np.ndarray, beta: float, gamma: float, C: float, at: np.ndarray | None = None
) -> np.ndarray:
    """Rows LD / B, d/dbeta, d/dgamma, d/dC at the increasing steps `at` (default every step)."""
    return _loss_drop_terms(lrs, beta, gamma, C, at, grad=True)


def _loss_drop_terms(
    lrs: np.ndarray, beta: float, gamma: float, C: float, at: np.ndarray | None, grad: bool
) -> np.ndarray:
    lrs = np.asarray(lrs, dtype=float)
    T = len(lrs)
    at = np.arange(T) if at is None else np.asarray(at, dtype=int)
    if len(at) and (at[0] < 0 or at[-1] >= T or np.any(np.diff(at) <= 0)):
        raise ValueError("steps must increase within the schedule")
    out = np.zeros((4 if grad else 1, len(at)))
    w = warmup_end(lrs)
    k = np.arange(w + 1, T)
    drop = lrs[k - 1] - lrs[k]
    live = drop != 0.0
    k, drop = k[live], drop[live]
    if len(k) == 0 or len(at) == 0:
        return out
    P = areas(lrs)
    # sum_k drop_k: G's constant part, from step k on
    out[0] += _from_steps(k, drop, T)[at]
    zero = lrs[k] <= 0.0
    if zero.any():  # c = inf: G = 1 once some positive LR follows (S > 0), else 0
        out[0] -= _zero_lr_terms(lrs, k[zero], drop[zero], P)[at]
    k, drop = k[~zero], drop[~zero]
    if len(k):
        out -= _kernel_sums(lrs, P, k, drop, beta, gamma, C, at, grad)
    return out


def _from_steps(k: np.ndarray, values: np.ndarray, T: int) -> np.ndarray:
    """sum over k' <= t of values[k'] for every t (values placed at steps k)."""
    return np.cumsum(np.bincount(k, weights=values, minlength=T))


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
    """Trapezoid nodes v_j = log u_j, their weights, and v_0 where the slow tail begins.

    y^-beta = int e^(beta v - e^v y) dv / Gamma(beta) (u = e^v) on a grid of spacing h in
    v. Nodes with u <= u_0 = SLOW / y_max barely decay over the schedule: `_slow_moments`
    sums that infinite tail of the grid as a polynomial in y instead of node by node.
    """
    h = _step(beta)
    v0 = math.log(_SLOW / y_max)
    hi = -math.log(y_min) + math.log(_FAST)
    v = v0 + h * np.arange(1, int((hi - v0) / h) + 2)
    weights = h * np.exp(beta * v - gammaln(beta))
    return v, weights, v0


def _slow_moments(v0: float, beta: float, degree: int) -> np.ndarray:
    """m_n = sum over the grid's nodes u_j <= u0 of weight_j u_j^n, n = 0..degree (geometric)."""
    h = _step(beta)
    n = np.arange(degree + 1)
    ratio = np.exp(-(beta + n) * h)
    return h * np.exp((beta + n) * v0 - gammaln(beta)) / (1.0 - ratio)


def _kernel_sums(
    lrs: np.ndarray,
    P: np.ndarray,
    k: np.ndarray,
    drop: np.ndarray,
    beta: float,
    gamma: float,
    C: float,
    at: np.ndarray,
    grad: bool,
) -> np.ndarray:
    """sum_{k <= t} drop_k K_k(t), K = (1 + c_k S_k(t))^-beta, c_k = C lrs[k]^-gamma, at the
    steps `at`; with grad, also the sums of drop_k dK/dbeta, dK/dgamma and dK/dC.

    With y = 1/c + S, K = c^-beta y^-beta and y^-beta = sum_j weight_j e^(-u_j y), so every
    row is a weighted sum over nodes of H_j(t) = sum_k amp_k e^(-u_j (1/c_k + S_k(t))):
    K itself from amp = drop c^-beta; dK/dbeta from the same H with weights times
    (v_j - digamma(beta) - log c_k) (log c = log C - gamma log lr); dK/dc =
    -beta/c K + c^(-beta-2) sum_j weight_j u_j e^(-u_j y), amp = drop c^(-beta-1) with
    weights times u_j, and dc/dC = c/C, dc/dgamma = -c log lr.
    """
    c = C * lrs[k] ** -gamma
    inv_c = 1.0 / c
    lo = _area_errors(lrs, P)
    y_min = float(np.min(inv_c + lrs[k]))
    y_max = float(np.max(inv_c) + P[-1] - P[k[0] - 1])
    v, weight, v0 = _nodes(y_min, y_max, beta)
    amp = drop * c**-beta
    amps = [amp]
    if grad:
        log_lr = np.log(lrs[k])
        amps += [amp * log_lr, amp * inv_c, amp * inv_c * log_lr]
    moments = _slow_moments(v0, beta, _DEGREE + 1)
    Q = _slow_basis(P, k, inv_c - P[k - 1], np.array(amps), at)
    u = np.exp(v)
    if not grad:
        H = _node_sums((P, lo), k, inv_c, u, at, np.array(amps), weight[None, None])
        return H[0] + moments[:-1] @ Q[0]
    ratio = np.exp(-(beta + np.arange(_DEGREE + 1)) * _step(beta))
    psi = float(digamma(beta))
    d_beta_moments = moments[:-1] * (v0 - psi - _step(beta) * ratio / (1.0 - ratio))
    weights = np.zeros((4, 2, len(v)))  # per amplitude: the node weights of its sums
    weights[0] = weight, weight * (v - psi)
    weights[1, 0] = weight
    weights[2:, 0] = weight * u
    H = _node_sums((P, lo), k, inv_c, u, at, np.array(amps), weights)
    K0 = H[0, 0] + moments[:-1] @ Q[0]
    K_beta = H[0, 1] + d_beta_moments @ Q[0]
    K_log_lr = H[1, 0] + moments[:-1] @ Q[1]
    U = H[2, 0] + moments[1:] @ Q[2]
    U_log_lr = H[3, 0] + moments[1:] @ Q[3]
    return np.stack(
        [
            K0,
            K_beta - (math.log(C) * K0 - gamma * K_log_lr),
            beta * K_log_lr - U_log_lr,
            (U - beta * K0) / C,
        ]
    )


def _area_errors(lrs: np.ndarray, P: np.ndarray) -> np.ndarray:
    """lo with P + lo the LR area to twice double precision (compensated sum of cumsum's
    rounding errors): so that the area of a few small-LR steps far into a run, which the fast
    nodes multiply by up to 30 / lr, is exact to its own size, not to P's."""
    prev = np.r_[0.0, P[:-1]]
    s = prev + lrs
    back = s - prev
    error = (prev - (s - back)) + (lrs - back)  # s + error = prev + lrs exactly (TwoSum)
    return np.cumsum((s - P) + error)


def _node_sums(
    areas: tuple[np.ndarray, np.ndarray],
    k: np.ndarray,
    inv_c: np.ndarray,
    u: np.ndarray,
    at: np.ndarray,
    amps: np.ndarray,
    weights: np.ndarray,
) -> np.ndarray:
    """out[s, i, m] = sum_j weights[s, i, j] H_sj(at_m), where
    H_sj(t) = sum_{k <= t} amps[s, k] exp(-u_j (inv_c_k + P(t) - P(k-1))).

    Node by node a running sum over the rows `at`: H(m) = e^(-u (P(at_m) - P(at_m-1))) H(m-1)
    + the terms of the steps k in (at_m-1, at_m]. It is taken in blocks of rows short enough
    that the decay inside one stays under e^BLOCK_EFOLDS: every term enters scaled to its
    block's last row (a factor at most 1, so nothing overflows), the block is summed and
    scaled back to each row, and the sums entering the blocks are one scan over blocks.
    Blocks go in chunks of about CHUNK rows, so that memory stays small on long schedules.
    """
    M = len(at)
    out = np.zeros((len(amps), weights.shape[1], M))
    row = np.searchsorted(at, k)  # a step's loss is first measured at at[row]
    keep = row < M
    k, row, inv_c, amps = k[keep], row[keep], inv_c[keep], amps[:, keep]
    if len(k) == 0:
        return out
    first = int(row[0])  # earlier rows have no terms yet
    widest = float(np.max(np.diff(areas[0][at[first:]]), initial=0.0)) * u[-1]
    L = max(1, min(M - first, int(_BLOCK_EFOLDS / max(widest, 1e-300))))
    chunk = L * max(1, _CHUNK // L)
    carry = np.zeros((len(amps), len(u)))  # the sums at the last row before the chunk
    for start in range(first, M, chunk):
        stop = min(start + chunk, M)
        mine = slice(*np.searchsorted(row, [start, stop]))
        steps = np.r_[at[max(start - 1, 0)], at[start:stop]]  # the row before, then the chunk's
        H = _block_sums(
            areas, k[mine], row[mine] - start, inv_c[mine], u, steps, amps[:, mine], L, carry
        )
        carry = H[:, -1]
        out[:, :, start:stop] = np.matmul(H, weights.transpose(0, 2, 1)).transpose(0, 2, 1)
    return out


def _block_sums(
    areas: tuple[np.ndarray, np.ndarray],
    k: np.ndarray,
    row: np.ndarray,
    inv_c: np.ndarray,
    u: np.ndarray,
    steps: np.ndarray,
    amps: np.ndarray,
    L: int,
    carry: np.ndarray,
) -> np.ndarray:
    """H[s, m, j] at the rows steps[1:] of one chunk (steps[0]: the row before it, where the
    sums are `carry`), for the steps k whose terms enter at those rows."""
    P, lo = areas

    def span(i: np.ndarray, j: np.ndarray) -> np.ndarray:
        """The LR area of steps j+1..i, exact to its own size (see `_area_errors`)."""
        return (P[i] - P[j]) + (lo[i] - lo[j])

    S, q, m = len(amps), len(u), len(steps) - 1
    rows = steps[1:]
    blocks = -(-m // L)
    last = np.minimum(np.arange(1, blocks + 1) * L, m) - 1  # each block's last row
    end = rows[last[np.arange(m) // L]]  # the step of each row's block's last row
    terms = np.exp(np.multiply.outer(-(inv_c + span(end[row], k - 1)), u))
    scaled = np.zeros((S, blocks * L, q))
    if len(k) == len(np.unique(row)):  # one term per row at most
        scaled[:, row] = amps[:, :, None] * terms
    else:
        per_row = np.r_[0, np.cumsum(np.bincount(row, minlength=blocks * L))]
        indptr = np.r_[0, (per_row[1:] + len(k) * np.arange(S)[:, None]).ravel()]
        group = sparse.csr_matrix(
            (amps.ravel(), np.tile(np.arange(len(k)), S), indptr), shape=(S * blocks * L, len(k))
        )
        scaled = (group @ terms).reshape(S, blocks * L, q)
    inside = np.cumsum(scaled.reshape(S, blocks, L, q), axis=2)
    # the sums at each block's last row: a scan over blocks, started from the carry
    ends = np.r_[steps[0], rows[last]]
    step = np.exp(np.multiply.outer(-span(ends[1:], ends[:-1]), u))
    totals = inside[:, np.arange(blocks), last - np.arange(blocks) * L]
    totals[:, 0] += step[0] * carry
    sums = _linear_scan(step[1:], totals)
    inside[:, 0] += (step[0] * carry)[:, None, :]
    inside[:, 1:] += (step[1:] * sums[:, :-1])[:, :, None, :]
    back = np.exp(np.multiply.outer(-span(end, rows), u))  # from a block's last row back
    return inside.reshape(S, -1, q)[:, :m] / back


def _linear_scan(decay: np.ndarray, new: np.ndarray) -> np.ndarray:
    """x[:, b] = decay[b - 1] x[:, b - 1] + new[:, b] (x[:, 0] = new[:, 0]) for every b, in
    log2(n) vectorised passes (each composes spans twice as long as the last)."""
    x, a = new.copy(), np.r_[np.zeros((1, *decay.shape[1:])), decay]
    shift = 1
    while shift < x.shape[1]:
        x[:, shift:] += a[shift:] * x[:, :-shift]  # numpy reads the overlap before writing
        a[shift:] *= a[:-shift]
        shift *= 2
    return x


def _slow_basis(
    P: np.ndarray, k: np.ndarray, a: np.ndarray, amps: np.ndarray, at: np.ndarray
) -> np.ndarray:
    """Q[s, n, m] = (-1)^n / n! sum_{k <= at_m} amps[s, k] (a_k + P(at_m))^n, n = 0..DEGREE.

    The slow nodes' share is sum_n m_n Q_n for their moments m_n; y^n is expanded binomially
    in P(t), so each power is one cumulative sum over k.
    """
    upto = np.searchsorted(k, at, side="right")  # how many steps k are <= at_m
    powers = a ** np.arange(_DEGREE + 1)[:, None]  # a_k^p
    sums = np.zeros((len(amps), _DEGREE + 1, len(at)))
    picked = upto > 0
    sums[:, :, picked] = np.cumsum(amps[:, None, :] * powers, axis=2)[:, :, upto[picked] - 1]
    Pt = P[at]
    out = np.zeros((len(amps), _DEGREE + 1, len(at)))
    for n in range(_DEGREE + 1):
        for i in range(n + 1):  # y^n = sum_i binom(n, i) P(t)^i a_k^(n-i)
            coef = (-1) ** n / math.factorial(n) * math.comb(n, i)
            out[:, n] += coef * Pt**i * sums[:, n - i]
    return out
