"""`--precision auto`: bf16 on CUDA and on CPUs with bf16 matrix units, fp32 elsewhere;
resolved before hashing, so a run's id names the precision it ran in."""

from __future__ import annotations

from dataclasses import replace

import pytest

from runners.precision import auto_precision, cpu_flags
from tests.conftest import tiny_config

AVX2 = frozenset({"sse4_2", "avx", "avx2", "fma"})


@pytest.mark.parametrize(
    ("device", "flags", "expected"),
    [
        ("cpu", AVX2, "fp32"),
        ("cpu", AVX2 | {"avx512f", "avx512_bf16"}, "bf16"),
        ("cpu", AVX2 | {"amx_tile", "amx_bf16"}, "bf16"),
        ("cpu", AVX2 | {"avx512f"}, "fp32"),  # AVX-512 without its bf16 extension
        ("cuda", AVX2, "bf16"),
        ("cuda:1", frozenset(), "bf16"),
    ],
)
def test_auto_picks_bf16_only_where_it_is_fast(device, flags, expected):
    assert auto_precision(device, flags) == expected


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu avx2 amx_bf16\nbugs\t\t: none\n")
    assert cpu_flags(info) == {"fpu", "avx2", "amx_bf16"}
    assert cpu_flags(tmp_path / "missing") == frozenset()


def test_auto_resolves_before_hashing():
    auto = tiny_config()
    assert auto.train.precision == "auto"
    resolved = auto.resolved("cpu")
    assert resolved.train.precision == auto_precision("cpu")
    assert auto.run_id("x") == resolved.run_id("x")  # same run, same id
    other = "bf16" if resolved.train.precision == "fp32" else "fp32"
    explicit = replace(auto, train=replace(auto.train, precision=other))
    assert explicit.resolved("cpu").train.precision == other  # explicit choices are kept
    assert explicit.run_id("x") != auto.run_id("x")


def test_the_build_check_agrees_with_torch_and_auto_with_cuda():
    """torch_has_gpu_build reads torch's version file without importing torch; where it says
    CPU only, torch sees no GPU, so device auto resolves as torch itself would."""
    import torch

    from runners.precision import device_type, torch_has_gpu_build

    built = torch.version.cuda is not None or torch.version.hip is not None
    assert torch_has_gpu_build() == built
    assert device_type("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
