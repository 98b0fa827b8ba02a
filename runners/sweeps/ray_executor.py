"""The Ray executor: each run is a Ray task asking for `threads` CPUs, on any node.

Ray is the optional extra `scaling[ray]`, imported only here. Every node needs the same
scaling install (tasks import runners by name). Ray tasks report no per-step progress;
the coordinator sees each run when it finishes.
"""

from __future__ import annotations

from typing import Any

from runners.checkpoint import Checkpointing
from runners.config import RunConfig
from runners.errors import RunnerError
from runners.sweeps.executors import Finished, Update, execute


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise RunnerError(
            "--executor ray needs Ray: pip install 'scaling[ray]' (or use --executor local)"
        ) from None
    return ray


class RayExecutor:
    """Runs on the Ray cluster at `address` (None: a new local one, stopped on close)."""

    def __init__(self, workers: int, threads: int, device: str, address: str | None) -> None:
        ray = self._ray = _import_ray()
        options: dict[str, Any] = {"log_to_driver": False}
        if address is None:
            options["include_dashboard"] = False
        try:
            ray.init(address=address, **options)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise RunnerError(f"cannot start or reach Ray at {address or 'local'}: {exc}") from exc
        cpus = ray.cluster_resources().get("CPU", 0)
        if cpus < threads:
            ray.shutdown()
            raise RunnerError(f"each run asks for {threads} CPUs; the Ray cluster has {cpus:g}")
        self.slots = workers
        self._device, self._threads = device, threads
        self._task = ray.remote(num_cpus=threads, max_retries=0)(execute)
        self._pending: dict[Any, str] = {}

    def submit(self, key: str, config: RunConfig, checkpoints: Checkpointing | None = None) -> None:
        """Checkpoints go to the coordinator's folder: on a cluster, a shared file system."""
        ref = self._task.remote(config, self._device, self._threads, None, checkpoints)
        self._pending[ref] = key

    def wait(self, timeout: float) -> list[Update | Finished]:
        ray = self._ray
        refs = list(self._pending)
        if not refs:
            return []
        ready, rest = ray.wait(refs, num_returns=1, timeout=timeout)
        if ready and rest:
            ready += ray.wait(rest, num_returns=len(rest), timeout=0)[0]
        events: list[Update | Finished] = []
        for ref in ready:
            key = self._pending.pop(ref)
            try:
                events.append(Finished.of(key, ray.get(ref)))
            except ray.exceptions.RayError as exc:
                events.append(Finished(key, None, f"Ray: {str(exc).strip().splitlines()[0]}"))
        return events

    def close(self) -> None:
        for ref in self._pending:
            self._ray.cancel(ref, force=True)
        self._ray.shutdown()
