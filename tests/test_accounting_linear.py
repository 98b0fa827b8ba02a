"""Exact parameter and FLOP counts of the linear architectures, and the paper's approximations."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from runners.accounting import count
from runners.config import ModelConfig
from runners.models import LanguageModel

LINEAR = ("tnl", "hgrn2", "cosformer2", "tnl_spread")
PAPER = ("tnl", "hgrn2", "cosformer2")  # the archs of Shen et al. 2024


def paper_params(arch: str, cfg: ModelConfig) -> float:
    """Non-embedding parameters as Shen et al. 2024 (appendix A.1) approximate them."""
    layers, d, h = cfg.n_layers, cfg.d_model, cfg.n_heads
    extra = {
        "llama": 0,
        "tnl": 2 * layers * d**2 / h,
        "hgrn2": layers * d,
        "cosformer2": 2 * layers * d**2 / h + d**2 / h,
    }[arch]
    return 12 * layers * d**2 + extra


def paper_flops(arch: str, cfg: ModelConfig) -> float:
    """Non-embedding training FLOPs per token, 6 N_K (1 + r), as Shen et al. 2024 give them."""
    layers, d, h, n = cfg.n_layers, cfg.d_model, cfg.n_heads, cfg.seq_len
    r = {
        "llama": n / (6 * d) + n * h / (8 * d**2) + 5 / (18 * d),
        "tnl": 1 / (2 * h) + 5 / (18 * d),
        "hgrn2": 1 / (3 * h) + 29 / (72 * d),
        "cosformer2": 3 / (4 * h) + 23 / (72 * d),
    }[arch]
    return 6 * 12 * layers * d**2 * (1 + r)


@pytest.mark.parametrize("arch", LINEAR)
@pytest.mark.parametrize("d, layers, heads", [(32, 1, 1), (64, 3, 2), (96, 2, 3), (128, 4, 4)])
def test_param_count_is_exact(arch: str, d: int, layers: int, heads: int) -> None:
    cfg = ModelConfig(arch=arch, d_model=d, n_layers=layers, n_heads=heads)
    lm = LanguageModel(cfg)
    total = sum(p.numel() for p in lm.parameters())
    counts = count(cfg)
    assert counts.params == total
    assert counts.params_nonembed == total - lm.embed.weight.numel()


@pytest.mark.parametrize("arch", LINEAR)
@pytest.mark.parametrize("seq_len, chunk, heads", [(64, 16, 2), (128, 32, 4), (128, 64, 1)])
@pytest.mark.slow
def test_training_flops_match_the_flop_counter(
    arch: str, seq_len: int, chunk: int, heads: int
) -> None:
    """3 x forward matmul FLOPs == what FlopCounterMode sees in loss.backward() (chunk path)."""
    cfg = ModelConfig(
        arch=arch, d_model=64, n_layers=2, n_heads=heads, seq_len=seq_len, chunk_size=chunk
    )
    lm = LanguageModel(cfg)
    batch = 3
    idx = torch.randint(0, 256, (batch, seq_len + 1))
    with FlopCounterMode(display=False) as counter:
        lm.loss(idx[:, :-1], idx[:, 1:]).backward()
    assert counter.get_total_flops() == count(cfg).flops_per_token * batch * seq_len


@pytest.mark.parametrize("arch", LINEAR)
def test_flops_per_token_do_not_grow_with_context(arch: str) -> None:
    per_token = {
        n: count(ModelConfig(arch=arch, seq_len=n, chunk_size=64)).flops_per_token
        for n in (256, 1024, 8192)
    }
    assert len(set(per_token.values())) == 1
    shorter_chunk = count(ModelConfig(arch=arch, seq_len=1024, chunk_size=32)).flops_per_token
    assert shorter_chunk < per_token[1024]  # the chunk, not the context, sets the cost


def test_extra_parameters_over_llama_are_the_papers_terms() -> None:
    """Differences to llama at equal shape, term by term (d = 128, 4 heads, 4 layers).

    tnl: the rank-head_dim gate, 2 l d^2 / h, exactly as in the paper. hgrn2: 2 l d (the lower
    bounds P, l d, as in the paper, plus the output RMSNorm's gain). cosformer2: the gate plus
    theta (l d); the paper's d^2 / h belongs to the positional recurrence left out here.
    """
    shape = dict(d_model=128, n_layers=4, n_heads=4)
    llama = count(ModelConfig(arch="llama", **shape)).params_nonembed
    extra = {a: count(ModelConfig(arch=a, **shape)).params_nonembed - llama for a in LINEAR}
    layers, d, h = 4, 128, 4
    assert extra == {
        "tnl": 2 * layers * d**2 // h,
        "hgrn2": 2 * layers * d,
        "cosformer2": 2 * layers * d**2 // h + layers * d,
        "tnl_spread": 2 * layers * d**2 // h,  # TNL's parameters; only the decay differs
    }


@pytest.mark.parametrize("arch", ("llama", *PAPER))
@pytest.mark.parametrize("d, heads", [(64, 2), (128, 4), (256, 8), (512, 16), (512, 4)])
def test_counts_agree_with_the_papers_approximations(arch: str, d: int, heads: int) -> None:
    """Same structure as Shen et al.: params within 2% (4+ layers; the rest is the GLU width
    rounding, block norms and the terms above), training FLOPs within 8% (head dims 32-128,
    chunk 64: the paper's r folds the chunk-wise products into one term per architecture)."""
    cfg = ModelConfig(arch=arch, d_model=d, n_layers=4, n_heads=heads, seq_len=256)
    counts = count(cfg)
    assert abs(counts.params_nonembed / paper_params(arch, cfg) - 1) < 0.02
    nonembed_flops = counts.flops_per_token - 6 * cfg.vocab_size * d  # readout matmul
    assert abs(nonembed_flops / paper_flops(arch, cfg) - 1) < 0.08
