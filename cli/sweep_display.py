"""The live view of a running sweep, shared by `scaling sweep run` and `scaling demo`.

On a terminal: a progress bar for the sweep and one per running run. Into a file or a pipe:
one plain line per run started and finished (a log, a CI job), since a live bar there
prints nothing until the sweep ends.
"""

from __future__ import annotations

from typing import Any

from rich.progress import Progress as Bar

from runners.results import Progress
from scaling.sweeps.book import PlannedRun
from scaling.sweeps.coordinator import Observer


class SweepDisplay(Observer):
    """The sweep's progress bar (runs done / total, tokens/s, ETA) and a bar per running run,
    or plain lines when the bar is disabled; counts what is finished for an interruption."""

    def __init__(self, bar: Bar, name: str) -> None:
        self.bar = bar
        self.name = name
        self.plain = bar.disable
        self.overall = bar.add_task(f"sweep {name}", total=None, info="")
        self.tasks: dict[str, Any] = {}
        self.rates: dict[str, float] = {}
        self.total = 0
        self.done = 0

    def planned(self, total: int, finished: int) -> None:
        if self.plain and (total, finished) != (self.total, self.done):
            self._line(f"sweep {self.name}: {total} runs planned, {finished} finished")
        self.total, self.done = total, finished
        self.bar.update(self.overall, total=total, completed=finished)

    def started(self, run: PlannedRun) -> None:
        steps = run.config.steps
        self.tasks[run.run_id] = self.bar.add_task(f"  {run.label}", total=steps, info="")
        if self.plain:
            self._line(f"started {run.run_id[:8]} {run.label}")

    def progressed(self, run: PlannedRun, progress: Progress) -> None:
        self.rates[run.run_id] = progress.tokens_per_s
        info = f"{progress.tokens_per_s:,.0f} tok/s  loss {progress.loss:.3f}"
        self.bar.update(self.tasks[run.run_id], completed=progress.step, info=info)
        self._summary()

    def finished(self, run: PlannedRun, row: dict[str, Any]) -> None:
        task = self.tasks.pop(run.run_id, None)
        if task is None:  # told again: a commit retried after Ctrl-C landed in the first
            return
        self.bar.remove_task(task)
        self.rates.pop(run.run_id, None)
        self.done += 1
        self.bar.update(self.overall, completed=self.done)
        if row["status"] != "done":
            colour = "red" if row["status"] == "failed" else "yellow"
            line = f"{run.run_id} {row['status']}: {row['error']}"
            self.bar.console.print(line, style=colour, markup=False)
        elif self.plain:
            loss = row.get("final_val_loss")
            shown = f", val loss {loss:.4f}" if isinstance(loss, float) else ""
            self._line(f"finished {run.run_id[:8]} {run.label}: done{shown} "
                       f"({self.done} of {self.total})")  # fmt: skip
        self._summary()

    def interrupted(self, command: str) -> str:
        """What an interruption leaves: the finished runs are committed; the same command
        trains the rest."""
        return (
            f"interrupted: {self.done} of {self.total} runs of sweep {self.name} are finished "
            f"and committed; `{command}` resumes with the rest"
        )

    def _line(self, text: str) -> None:
        self.bar.console.print(text, markup=False, highlight=False, soft_wrap=True)

    def waiting(self, holder: str, results: int) -> None:
        self._line(
            f"the run log is held by {holder}: {results} finished run(s) wait in memory; "
            "runs go on being handed out"
        )

    def _summary(self) -> None:
        info = f"{len(self.tasks)} running"
        if self.rates:  # Ray tasks report no progress
            info += f"  {sum(self.rates.values()):,.0f} tok/s"
        self.bar.update(self.overall, info=info)
