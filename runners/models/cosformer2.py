"""cosFormer2's token mixer: the TNL mixer without decay, with learnable relative positions.

Queries and keys pass through swish and then LRPE, phi(x_t) -> [phi(x_t) cos(theta t),
phi(x_t) sin(theta t)], with theta learnable per head and channel and initialised to
10000^(-2c/D) (c = 0..D-1, D the head dim). The state per head is therefore 2D x D.
No decay (lam = 1); the output SRMSNorm, low-rank gate and W_o are TNL's. The paper's small
causal positional recurrence on the embeddings is left out.
"""

from __future__ import annotations

import torch
from torch import nn

from runners.config import ModelConfig
from runners.models.tnl import TNLMixer
from runners.ops import lrpe

THETA_BASE = 10_000.0


class CosFormer2Mixer(TNLMixer):
    """TNL with lam = 1 and LRPE on queries and keys (see the module docstring)."""

    def __init__(self, cfg: ModelConfig, layer: int) -> None:
        super().__init__(cfg, layer)
        channel = torch.arange(cfg.head_dim, dtype=torch.float64)
        theta = (THETA_BASE ** (-2 * channel / cfg.head_dim)).repeat(cfg.n_heads)
        # kept flat (1-D) so the LM's init leaves it alone and AdamW does not decay it
        self.theta = nn.Parameter(theta.float())

    @staticmethod
    def log_decay_of(cfg: ModelConfig, layer: int) -> torch.Tensor:
        return torch.zeros(cfg.n_heads, dtype=torch.float64)

    def features(self, q: torch.Tensor, k: torch.Tensor, start: int) -> tuple[torch.Tensor, ...]:
        theta = self.theta.view(self.n_heads, self.head_dim)
        return lrpe(q, theta, start), lrpe(k, theta, start)
