"""How an answer of `scaling predict` is shown: its text or JSON, and how far its question lies
beyond (or below) the runs it was fitted on, which a law's error grows with."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from cli.common import console, emit_json, format_value

if TYPE_CHECKING:
    from scaling.study import Study


def show(answer: Any, as_json: bool, distance: dict[str, Any] | None = None) -> None:
    """An answer, and how far its question lies beyond the runs (text, or `beyond_runs`)."""
    if as_json:
        emit_json({**answer.to_dict(), **({"beyond_runs": distance} if distance else {})})
        return
    console.print(str(answer))
    if distance:
        console.print(_beyond_line(distance))


def beyond(study: Study, arch: str | None, source: str | None, where: str | None,
           **asked: float) -> dict[str, Any]:  # fmt: skip
    """Decades in N, D and C = 6ND (and in epochs D/U or width, when asked) between the
    question and the largest finished run the selection holds (positive: beyond it; a law's
    error grows with that distance); and, for those below the smallest run, the decades below
    it."""
    runs = study.runs(arch=arch, source=source, where=where)
    params, tokens = runs["params"].astype(float), runs["tokens"].astype(float)
    compute = 6.0 * params * tokens
    width = runs["d_model"].astype(float)
    largest = {"N": params.max(), "D": tokens.max(), "C": compute.max(), "width": width.max()}
    smallest = {"N": params.min(), "D": tokens.min(), "C": compute.min(), "width": width.min()}
    if "epochs" in asked:  # the most repeated run's; NaN where no run records its unique tokens
        largest["epochs"] = (tokens / runs["unique_tokens"].astype(float)).max()
    decades = _decades(asked, largest)
    below = {k: v for k, v in _decades(asked, smallest).items() if v < 0}
    out: dict[str, Any] = {"decades": decades, "largest_run": {k: largest[k] for k in decades}}
    if below:
        out |= {"decades_below": below, "smallest_run": {k: smallest[k] for k in below}}
    return out


def _decades(asked: dict[str, float], runs: dict[str, float]) -> dict[str, float]:
    """log10(asked / the runs' value) to 2 places, for each quantity both give as a size."""
    return {
        k: round(math.log10(v / runs[k]), 2)
        for k, v in asked.items()
        if k in runs and math.isfinite(runs[k]) and runs[k] > 0 and math.isfinite(v) and v > 0
    }


def _beyond_line(beyond: dict[str, Any]) -> str:
    decades, largest = beyond["decades"], beyond["largest_run"]
    if not decades:
        return "beyond the runs: unknown (no finished run holds these sizes)"
    parts = [f"{k} {v:+.2f} ({format_value(largest[k])})" for k, v in decades.items()]
    below = beyond.get("decades_below", {})
    where = "beyond" if max(decades.values()) > 0 else "below" if below else "within"
    line = f"{where} the runs: decades past the largest run (its value): " + ", ".join(parts)
    if below:
        smallest = beyond["smallest_run"]
        shown = [f"{k} {v:+.2f} ({format_value(smallest[k])})" for k, v in below.items()]
        line += "; below the smallest run: " + ", ".join(shown)
    return line
