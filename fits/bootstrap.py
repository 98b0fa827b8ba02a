"""Bootstrap over runs: resample weights, percentile intervals, and a process pool for the refits.

A resample of n points drawn with replacement is the same thing as a vector of integer counts
(how often each point was drawn), so a refit is a weighted fit. That lets an estimator fit many
resamples as one batched weighted problem instead of one problem per resample.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import signal
import sys
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing.process import BaseProcess
from typing import Any, TypeVar

import numpy as np

T = TypeVar("T")

RandomState = int | np.random.Generator | None
# Where workers can be forked (Linux) they are, whatever Python's default start method (3.14:
# forkserver): a forked worker starts in milliseconds and never imports the caller's __main__,
# which a script without an `if __name__ == "__main__":` guard would run again. Elsewhere
# (macOS, Windows: spawned workers) fits run in one process unless n_jobs asks for more.
FORKED = multiprocessing.get_context("fork") if sys.platform == "linux" else None
DEFAULT_JOBS = -1 if FORKED is not None else 1
POOLS = 2  # worker pools a fit tries before it runs what is left in its own process
BATCHES = 2  # a grid search's starts or a bootstrap's resamples are run in this many batches


def as_generator(random_state: RandomState) -> np.random.Generator:
    """A numpy Generator from a seed, an existing Generator, or None (fresh entropy)."""
    if isinstance(random_state, np.random.Generator):
        return random_state
    return np.random.default_rng(random_state)


def resample_weights(n_points: int, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    """(n_resamples, n_points) integer counts: each row is n draws with replacement."""
    idx = rng.integers(0, n_points, size=(n_resamples, n_points))
    flat = idx + n_points * np.arange(n_resamples)[:, None]
    counts = np.bincount(flat.ravel(), minlength=n_resamples * n_points)
    return counts.reshape(n_resamples, n_points)


def finite_or_nan(draws: np.ndarray) -> np.ndarray:
    """Draws with inf (a degenerate refit that overflowed) as nan, for the nan-aware stats."""
    return np.where(np.isfinite(draws), draws, np.nan)


def percentile_interval(
    draws: np.ndarray, level: float, axis: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Equal-tailed percentile interval of bootstrap draws at `level` (e.g. 0.90 -> 5%..95%).

    Non-finite draws (a degenerate refit whose prediction overflowed) are left out rather
    than turning the whole interval into nan; an interval is nan only if every draw is.
    """
    tail = (1.0 - level) / 2.0
    draws = finite_or_nan(draws)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-nan slices: nan, as documented
        lo, hi = np.nanquantile(draws, [tail, 1.0 - tail], axis=axis)
    return lo, hi


