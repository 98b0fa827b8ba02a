"""Importing runs made elsewhere (CSV, Parquet, JSONL) into the `runs` table.

Columns are matched by name (with common aliases such as N, D, loss) or by an explicit
mapping; columns that are not run columns are kept in the run's `config` JSON. Every cell is
checked against its column's type and range first, so a file imports whole or not at all
(unless bad rows are skipped on request), and nothing is rounded or cut on the way in.
"""

from __future__ import annotations

import hashlib
import json
import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from store.db import is_damage, memory, migrate
from store.errors import StoreError
from store.schema import RUN_COLUMNS, STATUSES
from store.sql import expression, sandbox

ALIASES = {
    "n": "params", "n_params": "params", "parameters": "params", "model_size": "params",
    "d": "tokens", "n_tokens": "tokens", "training_tokens": "tokens", "data": "tokens",
    "c": "flops", "compute": "flops", "training_flop": "flops", "training_flops": "flops",
    "loss": "final_val_loss", "l": "final_val_loss", "final_loss": "final_val_loss",
    "val_loss": "final_val_loss", "learning_rate": "lr", "bs": "batch_size",
    "batch": "batch_size", "architecture": "arch", "width": "d_model",
    "u": "unique_tokens", "u_d": "unique_tokens", "unique": "unique_tokens",
}  # fmt: skip
# Columns that must hold a positive number when given (NULL where a row leaves them out).
NUMERIC = ("params", "params_nonembed", "tokens", "flops", "lr", "batch_size", "d_model",
           "n_layers", "n_heads", "seq_len", "final_val_loss", "unique_tokens")  # fmt: skip
SIZE_COLUMNS = ("params", "tokens", "flops")
NON_NEGATIVE = ("seed", "wall_s", "tokens_per_s", "warmup")  # zero is a value; below is not
# Large counts estimated from plots (Epoch's Chinchilla N) carry fractions far below one
# part in a million: those are rounded; any other fraction in a whole-number column is refused.
COUNTS = ("params", "params_nonembed", "tokens", "unique_tokens")
COUNT_SLACK = 1e-6
INTEGER_MAX = {"INTEGER": 2**31 - 1, "BIGINT": 2**63 - 1}
OURS = ("run_id", "config", "source")  # set by the import, whatever the file holds
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
    """Rows ready for `runs` (one per run id), rows that repeat an earlier row of the file,
    and the rejected rows as (location, reason)."""

    rows: pd.DataFrame
    bad: list[tuple[int, str]]
    duplicates: int = 0


@dataclass(frozen=True)
class ImportCounts:
    """What an import did: runs added, runs the log already held (left as they are: a run id
    is a hash of the row, so the same id means the same row), repeated rows of the file."""

    inserted: int
    present: int
    duplicates: int


def six_n_d(params: Any, tokens: Any) -> Any:
    """Training FLOPs C = 6 N D (Kaplan et al. 2020), taken for a run that gives none, so that
    runs read from a file and from a DataFrame have the same compute."""
    return 6.0 * params * tokens


def read_table(path: Path) -> pd.DataFrame:
    """Read a CSV / Parquet / JSONL file with DuckDB."""
    if not path.exists():
        raise StoreError(f"file not found: {path}")
    if not path.is_file():  # a FIFO would block forever, a device read without end
        raise StoreError(f"{path} is not a regular file")
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        raise StoreError(f"{path}: unknown format {path.suffix!r} (csv, parquet or jsonl)")
    if reader == "read_csv_auto":
        return read_csv(path)
    return _query(f"SELECT * FROM {reader}(?)", path)


def read_csv(path: Path, options: str = "") -> pd.DataFrame:
    """A CSV with its header line, as DuckDB's sniffer reads it (`options`: more read_csv
    settings, after a comma). A row short of fields is padded with NULL, whose cells are then
    checked as any missing cell; a row with more fields than the header refuses the file.
    Without padding the sniffer took a file with one such row for one column named after the
    whole header line, or for a headerless file of the long row alone. Well-formed files read
    the same as without these settings."""
    sql = f"SELECT * FROM read_csv_auto(?{options}, header = true, null_padding = true"
    try:
        frame = memory().execute(sql + ")", [str(path)]).df()
    except duckdb.Error:  # DuckDB pads a file with a quoted line break only in one thread
        frame = _query(sql + ", parallel = false)", path)
    with path.open(encoding="utf-8", errors="replace") as file:
        header = file.readline()
    if not header.strip():
        return pd.DataFrame()  # no header: nothing to read
    padded = [c for i, c in enumerate(frame.columns) if c == f"column{i}" and c not in header]
    if padded:
        fields = frame.columns.get_loc(padded[0])
        raise StoreError(f"cannot read {path}: a row has more fields than its header's {fields}")
    return frame


