"""The size ladder: matched parameters across architectures, valid configs, the CLI table."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from cli.app import app
from runners.accounting import count
from runners.config import ARCHS
from runners.errors import RunnerError
from runners.models import LanguageModel
from runners.sizes import HEAD_DIM, SIZES, ladder, size_config


@pytest.mark.parametrize("name", list(SIZES))
def test_every_size_is_matched_across_architectures_within_5_percent(name: str) -> None:
    assert set(SIZES[name]) == set(ARCHS)
    counts = {arch: count(size_config(arch, name)).params_nonembed for arch in ARCHS}
    reference = counts["llama"]
    for arch, n in counts.items():
        assert abs(n / reference - 1) <= 0.05, (arch, n, reference)


def test_ladder_spans_small_to_large_with_head_dim_32_where_it_matches() -> None:
    llama = [count(size_config("llama", name)).params_nonembed for name in SIZES]
    assert llama == sorted(llama)
    assert 0.5e3 < llama[0] < 1.5e3 and 20e6 < llama[-1] < 40e6
    ratios = [b / a for a, b in itertools.pairwise(llama)]
    assert all(1.5 < r < 3.5 for r in ratios), ratios  # rungs at most ~3x apart
    tiny = {"10xs", "9xs", "8xs", "7xs", "6xs"}
    for name in set(SIZES) - tiny:  # d 8 to 20, one head: no head dim 32 fits
        for arch in ("llama", "hgrn2"):
            assert size_config(arch, name).head_dim == HEAD_DIM
    for name in ("7xs", "6xs"):
        assert {size_config(a, name).head_dim for a in ("llama", "hgrn2", "tnl")} == {16, 20}
    # TNL and cosFormer2 leave head dim 32 only on the rungs where no such shape matches
    others = {n for n in SIZES for a in ("tnl", "cosformer2") if size_config(a, n).head_dim != 32}
    assert others == tiny | {"5xs", "4xs", "xxs"}
    for name in SIZES:  # the fair-decay TNL keeps TNL's shape on every rung
        assert SIZES[name]["tnl_spread"] == SIZES[name]["tnl"]


def test_rungs_bracket_the_isoflop_optima_of_1e12_to_1e13_flops() -> None:
    """C = 6 N D at D = 20 N puts N_opt near 91k (1e12) and 289k (1e13) parameters: an
    IsoFLOP profile needs at least two rungs within 4x on each side of it."""
    params = np.array([count(size_config("llama", n)).params for n in SIZES])
    for budget in (1e12, 1e13):
        n_opt = math.sqrt(budget / 120)
        below = (params >= n_opt / 4) & (params < n_opt)
        above = (params > n_opt) & (params <= 4 * n_opt)
        assert below.sum() >= 2 and above.sum() >= 2, (budget, n_opt, params)


def test_size_config_takes_overrides_and_rejects_unknown_names() -> None:
    cfg = size_config("hgrn2", "m", seq_len=1024, chunk_size=32)
    assert (cfg.arch, cfg.d_model, cfg.seq_len, cfg.chunk_size) == ("hgrn2", 192, 1024, 32)
    with pytest.raises(RunnerError, match="unknown size"):
        size_config("llama", "huge")
    with pytest.raises(RunnerError, match="unknown arch"):
        size_config("mamba", "s")


def test_ladder_frame_has_the_exact_counts() -> None:
    frame = ladder("tnl", seq_len=512)
    assert list(frame.columns) == [
        "name", "arch", "d_model", "n_layers", "n_heads", "params", "params_nonembed",
        "flops_per_token",
    ]  # fmt: skip
    assert list(frame["name"]) == list(SIZES) and set(frame["arch"]) == {"tnl"}
    row = frame.iloc[1]
    counts = count(size_config("tnl", row["name"], seq_len=512))
    assert (row["params"], row["flops_per_token"]) == (counts.params, counts.flops_per_token)
    assert len(ladder()) == len(SIZES) * len(ARCHS)


def test_sizes_command_prints_the_ladder() -> None:
    result = CliRunner().invoke(app, ["sizes", "--arch", "hgrn2"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    first_cells = {line.split()[0] for line in result.output.splitlines() if line.strip()}
    for name in SIZES:
        assert name in first_cells
    assert "hgrn2" in result.output and "llama" not in result.output
    result = CliRunner().invoke(app, ["sizes", "--arch", "hgrn2", "--seq-len", "512", "--json"])
    shown = json.loads(result.output)
    assert shown["seq_len"] == 512
    assert pd.DataFrame(shown["sizes"]).equals(ladder("hgrn2", 512).reset_index(drop=True))


@pytest.mark.parametrize("name", [n for n in SIZES if n.endswith("xs")])
def test_every_small_rung_of_every_arch_runs_a_forward_pass(name: str) -> None:
    """The study's rungs are trained by name: each must build and run (llama at d 9 on 10xs
    did not: its rotary embedding needs an even head dim)."""
    for arch in ARCHS:
        cfg = size_config(arch, name, seq_len=16)
        logits = LanguageModel(cfg)(torch.zeros(1, 16, dtype=torch.long))
        assert logits.shape == (1, 16, cfg.vocab_size) and torch.isfinite(logits).all()


def test_llama_with_an_odd_head_dim_is_refused_before_it_trains() -> None:
    with pytest.raises(RunnerError, match=r"rotary embedding needs an even head dim.*= 9"):
        size_config("llama", "s", d_model=9, n_heads=1)
    size_config("hgrn2", "s", d_model=9, n_heads=1)  # no rotary: any head dim
