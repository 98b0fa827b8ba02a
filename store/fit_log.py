"""Stored fits and predictions: what was fitted on which selection, and what was answered."""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any

import duckdb
import numpy as np


def save_fit(
    con: duckdb.DuckDBPyConnection,
    law: str,
    arch: str | None,
    selection: dict[str, Any],
    record: dict[str, Any],
    computed_on: str | None = None,
) -> str:
    """Store a fit (its `to_dict()` record) with the selection of runs it came from and what it
    was computed on (numpy, its SIMD level, the CPU: fits.machine)."""
    fit_id = "fit-" + uuid.uuid4().hex[:12]
    con.execute(
        "INSERT INTO fits (fit_id, law, arch, selection, params, record, n_points, objective,"
        " computed_on) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            fit_id, law, arch, json.dumps(selection, sort_keys=True),
            json.dumps(record.get("params")), json.dumps(record),
            record.get("n_points"), record.get("objective"), computed_on,
        ],
    )  # fmt: skip
    return fit_id


def find_fit(
    con: duckdb.DuckDBPyConnection, law: str, selection: dict[str, Any]
) -> tuple[str, dict[str, Any]] | None:
    """The newest fit of `law` made on exactly this selection (same runs), if any."""
    row = con.execute(
        "SELECT fit_id, record FROM fits WHERE law = ? AND selection = ? "
        "ORDER BY created_at DESC, fit_id LIMIT 1",
        [law, json.dumps(selection, sort_keys=True)],
    ).fetchone()
    return (row[0], json.loads(row[1])) if row else None


def save_prediction(
    con: duckdb.DuckDBPyConnection,
    fit_id: str | None,
    question: dict[str, Any],
    value: float,
    lo: float,
    hi: float,
    level: float,
) -> str:
    prediction_id = "pred-" + uuid.uuid4().hex[:12]
    con.execute(
        "INSERT INTO predictions (prediction_id, fit_id, question, value, lo, hi, level) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        [prediction_id, fit_id, _question_json(question), value, lo, hi, level],
    )
    return prediction_id


def _question_json(question: dict[str, Any]) -> str:
    return json.dumps(question, sort_keys=True, default=_plain)


def _plain(value: Any) -> Any:
    """A numpy scalar in a question (a caller's np.int64 N) as the number json writes."""
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot store {type(value).__name__} in a question")


def runs_fingerprint(run_ids: list[str]) -> str:
    """A short hash of a set of runs: a stored fit is reused only for the same runs."""
    return hashlib.sha256("\n".join(sorted(run_ids)).encode()).hexdigest()[:16]


def sweep_fits(
    con: duckdb.DuckDBPyConnection, sweep: str
) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """The (selection, record) of the fits an adaptive sweep planned its rounds on, oldest
    first (scaling.sweeps.round_fits)."""
    rows = con.execute(
        "SELECT selection, record FROM fits WHERE selection->>'adaptive_sweep' = ? "
        "ORDER BY created_at, fit_id",
        [sweep],
    ).fetchall()
    return [(json.loads(selection), json.loads(record)) for selection, record in rows]
