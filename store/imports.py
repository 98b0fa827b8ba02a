"""Importing runs made elsewhere (CSV, Parquet, JSONL) into the `runs` table.

Columns are matched by name (with common aliases such as N, D, loss) or by an explicit
mapping; columns that are not run columns are kept in the run's `config` JSON. Every row is
checked first, so a file imports whole or not at all (unless bad rows are skipped on request).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pandas as pd

from store.errors import StoreError
from store.schema import RUN_COLUMNS

ALIASES = {
    "n": "params", "n_params": "params", "parameters": "params", "model_size": "params",
    "d": "tokens", "n_tokens": "tokens", "training_tokens": "tokens", "data": "tokens",
    "c": "flops", "compute": "flops", "training_flop": "flops", "training_flops": "flops",
    "loss": "final_val_loss", "l": "final_val_loss", "final_loss": "final_val_loss",
    "val_loss": "final_val_loss", "learning_rate": "lr", "bs": "batch_size",
    "batch": "batch_size", "architecture": "arch", "width": "d_model",
}  # fmt: skip
NUMERIC = ("params", "params_nonembed", "tokens", "flops", "lr", "batch_size", "d_model",
           "n_layers", "n_heads", "seq_len", "final_val_loss")  # fmt: skip
SIZE_COLUMNS = ("params", "tokens", "flops")
READERS = {
    ".csv": "read_csv_auto",
    ".tsv": "read_csv_auto",
    ".parquet": "read_parquet",
    ".jsonl": "read_json_auto",
    ".ndjson": "read_json_auto",
    ".json": "read_json_auto",
}


@dataclass(frozen=True)
class ImportPlan:
    """Rows ready for `runs`, and the rejected rows as (location, reason)."""

    rows: pd.DataFrame
    bad: list[tuple[int, str]]


def read_table(path: Path) -> pd.DataFrame:
    """Read a CSV / Parquet / JSONL file with DuckDB."""
    if not path.exists():
        raise StoreError(f"file not found: {path}")
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        raise StoreError(f"{path}: unknown format {path.suffix!r} (csv, parquet or jsonl)")
    try:
        return duckdb.connect().execute(f"SELECT * FROM {reader}(?)", [str(path)]).df()
    except duckdb.Error as exc:
        raise StoreError(f"cannot read {path}: {str(exc).splitlines()[0]}") from exc


def parse_mapping(text: str | None) -> dict[str, str]:
    """'params=N,tokens=D,loss=L' -> {run column: file column or SQL expression}."""
    mapping: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in (text or "").split(","))):
        target, sep, column = item.partition("=")
        if not sep or not column.strip():
            raise StoreError(f"--columns: {item!r} is not of the form run_column=file_column")
        target = ALIASES.get(target.strip().lower(), target.strip())
        if target not in RUN_COLUMNS:
            raise StoreError(f"--columns: {target!r} is not a column of runs")
        mapping[target] = column.strip()
    return mapping


def normalise_columns(frame: pd.DataFrame, mapping: dict[str, str]) -> pd.DataFrame:
    """Rename mapped columns; a mapping that is no column name is a SQL expression over them."""
    frame = frame.copy()
    con = duckdb.connect()
    con.register("file", frame)
    for target, source in mapping.items():
        if source in frame.columns:
            frame[target] = frame[source]
            continue
        try:
            frame[target] = con.execute(f"SELECT {source} FROM file").df().iloc[:, 0].to_numpy()
        except duckdb.Error as exc:
            raise StoreError(
                f"--columns {target}={source}: neither a column of the file nor an expression "
                f"over its columns ({str(exc).splitlines()[0]})"
            ) from exc
    mapped = {source for source in mapping.values() if source in frame.columns}
    renames = {}
    for column in frame.columns:
        if column in mapping or column in mapped:
            continue
        key = column.strip().lower().replace(" ", "_")
        target = key if key in RUN_COLUMNS else ALIASES.get(key)
        if target and target not in mapping and target not in renames.values():
            renames[column] = target
    return frame.drop(columns=[c for c in mapped if c not in mapping]).rename(columns=renames)


def _problem(row: pd.Series) -> str | None:
    for column in NUMERIC:
        if column not in row.index or pd.isna(row[column]):
            continue
        value = row[column]
        if not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
            return f"{column} must be a positive number, got {value:g}"
    if row.get("status", "done") == "done" and pd.isna(row.get("final_val_loss")):
        return "no loss"
    if all(pd.isna(row.get(c)) for c in SIZE_COLUMNS):
        return "needs params, tokens or flops"
    return None


def plan_import(frame: pd.DataFrame, source: str, mapping: dict[str, str]) -> ImportPlan:
    """Map columns, validate every row, and build `runs` rows for the good ones."""
    frame = normalise_columns(frame, mapping)
    if "final_val_loss" not in frame.columns:
        raise StoreError("no loss column: name one with --columns loss=COLUMN")
    if not any(c in frame.columns for c in SIZE_COLUMNS):
        raise StoreError("no params, tokens or flops column: name them with --columns")
    unreadable: dict[int, str] = {}
    for column in NUMERIC:
        if column in frame.columns:
            numbers = pd.to_numeric(frame[column], errors="coerce").astype(float)
            for index in frame.index[numbers.isna() & frame[column].notna()]:
                value = frame.at[index, column]
                unreadable.setdefault(index, f"{column} is not a number: {value!r}")
            frame[column] = numbers
    run_part = [c for c in frame.columns if c in RUN_COLUMNS]
    extra = [c for c in frame.columns if c not in RUN_COLUMNS]
    good, bad = [], []
    for number, (index, row) in enumerate(frame.iterrows()):
        reason = unreadable.get(index) or _problem(row)
        if reason:
            bad.append((number, reason))
            continue
        record = {c: (None if pd.isna(row[c]) else row[c]) for c in run_part}
        config = {c: (None if pd.isna(row[c]) else row[c]) for c in extra}
        payload = json.dumps({"source": source, **record, **config}, sort_keys=True, default=str)
        record["run_id"] = "imp-" + hashlib.sha256(payload.encode()).hexdigest()[:16]
        record["config"] = json.dumps(config, default=str)
        record["source"] = f"imported:{source}"
        record.setdefault("status", "done")
        if record.get("flops") is None and record.get("params") and record.get("tokens"):
            record["flops"] = 6.0 * record["params"] * record["tokens"]
        good.append(record)
    rows = pd.DataFrame(good, columns=sorted({k for r in good for k in r}) or ["run_id"])
    return ImportPlan(rows, bad)


def location(path: Path, index: int) -> str:
    """Where a data row sits in its file, as a person would look for it."""
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        return f"line {index + 2}"  # after the header line
    if suffix in (".jsonl", ".ndjson"):
        return f"line {index + 1}"
    return f"row {index + 1}"


def import_file(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    source: str | None = None,
    columns: str | None = None,
    skip_bad: bool = False,
) -> tuple[int, list[str]]:
    """Import a file whole; with `skip_bad`, import the good rows and report the others."""
    plan = plan_import(read_table(path), source or path.stem, parse_mapping(columns))
    problems = [f"{location(path, i)}: {reason}" for i, reason in plan.bad]
    if problems and not skip_bad:
        shown = "; ".join(problems[:5]) + (
            f"; ... ({len(problems)} in all)" if len(problems) > 5 else ""
        )
        raise StoreError(
            f"nothing imported, {len(problems)} bad rows ({shown}); --skip-bad imports the rest"
        )
    return write_import(con, plan.rows), problems


def write_import(con: duckdb.DuckDBPyConnection, rows: pd.DataFrame) -> int:
    """Insert (or replace, on re-import) the rows in one transaction."""
    if rows.empty:
        return 0
    con.execute("BEGIN TRANSACTION")
    try:
        con.register("_import", rows)
        con.execute("INSERT OR REPLACE INTO runs BY NAME SELECT * FROM _import")
        con.unregister("_import")
        con.execute("COMMIT")
    except Exception:
        con.execute("ROLLBACK")
        raise
    return len(rows)
