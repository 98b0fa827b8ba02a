import json

import duckdb
import pytest

from tests.conftest import run_cli

# Real `scaling` subprocesses and training: the fast lane (-m "not slow") skips them.
pytestmark = pytest.mark.slow

TINY = ["--d-model", "32", "--n-layers", "1", "--n-heads", "2", "--seq-len", "64",
        "--batch-size", "8", "--tokens", "20k", "--eval-tokens", "4096"]  # fmt: skip


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A real run recorded by the real command."""
    db = tmp_path_factory.mktemp("cli") / "log.duckdb"
    done = run_cli("run", *TINY, "--lr", "3e-3", "--db", str(db))
    assert done.returncode == 0, done.stderr
    return db, done


def test_run_records_the_run_and_its_curve(trained):
    db, done = trained
    assert "done" in done.stdout
    con = duckdb.connect(str(db), read_only=True)
    (run_id, status, tokens, loss), *rest = con.execute(
        "SELECT run_id, status, tokens, final_val_loss FROM runs").fetchall()  # fmt: skip
    assert not rest and status == "done" and tokens == 19_968  # whole sequences of 64
    steps = con.execute("SELECT max(step), max(tokens) FROM curves WHERE run_id = ?", [run_id])
    assert steps.fetchone() == (-(-19_968 // 512), 19_968)
    assert 0 < loss < 5.6
    con.close()


def test_same_run_again_is_not_trained_twice(trained):
    db, _ = trained
    again = run_cli("run", *TINY, "--lr", "3e-3", "--db", str(db))
    assert again.returncode == 0 and "already in the log" in again.stdout
    assert again.stdout.splitlines()[0].startswith("run ")  # no empty progress bar first


def test_precision_auto_is_resolved_recorded_and_said(trained):
    from runners.precision import auto_precision

    db, done = trained
    used = auto_precision("auto")  # fp32 on a CPU without bf16 units, bf16 on CUDA
    con = duckdb.connect(str(db), read_only=True)
    stored = con.execute("SELECT precision, config FROM runs").fetchone()
    con.close()
    assert stored[0] == used and json.loads(stored[1])["train"]["precision"] == used
    assert f"{used} on " in done.stdout


def test_sql_prints_and_exports(trained, tmp_path):
    db, _ = trained
    shown = run_cli("sql", "SELECT arch, params, tokens, lr FROM runs", "--db", str(db))
    assert shown.returncode == 0 and "llama" in shown.stdout
    out = tmp_path / "runs.json"
    assert (
        run_cli(
            "sql", "SELECT * FROM runs", "--db", str(db), "-f", "json", "-o", str(out)
        ).returncode
        == 0
    )
    assert json.loads(out.read_text())[0]["arch"] == "llama"
    parquet = tmp_path / "curves.parquet"
    assert (
        run_cli(
            "sql", "SELECT * FROM curves", "--db", str(db), "-f", "parquet", "-o", str(parquet)
        ).returncode
        == 0
    )
    assert duckdb.sql(f"SELECT count(*) FROM '{parquet}'").fetchall()[0][0] > 3
    csv = run_cli("sql", "SELECT status FROM runs", "--db", str(db), "-f", "csv")
    assert csv.stdout.splitlines() == ["status", "done"]


def test_sql_cannot_write(trained):
    db, _ = trained
    typo = run_cli("sql", "SELEC 1", "--db", str(db))
    assert typo.returncode == 2 and "SQL error" in typo.stderr
    refused = run_cli("sql", "DELETE FROM runs", "--db", str(db))
    assert refused.returncode == 2 and "read-only" in refused.stderr
    assert "Traceback" not in refused.stderr
    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("SELECT count(*) FROM runs").fetchone()[0] == 1


def test_runs_lists_and_filters(trained):
    db, _ = trained
    listed = run_cli("runs", "--db", str(db), "--arch", "llama")
    assert listed.returncode == 0 and "done" in listed.stdout
    none = run_cli("runs", "--db", str(db), "--status", "diverged")
    assert none.returncode == 0 and "no runs match" in none.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "--arch", "gpt"], "unknown arch"),
        (["run", "--lr", "-1"], "lr must be positive"),
        (["run", "--d-model", "0"], "d-model must be positive"),
        (["run", "--d-model", "100", "--n-heads", "3"], "not divisible"),
        (["run", "--tokens", "1000"], "shorter than one batch"),
        (["run", "--corpus", "/no/such/corpus.txt"], "corpus not found"),
        (["run", "--tokens", "lots"], "not a number"),
        (["sql", "SELECT 1"], "no run log"),
    ],
)
def test_user_mistakes_are_one_line_and_exit_2(tmp_path, args, message):
    done = run_cli(*args, "--db", str(tmp_path / "x.duckdb"))
    assert done.returncode == 2
    assert message in done.stderr
    assert "Traceback" not in done.stderr + done.stdout


def test_corrupt_or_foreign_database_is_refused(tmp_path):
    corrupt = tmp_path / "corrupt.duckdb"
    corrupt.write_bytes(b"garbage" * 1000)
    done = run_cli("runs", "--db", str(corrupt))
    assert done.returncode == 2 and "not a DuckDB run log" in done.stderr
    foreign = tmp_path / "foreign.duckdb"
    duckdb.connect(str(foreign)).execute("CREATE TABLE x (a INT)").close()
    done = run_cli("run", *TINY, "--db", str(foreign))
    assert done.returncode == 2 and "not a scaling run log" in done.stderr


def test_large_counts_read_with_si_suffixes():
    from cli.common import format_value

    assert format_value(999_936) == "1M" and format_value(123_456) == "123k"
    assert format_value(1_500_000) == "1.5M" and format_value(5.92e12) == "5.92T"
    assert format_value(4096) == "4096" and format_value(2.3456) == "2.346"
