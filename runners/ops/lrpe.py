"""cosFormer2's learnable relative positional encoding (LRPE) as a feature map.

x_t -> [x_t cos(theta t), x_t sin(theta t)] per channel, for queries and keys alike, so that
q'_t . k'_s = sum_c q_tc k_sc cos(theta_c (t - s)): scores depend on positions only through
t - s, and the map needs the absolute position t (decoding passes it).
"""

from __future__ import annotations

import torch


def lrpe(x: torch.Tensor, theta: torch.Tensor, start: int = 0) -> torch.Tensor:
    """x (B, H, T, D), theta (H, D), positions start..start+T-1 -> (B, H, T, 2 D)."""
    t = x.shape[-2]
    positions = torch.arange(start, start + t, device=x.device, dtype=x.dtype)
    angles = positions.view(t, 1) * theta.unsqueeze(-2)  # (H, T, D)
    return torch.cat([x * angles.cos(), x * angles.sin()], dim=-1)
