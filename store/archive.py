"""A set of sweeps' finished runs kept as Parquet beside the code, and restored into a run log.

A study commits its runs (run-log columns, no config) and their curves, not the DuckDB file:
a fresh checkout restores them with their run ids and status, so a sweep finds them done and
trains nothing twice. The sweeps are named by a common prefix (e.g. `arch-`).
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from store.db import connect


def restore(db: Path, prefix: str, runs: Path, curves: Path) -> int:
    """Insert the committed runs (and curves) the log lacks, with their run ids and status.
    A run the log holds unfinished (a sweep killed while it trained, then trained elsewhere,
    e.g. in a parallel log) is replaced by the committed one, curve included. Returns the
    number of runs inserted."""
    if not runs.exists():
        return 0
    with connect(db) as con:
        stale = (
            "SELECT run_id FROM runs WHERE status NOT IN ('done', 'diverged', 'failed') "
            "AND run_id IN (SELECT run_id FROM read_parquet(?))"
        )
        con.execute(f"DELETE FROM curves WHERE run_id IN ({stale})", [str(runs)])
        con.execute(f"DELETE FROM sweep_runs WHERE run_id IN ({stale})", [str(runs)])
        con.execute(f"DELETE FROM runs WHERE run_id IN ({stale})", [str(runs)])
        before = _count(con)
        con.execute(
            "INSERT INTO runs BY NAME SELECT * FROM read_parquet(?) "
            "WHERE run_id NOT IN (SELECT run_id FROM runs)",
            [str(runs)],
        )
        if curves.exists():
            con.execute(
                "INSERT INTO curves BY NAME SELECT * FROM read_parquet(?) c "
                "WHERE NOT EXISTS (SELECT 1 FROM curves k "
                "WHERE k.run_id = c.run_id AND k.step = c.step)",
                [str(curves)],
            )
        con.execute(
            "INSERT INTO sweep_runs SELECT sweep, run_id FROM runs r WHERE sweep LIKE ? "
            "AND NOT EXISTS (SELECT 1 FROM sweep_runs s "
            "WHERE s.sweep = r.sweep AND s.run_id = r.run_id)",
            [prefix + "%"],
        )
        return _count(con) - before


def export(db: Path, prefix: str, runs: Path, curves: Path) -> int:
    """Write the sweeps' finished runs (run-log columns, no config) and their curves; the
    number of runs written (0: nothing written)."""
    if "'" in prefix:  # COPY takes no parameters: the prefix is spliced in
        raise ValueError(f"a sweep prefix with a quote: {prefix!r}")
    study = (
        "SELECT * EXCLUDE (config) FROM runs WHERE status IN ('done', 'diverged', 'failed') "
        f"AND (sweep LIKE '{prefix}%' OR run_id IN "
        f"(SELECT run_id FROM sweep_runs WHERE sweep LIKE '{prefix}%'))"
    )
    with connect(db, read_only=True) as con:
        n = _count(con, f"({study})")
        if n == 0:
            return 0
        runs.parent.mkdir(parents=True, exist_ok=True)
        con.execute(f"COPY ({study} ORDER BY run_id) TO '{runs}' (FORMAT parquet)")
        con.execute(
            f"COPY (SELECT c.* FROM curves c JOIN ({study}) r USING (run_id) "
            f"ORDER BY run_id, step) TO '{curves}' (FORMAT parquet, COMPRESSION zstd)"
        )
    return n


def _count(con: duckdb.DuckDBPyConnection, table: str = "runs") -> int:
    return int(con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0])
