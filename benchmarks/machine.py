"""The machine a benchmark's figures came from, in one line for its output: what fits record
(fits.machine: numpy's SIMD level moves the figures of ill-conditioned fits) and the load
average now. `NPY_DISABLE_CPU_FEATURES` (numpy) and `OPENBLAS_CORETYPE` (its BLAS) replay
another machine's level on this one; docs/benchmarks.md shows the command.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's fits

from fits.machine import computed_on


def machine() -> str:
    """numpy and its SIMD level, the cores and the CPU, and the load average now."""
    return f"{computed_on()}, load average {os.getloadavg()[0]:.1f}"
