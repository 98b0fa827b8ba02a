"""Named model sizes, matched in non-embedding parameters across the four architectures.

Comparing architectures at "equal N" needs shapes whose non-embedding parameter counts agree:
each name below maps every architecture to (d_model, n_layers, n_heads) with counts within
5% of llama's (tests/test_sizes.py checks every name). Head dim is 32 throughout, so the
linear mixers' state per head (32 x 32, 64 x 32 for cosFormer2) is the same on every rung.
Rule: every architecture uses llama's shape unless that misses by more than 5%; only at
"xs" do TNL and cosFormer2 (whose rank-head_dim gate costs an extra D / (6d) = 8% at
d = 64) move to a wider, shallower shape.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pandas as pd

from runners.accounting import count
from runners.config import ARCHS, ModelConfig
from runners.errors import RunnerError

HEAD_DIM = 32
MATCH_TOLERANCE = 0.05  # relative spread of params_nonembed allowed within one name

# name -> arch -> (d_model, n_layers, n_heads); llama's non-embedding params in the comment
SIZES: dict[str, dict[str, tuple[int, int, int]]] = {
    "xs": {  # 0.34M
        "llama": (64, 7, 2),
        "tnl": (96, 3, 3),
        "hgrn2": (64, 7, 2),
        "cosformer2": (96, 3, 3),
    },
    "s": {arch: (128, 5, 4) for arch in ARCHS},  # 0.99M
    "m": {arch: (192, 7, 6) for arch in ARCHS},  # 3.1M
    "l": {arch: (320, 8, 10) for arch in ARCHS},  # 9.9M
    "xl": {arch: (512, 10, 16) for arch in ARCHS},  # 31.5M
}


def size_config(arch: str, name: str, **overrides: Any) -> ModelConfig:
    """The ModelConfig of size `name` for `arch`; other fields (seq_len, ...) via overrides."""
    if name not in SIZES:
        raise RunnerError(f"unknown size {name!r}: choose one of {', '.join(SIZES)}")
    if arch not in ARCHS:
        raise RunnerError(f"unknown arch {arch!r}: choose one of {', '.join(ARCHS)}")
    d_model, n_layers, n_heads = SIZES[name][arch]
    cfg = replace(
        ModelConfig(arch=arch, d_model=d_model, n_layers=n_layers, n_heads=n_heads), **overrides
    )
    cfg.validate()
    return cfg


def ladder(arch: str | None = None, seq_len: int = 256) -> pd.DataFrame:
    """One row per (name, arch): shape, exact parameter counts and training FLOPs per token."""
    archs = ARCHS if arch is None else (arch,)
    rows = []
    for name in SIZES:
        for a in archs:
            cfg = size_config(a, name, seq_len=seq_len)
            counts = count(cfg)
            rows.append(
                {
                    "name": name,
                    "arch": a,
                    "d_model": cfg.d_model,
                    "n_layers": cfg.n_layers,
                    "n_heads": cfg.n_heads,
                    "params": counts.params,
                    "params_nonembed": counts.params_nonembed,
                    "flops_per_token": counts.flops_per_token,
                }
            )
    return pd.DataFrame(rows)
