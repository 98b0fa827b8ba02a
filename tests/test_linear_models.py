"""The linear mixers as modules and inside the LM: forms agree, causality, decays and gates."""

from __future__ import annotations

import math

import pytest
import torch

from runners.config import ModelConfig
from runners.errors import RunnerError
from runners.models import MIXERS, LanguageModel
from runners.models.lm import decode_step
from runners.models.tnl import tnl_log_decay, tnl_spread_log_decay

LINEAR = ("tnl", "hgrn2", "cosformer2", "tnl_spread")
TOL = 1e-10


def config(arch: str, **overrides) -> ModelConfig:
    base = dict(arch=arch, d_model=32, n_layers=3, n_heads=4, seq_len=64, chunk_size=16)
    return ModelConfig(**{**base, **overrides})


def mixer(arch: str, layer: int = 1, **overrides) -> torch.nn.Module:
    torch.manual_seed(0)
    module = MIXERS[arch](config(arch, **overrides), layer).double()
    for p in module.parameters():  # move off the init so every term of the math matters
        p.data += 0.1 * torch.randn_like(p)
    return module


def model(arch: str, **overrides) -> LanguageModel:
    torch.manual_seed(0)
    lm = LanguageModel(config(arch, **overrides)).double()
    for p in lm.parameters():
        p.data += 0.05 * torch.randn_like(p)
    return lm


def set_impl(module: torch.nn.Module, impl: str) -> None:
    for m in module.modules():
        if hasattr(m, "impl"):
            m.impl = impl


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


@pytest.mark.parametrize("arch", LINEAR)
@pytest.mark.parametrize("t, chunk", [(37, 16), (50, 8), (5, 16)])
def test_mixer_chunk_recurrent_and_step_agree(arch: str, t: int, chunk: int) -> None:
    m = mixer(arch, chunk_size=chunk)
    x = torch.randn(2, t, 32, dtype=torch.float64)
    chunked = m(x)
    set_impl(m, "recurrent")
    recurrent = m(x)
    state, steps = None, []
    for i in range(t):
        y, state = m.step(x[:, i], state)
        steps.append(y)
    assert max_diff(chunked, recurrent) < TOL
    assert max_diff(torch.stack(steps, dim=1), recurrent) < TOL
    assert state.position == t


@pytest.mark.parametrize("arch", LINEAR)
def test_mixer_resumes_from_a_state(arch: str) -> None:
    """A prefix through the chunk form, then the rest (chunked or stepped) == the whole."""
    m = mixer(arch)
    x = torch.randn(2, 45, 32, dtype=torch.float64)
    whole = m(x)
    head, state = m.forward_state(x[:, :21])
    tail, _ = m.forward_state(x[:, 21:], state)
    first, state = m.step(x[:, 21], state)
    assert max_diff(torch.cat([head, tail], dim=1), whole) < TOL
    assert max_diff(first, whole[:, 21]) < TOL


@pytest.mark.parametrize("arch", LINEAR)
def test_mixer_is_causal(arch: str) -> None:
    m = mixer(arch)
    x = torch.randn(1, 40, 32, dtype=torch.float64)
    changed = x.clone()
    changed[:, 23] += 1.0
    y, y_changed = m(x), m(changed)
    assert max_diff(y[:, :23], y_changed[:, :23]) == 0.0
    assert max_diff(y[:, 23:], y_changed[:, 23:]) > 1e-6


@pytest.mark.parametrize("arch", ("llama", *LINEAR))
def test_language_model_is_causal(arch: str) -> None:
    lm = model(arch)
    idx = torch.randint(0, 256, (2, 64))
    changed = idx.clone()
    changed[:, 30] = (changed[:, 30] + 1) % 256
    logits, logits_changed = lm(idx), lm(changed)
    assert max_diff(logits[:, :30], logits_changed[:, :30]) < 1e-12
    assert max_diff(logits[:, 30:], logits_changed[:, 30:]) > 1e-6


