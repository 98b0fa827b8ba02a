"""What the linear mixers carry between tokens (runners.models.lm.decode_step decodes a
whole LM token by token with it).

A linear mixer's state is its per-head matrix memory plus the absolute position of the next
token (cosFormer2's positional encoding needs it; the others ignore it). The state never
grows with the context: this is what makes decoding O(1) per token.
"""

from __future__ import annotations

from typing import NamedTuple

import torch


class RecurrentState(NamedTuple):
    """memory (B, H, Dk, Dv) and the position of the next token."""

    memory: torch.Tensor
    position: int
