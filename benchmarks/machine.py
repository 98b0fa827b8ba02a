"""The machine a benchmark's figures came from, in one line for its output.

Fits' figures depend on more than the core count: numpy picks its vector code (AVX-512, AVX2
or the SSE baseline) at start-up, and an ill-conditioned fit (Farseer's form) ends elsewhere
when the last bits of its sums differ. So the line names numpy's SIMD level as well as the
CPU. `NPY_DISABLE_CPU_FEATURES` (numpy) and `OPENBLAS_CORETYPE` (its BLAS) replay another
machine's level on this one; docs/benchmarks.md shows the command.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

import numpy as np


def cpu_model() -> str:
    """The CPU's model name (the platform's word for it where /proc/cpuinfo is missing)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def simd_level() -> str:
    """numpy's vector extensions in use, e.g. X86_V3+X86_V4 ('-' for the baseline only)."""
    found = np.__config__.CONFIG.get("SIMD Extensions", {}).get("found", [])
    return "+".join(found) or "-"


def machine() -> str:
    """Cores, CPU, numpy and its SIMD level, and the load average now."""
    return (
        f"{os.cpu_count()} cores ({cpu_model()}), numpy {np.__version__} SIMD {simd_level()}, "
        f"load average {os.getloadavg()[0]:.1f}"
    )