@pytest.mark.parametrize("arch", LINEAR)
def test_language_model_decodes_token_by_token(arch: str) -> None:
    lm = model(arch)
    idx = torch.randint(0, 256, (2, 29))
    states = [None] * lm.cfg.n_layers
    steps = []
    for i in range(idx.shape[1]):
        logits, states = decode_step(lm, idx[:, i], states)
        steps.append(logits)
    assert max_diff(torch.stack(steps, dim=1), lm(idx)) < TOL


def test_decoding_refuses_softmax_attention() -> None:
    lm = model("llama")
    with pytest.raises(RunnerError, match="no fixed-size decoding state"):
        decode_step(lm, torch.zeros(1, dtype=torch.long), [None] * lm.cfg.n_layers)


@pytest.mark.parametrize("arch", LINEAR)
def test_language_model_gradients_match_the_recurrence(arch: str) -> None:
    lm = model(arch, seq_len=40)
    idx = torch.randint(0, 256, (2, 41))
    grads = []
    for impl in ("chunk", "recurrent"):
        set_impl(lm, impl)
        lm.zero_grad()
        lm.loss(idx[:, :-1], idx[:, 1:]).backward()
        grads.append({n: p.grad.clone() for n, p in lm.named_parameters()})
    chunked, recurrent = grads
    assert chunked.keys() == recurrent.keys()
    for name in chunked:
        assert max_diff(chunked[name], recurrent[name]) < TOL, name


@pytest.mark.parametrize("n_layers", [1, 2, 5])
def test_tnl_decay_per_head_and_layer_is_the_configured_one(n_layers: int) -> None:
    lm = LanguageModel(config("tnl", n_layers=n_layers, n_heads=4))
    for layer, block in enumerate(lm.blocks):
        lam = block.mix.log_decay.double().exp()
        depth = layer / (n_layers - 1) if n_layers > 1 else 0.0
        for h in range(1, 5):
            expected = math.exp(-(2 ** (-8 * h / 4)) * (1 - depth + 1e-5))
            assert abs(lam[h - 1].item() - expected) < 1e-7
        assert (lam < 1).all() and (lam[1:] > lam[:-1]).all()  # slower decay in later heads
    if n_layers > 1:  # higher layers forget less
        first, last = (b.mix.log_decay for b in (lm.blocks[0], lm.blocks[-1]))
        assert (last > first).all()


def test_cosformer2_does_not_decay() -> None:
    lm = LanguageModel(config("cosformer2"))
    for block in lm.blocks:
        assert torch.equal(block.mix.log_decay, torch.zeros(4))


@pytest.mark.parametrize("n_heads", [1, 4])
@pytest.mark.parametrize("layer", [0, 1])
def test_tnl_spread_equals_a_naive_loop_with_closed_form_decays(n_heads: int, layer: int) -> None:
    """The mixer (chunk form) against a loop over time written here, with lam_hc =
    exp(-2^(-8j/(H D)) (1 - l/(L-1) + 1e-5)), j = h D + c + 1: S = diag(lam_h) S + k v^T."""
    m = mixer("tnl_spread", layer=layer, n_heads=n_heads, chunk_size=8)
    x = torch.randn(2, 29, 32, dtype=torch.float64)
    q, k, v, gate = m.project(x, 0)
    h, d = n_heads, 32 // n_heads
    depth = 1 - layer / 2 + 1e-5  # config() has 3 layers
    lam = torch.tensor(
        [[math.exp(-(2 ** (-8 * (i * d + c + 1) / (h * d))) * depth) for c in range(d)]
         for i in range(h)], dtype=torch.float64,
    )  # fmt: skip
    state = torch.zeros(2, h, d, d, dtype=torch.float64)
    outputs = []
    for t in range(x.shape[1]):
        state = lam[None, :, :, None] * state + k[:, :, t, :, None] * v[:, :, t, None, :]
        outputs.append(torch.einsum("bhk,bhkv->bhv", q[:, :, t], state))
    expected = m.output(torch.stack(outputs, dim=2), gate)
    assert max_diff(m(x), expected) < TOL


