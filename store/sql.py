"""SQL a user writes: one read-only statement with no file access, or one expression.

`scaling sql` runs the user's statement on a read-only connection whose external access is
switched off and locked (no COPY TO, EXPORT, read_csv, glob, ATTACH, INSTALL). A `--where`
clause or an import mapping is pasted into our own SQL, so it is first parsed by DuckDB and
accepted only if it is a single expression that reads no table but the ones we name.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterator
from typing import Any

import duckdb

from store.db import is_damage
from store.errors import StoreError

RUN_LOG_TABLES = frozenset(
    ("runs", "curves", "fits", "predictions", "sweep_runs", "schema_version", "best_lr")
)


def sandbox(con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    """Switch off (for good) every way the connection's SQL could touch other files."""
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")
    return con


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


def query(con: duckdb.DuckDBPyConnection, text: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Run one statement in a sandbox; its column names and rows (NULL as None, NaN as nan)."""
    one_statement(text)
    sandbox(con)
    try:
        cursor = con.execute(text)
        if cursor.description is None:
            return [], []
        return [d[0] for d in cursor.description], cursor.fetchall()
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
    con = duckdb.connect()
    tree = json.loads(
        con.execute("SELECT json_serialize_sql(?)", [f"SELECT {text}\n"]).fetchall()[0][0]
    )
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


def _nodes(tree: Any) -> Iterator[dict[str, Any]]:
    """Every JSON object in a parse tree."""
    if isinstance(tree, dict):
        yield tree
        for value in tree.values():
            yield from _nodes(value)
    elif isinstance(tree, list):
        for value in tree:
            yield from _nodes(value)
