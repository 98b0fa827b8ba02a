"""LLaMA-style causal softmax attention with rotary embeddings."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from runners.config import ModelConfig
from runners.models.layers import Rotary
from runners.mup import attention_scale


class SoftmaxAttention(nn.Module):
    """Multi-head causal attention through scaled_dot_product_attention.

    Scores are scaled by 1/sqrt(head_dim) under SP and as 1/head_dim under muP.
    """

    def __init__(self, cfg: ModelConfig, layer: int) -> None:
        super().__init__()
        self.n_heads = cfg.n_heads
        self.head_dim = cfg.head_dim
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model, bias=False)
        self.out = nn.Linear(cfg.d_model, cfg.d_model, bias=False)
        self.rotary = Rotary(cfg.head_dim, cfg.seq_len)
        self.scale = attention_scale(cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        qkv = self.qkv(x).view(b, t, 3, self.n_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k = self.rotary(qkv[:2])  # one rotation for q and k together
        o = F.scaled_dot_product_attention(q, k, qkv[2], is_causal=True, scale=self.scale)
        return self.out(o.transpose(1, 2).reshape(b, t, d))
