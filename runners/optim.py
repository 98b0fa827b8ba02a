"""AdamW parameter groups: weight decay on matrices only, muP's per-tensor LR multipliers."""

from __future__ import annotations

from collections import defaultdict

import torch
from torch import nn

from runners.config import ModelConfig, TrainConfig
from runners.mup import tensor_rules


def param_groups(model: nn.Module, model_cfg: ModelConfig, train: TrainConfig) -> list[dict]:
    """One group per (LR multiplier, weight decay). Matrices decay, vectors do not; under
    muP a hidden matrix's LR is divided by its fan-in ratio m and its decay multiplied by m,
    so that lr * wd stays as at the base width."""
    rules = tensor_rules(model, model_cfg)
    groups: dict[tuple[float, float], list[nn.Parameter]] = defaultdict(list)
    for name, p in model.named_parameters():
        rule = rules[name]
        decay = train.weight_decay / rule.lr_mult if p.dim() >= 2 else 0.0
        groups[(rule.lr_mult, decay)].append(p)
    return [
        {"params": params, "lr_mult": lr_mult, "weight_decay": decay}
        for (lr_mult, decay), params in groups.items()
    ]


def make_optimizer(
    model: nn.Module, model_cfg: ModelConfig, train: TrainConfig
) -> torch.optim.AdamW:
    return torch.optim.AdamW(
        param_groups(model, model_cfg, train), lr=train.lr, betas=(train.beta1, train.beta2)
    )
