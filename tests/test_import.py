import json

import duckdb
import pandas as pd
import pytest

from scaling import Study, datasets
from store.db import connect
from store.errors import StoreError
from store.imports import ImportCounts, import_file, parse_mapping, plan_import, read_table
from store.runs import read_runs, record_run
from tests.conftest import run_cli

CHINCHILLA = datasets.path("chinchilla-epoch")
STEP_LAW = datasets.path("step-law")
MU = datasets.path("mu-scaling")


def test_chinchilla_points_import_with_aliases_and_reimport_adds_nothing(db):
    source = pd.read_csv(CHINCHILLA)
    with connect(db) as con:
        assert import_file(con, CHINCHILLA, "chinchilla") == (ImportCounts(245, 0, 0), [])
        assert import_file(con, CHINCHILLA, "chinchilla") == (ImportCounts(0, 245, 0), [])
        runs = read_runs(con, source="imported:chinchilla")
    assert len(runs) == 245
    assert sorted(runs.params) == pytest.approx(sorted(source.N))
    assert sorted(runs.tokens) == pytest.approx(sorted(source.D))
    assert sorted(runs.flops) == pytest.approx(sorted(source.C))
    assert sorted(runs.final_val_loss) == pytest.approx(sorted(source.loss))
    assert set(runs.status) == {"done"}


def test_explicit_mapping_keeps_unmapped_columns_in_config(db):
    with connect(db) as con:
        counts, _ = import_file(con, STEP_LAW, "steplaw", "loss=smooth loss")
        runs = read_runs(con, source="imported:steplaw")
    source = pd.read_csv(STEP_LAW)
    assert counts.inserted == len(source) == len(runs)
    assert sorted(runs.final_val_loss) == pytest.approx(sorted(source["smooth loss"]))
    assert sorted(runs.lr) == pytest.approx(sorted(source.lr))
    assert sorted(runs.batch_size) == pytest.approx(sorted(source.bs))
    config = json.loads(runs.config.iloc[0])
    assert {"h", "numl", "loss", "exp_name"} <= set(config)


def test_mapping_may_be_an_expression(db):
    with connect(db) as con:
        import_file(con, MU, "mu", "loss=train_loss_at_20k_steps,params=params_millions*1e6")
        runs = read_runs(con, source="imported:mu").sort_values("d_model")
    source = pd.read_csv(MU).sort_values("width")
    assert list(runs.params) == pytest.approx(list(source.params_millions * 1e6))
    assert list(runs.d_model) == list(source.width)


def test_bad_rows_import_nothing_unless_skipped(tmp_path, db):
    bad = tmp_path / "bad.csv"
    bad.write_text("N,D,loss\n1e6,1e9,3.0\n-5,1e9,2.0\n2e6,abc,2.5\n3e6,1e9,\n4e6,2e9,2.2\n")
    with connect(db) as con:
        with pytest.raises(StoreError, match=r"line 3.*line 4.*line 5"):
            import_file(con, bad)
        assert read_runs(con).empty
        counts, problems = import_file(con, bad, skip_bad=True)
    assert counts.inserted == 2
    assert [p.split(":")[0] for p in problems] == ["line 3", "line 4", "line 5"]


def test_a_row_short_of_fields_is_a_bad_row_and_a_long_one_refuses_the_file(tmp_path, db):
    """DuckDB's sniffer read a file with one short row as one column named 'N,D,loss,lr', and
    the import said the file had no loss column. A short row is now padded: its missing loss
    makes it a bad row, its missing lr a missing cell. A longer row refuses the file."""
    short = tmp_path / "short.csv"
    short.write_text("N,D,loss,lr\n1e6,1e9,3.0,1e-3\n2e6,1e9\n3e6,1e9,2.8\n4e6,1e9,2.7,1e-3\n")
    with connect(db) as con:
        with pytest.raises(StoreError, match=r"^nothing imported, 1 bad row \(line 3: no loss\)"):
            import_file(con, short)
        counts, _ = import_file(con, short, skip_bad=True)
        runs = read_runs(con).sort_values("params")
    assert counts.inserted == 3 and list(runs.final_val_loss) == [3.0, 2.8, 2.7]
    assert runs.lr.isna().tolist() == [False, True, False]
    long = tmp_path / "long.csv"
    long.write_text("N,D,loss\n1e6,1e9,3.0\n2e6,1e9,2.9,7\n")
    with pytest.raises(StoreError, match="a row has more fields than its header's 3"):
        read_table(long)
    quoted = tmp_path / "quoted.csv"  # a quoted line break is read as before (no padding)
    quoted.write_text('N,D,loss,note\n1e6,1e9,3.0,"two\nlines"\n2e6,1e9,2.9,"a, b"\n')
    assert read_table(quoted).note.tolist() == ["two\nlines", "a, b"]
    for text in ("", "N,D,loss\n"):
        (tmp_path / "empty.csv").write_text(text)
        with connect(db) as con, pytest.raises(StoreError, match=r"empty\.csv: no rows to import"):
            import_file(con, tmp_path / "empty.csv")


