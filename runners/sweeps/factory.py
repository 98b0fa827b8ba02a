"""The executor a sweep asks for: a local process pool or a Ray cluster (each imports the
shared events from runners.sweeps.executors, so the choice lives apart from them)."""

from __future__ import annotations

from runners.errors import RunnerError
from runners.sweeps.executors import EXECUTORS, Executor, cores
from runners.sweeps.pool import LocalPool


def make_executor(
    kind: str, workers: int, threads: int, device: str = "auto", address: str | None = None
) -> Executor:
    """A local process pool (base install) or a Ray executor (the `ray` extra)."""
    if kind == "local":
        if threads * workers > cores():
            raise RunnerError(
                f"{workers} workers x {threads} threads is more than the {cores()} cores here"
            )
        return LocalPool(workers, threads, device)
    if kind == "ray":
        from runners.sweeps.ray_executor import RayExecutor

        return RayExecutor(workers, threads, device, address)
    raise RunnerError(f"unknown executor {kind!r}: choose {' or '.join(EXECUTORS)}")
