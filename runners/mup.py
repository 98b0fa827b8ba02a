"""muP for Adam, relative to a base width (Yang et al., Tensor Programs V).

A tensor's rule follows from which of its dimensions grow with width, found by comparing its
shape in the model at the base width with the model at twice that width (models grow by
adding heads of a fixed head dim when the base width allows it):

    tensor                                        init std         Adam LR   weight decay
    matrix whose fan-in grows (every projection)  sigma / sqrt(m)  eta / m   wd * m
    matrix whose fan-in is fixed (low-rank gate)   sigma            eta       wd
    embedding                                     sigma            eta       wd
    readout (untied, logits x 1/m)                sigma * sqrt(m)  eta       wd
    vectors (gains, decay bounds, angles)         as in SP         eta       none

m is fan_in / fan_in at the base width. The readout is a separate matrix with logits
multiplied by output_mult / (d / d_base), and softmax attention scores scale as 1/head_dim
instead of 1/sqrt(head_dim) (see `attention_scale`). At the base width muP is SP but for
the untied readout.

One deliberate departure from Tensor Programs V: the effective readout W / m starts with
variance sigma^2 / m, proportional to 1 / fan_in, not to 1 / fan_in^2 (or zero). A readout
that starts that small trains badly with Adam over short horizons: at d=256, 2 layers, 250k
tokens, base width 32 and eta 8e-3 the validation loss was 2.76 from zero, 2.51 from the
1 / fan_in^2 start, 2.33 from this one and 2.14 for SP at its best LR. The price is a
looser coordinate check (worst log-log slope over widths 64..1024: 0.20 against 0.13 and
0.05; SP's blocks: +1.8..+2.4); the update sizes, which set the optimal LR, are muP's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
from torch import nn

from runners.config import ModelConfig


@dataclass(frozen=True)
class TensorRule:
    """How one parameter scales with width: which role, and its fan-in ratio m."""

    role: str  # hidden, fixed-fan-in, embedding, readout or vector
    fan_in_mult: float = 1.0

    @property
    def init_mult(self) -> float:
        if self.role == "hidden":
            return 1.0 / math.sqrt(self.fan_in_mult)
        return math.sqrt(self.fan_in_mult) if self.role == "readout" else 1.0

    @property
    def lr_mult(self) -> float:
        return 1.0 / self.fan_in_mult if self.role == "hidden" else 1.0


def _scaled(cfg: ModelConfig, width: int) -> ModelConfig:
    heads = width // cfg.head_dim if width % cfg.head_dim == 0 else cfg.n_heads
    return replace(cfg, d_model=width, n_heads=max(1, heads), parametrization="sp")


def attention_scale(cfg: ModelConfig) -> float:
    """Softmax score scale: 1/sqrt(head_dim) under SP; under muP sqrt(base head_dim)/head_dim,
    which scales as 1/head_dim when heads widen and equals SP at the base width."""
    if cfg.parametrization != "mup":
        return 1.0 / math.sqrt(cfg.head_dim)
    return math.sqrt(_scaled(cfg, cfg.mup_base_width).head_dim) / cfg.head_dim


def _fan_ins(model_class: type[nn.Module], cfg: ModelConfig) -> dict[str, int]:
    """The fan-in of every matrix of the model `model_class` builds from cfg (built on meta)."""
    with torch.device("meta"):
        model = model_class(cfg)
    return {name: p.shape[1] for name, p in model.named_parameters() if p.dim() == 2}


def tensor_rules(model: nn.Module, cfg: ModelConfig) -> dict[str, TensorRule]:
    """The muP rule of every parameter of `model` (all multipliers 1 under SP)."""
    rules = {name: TensorRule("vector") for name, _ in model.named_parameters()}
    if cfg.parametrization != "mup":
        return rules
    base = _fan_ins(type(model), _scaled(cfg, cfg.mup_base_width))
    double = _fan_ins(type(model), _scaled(cfg, 2 * cfg.mup_base_width))
    for module_name, module in model.named_modules():
        if isinstance(module, nn.Embedding):
            rules[f"{module_name}.weight"] = TensorRule("embedding")
        elif module_name == "readout":  # logits x 1/m, so sigma * sqrt(m) starts W/m at 1/fan_in
            rules["readout.weight"] = TensorRule("readout", cfg.width_mult)
        elif isinstance(module, nn.Linear):
            name = f"{module_name}.weight"
            if base[name] != double[name]:
                rules[name] = TensorRule("hidden", module.weight.shape[1] / base[name])
            else:
                rules[name] = TensorRule("fixed-fan-in")
    return rules


@torch.no_grad()
def apply_init(model: nn.Module, cfg: ModelConfig) -> None:
    """Rescale an SP initialisation to muP: hidden matrices shrink by 1/sqrt(m), the
    readout grows by sqrt(m)."""
    rules = tensor_rules(model, cfg)
    for name, p in model.named_parameters():
        p.mul_(rules[name].init_mult)
