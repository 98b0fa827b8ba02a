"""muP: the per-tensor rules, and the coordinate check for every architecture."""

import math

import pytest
import torch

from runners.accounting import count
from runners.config import ARCHS, ModelConfig, TrainConfig
from runners.coord_check import coordinate_check, width_slopes
from runners.models import LanguageModel
from runners.mup import tensor_rules
from runners.optim import param_groups


def config(arch: str, width: int, parametrization: str = "mup") -> ModelConfig:
    return ModelConfig(
        arch=arch,
        d_model=width,
        n_layers=2,
        n_heads=width // 32,
        seq_len=32,
        parametrization=parametrization,
        mup_base_width=64,
        chunk_size=16,
    )


@pytest.mark.parametrize("arch", ARCHS)
def test_mup_at_the_base_width_is_sp_but_for_the_untied_readout(arch):
    torch.manual_seed(0)
    sp = LanguageModel(config(arch, 64, "sp"))
    torch.manual_seed(0)
    mup = LanguageModel(config(arch, 64))
    shared = dict(sp.named_parameters())
    for name, p in mup.named_parameters():
        if name == "readout.weight":
            assert sp.readout is None and abs(p.std().item() - 0.02) < 2e-3
        else:
            assert torch.equal(p, shared[name]), name
    assert {g["lr_mult"] for g in param_groups(mup, mup.cfg, TrainConfig())} == {1.0}
    assert count(mup.cfg).params == sum(p.numel() for p in mup.parameters())
    assert count(mup.cfg).params_nonembed == count(sp.cfg).params_nonembed


@pytest.mark.parametrize("arch", ARCHS)
def test_hidden_matrices_scale_with_their_fan_in(arch):
    cfg = config(arch, 256)
    torch.manual_seed(0)
    model = LanguageModel(cfg)
    rules = tensor_rules(model, cfg)
    base = LanguageModel(config(arch, 64))
    hidden = [n for n, r in rules.items() if r.role == "hidden"]
    assert hidden and all(n.startswith("blocks.") for n in hidden)
    assert rules["readout.weight"].lr_mult == 1.0
    effective_readout = model.readout.weight * model.logit_scale  # variance 1 / fan_in
    assert effective_readout.std().item() == pytest.approx(0.02 / 2, rel=0.05)
    for name, p in model.named_parameters():
        rule = rules[name]
        if rule.role == "hidden":
            m = p.shape[1] / base.get_parameter(name).shape[1]
            assert rule.fan_in_mult == pytest.approx(m) and rule.lr_mult == pytest.approx(1 / m)
            assert 3.9 < m < 4.2  # 4x the base width (the GLU width rounds to 8)
        else:
            assert rule.lr_mult == 1.0
    qkv = next(p for n, p in model.named_parameters() if rules[n].role == "hidden")
    assert qkv.std().item() == pytest.approx(0.02 / 2, rel=0.05)
    assert model.logit_scale == pytest.approx(64 / 256)
    for group in param_groups(model, cfg, TrainConfig(lr=1e-2, weight_decay=0.1)):
        if group["weight_decay"]:  # AdamW: lr * wd is what it was at the base width
            assert group["lr_mult"] * group["weight_decay"] == pytest.approx(0.1)


def test_softmax_attention_scores_scale_as_one_over_head_dim():
    from runners.models.softmax import SoftmaxAttention

    def scale(width: int, heads: int, parametrization: str) -> float:
        cfg = ModelConfig(
            d_model=width, n_heads=heads, parametrization=parametrization, mup_base_width=64
        )
        return SoftmaxAttention(cfg, 0).scale

    # heads of a fixed dim (the base has 2 heads of 32): muP keeps SP's 1/sqrt(32)
    assert scale(256, 8, "mup") == pytest.approx(scale(256, 8, "sp"))
    assert scale(256, 8, "sp") == pytest.approx(1 / math.sqrt(32))
    # a fixed number of heads whose dim grows 4x: the scale falls 4x, not 2x
    assert scale(256, 1, "mup") == pytest.approx(scale(64, 1, "mup") / 4)
    assert scale(256, 1, "sp") == pytest.approx(scale(64, 1, "sp") / 2)


@pytest.mark.slow  # trains each arch at several widths
@pytest.mark.parametrize("arch", ARCHS)
def test_coordinate_check(arch):
    """Widths 64..1024, 3 Adam steps at lr 3e-3: under muP how far every layer moves is
    near flat in width (log-log slope within +-0.25; measured -0.20..+0.08), while under SP
    the blocks' moves grow about as width^2 (measured +1.8..+2.4)."""
    mup = width_slopes(coordinate_check(arch, "mup", lr=3e-3, seeds=(0, 1)))
    sp = width_slopes(coordinate_check(arch, "sp", lr=3e-3, seeds=(0, 1)))
    assert set(mup.index) == {"embedding", "block 0", "block 1", "logits"}
    assert mup.abs().max() <= 0.25, mup.to_dict()
    assert sp.max() > 1.0, sp.to_dict()
