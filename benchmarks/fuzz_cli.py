"""Fuzz the CLI with the generators of cli/fuzzing.py for many inputs; print findings.

    python benchmarks/fuzz_cli.py [N]      # N generated inputs in all (default 10,000)

Each input is one in-process `scaling ...` call (a run, a sweep spec, a query) that must
end in exit 0 or a one-line refusal with exit 2. Prints the count of inputs, of tracebacks
and other breaks of that rule, and one example of each distinct finding.
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from hypothesis import HealthCheck, Phase, given, settings

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cli.fuzzing import (
    Outcome,
    call,
    log_intact,
    plan_outcome,
    prepare_log,
    query_argv,
    resolve,
    run_argv,
    spec_text,
)


def fuzz(n: int) -> tuple[int, Counter[str], dict[str, Outcome]]:
    counts: Counter[str] = Counter()
    examples: dict[str, Outcome] = {}
    seen = 0
    folder = Path(tempfile.mkdtemp(prefix="fuzz-cli-"))
    log = folder / "runs.duckdb"
    prepare_log(log)

    def note(outcome: Outcome) -> None:
        nonlocal seen
        seen += 1
        if seen % 500 == 0:
            print(f"... {seen:,} inputs, {sum(counts.values()):,} findings", flush=True)
        problem = outcome.problem()
        if problem is None:
            return
        last = (outcome.traceback or outcome.err).strip().splitlines()[-1:] or [""]
        key = f"{' '.join(outcome.argv[:2])[:30]}: {problem}: {last[0][:120]}"
        counts[key] += 1
        examples.setdefault(key, outcome)

    each = settings(
        max_examples=max(1, n // 3),
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )

    @each
    @given(argv=run_argv())
    def runs(argv: list[str]) -> None:
        note(call([*argv, "--db", str(folder / "never.duckdb")]))

    @each
    @given(text=spec_text())
    def specs(text: str) -> None:
        outcome = plan_outcome(text, folder)
        outcome.argv = ["sweep", "plan", repr(text)]
        note(outcome)

    @each
    @given(argv=query_argv())
    def queries(argv: list[str]) -> None:
        outcome = call([*resolve(argv, log), "--db", str(log)])
        if not log_intact(log):  # an --out that replaced the run log: data loss
            outcome.traceback = "the run log was overwritten or damaged"
        note(outcome)

    for generator in (runs, specs, queries):
        generator()
    return seen, counts, examples


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    started = time.perf_counter()
    seen, counts, examples = fuzz(n)
    print(f"inputs: {seen:,} in {time.perf_counter() - started:.0f} s")
    print(f"findings: {sum(counts.values()):,} ({len(counts)} distinct)")
    for key, number in counts.most_common():
        print(f"  {number:5d}  {key}")
        print(f"         e.g. scaling {' '.join(map(repr, examples[key].argv))}")


if __name__ == "__main__":
    main()
