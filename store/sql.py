"""SQL a user writes: one read-only statement with no file access, or one expression.

`scaling sql` runs the user's statement on a read-only connection whose external access is
switched off and locked (no COPY TO, EXPORT, read_csv, glob, ATTACH, INSTALL). A `--where`
clause or an import mapping is pasted into our own SQL, so it is first parsed by DuckDB and
accepted only if it is a single expression that reads no table but the ones we name.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Collection, Iterator
from pathlib import Path
from typing import Any, TypeVar

import duckdb

from store.db import is_damage, memory
from store.errors import StoreError

RUN_LOG_TABLES = frozenset(
    ("runs", "curves", "fits", "predictions", "sweep_runs", "schema_version", "best_lr")
)


T = TypeVar("T")
BATCH_ROWS = 10_000  # rows fetched at a time: a result of any size streams in bounded memory


def sandbox(
    con: duckdb.DuckDBPyConnection, writable: Path | None = None
) -> duckdb.DuckDBPyConnection:
    """Switch off (for good) every way the connection's SQL could touch other files, except
    the one file `writable` (our own temporary export file), if given."""
    if writable is not None:
        con.execute("SET allowed_paths = ?", [[str(writable)]])
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")
    return con


def interruptible(con: duckdb.DuckDBPyConnection, call: Callable[[], T]) -> T:
    """`call()` (DuckDB work that may run for hours) in a thread, so that Ctrl-C reaches
    this one: it interrupts the query (`con.interrupt()`) and raises KeyboardInterrupt."""
    box: dict[str, Any] = {}

    def work() -> None:
        try:
            box["value"] = call()
        except BaseException as exc:  # handed to the caller's thread below
            box["error"] = exc

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    try:
        while thread.is_alive():
            thread.join(0.05)
    except KeyboardInterrupt:
        while thread.is_alive():  # until it stops: an interrupt before the query began is lost
            con.interrupt()
            thread.join(0.05)
        raise
    if "error" in box:
        raise box["error"]
    return box["value"]


def one_statement(text: str) -> str:
    """The text if it holds exactly one SQL statement, else a StoreError."""
    try:
        statements = duckdb.extract_statements(text)
    except duckdb.Error as exc:
        raise StoreError(f"SQL error: {str(exc).splitlines()[0]}") from exc
    if not statements:
        raise StoreError("no SQL statement given (example: scaling sql 'SELECT * FROM runs')")
    if len(statements) > 1:
        raise StoreError(f"one SQL statement at a time, got {len(statements)}")
    return text


class Result:
    """A running query's columns and its rows in batches, fetched as they are read (a
    billion-row result is never held whole); Ctrl-C interrupts it."""

    def __init__(self, con: duckdb.DuckDBPyConnection, text: str) -> None:
        self.con = con
        self.cursor = _guarded(con, lambda: con.execute(text))
        described = self.cursor.description or []
        self.columns: list[str] = [d[0] for d in described]

    def fetch(self, n: int) -> list[tuple[Any, ...]]:
        """Up to n more rows (NULL as None, NaN as nan); [] when none are left."""
        if not self.columns:
            return []
        return _guarded(self.con, lambda: self.cursor.fetchmany(n))

    def batches(self, size: int = BATCH_ROWS) -> Iterator[list[tuple[Any, ...]]]:
        while rows := self.fetch(size):
            yield rows


def query(con: duckdb.DuckDBPyConnection, text: str) -> Result:
    """Run one statement in a sandbox; its rows stream from the Result."""
    one_statement(text)
    _guarded(con, lambda: sandbox(con))  # Ctrl-C here is an interruption too
    return Result(con, text)


def copy_to_parquet(con: duckdb.DuckDBPyConnection, text: str, path: Path) -> None:
    """Write one query's result to `path` as Parquet, streamed by DuckDB; the query may
    touch no other file (the sandbox allows `path` alone, and only COPY writes it)."""
    statement = duckdb.extract_statements(one_statement(text))[0]
    if statement.type != duckdb.StatementType.SELECT:
        raise StoreError("--format parquet writes the result of a query (SELECT, FROM, WITH)")
    _guarded(con, lambda: sandbox(con, writable=path))
    quoted = "'" + str(path).replace("'", "''") + "'"
    select = statement.query.strip().rstrip(";")
    copy = f"COPY (\n{select}\n) TO {quoted} (FORMAT parquet, USE_TMP_FILE false)"
    _guarded(con, lambda: con.execute(copy))


def _guarded(con: duckdb.DuckDBPyConnection, call: Callable[[], T]) -> T:
    """An interruptible DuckDB call whose SQL errors are StoreErrors (damage re-raised)."""
    try:
        return interruptible(con, call)
    except duckdb.InterruptException:
        raise KeyboardInterrupt from None
    except duckdb.Error as exc:
        if is_damage(exc):
            raise  # store.db.connect says which file is damaged
        raise StoreError(f"SQL error: {str(exc).splitlines()[0]}") from exc


def expression(text: str, tables: Collection[str], what: str) -> str:
    """`text` if DuckDB parses it as one expression reading only `tables`, else StoreError.

    `what` names the option in the error (e.g. "--where "). The result is safe to paste into
    SQL in parentheses on a line of its own.
    """
    many = f"{what}{text!r} must be one SQL expression (no ';', FROM or clauses)"
    try:
        if len(duckdb.extract_statements(f"SELECT {text}\n")) != 1:
            raise StoreError(many)
    except duckdb.Error as exc:
        raise StoreError(
            f"{what}{text!r} is not one SQL expression: {str(exc).splitlines()[0]}"
        ) from exc
    con = memory()
    tree = json.loads(
        con.execute("SELECT json_serialize_sql(?)", [f"SELECT {text}\n"]).fetchall()[0][0]
    )
    aggregates = {
        name.lower()
        for (name,) in con.execute(
            "SELECT DISTINCT function_name FROM duckdb_functions() "
            "WHERE function_type = 'aggregate'"
        ).fetchall()
    }
    con.close()
    if tree.get("error"):
        raise StoreError(f"{what}{text!r} is not one SQL expression: {tree.get('error_message')}")
    statements = tree["statements"]
    node = statements[0]["node"] if len(statements) == 1 else {}
    single = (
        node.get("type") == "SELECT_NODE"
        and len(node.get("select_list", [])) == 1
        and node.get("from_table", {}).get("type") == "EMPTY"
        and not node.get("modifiers")
        and not node.get("cte_map", {}).get("map")
        and not node.get("group_expressions")
        and all(node.get(k) is None for k in ("where_clause", "having", "qualify", "sample"))
    )
    if not single:
        raise StoreError(many)
    for part in _nodes(node.get("select_list", []), into_subqueries=False):
        kind = part.get("class")
        name = str(part.get("function_name", "")).lower()
        if kind in ("STAR", "WINDOW") or (kind == "FUNCTION" and name in aggregates):
            shown = "*" if kind == "STAR" else name
            raise StoreError(
                f"{what}{text!r} must be one value per row: {shown!r} is "
                + ("a set of columns" if kind == "STAR" else "over many rows")
            )
    allowed = {t.lower() for t in tables}
    for part in _nodes(tree):
        kind = part.get("type")
        if kind == "TABLE_FUNCTION" or (
            kind == "BASE_TABLE" and str(part.get("table_name", "")).lower() not in allowed
        ):
            name = part.get("table_name") or part.get("function", {}).get("function_name", "")
            raise StoreError(
                f"{what}{text!r} may not read {name!r}, only {', '.join(sorted(allowed))}"
            )
    return text


def _nodes(tree: Any, into_subqueries: bool = True) -> Iterator[dict[str, Any]]:
    """Every JSON object in a parse tree (a subquery's own, or not)."""
    if isinstance(tree, dict):
        yield tree
        if tree.get("class") == "SUBQUERY" and not into_subqueries:
            return
        for value in tree.values():
            yield from _nodes(value, into_subqueries)
    elif isinstance(tree, list):
        for value in tree:
            yield from _nodes(value, into_subqueries)
