"""The decoder LM every architecture shares: embeddings, pre-norm residual blocks, readout.

Only the token mixer differs between architectures (DESIGN.md section 6).
"""

from __future__ import annotations

import math
from typing import Any, Protocol, cast

import torch
import torch.nn.functional as F
from torch import nn

from runners import mup
from runners.config import ModelConfig
from runners.errors import RunnerError
from runners.models.cosformer2 import CosFormer2Mixer
from runners.models.hgrn2 import HGRN2Mixer
from runners.models.layers import GLU, RMSNorm
from runners.models.recurrent import RecurrentState
from runners.models.softmax import SoftmaxAttention
from runners.models.tnl import TNLMixer, TNLSpreadMixer


class MixerClass(Protocol):
    """What every token-mixer class provides: construction from the config and its layer.
    (Their parameters and FLOPs are counted in runners.accounting, without torch.)"""

    def __call__(self, cfg: ModelConfig, layer: int) -> nn.Module: ...


MIXERS: dict[str, MixerClass] = {
    "llama": SoftmaxAttention,
    "tnl": TNLMixer,
    "hgrn2": HGRN2Mixer,
    "cosformer2": CosFormer2Mixer,
    "tnl_spread": TNLSpreadMixer,
}
INIT_STD = 0.02


def mixer_class(arch: str) -> MixerClass:
    return MIXERS[arch]


class Block(nn.Module):
    """x += mix(norm(x)); x += channel(norm(x))."""

    def __init__(self, cfg: ModelConfig, layer: int) -> None:
        super().__init__()
        self.mix_norm = RMSNorm(cfg.d_model)
        self.mix = mixer_class(cfg.arch)(cfg, layer)
        self.channel_norm = RMSNorm(cfg.d_model)
        self.channel = GLU(cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.mix(self.mix_norm(x))
        return x + self.channel(self.channel_norm(x))


class LanguageModel(nn.Module):
    """Decoder-only LM. Under SP the readout is the input embedding (tied); under muP it is
    a separate matrix, since a tied matrix's readout gradient shrinks as 1/m and Adam would
    then train it for its input role alone. Logits are multiplied by
    `output_mult / width_mult`: 1 under SP, the muP readout multiplier under muP.
    """

    def __init__(self, cfg: ModelConfig, output_mult: float = 1.0) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.blocks = nn.ModuleList(Block(cfg, layer) for layer in range(cfg.n_layers))
        tie_layers = getattr(mixer_class(cfg.arch), "tie_layers", None)
        if tie_layers is not None:  # hgrn2: one lower-bound parameter read by every layer
            tie_layers([block.mix for block in self.blocks])
        self.norm = RMSNorm(cfg.d_model)
        mup_readout = cfg.parametrization == "mup"
        self.readout = (  # skip_init draws nothing; registered last, SP's draws stay as they are
            nn.utils.skip_init(nn.Linear, cfg.d_model, cfg.vocab_size, bias=False)
            if mup_readout
            else None
        )
        self.logit_scale = output_mult / cfg.width_mult
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """GPT-2 style init: N(0, 0.02) matrices, residual outputs scaled by 1/sqrt(2L);
        under muP, rescaled per tensor by runners.mup."""
        residual_std = INIT_STD / math.sqrt(2 * self.cfg.n_layers)
        for name, p in self.named_parameters():
            if p.dim() < 2:
                continue
            residual = name.split(".")[-2] in ("out", "w_out")  # not readout.weight
            nn.init.normal_(p, mean=0.0, std=residual_std if residual else INIT_STD)
        if self.cfg.parametrization == "mup":
            mup.apply_init(self, self.cfg)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.embed(idx)
        for block in self.blocks:
            x = block(x)
        return self.logits(x)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Final norm, readout and the logit multiplier, from the residual stream."""
        weight = self.embed.weight if self.readout is None else self.readout.weight
        return F.linear(self.norm(x), weight) * self.logit_scale

    def loss(self, idx: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        logits = self(idx)
        return F.cross_entropy(logits.float().view(-1, logits.shape[-1]), targets.reshape(-1))


def decode_step(
    model: LanguageModel, tokens: torch.Tensor, states: list[RecurrentState | None]
) -> tuple[torch.Tensor, list[RecurrentState]]:
    """Logits (B, vocab) after feeding one token per row (B,), given each layer's state.

    Start with `[None] * n_layers`. Mirrors Block.forward and LanguageModel.forward, with
    each mixer's `step` in place of its sequence form (tested equal to the full forward).
    Softmax attention has no fixed-size state, so llama models are refused.
    """
    if not hasattr(model.blocks[0].mix, "step"):
        raise RunnerError(f"{model.cfg.arch} has no fixed-size decoding state (linear archs do)")
    x = model.embed(tokens)
    new_states = []
    blocks = cast(list[Block], list(model.blocks))
    for block, state in zip(blocks, states, strict=True):
        mixer: Any = block.mix  # a linear mixer: checked above to have `step`
        y, state = mixer.step(block.mix_norm(x), state)
        x = x + y
        x = x + block.channel(block.channel_norm(x))
        new_states.append(state)
    return model.logits(x), new_states