def _query(sql: str, path: Path) -> pd.DataFrame:
    try:
        return memory().execute(sql, [str(path)]).df()
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
        if target in mapping:
            raise StoreError(f"--columns: {target} is mapped twice ({mapping[target]!r} and "
                             f"{column.strip()!r}): give one")  # fmt: skip
        mapping[target] = column.strip()
    return mapping


def normalise_columns(frame: pd.DataFrame, mapping: dict[str, str]) -> pd.DataFrame:
    """Rename mapped columns; a mapping that is no column name is one SQL expression over them
    (parsed and checked by store.sql.expression, run with no file access)."""
    frame = frame.copy()
    con = sandbox(memory())
    con.register("file", frame)
    for target, source in mapping.items():
        if source in frame.columns:
            frame[target] = frame[source]
            continue
        sql = f"SELECT (\n{expression(source, ['file'], f'--columns {target}=')}\n) FROM file"
        try:
            values = con.execute(sql).df()
        except duckdb.Error as exc:
            raise StoreError(
                f"--columns {target}={source}: neither a column of the file nor an expression "
                f"over its columns ({str(exc).splitlines()[0]})"
            ) from exc
        if values.shape != (len(frame), 1):  # store.sql.expression refuses these first
            raise StoreError(f"--columns {target}={source}: must be one value per row")
        frame[target] = values.iloc[:, 0].to_numpy()
    con.close()
    mapped = {source for source in mapping.values() if source in frame.columns}
    renames = column_renames([c for c in frame.columns if c not in mapped], mapping)
    return frame.drop(columns=[c for c in mapped if c not in mapping]).rename(columns=renames)


def column_renames(columns: list[Any], mapping: Mapping[str, str] = {}) -> dict[Any, str]:
    """The run-log name of each column that has one by its own name or an alias (N: params,
    loss: final_val_loss), leaving the columns `mapping` sets alone."""
    renames: dict[Any, str] = {}
    for column in columns:
        if column in mapping:
            continue
        key = str(column).strip().lower().replace(" ", "_")
        target = key if key in RUN_COLUMNS else ALIASES.get(key, "")
        if target and target not in mapping and target not in renames.values():
            renames[column] = target
    return renames


def own_names(columns: list[Any], mapping: Mapping[str, str] = {}) -> dict[str, str]:
    """{run-log name: the name the file or frame gives that column}, mapped or by alias (N
    for params), for reasons that name a column as its owner does."""
    names = {target: own for target, own in mapping.items() if own in columns}
    return names | {target: str(own) for own, target in column_renames(columns, mapping).items()}


@lru_cache(maxsize=1)
def column_types() -> dict[str, str]:
    """Each `runs` column's DuckDB type, read off the schema itself."""
    con = memory()
    migrate(con, Path(":memory:"))
    rows = con.execute(
        "SELECT column_name, data_type FROM duckdb_columns() WHERE table_name = 'runs'"
    ).fetchall()
    con.close()
    return dict(rows)


def _missing(value: object) -> bool:
    if isinstance(value, list | tuple | dict | np.ndarray):
        return False
    return bool(pd.isna(value))