@pytest.mark.slow  # runs `scaling import` in a subprocess
def test_parquet_and_jsonl_and_the_command(tmp_path, db):
    frame = pd.DataFrame({"params": [1e6, 2e6], "tokens": [1e8, 1e8], "loss": [3.1, 2.9]})
    parquet = tmp_path / "runs.parquet"
    duckdb.connect().register("f", frame).execute(f"COPY f TO '{parquet}' (FORMAT parquet)")
    jsonl = tmp_path / "runs.jsonl"
    jsonl.write_text("\n".join(json.dumps(r) for r in frame.to_dict("records")))
    for path in (parquet, jsonl):
        done = run_cli("import", str(path), "--source", path.suffix[1:], "--db", str(db))
        assert done.returncode == 0, done.stderr
    with connect(db, read_only=True) as con:
        assert len(read_runs(con, source="imported:parquet")) == 2
        assert len(read_runs(con, source="imported:jsonl")) == 2
    missing = run_cli("import", str(tmp_path / "nope.csv"), "--db", str(db))
    assert missing.returncode == 2 and "file not found" in missing.stderr
    unmapped = run_cli("import", str(MU), "--db", str(db))
    assert unmapped.returncode == 2 and "no loss column" in unmapped.stderr


# The run ids of the shipped data sets as the release before this check imported them: a
# re-import must find these runs, not add them again under new ids.
KNOWN_IDS = {
    "chinchilla-epoch": (None, 245, ["imp-00a14640c90ad27d", "imp-02cafbd0d669983c"]),
    "step-law": ("loss=smooth loss", 1911, ["imp-00035555d8effd89", "imp-0007cd2aa7299e2f"]),
}


@pytest.mark.parametrize("name", sorted(KNOWN_IDS))
def test_run_ids_of_imported_rows_are_stable_across_releases(name):
    columns, count, first = KNOWN_IDS[name]
    plan = plan_import(read_table(datasets.path(name)), name, parse_mapping(columns))
    assert plan.bad == [] and len(plan.rows) == count
    assert sorted(plan.rows.run_id)[:2] == first


@pytest.mark.slow
def test_counts_say_what_was_inserted_present_and_repeated(tmp_path, db):
    three = tmp_path / "three.csv"
    three.write_text("N,D,loss\n1e6,1e9,3.0\n1e6,1e9,3.0\n1e6,1e9,3.0\n")
    with connect(db) as con:
        assert import_file(con, three)[0] == ImportCounts(1, 0, 2)
        assert import_file(con, three)[0] == ImportCounts(0, 1, 2)
        assert len(read_runs(con)) == 1
    done = run_cli("import", str(three), "--db", str(db))
    assert done.returncode == 0, done.stderr
    said = " ".join(done.stdout.split())
    assert "imported 0 runs" in said and "1 already in the log" in said
    assert "2 rows repeat an earlier row of the file" in said


BAD_CELLS = [  # each named as the file names it (N, not params)
    ("N", "0.5", "N must be a whole number, got 0.5"),
    ("N", "1e30", "N = 1e+30 is beyond the column's range"),
    ("D", "1e30", "D = 1e+30 is beyond the column's range"),
    ("seed", "1e20", "seed = 1e+20 is beyond the column's range"),
    ("d_model", "1e12", "d_model = 1e+12 is beyond the column's range"),
    ("d_model", "32.7", "d_model must be a whole number, got 32.7"),
    ("final_train_loss", "abc", "final_train_loss is not a number: 'abc'"),
    ("created_at", "notadate", "created_at is not a date and time: 'notadate'"),
    ("status", "finished", "status must be one of"),
    ("unique_tokens", "-3", "unique_tokens must be a positive number"),
]


@pytest.mark.parametrize(("column", "value", "reason"), BAD_CELLS)
def test_a_cell_its_column_cannot_hold_is_refused_with_its_reason(
    tmp_path, db, column, value, reason
):
    good = {"N": "1e6", "D": "1e9", "loss": "3.0", "seed": "1", "d_model": "32",
            "final_train_loss": "3.1", "created_at": "2024-01-02 03:04:05", "status": "done",
            "unique_tokens": "5e8"}  # fmt: skip
    path = tmp_path / "runs.csv"
    rows = [good, {**good, column: value, "loss": "2.9"}]
    path.write_text(",".join(good) + "\n" + "".join(",".join(r.values()) + "\n" for r in rows))
    with connect(db) as con:
        with pytest.raises(StoreError) as refused:
            import_file(con, path)
        assert f"line 3: {reason}" in str(refused.value) and read_runs(con).empty
        counts, problems = import_file(con, path, skip_bad=True)
        stored = read_runs(con).iloc[0]
    assert counts.inserted == 1 and [p.split(":")[0] for p in problems] == ["line 3"]
    assert (stored.params, stored.tokens, stored.seed, stored.d_model) == (10**6, 10**9, 1, 32)
    assert stored.unique_tokens == 5 * 10**8 and str(stored.created_at) == "2024-01-02 03:04:05"


