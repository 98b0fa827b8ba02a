"""Layers shared by every architecture: norms, rotary embeddings, the GLU channel mixer."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from runners.config import ModelConfig


class RMSNorm(nn.Module):
    """x / rms(x) times a learned gain (no gain when `affine=False`: SRMSNorm)."""

    def __init__(self, dim: int, eps: float = 1e-6, affine: bool = True) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim)) if affine else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x, (x.shape[-1],), self.weight, self.eps)


class Rotary(nn.Module):
    """Rotary position embedding (rotate-half form) for tensors shaped (B, H, T, head_dim)."""

    cos: torch.Tensor
    sin: torch.Tensor

    def __init__(self, head_dim: int, max_len: int, base: float = 10_000.0) -> None:
        super().__init__()
        inv_freq = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
        angles = torch.outer(torch.arange(max_len, dtype=torch.float64), inv_freq)
        angles = torch.cat([angles, angles], dim=-1)
        self.register_buffer("cos", angles.cos().float(), persistent=False)
        self.register_buffer("sin", angles.sin().float(), persistent=False)

    def forward(self, x: torch.Tensor, offset: int = 0) -> torch.Tensor:
        t = x.shape[-2]
        cos = self.cos[offset : offset + t].to(x.dtype)
        sin = self.sin[offset : offset + t].to(x.dtype)
        x1, x2 = x.chunk(2, dim=-1)
        return x * cos + torch.cat([-x2, x1], dim=-1) * sin


class GLU(nn.Module):
    """Channel mixer (U * act(V)) W_down: SwiGLU for llama, no activation for linear models."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.hidden = cfg.ffn_hidden
        self.w_in = nn.Linear(cfg.d_model, 2 * self.hidden, bias=False)
        self.w_out = nn.Linear(self.hidden, cfg.d_model, bias=False)
        self.swish = cfg.arch == "llama"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u, v = self.w_in(x).split(self.hidden, dim=-1)
        return self.w_out(u * F.silu(v) if self.swish else u * v)
