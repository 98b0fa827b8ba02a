"""What the linear mixers carry between tokens, and token-by-token decoding of a whole LM.

A linear mixer's state is its per-head matrix memory plus the absolute position of the next
token (cosFormer2's positional encoding needs it; the others ignore it). The state never
grows with the context: this is what makes decoding O(1) per token.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple, cast

import torch

from runners.errors import RunnerError

if TYPE_CHECKING:
    from runners.models.lm import Block, LanguageModel


class RecurrentState(NamedTuple):
    """memory (B, H, Dk, Dv) and the position of the next token."""

    memory: torch.Tensor
    position: int


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
    blocks = cast("list[Block]", list(model.blocks))
    for block, state in zip(blocks, states, strict=True):
        mixer: Any = block.mix  # a linear mixer: checked above to have `step`
        y, state = mixer.step(block.mix_norm(x), state)
        x = x + y
        x = x + block.channel(block.channel_norm(x))
        new_states.append(state)
    return model.logits(x), new_states
