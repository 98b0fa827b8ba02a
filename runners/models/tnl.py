"""TransNormerLLM's token mixer (TNL): linear attention with a fixed per-head decay.

q = swish(x Wq), k = swish(x Wk), v = x Wv; per head S_t = lam S_{t-1} + k_t v_t^T,
o_t = S_t^T q_t (no 1/sqrt(d) scale, no denominator). The heads' outputs are normalised by
SRMSNorm (x / rms(x) over the concatenated heads, no gain), multiplied by a low-rank sigmoid
gate sigma(x W_gdown W_gup) of rank head_dim, and projected by W_o.
The math lives in runners/ops/scalar_decay.py; this module owns the parameters.

`tnl_spread` (TNLSpreadMixer) is the same mixer with one fixed decay per key channel instead
of per head: TNL's ALiBi slopes give a lone head only the slowest rate (2^-8 per token at the
bottom layer), so the small one-head rungs of the ladder could not forget at all within a
128-token context. Spreading the slopes over every key channel gives any head count the
whole range of memories at an unchanged shape. It is its own arch (not a setting of `tnl`)
so that every exported run row says which decay it trained with.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from runners.config import ModelConfig
from runners.models.recurrent import RecurrentState
from runners.ops import (
    chunk_scalar_decay,
    chunk_vector_decay,
    recurrent_scalar_decay,
    recurrent_vector_decay,
    step_scalar_decay,
    step_vector_decay,
)

NORM_EPS = 1e-6


def tnl_log_decay(n_heads: int, layer: int, n_layers: int) -> torch.Tensor:
    """log(lam_h) = -m_h (1 - l / (L - 1) + 1e-5), m_h = 2^(-8h/H) the ALiBi slopes, h = 1..H.

    Lower layers forget fast, the top layer barely at all. With one layer (L = 1) the ratio
    l / (L - 1) is taken as 0, so that layer decays like a bottom layer.
    """
    return -alibi_slopes(n_heads) * _depth_factor(layer, n_layers)


def tnl_spread_log_decay(n_heads: int, head_dim: int, layer: int, n_layers: int) -> torch.Tensor:
    """log(lam_hc), shape (H, D): the ALiBi slopes of H * D heads, 2^(-8j/(H D)), j = 1..H D,
    one per key channel, head-major (head 1 holds the fastest D rates), with TNL's layer
    factor. Every head count thus spans 2^(-8/(H D)) .. 2^-8 per token at the bottom layer;
    with head_dim 1 it is `tnl_log_decay` exactly."""
    slopes = alibi_slopes(n_heads * head_dim).view(n_heads, head_dim)
    return -slopes * _depth_factor(layer, n_layers)


def alibi_slopes(n: int) -> torch.Tensor:
    """2^(-8j/n) for j = 1..n (float64)."""
    return 2.0 ** (-8.0 * torch.arange(1, n + 1, dtype=torch.float64) / n)


def _depth_factor(layer: int, n_layers: int) -> float:
    depth = layer / (n_layers - 1) if n_layers > 1 else 0.0
    return 1.0 - depth + 1e-5


class TNLMixer(nn.Module):
    """Lightning attention with per-head decay, output norm and low-rank gate.

    `impl` picks the sequence form: "chunk" (training, default) or "recurrent" (the naive
    reference loop); `step` decodes one token with O(1) state.
    """

    log_decay: torch.Tensor

    def __init__(self, cfg: ModelConfig, layer: int) -> None:
        super().__init__()
        d = cfg.d_model
        self.n_heads, self.head_dim, self.chunk_size = cfg.n_heads, cfg.head_dim, cfg.chunk_size
        self.impl = "chunk"
        # q, k, v and the gate's down projection in one matmul
        self.qkvg = nn.Linear(d, 3 * d + self.head_dim, bias=False)
        self.gate_up = nn.Linear(self.head_dim, d, bias=False)
        self.out = nn.Linear(d, d, bias=False)
        log_decay = self.log_decay_of(cfg, layer).float()
        self.register_buffer("log_decay", log_decay, persistent=False)

    @staticmethod
    def log_decay_of(cfg: ModelConfig, layer: int) -> torch.Tensor:
        return tnl_log_decay(cfg.n_heads, layer, cfg.n_layers)

    def features(self, q: torch.Tensor, k: torch.Tensor, start: int) -> tuple[torch.Tensor, ...]:
        """Feature map of queries and keys (B, H, T, D) at positions start.. (identity here)."""
        return q, k

    def project(self, x: torch.Tensor, start: int) -> tuple[torch.Tensor, ...]:
        """x (B, T, d) -> q, k, v (B, H, T, .) and the gate's low-rank input (B, T, head_dim)."""
        b, t, d = x.shape
        qkv, gate = self.qkvg(x).split([3 * d, self.head_dim], dim=-1)
        q, k, v = qkv.view(b, t, 3, self.n_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k = self.features(F.silu(q), F.silu(k), start)
        return q, k, v, gate

    def output(self, o: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        """Heads (B, H, T, D) -> SRMSNorm, times sigma(gate W_gup), then W_o: (B, T, d)."""
        o = o.transpose(1, 2).flatten(2)
        o = F.rms_norm(o, (o.shape[-1],), eps=NORM_EPS)
        return self.out(o * torch.sigmoid(self.gate_up(gate)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_state(x)[0]

    def forward_state(
        self, x: torch.Tensor, state: RecurrentState | None = None
    ) -> tuple[torch.Tensor, RecurrentState]:
        """Whole sequence x (B, T, d) from `state` (None: empty) -> (y, state after it)."""
        start = 0 if state is None else state.position
        memory = None if state is None else state.memory
        q, k, v, gate = self.project(x, start)
        o, memory = self.mix(q, k, v, memory)
        return self.output(o, gate), RecurrentState(memory, start + x.shape[1])

    def step(
        self, x: torch.Tensor, state: RecurrentState | None = None
    ) -> tuple[torch.Tensor, RecurrentState]:
        """One token x (B, d) -> (y (B, d), state)."""
        start = 0 if state is None else state.position
        q, k, v, gate = self.project(x.unsqueeze(1), start)
        q, k, v = q[:, :, 0], k[:, :, 0], v[:, :, 0]
        memory = q.new_zeros(*q.shape, v.shape[-1]) if state is None else state.memory
        o, memory = self.mix_step(q, k, v, memory)
        return self.output(o.unsqueeze(2), gate)[:, 0], RecurrentState(memory, start + 1)

    def mix(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, memory: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The recurrence over a sequence (B, H, T, .) from `memory` in the form `impl` picks."""
        if self.impl == "chunk":
            return chunk_scalar_decay(q, k, v, self.log_decay, self.chunk_size, memory)
        return recurrent_scalar_decay(q, k, v, self.log_decay, memory)

    def mix_step(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, memory: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The recurrence over one token (B, H, .)."""
        return step_scalar_decay(q, k, v, self.log_decay, memory)


class TNLSpreadMixer(TNLMixer):
    """TNL with one fixed decay per key channel (`tnl_spread_log_decay`): the diagonal-decay
    recurrence S_t = diag(lam_h) S_{t-1} + k_t v_t^T, computed by the vector-decay ops with
    a constant gate. Parameters are TNL's."""

    def __init__(self, cfg: ModelConfig, layer: int) -> None:
        super().__init__(cfg, layer)
        # kept in float64 (cast where used), so a float64 model is exact to 1e-10
        self.log_decay = self.log_decay_of(cfg, layer)

    @staticmethod
    def log_decay_of(cfg: ModelConfig, layer: int) -> torch.Tensor:
        return tnl_spread_log_decay(cfg.n_heads, cfg.head_dim, layer, cfg.n_layers)

    def mix(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, memory: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        log_f = self.log_decay.to(q.dtype)[:, None, :].expand_as(q)
        if self.impl == "chunk":
            return chunk_vector_decay(q, k, v, log_f, self.chunk_size, memory)
        return recurrent_vector_decay(q, k, v, log_f, memory)

    def mix_step(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, memory: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        log_f = self.log_decay.to(q.dtype).expand_as(q)
        return step_vector_decay(q, k, v, log_f, memory)
