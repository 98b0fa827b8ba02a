"""The muP coordinate check: how far each layer's output moves in a few steps, against width.

Under muP the RMS of every layer's change x_t - x_0 after t Adam steps is about constant in
width; under standard parametrization some layer (the logits first) moves more as width
grows. The change, not x_t itself, is measured: it is what sets the optimal LR, and it leaves
out the readout's SP-sized start (see runners.mup).
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import torch

from runners.batches import BatchSampler
from runners.config import ModelConfig, TrainConfig
from runners.corpus import load_corpus
from runners.models import LanguageModel
from runners.optim import make_optimizer

HEAD_DIM = 32


def _activations(model: LanguageModel, idx: torch.Tensor) -> dict[str, torch.Tensor]:
    """The embedding output, each block's output and the logits on one batch."""
    outputs: dict[str, torch.Tensor] = {}
    hooks = [model.embed.register_forward_hook(lambda _m, _i, out: outputs.update(embedding=out))]
    for i, block in enumerate(model.blocks):
        hooks.append(
            block.register_forward_hook(
                lambda _m, _i, out, i=i: outputs.__setitem__(f"block {i}", out)
            )
        )
    with torch.no_grad():
        outputs["logits"] = model(idx)
    for hook in hooks:
        hook.remove()
    return outputs


def coordinate_check(
    arch: str,
    parametrization: str,
    widths: tuple[int, ...] = (64, 128, 256, 512, 1024),
    steps: int = 3,
    lr: float = 1e-2,
    n_layers: int = 2,
    seq_len: int = 32,
    batch_size: int = 8,
    seeds: tuple[int, ...] = (0, 1, 2),
) -> pd.DataFrame:
    """One row per (width, layer): the RMS of that layer's change over `steps` updates,
    averaged (geometrically) over `seeds`, since a few steps of one model are noisy."""
    tokens = load_corpus().train
    rows = []
    for width, seed in itertools.product(widths, seeds):
        cfg = ModelConfig(
            arch=arch,
            d_model=width,
            n_layers=n_layers,
            n_heads=width // HEAD_DIM,
            seq_len=seq_len,
            parametrization=parametrization,
            mup_base_width=widths[0],
            chunk_size=16,
        )
        torch.manual_seed(seed)
        model = LanguageModel(cfg)
        train = TrainConfig(lr=lr, weight_decay=0.0)
        optimizer = make_optimizer(model, cfg, train)
        for group in optimizer.param_groups:
            group["lr"] = lr * group["lr_mult"]
        sampler = BatchSampler(tokens, seq_len, seed)
        x, y = sampler.sample(batch_size)
        start = _activations(model, x)
        for _ in range(steps):
            optimizer.zero_grad(set_to_none=True)
            model.loss(x, y).backward()
            optimizer.step()
        for layer, out in _activations(model, x).items():
            rms = (out - start[layer]).pow(2).mean().sqrt().item()
            rows.append({"width": width, "seed": seed, "layer": layer, "log_rms": np.log(rms)})
    frame = pd.DataFrame(rows).groupby(["width", "layer"], sort=False, as_index=False).log_rms
    return frame.mean().assign(rms=lambda f: np.exp(f.log_rms)).drop(columns="log_rms")


def width_slopes(frame: pd.DataFrame) -> pd.Series:
    """Per layer, the slope of log RMS against log width (0: width-independent)."""
    return frame.groupby("layer", sort=False).apply(
        lambda g: float(np.polyfit(np.log(g.width), np.log(g.rms), 1)[0]), include_groups=False
    )
