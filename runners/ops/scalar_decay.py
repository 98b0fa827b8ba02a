"""Linear attention with one fixed decay per head (TNL; cosFormer2 with decay 1).

Per head, with state S (Dk x Dv):  S_t = lam S_{t-1} + k_t v_t^T,  o_t = S_t^T q_t.
Three forms of the same map, on tensors shaped (B, H, T, D):
- `recurrent_scalar_decay`: the loop over time, the obviously correct reference;
- `chunk_scalar_decay`: the chunk-wise parallel form used for training;
- `step_scalar_decay`: one token, for decoding with O(1) state.
`log_decay` holds log(lam) per head (shape (H,), every entry <= 0).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def step_scalar_decay(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, log_decay: torch.Tensor, state: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """One token: q, k (B, H, Dk), v (B, H, Dv), state (B, H, Dk, Dv) -> (o (B, H, Dv), state)."""
    lam = log_decay.exp().view(-1, 1, 1)
    state = lam * state + k.unsqueeze(-1) * v.unsqueeze(-2)
    return torch.einsum("bhk,bhkv->bhv", q, state), state


def recurrent_scalar_decay(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    log_decay: torch.Tensor,
    initial_state: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference: carry the state through time, one token at a time. Returns (o, final state)."""
    b, h, t, dk = q.shape
    lam = log_decay.exp().view(h, 1, 1)
    state = q.new_zeros(b, h, dk, v.shape[-1]) if initial_state is None else initial_state
    outputs = []
    for i in range(t):
        state = lam * state + k[:, :, i, :, None] * v[:, :, i, None, :]
        outputs.append((q[:, :, i, :, None] * state).sum(-2))
    return torch.stack(outputs, dim=2), state


def chunk_scalar_decay(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    log_decay: torch.Tensor,
    chunk_size: int,
    initial_state: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Chunk-wise form: masked matmuls inside each chunk, the state passed between chunks.

    With C the chunk length, i = 1..C the position in the chunk and S the state entering it:
        O = ((Q K^T) * M) V + diag(lam^i) Q S,   M_ij = lam^(i-j) for i >= j, else 0,
        S <- lam^C S + (K * lam^(C-j))^T V.
    All exponents are <= 0. Any T works: the sequence is zero-padded to whole chunks and the
    last chunk's state update uses its true length. Matmul FLOPs per token and head are
    2 C (Dk + Dv) + 4 Dk Dv whatever T is (`runners.accounting.scalar_decay_flops`); the
    pass of the state between chunks is element-wise.
    """
    b, h, t, dk = q.shape
    dv = v.shape[-1]
    c = min(chunk_size, t)
    n = -(-t // c)
    pad = n * c - t
    if pad:
        q, k, v = (F.pad(x, (0, 0, 0, pad)) for x in (q, k, v))
    q, k, v = (x.reshape(b, h, n, c, x.shape[-1]) for x in (q, k, v))

    log_lam = log_decay.view(h, 1, 1)
    pos = torch.arange(1, c + 1, device=q.device, dtype=q.dtype)
    lengths = torch.full((n,), c, device=q.device, dtype=q.dtype)
    lengths[-1] = c - pad
    gap = (pos[:, None] - pos[None, :]).clamp(min=0)  # i - j where it counts
    decay_mask = torch.exp(log_lam * gap).tril()  # (H, C, C): lam^(i-j), i >= j
    query_decay = torch.exp(log_lam * pos).view(h, 1, c, 1)  # lam^i
    # lam^(len - j); positions past the true length hold zero keys, so clamping is exact
    key_decay = torch.exp(log_lam * (lengths[:, None] - pos).clamp(min=0)).unsqueeze(-1)
    chunk_decay = torch.exp(log_decay.view(h, 1) * lengths)  # (H, N): lam^len

    scores = (q @ k.transpose(-1, -2)) * decay_mask.unsqueeze(1)
    out = scores @ v
    updates = (k * key_decay).transpose(-1, -2) @ v  # (B, H, N, Dk, Dv)

    state = q.new_zeros(b, h, dk, dv) if initial_state is None else initial_state
    entering = []
    # unbind, not indexing: indexing's backward would write a full-size gradient per chunk
    for decay, update in zip(chunk_decay.unbind(1), updates.unbind(2), strict=True):
        entering.append(state)
        state = decay.view(h, 1, 1) * state + update
    out = out + (q * query_decay) @ torch.stack(entering, dim=2)
    return out.reshape(b, h, n * c, dv)[:, :, :t], state