def _shown(value: object) -> str:
    """A cell as a person wrote it: numbers plainly (1e+30, 0.5), text quoted."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool | np.bool_):
        return str(int(value))
    if isinstance(value, numbers.Real) and not isinstance(value, bool | np.bool_):
        return f"{float(value):g}"
    return repr(value)


def _number(name: str, value: object) -> int | float:
    """A cell as a Python number (ints kept exact), or ValueError saying why not."""
    if isinstance(value, bool | np.bool_):
        raise ValueError(f"{name} is not a number: {_shown(value)}")
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        for kind in (int, float):
            try:
                return kind(text)
            except ValueError:
                pass
    raise ValueError(f"{name} is not a number: {_shown(value)}")


def _cell(column: str, kind: str, value: object, name: str = "") -> object:
    """The value as `runs.column` (of DuckDB type `kind`) stores it, or ValueError saying why
    it cannot: a wrong type, a fraction in a whole-number column, a number past the column.
    name: the column as the file calls it, for the reason (default: the run-log name)."""
    name = name or column
    if _missing(value):
        return None
    if kind in INTEGER_MAX or kind == "DOUBLE":
        number = _number(name, value)
        if column in NUMERIC and not (math.isfinite(number) and number > 0):
            raise ValueError(f"{name} must be a positive number, got {_shown(value)}")
        if column in NON_NEGATIVE and not (math.isfinite(number) and number >= 0):
            raise ValueError(f"{name} must be zero or more, got {_shown(value)}")
        if kind == "DOUBLE":
            return float(number)
        slack = COUNT_SLACK * abs(number) if column in COUNTS else 0.0
        if not math.isfinite(number) or abs(number - round(number)) > slack:
            raise ValueError(f"{name} must be a whole number, got {_shown(value)}")
        number = round(number)
        # a column with a missing cell is float64 in the frame the import writes, where
        # 2**63 - 1 rounds up to 2**63: the limit is what survives that rounding too
        if abs(number) > INTEGER_MAX[kind] or abs(float(number)) > INTEGER_MAX[kind]:
            limit = INTEGER_MAX[kind]
            raise ValueError(
                f"{name} = {_shown(value)} is beyond the column's range (±{limit:.3g})"
            )
        return number
    if kind == "TIMESTAMP":
        if not isinstance(value, str | datetime | np.datetime64):
            raise ValueError(f"{name} is not a date and time: {_shown(value)}")
        try:
            stamp = pd.Timestamp(value)
        except (ValueError, TypeError, OverflowError):
            raise ValueError(f"{name} is not a date and time: {_shown(value)}") from None
        if pd.isna(stamp):
            raise ValueError(f"{name} is not a date and time: {_shown(value)}")
        return (
            stamp.tz_convert("UTC").tz_localize(None) if stamp.tzinfo else stamp
        ).to_pydatetime()
    text = value if isinstance(value, str) else str(value)
    if "\x00" in text:
        raise ValueError(f"{name} holds a NUL character")
    if column == "status" and text not in STATUSES:
        raise ValueError(f"status must be one of {', '.join(STATUSES)}, got {text!r}")
    return text


def _problem(record: dict[str, object]) -> str | None:
    if record["status"] == "done" and record.get("final_val_loss") is None:
        return "no loss"
    if all(record.get(c) is None for c in SIZE_COLUMNS):
        return "needs params, tokens or flops"
    return None


def frame_runs(frame: pd.DataFrame, names: Mapping[str, str] = {}) -> pd.DataFrame:
    """A frame in run-log names (a DataFrame given to a Study) with its number columns as
    numbers and C = 6ND where a run gives no compute; StoreError naming the rows (by index
    label) that an import would refuse for what they hold: a number column holding anything
    but a positive number where given, a finished run with no loss, a run with no size.
    Counts need not be whole: a frame's N may be a fraction, which the log rounds. names:
    the caller's name of a run-log column, where it had its own (N for params)."""
    reasons: dict[int, str] = {}
    frame = frame.copy()
    for column in [c for c in NUMERIC if c in frame.columns]:
        raw = frame[column].to_numpy(dtype=object)
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype(float)
        value = frame[column].to_numpy()
        for i in np.flatnonzero(~pd.isna(raw) & ~(np.isfinite(value) & (value > 0))):
            shown = f"{names.get(column, column)} must be a positive number, got {_shown(raw[i])}"
            reasons.setdefault(int(i), shown)
    done = frame["status"].eq("done").to_numpy() if "status" in frame else np.ones(len(frame), bool)
    no_loss = frame.get("final_val_loss", pd.Series(np.nan, index=frame.index)).isna()
    for i in np.flatnonzero(done & no_loss.to_numpy()):
        reasons.setdefault(int(i), "a finished run with no loss")
    sizes = frame[[c for c in SIZE_COLUMNS if c in frame.columns]]
    for i in np.flatnonzero(sizes.isna().all(axis=1).to_numpy()):
        reasons.setdefault(int(i), "needs params, tokens or flops")
    if reasons:
        rows = sorted(reasons)
        shown = "; ".join(f"row {frame.index[i]}: {reasons[i]}" for i in rows[:3])
        more = f" and {len(rows) - 3} more" if len(rows) > 3 else ""
        raise StoreError(f"the frame has rows that cannot be runs ({shown}{more})")
    if {"params", "tokens"} <= set(frame.columns):
        derived = six_n_d(frame["params"], frame["tokens"])
        frame["flops"] = frame["flops"].fillna(derived) if "flops" in frame else derived
    return frame


