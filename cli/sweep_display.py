"""The live view of a running sweep, shared by `scaling sweep run` and `scaling demo`."""

from __future__ import annotations

from typing import Any

from rich.progress import Progress as Bar

from runners.results import Progress
from scaling.sweeps.coordinator import Observer, PlannedRun


class SweepDisplay(Observer):
    """The sweep's progress bar (runs done / total, tokens/s, ETA) and a bar per running run."""

    def __init__(self, bar: Bar, name: str) -> None:
        self.bar = bar
        self.overall = bar.add_task(f"sweep {name}", total=None, info="")
        self.tasks: dict[str, Any] = {}
        self.rates: dict[str, float] = {}

    def planned(self, total: int, finished: int) -> None:
        self.bar.update(self.overall, total=total, completed=finished)

    def started(self, run: PlannedRun) -> None:
        steps = run.config.steps
        self.tasks[run.run_id] = self.bar.add_task(f"  {run.label}", total=steps, info="")

    def progressed(self, run: PlannedRun, progress: Progress) -> None:
        self.rates[run.run_id] = progress.tokens_per_s
        info = f"{progress.tokens_per_s:,.0f} tok/s  loss {progress.loss:.3f}"
        self.bar.update(self.tasks[run.run_id], completed=progress.step, info=info)
        self._summary()

    def finished(self, run: PlannedRun, row: dict[str, Any]) -> None:
        self.bar.remove_task(self.tasks.pop(run.run_id))
        self.rates.pop(run.run_id, None)
        if row["status"] != "done":
            colour = "red" if row["status"] == "failed" else "yellow"
            self.bar.console.print(f"[{colour}]{run.run_id} {row['status']}:[/] {row['error']}")
        self._summary()

    def _summary(self) -> None:
        info = f"{len(self.tasks)} running"
        if self.rates:  # Ray tasks report no progress
            info += f"  {sum(self.rates.values()):,.0f} tok/s"
        self.bar.update(self.overall, info=info)
