"""Linear attention with a data-dependent decay per key channel (HGRN2's gated recurrence).

Per head, with state S (Dk x Dv):  S_t = diag(f_t) S_{t-1} + k_t v_t^T,  o_t = S_t^T q_t.
Three forms of the same map, on tensors shaped (B, H, T, D):
- `recurrent_vector_decay`: the loop over time, the obviously correct reference;
- `chunk_vector_decay`: the chunk-wise parallel form used for training;
- `step_vector_decay`: one token, for decoding with O(1) state.
The gates come as `log_f` = log(f_t) (same shape as k, every entry <= 0): cumulative sums
of logs stay finite where products of small gates would underflow.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from runners.accounting import vector_chunk_length


def step_vector_decay(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, log_f: torch.Tensor, state: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """One token: q, k, log_f (B, H, Dk), v (B, H, Dv), state (B, H, Dk, Dv) -> (o, state)."""
    state = log_f.exp().unsqueeze(-1) * state + k.unsqueeze(-1) * v.unsqueeze(-2)
    return torch.einsum("bhk,bhkv->bhv", q, state), state


def recurrent_vector_decay(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    log_f: torch.Tensor,
    initial_state: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference: carry the state through time, one token at a time. Returns (o, final state)."""
    b, h, t, dk = q.shape
    state = q.new_zeros(b, h, dk, v.shape[-1]) if initial_state is None else initial_state
    f = log_f.exp()
    outputs = []
    for i in range(t):
        state = f[:, :, i, :, None] * state + k[:, :, i, :, None] * v[:, :, i, None, :]
        outputs.append((q[:, :, i, :, None] * state).sum(-2))
    return torch.stack(outputs, dim=2), state


