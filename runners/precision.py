"""`--precision auto`: bf16 where the hardware multiplies it fast, fp32 elsewhere.

bf16 autocast on a CPU without bf16 matrix units (AVX2 only) ran about 6x slower than fp32
(441 against 2,696 tokens/s on an AMD EPYC), so auto picks bf16 only on CUDA and on CPUs
that report AMX or AVX-512-BF16.
"""

from __future__ import annotations

import functools
import importlib.util
import runpy
from pathlib import Path

BF16_CPU_FLAGS = frozenset({"amx_bf16", "avx512_bf16"})


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    """The feature flags of the first CPU (empty where /proc/cpuinfo is missing)."""
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.partition(":")[2].split())
    return frozenset()


@functools.cache  # the installed build does not change while a process runs
def torch_has_gpu_build() -> bool:
    """Whether the installed torch was built for CUDA or ROCm, read from its version file
    without importing torch (a second of every sweep command's start): a CPU build never
    sees a GPU. Where the file cannot be read, True, so that torch itself is asked."""
    spec = importlib.util.find_spec("torch")
    if spec is None or spec.origin is None:
        return True
    try:
        built = runpy.run_path(str(Path(spec.origin).parent / "version.py"))
    except Exception:  # a layout this code does not know: ask torch
        return True
    return built.get("cuda") is not None or built.get("hip") is not None


def device_type(device: str = "auto") -> str:
    """cuda or cpu: what `device` (auto, cpu, cuda, cuda:1) trains on."""
    if device == "auto":
        if not torch_has_gpu_build():
            return "cpu"
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return device.partition(":")[0]


def auto_precision(device: str = "auto", flags: frozenset[str] | None = None) -> str:
    """bf16 on CUDA and on CPUs with bf16 matrix units, fp32 elsewhere."""
    if device_type(device) == "cuda":
        return "bf16"
    return "bf16" if (cpu_flags() if flags is None else flags) & BF16_CPU_FLAGS else "fp32"
