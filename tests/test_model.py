import math

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from runners.accounting import count
from runners.config import ModelConfig
from runners.models import LanguageModel
from runners.models.layers import Rotary

SHAPES = [(32, 1, 2, 16), (96, 3, 4, 64), (128, 2, 8, 40)]


@pytest.mark.parametrize(("d", "layers", "heads", "seq"), SHAPES)
def test_parameter_counts_match_the_module(d, layers, heads, seq):
    cfg = ModelConfig(d_model=d, n_layers=layers, n_heads=heads, seq_len=seq)
    model = LanguageModel(cfg)
    counts = count(cfg)
    assert counts.params == sum(p.numel() for p in model.parameters())
    assert counts.params_nonembed == counts.params - model.embed.weight.numel()
    # the paper's 12 l d^2 is the leading term of the non-embedding count
    assert counts.params_nonembed == pytest.approx(12 * layers * d * d, rel=0.05)


@pytest.mark.parametrize(("d", "layers", "heads", "seq"), SHAPES)
def test_training_flops_match_torch_flop_counter(d, layers, heads, seq):
    cfg = ModelConfig(d_model=d, n_layers=layers, n_heads=heads, seq_len=seq)
    model = LanguageModel(cfg)
    batch = 3
    idx = torch.randint(0, 256, (batch, seq))
    # the math backend exposes the attention matmuls to the counter
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        model.loss(idx, idx).backward()
    assert counter.get_total_flops() == count(cfg).flops_per_token * batch * seq


def test_flops_grow_with_context_for_softmax_attention():
    short, long = (count(ModelConfig(seq_len=n)).flops_per_token for n in (256, 4096))
    per_layer_per_token = 12 * 128  # 12 n d per layer: QK^T and AV, forward + backward
    assert long - short == 4 * per_layer_per_token * (4096 - 256)


def test_rotary_matches_complex_rotation():
    head_dim, length = 8, 11
    rotary = Rotary(head_dim, length)
    x = torch.randn(1, 1, length, head_dim, dtype=torch.float64)
    half = head_dim // 2
    freqs = 10_000.0 ** (-torch.arange(0, half, dtype=torch.float64) * 2 / head_dim)
    z = torch.complex(x[..., :half], x[..., half:])
    angle = torch.arange(length, dtype=torch.float64)[:, None] * freqs
    rotated = z * torch.polar(torch.ones_like(angle), angle)
    expected = torch.cat([rotated.real, rotated.imag], dim=-1)
    assert torch.allclose(rotary(x.float()).double(), expected, atol=1e-5)


def test_llama_is_causal():
    torch.manual_seed(0)
    model = LanguageModel(ModelConfig(d_model=32, n_layers=2, n_heads=2, seq_len=24)).double()
    idx = torch.randint(0, 256, (1, 24))
    changed = idx.clone()
    changed[0, 15] = (idx[0, 15] + 1) % 256
    a, b = model(idx), model(changed)
    assert torch.equal(a[0, :15], b[0, :15])
    assert not torch.allclose(a[0, 15:], b[0, 15:])


def test_initial_loss_is_near_uniform():
    torch.manual_seed(0)
    model = LanguageModel(ModelConfig(d_model=64, n_layers=2, n_heads=2, seq_len=32))
    idx, targets = torch.randint(0, 256, (2, 8, 32))
    assert model.loss(idx, targets).item() == pytest.approx(math.log(256), abs=0.1)