def chunk_vector_decay(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    log_f: torch.Tensor,
    chunk_size: int,
    initial_state: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Chunk-wise form: decay-weighted scores inside each chunk, the state passed between chunks.

    With b_i the in-chunk cumulative sum of log f (inclusive) and S the state entering a chunk:
        A_ij = sum_c q_ic k_jc exp(b_ic - b_jc) for j <= i,   O = A V + (Q * e^b) S,
        S <- diag(e^(b_C)) S + (K * e^(b_C - b))^T V.
    A V is formed by `_IntraChunk` with matmuls only, every exponent <= 0. The chunk size
    must be a power of two (a shorter sequence uses the next power of two above its length).
    The tail is padded with log f = 0 (no decay) and zero keys, so the final state is exact
    for any T. Matmul FLOPs per token and head: (C - 1)(Dk + Dv) + 4 Dk Dv
    (`runners.accounting.vector_decay_flops`).
    """
    b, h, t, dk = q.shape
    dv = v.shape[-1]
    c = vector_chunk_length(chunk_size, t)
    n = -(-t // c)
    pad = n * c - t
    if pad:
        q, k, v, log_f = (F.pad(x, (0, 0, 0, pad)) for x in (q, k, v, log_f))
    q, k, v, log_f = (x.reshape(b, h, n, c, x.shape[-1]) for x in (q, k, v, log_f))

    # b_i; summed in at least float32 so that bf16 gates do not drift along the chunk
    cum = log_f.to(torch.promote_types(log_f.dtype, torch.float32)).cumsum(dim=-2)
    last = cum[..., -1:, :]  # b_C
    out = _IntraChunk.apply(q, k, v, cum)
    updates = (k * (last - cum).exp()).transpose(-1, -2) @ v  # (B, H, N, Dk, Dv)
    chunk_decay = last.exp().transpose(-1, -2)  # (B, H, N, Dk, 1)

    state = q.new_zeros(b, h, dk, dv) if initial_state is None else initial_state
    entering = []
    # unbind, not indexing: indexing's backward would write a full-size gradient per chunk
    for decay, update in zip(chunk_decay.unbind(2), updates.unbind(2), strict=True):
        entering.append(state)
        state = decay * state + update
    out = out + (q * cum.exp()) @ torch.stack(entering, dim=2)
    return out.reshape(b, h, n * c, dv)[:, :, :t], state


def _levels(c: int) -> Iterator[tuple[int, int, int]]:
    """Block splits (blocks, 2, half) for half = 1, 2, 4, .., c/2."""
    half = 1
    while half < c:
        yield (c // (2 * half), 2, half)
        half *= 2


class _IntraChunk(torch.autograd.Function):
    """sum_{j <= i} A_ij v_j within each chunk (tensors (..., C, D)), by recursive halving.

    Factoring exp(b_i - b_j) = exp(b_i - b_r) exp(b_r - b_j) keeps both factors <= 0 only
    when j <= r <= i. So split each chunk into blocks of 2h positions (h = 1, 2, 4, .., C/2)
    and let r be the last position of each block's first half: the second half's queries
    against the first half's keys is then one stable matmul per block, and these pairs
    together with the diagonal (j = i, factor 1) cover every j <= i exactly once.

    The backward is written out because autograd's version of these strided, per-level
    products spends most of its time zero-filling and adding full-size gradients. With g
    the output gradient and dA_ij = g_i . v_j: dq_i = sum_j dA_ij k_j e^(b_i - b_j),
    dk_j = sum_i dA_ij q_i e^(b_i - b_j), dv_j = sum_i A_ij g_i, each by the same halving,
    and since b enters only through b_i - b_j, db = q * dq - k * dk.
    """

    @staticmethod
    def forward(ctx, q, k, v, cum):
        dtypes = (q.dtype, k.dtype, v.dtype)
        q, k, v = (x.to(cum.dtype) for x in (q, k, v))
        out = (q * k).sum(-1, keepdim=True) * v
        all_scores = []
        for split in _levels(q.shape[-2]):
            queries, keys, values, _, _ = _level(split, q, k, v, cum)
            scores = queries @ keys.mT
            out.unflatten(-2, split)[..., 1, :, :] += scores @ values
            all_scores.append(scores)
        # the scores are small (C - 1 per position); keeping them makes the backward's
        # matmul FLOPs exactly twice the forward's, as the accounting assumes
        ctx.save_for_backward(q, k, v, cum, *all_scores)
        ctx.dtypes = dtypes
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        q, k, v, cum, *all_scores = ctx.saved_tensors
        grad = grad.to(cum.dtype)
        grad_dot_v = (grad * v).sum(-1, keepdim=True)
        dq, dk, dv = grad_dot_v * k, grad_dot_v * q, (q * k).sum(-1, keepdim=True) * grad
        for split, scores in zip(_levels(q.shape[-2]), all_scores, strict=True):
            queries, keys, values, q_scale, k_scale = _level(split, q, k, v, cum)
            g = grad.unflatten(-2, split)[..., 1, :, :]
            d_scores = g @ values.mT
            dv.unflatten(-2, split)[..., 0, :, :] += scores.to(grad.dtype).mT @ g
            dq.unflatten(-2, split)[..., 1, :, :] += (d_scores @ keys) * q_scale
            dk.unflatten(-2, split)[..., 0, :, :] += (d_scores.mT @ queries) * k_scale
        d_cum = q * dq - k * dk
        return *(x.to(t) for x, t in zip((dq, dk, dv), ctx.dtypes, strict=True)), d_cum


def _level(
    split: tuple[int, int, int],
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    cum: torch.Tensor,
) -> tuple[torch.Tensor, ...]:
    """Scaled second-half queries, first-half keys and values of each block, and the scales."""
    (_, q_second), (k_first, _), (v_first, _), (cum_first, cum_second) = (
        x.unflatten(-2, split).unbind(-3) for x in (q, k, v, cum)
    )
    ref = cum_first[..., -1:, :]
    q_scale, k_scale = (cum_second - ref).exp(), (ref - cum_first).exp()
    return q_second * q_scale, k_first * k_scale, v_first, q_scale, k_scale
