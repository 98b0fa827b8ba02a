"""What a fit was computed on: the CPU and the vector code numpy runs there.

numpy picks its code (AVX-512, AVX2 or its SSE baseline) when it starts, and an ill-conditioned
fit (Farseer's form) ends elsewhere when the last bits of its sums differ: the same runs
refitted on another machine can give other intervals (docs/laws.md, *Machines*). A stored fit
keeps this line so that the difference can be traced; benchmarks print it beside their figures.
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
    """numpy's vector extensions in use, e.g. X86_V3+X86_V4 ('-' for its baseline only)."""
    found = np.__config__.CONFIG.get("SIMD Extensions", {}).get("found", [])
    return "+".join(found) or "-"


def computed_on() -> str:
    """numpy, its SIMD level, the cores and the CPU, in one line."""
    return f"numpy {np.__version__} SIMD {simd_level()}, {os.cpu_count()} cores ({cpu_model()})"
