"""Sweep bookkeeping in the run log: outcomes by run id, status per sweep, throughput."""

from __future__ import annotations

import math

import duckdb
import pandas as pd

FINISHED = ("done", "diverged", "failed")
# A sweep's runs: its members, and runs it marked running before they became members.
MEMBERS = """WITH members AS (
            SELECT sweep, run_id FROM sweep_runs
            UNION SELECT sweep, run_id FROM runs WHERE sweep IS NOT NULL
        )"""


def run_outcomes(con: duckdb.DuckDBPyConnection) -> dict[str, tuple[str, float | None]]:
    """Every run's (status, final_val_loss) by run id: what a restarted sweep resumes from."""
    rows = con.execute("SELECT run_id, status, final_val_loss FROM runs").fetchall()
    return {run_id: (status, loss) for run_id, status, loss in rows}


def planned_loss(outcome: tuple[str, float | None] | None) -> float | None:
    """What a sweep's planner reads of a run's (status, loss): None until it finished, then
    its loss where it finished with a finite one, else inf (diverged, failed, or a done row
    whose loss is NaN, which an import can write). `sweep run` and `sweep suggest` read runs
    through this one rule, so that they plan the same next round."""
    if outcome is None or outcome[0] not in FINISHED:
        return None
    status, loss = outcome
    return loss if status == "done" and loss is not None and math.isfinite(loss) else math.inf


def run_timings(con: duckdb.DuckDBPyConnection) -> dict[str, tuple[float, float]]:
    """Finished runs' (wall_s, tokens_per_s) by run id, where both were measured: what an
    adaptive sweep with a budget in hours has spent, and its rates."""
    rows = con.execute(
        "SELECT run_id, wall_s, tokens_per_s FROM runs "
        "WHERE status IN ('done', 'diverged') AND wall_s > 0 AND tokens_per_s > 0"
    ).fetchall()
    return {run_id: (float(wall), float(rate)) for run_id, wall, rate in rows}


def sweep_counts(con: duckdb.DuckDBPyConnection, sweep: str | None = None) -> pd.DataFrame:
    """Runs per sweep by status (members and runs the sweep marked running)."""
    where = "WHERE m.sweep = ?" if sweep is not None else ""
    return con.execute(
        f"""
        {MEMBERS}
        SELECT m.sweep,
               count(*) AS runs,
               count(*) FILTER (r.status = 'done') AS done,
               count(*) FILTER (r.status = 'running') AS running,
               count(*) FILTER (r.status = 'diverged') AS diverged,
               count(*) FILTER (r.status = 'failed') AS failed,
               max(r.finished_at) AS last_finished
        FROM members m JOIN runs r USING (run_id)
        {where}
        GROUP BY m.sweep ORDER BY m.sweep
        """,
        [sweep] if sweep is not None else [],
    ).df()


def running_owners(con: duckdb.DuckDBPyConnection, sweep: str | None = None) -> pd.DataFrame:
    """The `running` runs of each sweep (or of `sweep`) with who trains them (store.runs.owner)."""
    where = "AND m.sweep = ?" if sweep is not None else ""
    return con.execute(
        f"""
        {MEMBERS}
        SELECT m.sweep, r.run_id, r.owner
        FROM members m JOIN runs r USING (run_id)
        WHERE r.status = 'running' {where}
        ORDER BY m.sweep, r.run_id
        """,
        [sweep] if sweep is not None else [],
    ).df()


def measured_throughput(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Finished runs' FLOPs per token and training tokens per second (evaluations apart)."""
    return con.execute(
        """
        SELECT flops / tokens AS flops_per_token, tokens_per_s
        FROM runs
        WHERE status = 'done' AND source = 'local' AND tokens_per_s > 0 AND tokens > 0
          AND flops > 0
        """
    ).df()