def observation_interval(
    draws: np.ndarray, log_residuals: np.ndarray | None, level: float, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """The interval of one new run rather than of the law's mean: each bootstrap draw of the
    law times exp of a log residual of the fitted runs, resampled (none: the law's own).

    log_residuals: one pool for every column of draws (1-D), or a pool per column (2-D,
    (columns, k): the residuals of the runs nearest each question, fits.noise)."""
    rng = np.random.default_rng(seed)
    if log_residuals is None or np.ndim(log_residuals) == 1:
        residuals = np.zeros(1) if log_residuals is None else np.asarray(log_residuals, float)
        noise = rng.choice(residuals, size=draws.shape, replace=True)
    else:
        pools = np.asarray(log_residuals, dtype=float)
        pick = rng.integers(0, pools.shape[1], size=draws.shape)
        noise = pools[np.arange(pools.shape[0]), pick]
    return percentile_interval(draws * np.exp(noise), level)


ONE_SIGMA = 0.682689492  # the share of a normal distribution within one sd of its mean


def param_uncertainty(
    draws: np.ndarray, names: Sequence[str], level: float
) -> tuple[dict[str, float], dict[str, tuple[float, float]]]:
    """(stderr, interval) of each named parameter from its bootstrap draws (columns in `names`
    order): the robust spread and the percentile interval at `level`."""
    lo, hi = percentile_interval(draws, level)
    sd = robust_spread(draws)
    stderr = {n: float(v) for n, v in zip(names, sd, strict=True)}
    return stderr, {n: (float(lo[i]), float(hi[i])) for i, n in enumerate(names)}


def robust_spread(draws: np.ndarray, axis: int = 0) -> np.ndarray:
    """Half the width of the central 68.3% of the draws: the standard error for normal draws,
    and not the 6e110 that a few runaway refits give the plain sd of heavy-tailed ones."""
    lo, hi = percentile_interval(draws, ONE_SIGMA, axis=axis)
    return (hi - lo) / 2.0


def resolve_n_jobs(n_jobs: int | None) -> int:
    """scikit-learn convention: None -> 1, -1 -> all cores, k -> k (at least 1). The cores are
    those this process may run on (its affinity mask: taskset, a container's cpuset), not the
    machine's."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cores = cores or 1
    if n_jobs is None:
        return 1
    if n_jobs < 0:
        return max(1, cores + 1 + n_jobs)
    return max(1, n_jobs)


def batches(n: int) -> list[np.ndarray]:
    """Indices 0..n-1 dealt into BATCHES interleaved batches (fewer when n is smaller), the
    same however many workers run them: a batch's shape sets the floating-point order of its
    sums, and an ill-conditioned fit lands elsewhere on a different order (Farseer's grid
    search on its 404 shared runs reached objectives 3.94e-4 and 3.96e-4, predicting 0.4133
    and 0.4129 at 25B parameters on 450B tokens, when its starts were split for 1 and for 2
    workers), so a fit must not depend on the machine's cores. Interleaved, so that each
    batch holds starts from every part of a grid."""
    return [np.arange(i, n, BATCHES) for i in range(min(BATCHES, n))]


def map_chunks(
    func: Callable[..., T], chunks: Sequence[tuple[Any, ...]], n_jobs: int | None
) -> list[T]:
    """func(*chunk) for every chunk, in n_jobs worker processes when n_jobs > 1.

    The batched refits are numpy code that holds the GIL between vector operations, so
    threads would not overlap; processes do. Results come back in chunk order. A worker that
    dies (the kernel's out-of-memory killer, a stray signal) breaks its whole pool: the chunks
    it left unanswered run once more in a fresh pool and, should a worker die again, in this
    process, each time with a warning that says how the worker died. The answers are the
    same, since a chunk's result does not depend on the process that runs it.
    """
    workers = min(resolve_n_jobs(n_jobs), len(chunks))
    done: dict[int, T] = {}
    pools = POOLS if workers > 1 else 0
    for attempt in range(1, pools + 1):
        death = _run_pool(func, chunks, workers, done)
        if death is None:
            break
        where = "in new workers" if attempt < pools else "in this process"
        warnings.warn(
            f"a worker process died while fitting ({death}); {len(chunks) - len(done)} of "
            f"{len(chunks)} parts are refitted {where}",
            stacklevel=2,
        )
    return [done[i] if i in done else func(*chunks[i]) for i in range(len(chunks))]


def _run_pool(
    func: Callable[..., T], chunks: Sequence[tuple[Any, ...]], workers: int, done: dict[int, T]
) -> str | None:
    """Fill done[i] = func(*chunks[i]) for each chunk not in done yet, in up to `workers`
    forked workers. None, or how a worker died (the chunks answered before are kept).

    A forked worker inherits the caller's unreachable objects, and its garbage collector would
    free them there: one holding a DuckDB connection then segfaults the worker (DuckDB's
    threads are not in it), the likely way a fit in CI lost two pools in a row. The caller's
    objects are frozen (gc.freeze) while its workers fork, so they never collect them."""
    todo = [i for i in range(len(chunks)) if i not in done]
    futures: dict[int, Future[T]] = {}
    processes: list[BaseProcess] = []
    with ProcessPoolExecutor(max_workers=min(workers, len(todo)), mp_context=FORKED) as pool:
        try:  # a worker can die while chunks are still being submitted: submit then raises
            gc.freeze()  # the workers are forked at the first submit
            try:
                for i in todo:
                    futures[i] = pool.submit(func, *chunks[i])
                    processes = processes or list(pool._processes.values())
            finally:
                gc.unfreeze()
            for i, future in futures.items():
                done[i] = future.result()
        except BrokenProcessPool as broken:
            for i, future in futures.items():
                if future.done() and not future.cancelled() and future.exception() is None:
                    done[i] = future.result()
            return _how_it_died(broken, processes)
    return None


def _how_it_died(broken: BrokenProcessPool, processes: Sequence[BaseProcess]) -> str:
    """The dead worker's exit, told apart from the survivors the pool then stops: they end by
    its SIGTERM, or with exit code 1 when their queue closes under them (seen once in CI, the
    test's SIGKILLed worker reported as "exit code 1"). So a signal other than SIGTERM is told
    first, then an exit code other than 1, then 1, then SIGTERM."""
    if broken.__cause__ is not None:  # the pool's reader failed, no worker died
        return "a result could not be read back"
    for process in processes:
        process.join(timeout=1.0)
    codes = [p.exitcode for p in processes if p.exitcode is not None]
    if not codes:
        return "cause unseen"
    code = min(codes, key=lambda c: (c == -signal.SIGTERM, c == 1, c >= 0))
    return f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
