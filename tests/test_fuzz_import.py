"""`scaling import` over generated bad cells and mappings: a clean refusal, never a crash.

Each example is planned and written into a real DuckDB run log. The outcome must be a
StoreError (one line for the CLI) or rows that DuckDB took as they are, with every other row
refused with a reason; any other exception is a bug (a traceback for the user).
"""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from cli.app import main
from store.db import connect
from store.errors import StoreError
from store.imports import parse_mapping, plan_import, write_import

COLUMNS = [
    "params", "tokens", "flops", "lr", "batch_size", "d_model", "n_layers", "seed", "seq_len",
    "warmup", "unique_tokens", "final_val_loss", "final_train_loss", "wall_s", "created_at",
    "finished_at", "status", "arch", "N", "D", "loss", "extra",
]  # fmt: skip
ODD = [
    "0.5", "1e30", "-1", "nan", "inf", "notadate", "=1+1", "", " ", "1_000", "2024-13-45",
    "done", "running", "9" * 40, "1e-400", "0x10",
]  # fmt: skip
CELLS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(ODD),
    st.text(max_size=20),
    st.datetimes(min_value=dt.datetime(1, 1, 1), max_value=dt.datetime(9999, 12, 31)),
)
ROWS = st.lists(
    st.dictionaries(st.sampled_from(COLUMNS), CELLS, max_size=6), min_size=1, max_size=5
)
FUZZ = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _frame(rows: list[dict[str, object]]) -> pd.DataFrame:
    """Rows on top of a valid one (N, D, loss), so that most examples get past the header."""
    base = {"N": 1e6, "D": 1e9, "loss": 3.0}
    return pd.DataFrame([{**base, **row} for row in rows], dtype=object)


@pytest.fixture(scope="module")
def log(tmp_path_factory):
    path = tmp_path_factory.mktemp("fuzz") / "fuzz.duckdb"
    with connect(path):
        pass
    return path


@pytest.mark.slow
@FUZZ
@given(rows=ROWS)
# found by this test on 5 December 2026: under 2**63 - 1, but 2**63 once the column with a
# missing cell is float64, so the insert failed past the checks
@example(rows=[{}, {"unique_tokens": 9223372036854775296}])
def test_bad_cells_are_refused_with_a_reason_or_stored_as_they_are(log, rows):
    frame = _frame(rows)
    try:
        plan = plan_import(frame, "fuzz", {})
    except StoreError:
        return
    assert all(isinstance(reason, str) and reason for _, reason in plan.bad)
    assert len(plan.rows) + len(plan.bad) + plan.duplicates == len(frame)
    with connect(log) as con:
        before = con.execute("SELECT count(*) FROM runs").fetchall()[0][0]
        inserted, present = write_import(con, plan.rows)
        after = con.execute("SELECT count(*) FROM runs").fetchall()[0][0]
    assert after - before == inserted and inserted + present == len(plan.rows)


@FUZZ
@given(expression=st.text(max_size=40), target=st.sampled_from(["params", "loss", "seed", "x"]))
@pytest.mark.slow
def test_any_mapping_text_is_an_expression_or_a_store_error(expression, target):
    try:
        plan = plan_import(_frame([{}]), "fuzz", parse_mapping(f"{target}={expression}"))
    except StoreError as exc:
        assert str(exc).strip()  # a reason the CLI can print
        return
    assert len(plan.rows) + len(plan.bad) + plan.duplicates == 1  # the row is accounted for
    assert all(isinstance(reason, str) and reason for _, reason in plan.bad)


@pytest.mark.slow
@settings(max_examples=60, deadline=None)
@given(rows=ROWS)
def test_the_command_exits_0_or_2_on_a_csv_of_bad_cells(tmp_path_factory, rows):
    folder = tmp_path_factory.mktemp("csv")
    path = folder / "runs.csv"
    _frame(rows).to_csv(path, index=False)
    try:
        main(["import", str(path), "--db", str(folder / "log.duckdb")])
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    assert code in (0, 2)
