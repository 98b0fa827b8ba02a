"""The throughput model: known coefficients are recovered, its backtest, its refusals."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from fits import FitError
from fits.throughput import TERMS, ThroughputModel, backtest

TRUE = {
    "llama": {"flops": 2e-11, "elementwise": 4e-8, "attention": 3e-9, "constant": 5e-6},
    "tnl": {"flops": 3e-11, "elementwise": 9e-8, "attention": 0.0, "constant": 2e-6},
}


def synthetic(noise: float = 0.0, seed: int = 0) -> pd.DataFrame:
    """Runs whose seconds per token follow the model's closed form exactly (times noise)."""
    rows = []
    shapes = itertools.product((32, 64, 128, 256), (2, 4, 8), (1, 2, 4), (64, 256, 1024))
    for arch, (d, layers, heads, n) in itertools.product(TRUE, shapes):
        flops = 6 * 12 * layers * d * d * (1 + n / (6 * d) * (arch == "llama")) + 6 * 256 * d
        c = TRUE[arch]
        seconds = (
            c["flops"] * flops
            + c["elementwise"] * layers * d
            + c["attention"] * layers * heads * n
            + c["constant"]
        )
        rows.append((arch, d, layers, heads, n, flops, 1 / seconds))
    frame = pd.DataFrame(
        rows,
        columns=["arch", "d_model", "n_layers", "n_heads", "seq_len", "flops_per_token", "rate"],
    )
    jitter = np.exp(noise * np.random.default_rng(seed).standard_normal(len(frame)))
    return frame.assign(tokens_per_s=frame.pop("rate") * jitter)


def test_recovers_the_coefficients_of_a_closed_form() -> None:
    model = ThroughputModel().fit(synthetic())
    for arch, coef in TRUE.items():
        for term in TERMS:
            assert model.coef_[arch][term] == pytest.approx(coef[term], rel=1e-6, abs=1e-15)
        assert model.rel_rmse_[arch] < 1e-9
    shapes = synthetic().iloc[[0, -1]]
    assert np.allclose(model.tokens_per_s(shapes), shapes.tokens_per_s, rtol=1e-8)


def test_attention_term_is_llamas_alone_and_grows_with_context() -> None:
    model = ThroughputModel().fit(synthetic())
    long = pd.DataFrame(
        {
            "arch": ["llama", "llama", "tnl", "tnl"],
            "d_model": 64,
            "n_layers": 4,
            "n_heads": 2,
            "seq_len": [256, 8192, 256, 8192],
            "flops_per_token": 3e6,
        }
    )
    seconds = model.seconds_per_token(long)
    assert seconds[1] > 2 * seconds[0]  # llama pays for a longer context
    assert seconds[3] == pytest.approx(seconds[2])  # a linear mixer does not


def test_backtest_holds_out_the_largest_shapes_and_extrapolates_them() -> None:
    runs = synthetic(noise=0.05)
    result = backtest(runs, fraction=0.25)
    assert set(result.arch) == set(TRUE)
    for arch, group in result.groupby("arch"):
        smallest_held = group.flops_per_token.min()
        trained = runs[(runs.arch == arch) & (runs.flops_per_token < smallest_held)]
        assert len(trained) > 0 and trained.flops_per_token.max() < smallest_held
    assert result.rel_error.abs().median() < 0.10
    exact = backtest(synthetic(), fraction=0.25)
    assert exact.rel_error.abs().max() < 1e-6


def test_refuses_data_it_cannot_use() -> None:
    with pytest.raises(FitError, match="tokens_per_s"):
        ThroughputModel().fit(synthetic().drop(columns="tokens_per_s"))
    with pytest.raises(FitError, match="seq_len"):
        ThroughputModel().fit(synthetic().drop(columns="seq_len"))
    with pytest.raises(FitError, match="no runs"):
        ThroughputModel().fit(synthetic().assign(tokens_per_s=0.0))
    model = ThroughputModel().fit(synthetic().query("arch == 'llama'"))
    with pytest.raises(FitError, match="no throughput data for arch tnl"):
        model.seconds_per_token(synthetic().query("arch == 'tnl'"))
    with pytest.raises(FitError, match="3 distinct shapes"):
        backtest(synthetic().query("d_model == 32 and n_layers == 2 and n_heads == 1"))
