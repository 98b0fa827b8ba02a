"""Exact parameter counts and training FLOPs per token, from the config alone.

Each token mixer states its own parameter count and forward matmul FLOPs; this module adds
the shared parts. Training FLOPs = 3 x forward matmul FLOPs (backward is twice the forward).
Element-wise work (norms, activations, softmax) is not counted.
"""

from __future__ import annotations

from dataclasses import dataclass

from runners.config import ModelConfig
from runners.models.layers import GLU
from runners.models.lm import mixer_class


@dataclass(frozen=True)
class Counts:
    params: int
    params_nonembed: int
    flops_per_token: int


def count(cfg: ModelConfig) -> Counts:
    """Parameters (total, non-embedding) and training FLOPs per token of `cfg`."""
    mixer = mixer_class(cfg.arch)
    d, v = cfg.d_model, cfg.vocab_size
    per_layer = mixer.param_count(cfg) + GLU.param_count(cfg) + 2 * d
    nonembed = cfg.n_layers * per_layer + d
    embed = v * d * (2 if cfg.parametrization == "mup" else 1)  # muP unties the readout
    forward = cfg.n_layers * (mixer.forward_flops(cfg) + GLU.forward_flops(cfg)) + 2 * v * d
    return Counts(nonembed + embed, nonembed, 3 * forward)
