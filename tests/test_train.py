import math
from dataclasses import replace

import pytest

from runners.config import ModelConfig, RunConfig, TrainConfig
from runners.errors import RunnerError
from runners.train import train
from tests.conftest import tiny_config


@pytest.mark.slow
def test_loss_falls_clearly_on_the_real_corpus():
    config = RunConfig(
        ModelConfig(d_model=64, n_layers=2, n_heads=2, seq_len=64),
        TrainConfig(tokens=64 * 16 * 300, lr=3e-3, batch_size=16, eval_tokens=8192),
    )
    result = train(config)
    assert result.status == "done"
    first = result.curve[0].train_loss
    assert first == pytest.approx(math.log(256), abs=0.3)
    assert result.final_val_loss < 3.0 < first - 2
    evaluated = [p.val_loss for p in result.curve if p.val_loss is not None]
    assert len(evaluated) >= 2 and evaluated[-1] < evaluated[0]


@pytest.mark.slow
def test_same_seed_same_curve_other_seed_other_curve():
    a, b = train(tiny_config()), train(tiny_config())
    c = train(tiny_config(seed=1))
    assert a.run_id == b.run_id != c.run_id
    assert [p.train_loss for p in a.curve] == [p.train_loss for p in b.curve]
    assert a.final_val_loss == b.final_val_loss
    assert [p.train_loss for p in a.curve] != [p.train_loss for p in c.curve]


@pytest.mark.slow
def test_token_horizon_is_exact_with_a_partial_last_batch():
    config = tiny_config(tokens=64 * 37)  # 2 full batches of 16 sequences and one of 5
    result = train(config)
    assert config.steps == 3
    assert result.curve[-1].step == 3
    assert result.curve[-1].tokens == 64 * 37 == result.row()["tokens"]


@pytest.mark.slow
def test_exploding_loss_is_recorded_as_diverged_not_raised():
    result = train(tiny_config(lr=50.0, warmup=1, tokens=64 * 16 * 40))
    assert result.status == "diverged"
    assert result.final_val_loss is None
    assert "step" in result.error
    assert result.row()["status"] == "diverged"


@pytest.mark.slow
def test_bf16_autocast_trains():
    result = train(tiny_config(precision="bf16"))
    assert result.status == "done"
    assert result.final_val_loss < result.curve[0].train_loss


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"lr": -1.0}, "lr must be positive"),
        ({"tokens": 10}, "shorter than one batch"),
        ({"schedule": "sawtooth"}, "unknown schedule"),
        ({"precision": "fp8"}, "unknown precision"),
    ],
)
def test_bad_training_settings_are_refused(change, message):
    config = tiny_config()
    with pytest.raises(RunnerError, match=message):
        replace(config, train=replace(config.train, **change)).validate()


def test_bad_model_settings_are_refused():
    with pytest.raises(RunnerError, match="not divisible"):
        ModelConfig(d_model=100, n_heads=3).validate()
    with pytest.raises(RunnerError, match="unknown arch"):
        ModelConfig(arch="gpt").validate()
    with pytest.raises(RunnerError, match="must be positive"):
        ModelConfig(n_layers=0).validate()
