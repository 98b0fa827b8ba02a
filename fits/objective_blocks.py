"""What the batched objectives of the grid-fitted laws share: which starts they evaluate
together, each start's point weights, and the starts whose objective overflowed."""

from __future__ import annotations

import numpy as np

CELLS = 2**16  # start-run pairs an objective evaluates at once (see `start_blocks`)


def start_blocks(n_starts: int, most: int, n_runs: int) -> list[slice]:
    """The starts an objective evaluates together: at most `most` (96 for Chinchilla's form),
    and on a large set at most CELLS start-run pairs, so that each (starts x runs) temporary
    stays in a core's cache. At 10,000 runs, 96 starts were 7.7 MB a temporary: `auto` took
    169 s in one process and 253 s in two, which then fought over memory; with this bound,
    89 s in two (benchmarks/large_sets.py). Sets of up to CELLS / most runs (682 for
    Chinchilla's form) are evaluated as before, to the bit."""
    per = max(1, min(most, CELLS // max(n_runs, 1)))
    return [slice(s, s + per) for s in range(0, n_starts, per)]


def start_weights(
    weights: np.ndarray | None, weight_row: np.ndarray | None, rows: np.ndarray
) -> np.ndarray | None:
    """The point weights of the starts in `rows`: one vector for all, or a row per resample."""
    if weights is None or weights.ndim == 1:
        return weights
    assert weight_row is not None  # the objectives check this when they are built
    return weights[weight_row[rows]]


def mask_nonfinite(f: np.ndarray, g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Starts whose objective or gradient overflowed: infinitely bad, with no direction."""
    bad = ~(np.isfinite(f) & np.isfinite(g).all(axis=1))
    f[bad] = np.inf
    g[bad] = 0.0
    return f, g