def test_tnl_spread_gives_one_head_the_whole_range_and_is_tnl_at_head_dim_one() -> None:
    one = tnl_spread_log_decay(n_heads=1, head_dim=20, layer=0, n_layers=1).exp()[0]
    assert one[0].item() == pytest.approx(math.exp(-(2**-0.4)), rel=1e-4)  # ~1.3-token memory
    assert one[-1].item() == pytest.approx(math.exp(-(2**-8)), rel=1e-4)  # TNL's lone slope
    assert (one[1:] > one[:-1]).all()
    per_channel = tnl_spread_log_decay(n_heads=8, head_dim=1, layer=2, n_layers=5)[:, 0]
    assert torch.equal(per_channel, tnl_log_decay(n_heads=8, layer=2, n_layers=5))


def test_tnl_decay_formula_ends_near_one_at_the_top_layer() -> None:
    top = tnl_log_decay(n_heads=8, layer=11, n_layers=12).exp()
    assert ((1 - top) < 1e-5).all() and (top < 1).all()


def test_hgrn2_lower_bounds_are_shared_zero_at_the_bottom_and_increase() -> None:
    lm = LanguageModel(config("hgrn2", n_layers=4))
    bounds = {id(block.mix.bounds) for block in lm.blocks}
    assert len(bounds) == 1  # one P for the whole stack
    names = [n for n, _ in lm.named_parameters() if "bounds" in n]
    assert names == ["blocks.0.mix.bounds.logits"]
    P = lm.blocks[0].mix.bounds.logits
    assert torch.equal(P, torch.zeros_like(P))  # zero init survives the LM's init
    with torch.no_grad():
        P.normal_()  # also away from the init
    gammas = torch.stack([lm.blocks[0].mix.bounds(layer) for layer in range(4)])
    assert torch.equal(gammas[0], torch.zeros_like(gammas[0]))
    assert (gammas[1:] > gammas[:-1]).all() and (gammas < 1).all()


@pytest.mark.parametrize("seed", [0, 1])
def test_hgrn2_forget_gate_lies_between_its_bound_and_one(seed: int) -> None:
    torch.manual_seed(seed)
    lm = LanguageModel(config("hgrn2", n_layers=4)).double()
    with torch.no_grad():
        lm.blocks[0].mix.bounds.logits.normal_()
    x = 3 * torch.randn(2, 30, 32, dtype=torch.float64)  # wide spread of pre-activations
    for layer, block in enumerate(lm.blocks):
        _, k, _, log_f = block.mix.project(x)
        f = log_f.exp()
        gamma = block.mix.bounds(layer).view(4, 1, 8)
        assert (f >= gamma - 1e-15).all() and (f < 1).all()
        assert max_diff(k, 1 - f) < 1e-12
    # the P gradient reaches it from every layer above the first
    lm.zero_grad()
    torch.stack([b.mix.project(x)[3].sum() for b in lm.blocks]).sum().backward()
    assert lm.blocks[0].mix.bounds.logits.grad.abs().sum() > 0


def test_hgrn2_rejects_a_chunk_size_that_is_not_a_power_of_two() -> None:
    with pytest.raises(RunnerError, match="power-of-two"):
        LanguageModel(config("hgrn2", chunk_size=48))


def test_cosformer2_theta_starts_at_the_rotary_frequencies() -> None:
    m = MIXERS["cosformer2"](config("cosformer2", n_heads=4), 0)
    theta = m.theta.view(4, 8).double()
    expected = 10_000 ** (-2 * torch.arange(8, dtype=torch.float64) / 8)
    assert torch.allclose(theta, expected.expand(4, 8), rtol=1e-6)
    assert m.theta.dim() == 1 and m.theta.requires_grad
