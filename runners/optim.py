"""AdamW parameter groups: weight decay on matrices only, per-group LR multipliers."""

from __future__ import annotations

import torch
from torch import nn

from runners.config import TrainConfig


def param_groups(model: nn.Module, train: TrainConfig) -> list[dict]:
    """Matrices get weight decay; gains and other vectors do not."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    return [
        {"params": decay, "weight_decay": train.weight_decay, "lr_mult": 1.0},
        {"params": no_decay, "weight_decay": 0.0, "lr_mult": 1.0},
    ]


def make_optimizer(model: nn.Module, train: TrainConfig) -> torch.optim.AdamW:
    return torch.optim.AdamW(
        param_groups(model, train), lr=train.lr, betas=(train.beta1, train.beta2)
    )
