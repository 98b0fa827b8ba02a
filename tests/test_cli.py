import json
import os
import subprocess
import sys
import time

import duckdb
import pytest

from cli.app import main
from store.db import LOCK_WAIT_ENV, connect
from tests.conftest import REPO, run_cli

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


def test_step_counts_are_read_as_tokens_are(tmp_path):
    """--warmup 1e1 and --eval-every 2e1 were refused as no integer, where --tokens 20k is read."""
    db = tmp_path / "steps.duckdb"
    done = run_cli("run", *TINY, "--warmup", "1e1", "--eval-every", "2e1", "--db", str(db))
    assert done.returncode == 0, done.stderr
    with duckdb.connect(str(db), read_only=True) as con:
        (warmup,) = con.execute("SELECT warmup FROM runs").fetchone()
        rows = con.execute("SELECT step FROM curves WHERE val_loss IS NOT NULL").fetchall()
    evals = [step for (step,) in rows]
    assert warmup == 10 and evals and all(step % 20 == 0 or step == max(evals) for step in evals)
    half = run_cli("run", *TINY, "--warmup", "1.5", "--db", str(db))
    assert half.returncode == 2 and "'1.5' is not a whole number" in half.stderr


def test_same_run_again_is_not_trained_twice(trained):
    db, _ = trained
    again = run_cli("run", *TINY, "--lr", "3e-3", "--db", str(db))
    assert again.returncode == 0 and "already in the log" in again.stdout
    assert again.stdout.splitlines()[0].startswith("run ")  # no empty progress bar first


def test_run_json_prints_the_runs_row_and_nothing_else(trained):
    """Scripts read one JSON object: the run's row, trained now or already in the log."""
    db, _ = trained
    again = run_cli("run", *TINY, "--lr", "3e-3", "--json", "--db", str(db))
    assert again.returncode == 0, again.stderr
    (run,) = json.loads(again.stdout)["runs"]
    with duckdb.connect(str(db), read_only=True) as con:
        logged = con.execute("SELECT run_id, final_val_loss FROM runs").fetchall()
    assert logged == [(run["run_id"], run["final_val_loss"])] and run["status"] == "done"


def test_a_fresh_run_with_json_prints_its_row(tmp_path):
    done = run_cli("run", *TINY, "--lr", "2e-3", "--json", "--db", str(tmp_path / "j.duckdb"))
    assert done.returncode == 0, done.stderr
    (run,) = json.loads(done.stdout)["runs"]  # the whole stdout is the object: no bar, no line
    assert run["status"] == "done" and run["lr"] == 2e-3 and 0 < run["final_val_loss"] < 5.6


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


def scaling_here(capsys, monkeypatch, *args: str) -> tuple[int, str, str]:
    """The `scaling` command in this process: (exit code, stdout, stderr)."""
    monkeypatch.setenv("COLUMNS", "200")
    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_red_line(err: str) -> bool:
    return err.startswith("error: ") and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("bad", ["soon", "-1", "nan"])
def test_a_lock_wait_that_is_not_seconds_is_one_red_line(db, capsys, monkeypatch, bad):
    with connect(db):
        pass
    monkeypatch.setenv(LOCK_WAIT_ENV, bad)
    code, _, err = scaling_here(capsys, monkeypatch, "runs", "--db", str(db))
    assert code == 2 and one_red_line(err) and LOCK_WAIT_ENV in err, err


def test_a_held_log_is_said_after_the_lock_wait_asked_for(db, monkeypatch):
    """With SCALING_LOCK_WAIT_S=0 a writer refused by a reader says so at once; with the
    default 30 s it would still be waiting when this run's 20 s limit ends it."""
    with connect(db):
        pass
    monkeypatch.setenv(LOCK_WAIT_ENV, "0")
    reader = duckdb.connect(str(db), read_only=True)
    try:
        done = run_cli("import", "--example", "chinchilla-epoch", "--db", str(db), timeout=20)
    finally:
        reader.close()
    assert done.returncode == 2 and "is locked by" in done.stderr, done.stderr


@pytest.mark.parametrize("query", ["", ";;;", "  ", "SELECT 1; SELECT 2"])
def test_sql_takes_exactly_one_statement(db, capsys, monkeypatch, query):
    with connect(db):
        pass
    code, _, err = scaling_here(capsys, monkeypatch, "sql", query, "--db", str(db))
    assert code == 2 and one_red_line(err), err