def plan_import(frame: pd.DataFrame, source: str, mapping: dict[str, str]) -> ImportPlan:
    """Map columns, check every cell against its column's type, and build `runs` rows for
    the good rows (one per distinct row); a bad cell's reason names its column as the file
    does (loss, not final_val_loss)."""
    names = own_names(list(frame.columns), mapping)
    frame = normalise_columns(frame, mapping)
    if "final_val_loss" not in frame.columns:
        raise StoreError("no loss column: name one with --columns loss=COLUMN")
    if not any(c in frame.columns for c in SIZE_COLUMNS):
        raise StoreError("no params, tokens or flops column: name them with --columns")
    if frame.columns.duplicated().any():
        twice = sorted({str(c) for c in frame.columns[frame.columns.duplicated()]})
        raise StoreError(f"more than one column maps to {', '.join(twice)}")
    types = column_types()
    run_part = [c for c in frame.columns if c in RUN_COLUMNS and c not in OURS]
    extra = [c for c in frame.columns if c not in RUN_COLUMNS]
    # The run id hashes the row as earlier releases did (numbers as floats), so that
    # re-importing a file finds the runs it imported then.
    hashed = frame.copy()
    for column in NUMERIC:
        if column in hashed.columns:
            hashed[column] = pd.to_numeric(hashed[column], errors="coerce").astype(float)
    good: dict[str, dict[str, object]] = {}
    bad, duplicates = [], 0
    cells = frame[run_part].to_numpy(dtype=object)
    for number, (_, row) in enumerate(hashed.iterrows()):
        try:
            record = {
                c: _cell(c, types[c], v, names.get(c, c))
                for c, v in zip(run_part, cells[number], strict=True)
            }
        except ValueError as exc:
            bad.append((number, str(exc)))
            continue
        record["status"] = record.get("status") or "done"
        if reason := _problem(record):
            bad.append((number, reason))
            continue
        kept = {c: (None if _missing(row[c]) else row[c]) for c in run_part}
        config = {str(c): (None if _missing(row[c]) else row[c]) for c in extra}
        payload = json.dumps({"source": source, **kept, **config}, sort_keys=True, default=str)
        run_id = "imp-" + hashlib.sha256(payload.encode()).hexdigest()[:16]
        if run_id in good:
            duplicates += 1
            continue
        record["run_id"] = run_id
        record["config"] = json.dumps(config, default=str)
        record["source"] = f"imported:{source}"
        if record.get("flops") is None and record.get("params") and record.get("tokens"):
            record["flops"] = six_n_d(record["params"], record["tokens"])
        good[run_id] = record
    records = list(good.values())
    columns = sorted({k for r in records for k in r}) or ["run_id"]
    return ImportPlan(pd.DataFrame(records, columns=columns), bad, duplicates)


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
) -> tuple[ImportCounts, list[str]]:
    """Import a file whole; with `skip_bad`, import the good rows and report the others."""
    table = read_table(path)
    if table.empty:  # a header alone, or no line at all
        raise StoreError(f"{path}: no rows to import")
    plan = plan_import(table, source or path.stem, parse_mapping(columns))
    problems = [f"{location(path, i)}: {reason}" for i, reason in plan.bad]
    if problems and not skip_bad:
        shown = "; ".join(problems[:5]) + (
            f"; ... ({len(problems)} in all)" if len(problems) > 5 else ""
        )
        raise StoreError(
            f"nothing imported, {len(problems)} bad row{'s' * (len(problems) > 1)} ({shown}); "
            "--skip-bad imports the rest"
        )
    inserted, present = write_import(con, plan.rows)
    return ImportCounts(inserted, present, plan.duplicates), problems


def write_import(con: duckdb.DuckDBPyConnection, rows: pd.DataFrame) -> tuple[int, int]:
    """Insert the runs the log does not hold yet, in one transaction: (inserted, present)."""
    if rows.empty:
        return 0, 0
    con.execute("BEGIN TRANSACTION")
    try:
        ids = list(rows["run_id"])
        sql = "SELECT count(*) FROM runs WHERE list_contains(?, run_id)"
        present = con.execute(sql, [ids]).fetchall()[0][0]
        con.register("_import", rows)
        con.execute("INSERT OR IGNORE INTO runs BY NAME SELECT * FROM _import")
        con.unregister("_import")
        con.execute("COMMIT")
    except duckdb.Error as exc:
        con.execute("ROLLBACK")
        if is_damage(exc):
            raise
        raise StoreError(f"nothing imported: {str(exc).splitlines()[0]}") from exc
    return len(rows) - present, present
