"""Named model sizes, matched in non-embedding parameters across the four architectures.

Comparing architectures at "equal N" needs shapes whose non-embedding parameter counts agree:
each name below maps every architecture to (d_model, n_layers, n_heads) with counts within
5% of llama's (tests/test_sizes.py checks every name). Head dim is 32 wherever a matched
shape allows it (llama and hgrn2 on every rung), so the linear mixers' state per head
(32 x 32, 64 x 32 for cosFormer2) is mostly the same across rungs.
Rule: every architecture uses llama's shape unless that misses by more than 5%. TNL and
cosFormer2 carry a rank-head_dim output gate, an extra head_dim / (6d) per layer (17% at
d = 32, 8% at d = 64), so on the small rungs they take another shape:
- "xs": wider and shallower (d 96, 3 layers), head dim 32;
- "xxs": llama's shape split into 4 heads of 16 (a rank-16 gate, +4%);
- "3xs": one layer fewer at d 32;
- "4xs", "5xs": d 24 with one head of 24 and more layers (no head dim 32 shape fits);
- "6xs": d 16, 4 layers for llama and hgrn2, d 20, 2 layers for the gated two (one head);
- "7xs": d 16, 2 layers for llama and hgrn2, d 20, 1 layer for the gated two (one head);
- "8xs", "9xs", "10xs": one layer, one head, d 16, 12, 10 (llama, hgrn2) and 14, 11, 9 (the
  gated two); llama's head dim is even on every rung (its rotary embedding rotates pairs).
`tnl_spread` (TNL with a decay per key channel) takes tnl's shape on every rung.
The rungs below "xs" exist for the IsoFLOP budgets of the architecture study (2e10-2e12
FLOPs at context 128), whose compute-optimal models have a few thousand to 0.07M parameters:
byte-level models this small want many tokens per parameter, so the smallest budgets need
rungs down to about 1k non-embedding parameters to bracket their minima.
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
    "10xs": {  # 1.15k
        "llama": (10, 1, 1),
        "tnl": (9, 1, 1),
        "hgrn2": (10, 1, 1),
        "cosformer2": (9, 1, 1),
    },
    "9xs": {  # 1.8k
        "llama": (12, 1, 1),
        "tnl": (11, 1, 1),
        "hgrn2": (12, 1, 1),
        "cosformer2": (11, 1, 1),
    },
    "8xs": {  # 3.0k
        "llama": (16, 1, 1),
        "tnl": (14, 1, 1),
        "hgrn2": (16, 1, 1),
        "cosformer2": (14, 1, 1),
    },
    "7xs": {  # 6k
        "llama": (16, 2, 1),
        "tnl": (20, 1, 1),
        "hgrn2": (16, 2, 1),
        "cosformer2": (20, 1, 1),
    },
    "6xs": {  # 12k
        "llama": (16, 4, 1),
        "tnl": (20, 2, 1),
        "hgrn2": (16, 4, 1),
        "cosformer2": (20, 2, 1),
    },
    "5xs": {  # 25k
        "llama": (32, 2, 1),
        "tnl": (24, 3, 1),
        "hgrn2": (32, 2, 1),
        "cosformer2": (24, 3, 1),
    },
    "4xs": {  # 50k
        "llama": (32, 4, 1),
        "tnl": (24, 6, 1),
        "hgrn2": (32, 4, 1),
        "cosformer2": (24, 6, 1),
    },
    "3xs": {  # 88k
        "llama": (32, 7, 1),
        "tnl": (32, 6, 1),
        "hgrn2": (32, 7, 1),
        "cosformer2": (32, 6, 1),
    },
    "xxs": {  # 0.20M
        "llama": (64, 4, 2),
        "tnl": (64, 4, 4),
        "hgrn2": (64, 4, 2),
        "cosformer2": (64, 4, 4),
    },
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
for _rung in SIZES.values():  # TNL with a decay per key channel: TNL's shape everywhere
    _rung["tnl_spread"] = _rung["tnl"]


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