def test_sql_neither_writes_nor_reads_other_files(db, tmp_path, capsys, monkeypatch):
    with connect(db):
        pass
    secret = tmp_path / "secret.csv"
    secret.write_text("a\n42\n")
    for query in (
        f"COPY runs TO '{tmp_path / 'x.csv'}'",
        f"COPY (SELECT 42) TO '{tmp_path / 'pwn.csv'}'",
        f"EXPORT DATABASE '{tmp_path / 'dump'}'",
        f"SELECT * FROM read_csv('{secret}')",
        "SELECT * FROM read_csv('/etc/passwd')",
        f"SELECT * FROM glob('{tmp_path}/*')",
        f"SELECT * FROM '{secret}'",
        f"ATTACH '{tmp_path / 'other.duckdb'}'",
        "SET enable_external_access = true",
    ):
        code, out, err = scaling_here(capsys, monkeypatch, "sql", query, "--db", str(db))
        assert code == 2 and one_red_line(err), (query, err)
        assert "42" not in out
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([db.name, secret.name])


def test_csv_export_escapes_formulas_and_json_keeps_nan_and_inf(db, tmp_path, capsys, monkeypatch):
    with connect(db):
        pass
    cells = "SELECT '=1+1' AS f, '+1' AS p, '-2' AS m, '@SUM(A1)' AS a, 'ok' AS o, -1.5 AS n"
    code, out, _ = scaling_here(capsys, monkeypatch, "sql", cells, "-f", "csv", "--db", str(db))
    assert code == 0
    assert out.splitlines() == ["f,p,m,a,o,n", "'=1+1,'+1,'-2,'@SUM(A1),ok,-1.5"]
    numbers = (
        "SELECT 'nan'::DOUBLE AS a, 'inf'::DOUBLE AS b, '-inf'::DOUBLE AS c, NULL::DOUBLE AS d, "
        "1.5 AS e, TIMESTAMP '2024-01-02 03:04:05' AS t"
    )
    out_file = tmp_path / "out.json"
    code, _, _ = scaling_here(
        capsys, monkeypatch, "sql", numbers, "-f", "json", "-o", str(out_file), "--db", str(db)
    )
    assert code == 0
    assert json.loads(out_file.read_text()) == [
        {"a": "NaN", "b": "Infinity", "c": "-Infinity", "d": None, "e": 1.5,
         "t": "2024-01-02T03:04:05"}
    ]  # fmt: skip


def test_a_run_that_raises_is_recorded_as_failed_and_said_in_one_line(tmp_path):
    small = tmp_path / "small.txt"  # trains, but its validation split is shorter than seq_len
    small.write_text("".join(f"line {i} of a small corpus\n" for i in range(250)))
    db = tmp_path / "log.duckdb"
    done = run_cli(
        "run", "--d-model", "32", "--n-layers", "1", "--n-heads", "2", "--seq-len", "1024",
        "--batch-size", "1", "--tokens", "1024", "--corpus", str(small), "--db", str(db),
    )  # fmt: skip
    assert done.returncode == 2 and one_red_line(done.stderr), done.stderr
    assert "recorded as failed" in done.stderr and "validation split has" in done.stderr
    with connect(db, read_only=True) as con:
        rows = con.execute("SELECT status, error, finished_at IS NOT NULL FROM runs").fetchall()
    assert len(rows) == 1
    status, error, finished = rows[0]
    assert status == "failed" and "validation split has" in error and finished


@pytest.mark.slow
def test_a_finished_run_waits_for_a_reader_instead_of_being_thrown_away(tmp_path):
    db = tmp_path / "log.duckdb"
    wait_s = 3  # how long the run's commands wait to open the log; its commit waits longer
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200", LOCK_WAIT_ENV: str(wait_s)}
    command = [sys.executable, "-m", "cli", "run", *TINY, "--db", str(db)]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    reader = None
    deadline = time.monotonic() + 120
    while reader is None and time.monotonic() < deadline and proc.poll() is None:
        try:  # a reader in the way from the moment the run is marked running
            con = duckdb.connect(str(db), read_only=True)
            status = con.execute("SELECT status FROM runs").fetchall()
            reader = con if status == [("running",)] else con.close()
        except duckdb.Error:
            pass
        time.sleep(0.05)
    assert reader is not None, proc.communicate()
    time.sleep(wait_s + 10)  # longer than any command waits to start: the run has ended
    assert proc.poll() is None  # and is waiting to commit
    reader.close()
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    with connect(db, read_only=True) as con:
        assert con.execute("SELECT status FROM runs").fetchall() == [("done",)]