def test_unique_tokens_is_mapped_from_its_aliases(tmp_path, db):
    for alias in ("unique_tokens", "U", "u_d", "unique"):
        path = tmp_path / f"{alias}.csv"
        path.write_text(f"N,D,loss,{alias}\n1e6,4e9,3.0,1e9\n")
        with connect(db) as con:
            import_file(con, path)
            runs = read_runs(con, source=path.stem)
        assert list(runs.unique_tokens) == [10**9], alias


def test_source_selects_by_the_name_the_user_gave(db):
    with connect(db) as con:
        import_file(
            con, MU, "chinchilla", "loss=train_loss_at_20k_steps,params=params_millions*1e6"
        )
        record_run(con, {"run_id": "mine", "status": "done", "final_val_loss": 3.0}, [])
        assert len(read_runs(con, source="chinchilla")) == 10
        assert len(read_runs(con, source="imported:chinchilla")) == 10
        assert list(read_runs(con, source="local").run_id) == ["mine"]
    study = Study(db)
    assert len(study.runs(source="chinchilla")) == 10


INJECTIONS = [
    "params FROM file; COPY (SELECT 42) TO '{pwn}'; SELECT params",
    "(SELECT count(*) FROM read_csv('{pwn}'))",
    "(SELECT count(*) FROM '{pwn}')",
    "1 FROM file WHERE 1 = 1",
    "1) FROM file; COPY (SELECT 42) TO '{pwn}'; SELECT (1",
]


@pytest.mark.slow
@pytest.mark.parametrize("injection", INJECTIONS)
def test_a_mapping_or_where_clause_is_one_expression_and_runs_nothing_else(tmp_path, db, injection):
    pwn = tmp_path / "pwn.csv"
    text = injection.format(pwn=pwn)
    with connect(db) as con:
        with pytest.raises(StoreError):
            import_file(con, MU, "mu", f"loss=train_loss_at_20k_steps,params={text}")
        with pytest.raises(StoreError):
            read_runs(con, where=text)
        assert read_runs(con).empty
    assert not pwn.exists()
    code = run_cli("import", str(MU), "--columns", f"loss=train_loss_at_20k_steps,params={text}",
                   "--db", str(db))  # fmt: skip
    assert code.returncode == 2 and "Traceback" not in code.stderr
    assert not pwn.exists()


def test_where_may_still_use_subqueries_over_the_run_log(db):
    with connect(db) as con:
        import_file(con, CHINCHILLA, "chinchilla")
        where = "run_id NOT IN (SELECT run_id FROM runs ORDER BY final_val_loss DESC LIMIT 5)"
        assert len(read_runs(con, where=where)) == 240
        assert len(read_runs(con, where="params > 1e9 AND tokens < 1e11")) > 0
        assert len(read_runs(con, where="tokens > 0 -- a comment ends at our line end")) == 245


SCALEBENCH = {  # name: (rows, distinct (N, D) runs, columns, N range, D range)
    "farseer": (404, 400, ["N", "D", "loss"], (9.9e7, 6.5e9), (9.9e8, 5.2e11)),
    "data-constrained": (161, 161, ["N", "D", "U", "loss"], (7.0e6, 4.0e9), (1e8, 3.01e11)),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SCALEBENCH))
def test_scalebench_training_runs_ship_and_import_with_their_columns(name, db):
    rows, distinct, columns, (n_lo, n_hi), (d_lo, d_hi) = SCALEBENCH[name]
    frame = datasets.load(name)
    assert list(frame.columns) == columns and len(frame) == rows
    assert n_lo <= frame.N.min() and frame.N.max() <= n_hi
    assert d_lo <= frame.D.min() and frame.D.max() <= d_hi
    done = run_cli("import", "--example", name, "--db", str(db))
    assert done.returncode == 0, done.stderr
    with connect(db, read_only=True) as con:
        runs = read_runs(con, source=f"imported:{name}")
    assert len(runs) == distinct  # Farseer's file repeats 4 rows; an import keeps one each
    if "U" in columns:
        assert sorted(runs.unique_tokens) == pytest.approx(sorted(frame.U))
