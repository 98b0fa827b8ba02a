"""Issues 24 and 26: every probe that lost data, raised a traceback, hung or answered wrongly
at exit 0 is now one red line and exit 2 (130 for Ctrl-C) or the right answer.

Refusals run in-process (`call_cli`); signals, FIFOs, memory caps and pipes run the real
command in a subprocess.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from store.db import connect
from store.imports import import_file
from tests.conftest import REPO, call_cli


def one_red_line(err: str) -> bool:
    return err.startswith("error: ") and len(err.strip().splitlines()) == 1


@pytest.fixture
def log(tmp_path: Path) -> Path:
    """A run log holding four imported runs."""
    db = tmp_path / "runs.duckdb"
    csv = tmp_path / "four.csv"
    pd.DataFrame(
        {"N": [1e6, 2e6, 4e6, 1e6], "D": [1e8, 1e8, 2e8, 2e8], "loss": [3.1, 3.0, 2.9, 2.8]}
    ).to_csv(csv, index=False)
    with connect(db) as con:
        import_file(con, csv, "four")
    return db


def count_runs(db: Path) -> int:
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute("SELECT count(*) FROM runs").fetchall()[0][0]


# -- sql --out: never the run log, never half a file, never a file of another kind ----------
@pytest.mark.parametrize("kind", ["csv", "json", "parquet"])
def test_sql_out_never_overwrites_the_run_log(log, tmp_path, capsys, kind):
    before = log.read_bytes()
    link = tmp_path / "link.duckdb"
    link.symlink_to(log)
    hard = tmp_path / "hard.duckdb"
    os.link(log, hard)
    for target in (log, link, hard):
        code, _, err = call_cli(
            ["sql", "SELECT 1", "--db", str(log), "--format", kind, "--out", str(target)], capsys
        )
        assert code == 2 and one_red_line(err) and "run log" in err, err
    assert log.read_bytes() == before and count_runs(log) == 4


def test_sql_out_replaces_only_a_file_of_the_kind_asked(log, tmp_path, capsys):
    out = tmp_path / "result.csv"
    argv = ["sql", "SELECT 1 AS a", "--db", str(log), "--format", "csv", "--out", str(out)]
    assert call_cli(argv, capsys)[0] == 0 and out.read_text() == "a\n1\n"
    argv[1] = "SELECT 2 AS a"
    assert call_cli(argv, capsys)[0] == 0 and out.read_text() == "a\n2\n"  # a CSV: replaced
    other = tmp_path / "other.duckdb"
    duckdb.connect(str(other)).close()
    data = tmp_path / "data.parquet"
    assert call_cli([*argv[:5], "parquet", "--out", str(data)], capsys)[0] == 0
    for kind, target in (("csv", other), ("csv", data), ("json", out), ("parquet", out)):
        before = target.read_bytes()
        code, _, err = call_cli([*argv[:5], kind, "--out", str(target)], capsys)
        assert code == 2 and one_red_line(err) and "is not a" in err, (kind, err)
        assert target.read_bytes() == before
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".scaling-out")]
    assert leftovers == []


def test_sql_out_without_a_format_writes_the_one_its_name_says(log, tmp_path, capsys):
    """`--out runs.parquet` wrote CSV text into runs.parquet; a .txt or no suffix is csv,
    another suffix is refused without --format, and the line says which was written."""
    for name, magic in (
        ("a.parquet", b"PAR1"),
        ("a.json", b"["),
        ("a.CSV", b"a\n"),
        ("a.txt", b"a\n"),
    ):
        out = tmp_path / name
        code, said, err = call_cli(
            ["sql", "SELECT 1 AS a", "--db", str(log), "--out", str(out)], capsys
        )
        assert code == 0, err
        assert out.read_bytes().startswith(magic), name
        kind = {b"PAR1": "parquet", b"[": "json"}.get(magic, "csv")
        assert f"({kind})" in said
    parquet = str(tmp_path / "a.parquet")
    assert duckdb.sql(f"SELECT a FROM read_parquet('{parquet}')").fetchall() == [(1,)]
    excel = ["sql", "SELECT 1 AS a", "--db", str(log), "--out", str(tmp_path / "a.xlsx")]
    code, _, err = call_cli(excel, capsys)  # it wrote CSV text into a.xlsx
    assert code == 2 and ".xlsx is no format this writes" in err
    assert not (tmp_path / "a.xlsx").exists()
    code, _, err = call_cli([*excel, "--format", "csv"], capsys)  # asked for: the name is yours
    assert code == 0 and (tmp_path / "a.xlsx").read_bytes().startswith(b"a\n")


@pytest.mark.parametrize(
    "out",
    ["missing/x.csv", ".", "/dev/full", "/dev/null", "", "a" * 300 + ".csv"],
    ids=["missing-folder", "folder", "dev-full", "dev-null", "empty", "300-chars"],
)
def test_every_sql_out_failure_is_one_line(log, tmp_path, capsys, monkeypatch, out):
    monkeypatch.chdir(tmp_path)
    argv = ["sql", "SELECT 1", "--db", str(log), "--format", "csv", "--out", out]
    code, _, err = call_cli(argv, capsys)
    assert code == 2 and one_red_line(err), err


def test_a_write_that_fails_midway_leaves_the_old_file(log, tmp_path, capsys):
    """The temporary file is renamed only when whole: a failed write changes nothing."""
    out = tmp_path / "kept.csv"
    out.write_text("a\nold\n")
    code, _, err = call_cli(
        [
            "sql",
            "SELECT 1/0::INT AS a, error('boom')",
            "--db",
            str(log),
            "-f",
            "csv",
            "-o",
            str(out),
        ],
        capsys,
    )
    assert code == 2 and one_red_line(err)
    assert out.read_text() == "a\nold\n"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".scaling-out")]


def test_sql_json_keeps_columns_of_the_same_name(log, capsys):
    code, out, _ = call_cli(
        ["sql", "SELECT 'a' AS x, 'b' AS x", "--db", str(log), "--format", "json"], capsys
    )
    assert code == 0 and json.loads(out) == [{"x": "a", "x_1": "b"}]


# -- Rich markup in log and user strings prints as written ----------------------------------
def test_markup_in_log_and_user_strings_prints_literally(log, tmp_path, capsys):
    csv = tmp_path / "odd.csv"
    pd.DataFrame(
        {"N": [1e6, 2e6], "D": [1e8, 1e8], "loss": [3.0, 2.9], "arch": ["[/]", "[bold]x"]}
    ).to_csv(csv, index=False)
    code, out, err = call_cli(["import", str(csv), "--source", "[/x]", "--db", str(log)], capsys)
    assert code == 0 and "imported:[/x]" in out and err == ""
    for argv in (
        ["runs"],
        ["sql", "SELECT arch FROM runs"],
        ["sql", "SELECT * FROM duckdb_settings() WHERE name LIKE '%external%'"],
    ):
        code, out, err = call_cli([*argv, "--db", str(log)], capsys)
        assert code == 0 and err == "", (argv, err)
        if argv[0] != "sql" or "arch" in argv[1]:
            assert "[/]" in out and "[bold]x" in out


@pytest.mark.slow
def test_a_long_source_name_is_printed_whole(log, tmp_path):
    csv = tmp_path / "one.csv"
    pd.DataFrame({"N": [1e6], "D": [1e8], "loss": [3.0]}).to_csv(csv, index=False)
    name = "s" * 100_000
    done = _cli("import", str(csv), "--source", name, "--db", str(log), timeout=120)
    assert done.returncode == 0 and name in done.stdout


# -- import: one scalar per mapping, each target once, regular files only -------------------
@pytest.mark.parametrize(
    "mapping",
    ["loss=*", "loss=COLUMNS(*)", "loss=sum(loss)", "loss=lag(loss) OVER ()", "loss=loss, loss=2"],
)
def test_import_mapping_is_one_value_per_row_and_target(log, tmp_path, capsys, mapping):
    csv = tmp_path / "g.csv"
    pd.DataFrame({"N": [1e6, 2e6], "D": [1e8, 1e8], "loss": [3.0, 2.9]}).to_csv(csv, index=False)
    code, _, err = call_cli(["import", str(csv), "--columns", mapping, "--db", str(log)], capsys)
    assert code == 2 and one_red_line(err), err
    assert count_runs(log) == 4


@pytest.mark.parametrize("column", ["seed", "wall_s"])
def test_import_refuses_negative_seed_and_wall_time(log, tmp_path, capsys, column):
    csv = tmp_path / "neg.csv"
    pd.DataFrame({"N": [1e6], "D": [1e8], "loss": [3.0], column: [-5]}).to_csv(csv, index=False)
    code, _, err = call_cli(["import", str(csv), "--db", str(log)], capsys)
    assert code == 2 and one_red_line(err) and f"{column} must be zero or more" in err


@pytest.mark.slow
def test_a_fifo_is_refused_as_import_file_and_as_run_log(tmp_path, log):
    for name in ("pipe.csv", "pipe.duckdb"):
        os.mkfifo(tmp_path / name)
    for argv in (
        ["import", str(tmp_path / "pipe.csv"), "--db", str(log)],
        ["runs", "--db", str(tmp_path / "pipe.duckdb")],
        ["sql", "SELECT 1", "--db", str(tmp_path / "pipe.duckdb")],
    ):
        done = _cli(*argv, timeout=60)  # a hang would end in TimeoutExpired
        assert done.returncode == 2 and one_red_line(done.stderr), (argv, done.stderr)
        assert "regular file" in done.stderr


def test_import_example_mu_scaling(tmp_path, capsys):
    db = tmp_path / "mu.duckdb"
    code, out, err = call_cli(["import", "--example", "mu-scaling", "--db", str(db)], capsys)
    assert code == 0 and "imported 10 runs" in out, err
    with duckdb.connect(str(db), read_only=True) as con:
        rows = con.execute(
            "SELECT d_model, params, final_val_loss FROM runs ORDER BY d_model"
        ).fetchall()
    assert rows[0] == (128, 8_530_000, 3.9181)  # the first line of mu_scaling.csv
    backtest = ["backtest", "power", "--x", "width", "--holdout", "top-params", "--db", str(db)]
    code, out, err = call_cli(backtest, capsys)
    assert code == 0, err
    header = next(line for line in out.splitlines() if "actual" in line).split()
    assert header[:2] == ["N", "d"]  # no empty D and C columns: the widths' runs give neither
    assert "backtest power of width (top-params, 25% held out): fitted on 8 runs" in " ".join(
        out.split()
    )


# -- numbers: sizes, tokens, compute, ratios and hours are finite and positive --------------
@pytest.mark.parametrize(
    "argv",
    [
        ["predict", "loss", "--N", "-1", "--D", "1e9"],
        ["predict", "loss", "--N", "0", "--D", "1e9"],
        ["predict", "loss", "--N", "1e9", "--D", "0"],
        ["predict", "loss", "--N", "1e-400", "--D", "1e9"],
        ["predict", "loss", "--N", "1e400", "--D", "1e9"],
        ["predict", "loss", "--N", "1e9", "--D", "1e10", "--U", "0"],
        ["predict", "loss", "--N", "1e9", "--D", "1e10", "--U", "-3"],
        ["predict", "loss", "--compute", "1e20", "--M", "1e400"],
        ["predict", "loss", "--compute", "1e300", "--M", "1e-300"],
        ["predict", "optimal", "--compute", "-1"],
        ["predict", "optimal", "--hours", "inf"],
        ["predict", "optimal", "--hours", "0"],
        ["predict", "optimal", "--hours", "1", "--seq-len", "0"],
        ["predict", "lr", "--N", "-1", "--D", "1e9"],
        ["predict", "lr", "--N", "0", "--D", "1e9"],
        ["predict", "lr", "--N", "1e400", "--D", "1e9"],
        ["fit", "power", "--bootstrap", "1000000000000000000000000000000"],
        ["fit", "power", "--bootstrap", "-1"],
        ["fit", "power", "--bootstrap", "0"],
        ["fit", "power", "--x", "N", "--E", "1e308"],
        ["fit", "power", "--x", "N", "--E", "1e400"],
        ["runs", "--limit", "-1"],
        ["runs", "--limit", "0"],
    ],
)
def test_impossible_numbers_are_refused(log, capsys, argv):
    code, out, err = call_cli([*argv, "--db", str(log)], capsys)
    assert code == 2 and one_red_line(err), (argv, out, err)
    with duckdb.connect(str(log), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM predictions").fetchall()[0][0] == 0


def test_the_number_parser_refuses_overflow_and_underflow():
    from runners.numbers import parse_number

    for text in ("1e400", "-1e400", "1e-400", "2e-330"):
        with pytest.raises(ValueError):
            parse_number(text)
    assert parse_number("0e-400") == 0.0 and parse_number("1.4T") == 1.4e12
    assert parse_number("5e-324") == 5e-324


def test_runs_limit_shows_the_newest(log, capsys):
    code, out, _ = call_cli(["runs", "--limit", "1", "--db", str(log)], capsys)
    assert code == 0 and "4 runs" in out and out.count("imp-") == 1


# -- report --out is a folder ----------------------------------------------------------------
@pytest.mark.parametrize("out", ["file", "/dev/null", ""])
def test_report_out_must_be_a_folder(log, tmp_path, capsys, monkeypatch, out):
    monkeypatch.chdir(tmp_path)
    if out == "file":
        out = str(tmp_path / "x.csv")
        Path(out).write_text("a\n")
    code, _, err = call_cli(["report", "--out", out, "--db", str(log)], capsys)
    assert code == 2 and one_red_line(err), err


# -- adaptive targets a sweep can plan --------------------------------------------------------
@pytest.mark.parametrize("value", ["1e299", "1e-300", "inf", "nan", "0.5"])
def test_impossible_adaptive_targets_are_refused(tmp_path, capsys, value):
    spec = tmp_path / "adaptive.toml"
    spec.write_text(
        textwrap.dedent(f"""
        name = "impossible"
        [fixed]
        seq_len = 32
        batch_size = 8
        lr = 3e-3
        [design]
        kind = "adaptive"
        target = {{ ask = "loss", N = {value}, D = {value} }}
        budget_flops = 1e15
        [design.candidates]
        size = [{{ d_model = 32, n_layers = 1, n_heads = 2 }}]
        tokens = [8192, 16384]
        """)
    )
    code, _, err = call_cli(
        ["sweep", "suggest", str(spec), "--db", str(tmp_path / "a.duckdb")], capsys
    )
    assert code == 2 and one_red_line(err) and "target" in err, err


def test_a_width_that_is_not_finite_is_never_printed_as_an_answer():
    from cli.sweep import _percent

    assert _percent(0.0312) == "3.12%"
    for width in (float("inf"), float("nan")):
        assert "%" not in _percent(width)


# -- fit summaries: a robust spread, not the sd of runaway refits ----------------------------
def test_robust_spread_is_the_sd_of_normal_draws_and_ignores_runaways():
    from fits.bootstrap import robust_spread

    rng = np.random.default_rng(0)
    draws = rng.normal(0.0, 2.0, size=(100_000, 1))
    assert robust_spread(draws)[0] == pytest.approx(2.0, rel=0.02)  # the normal sd
    draws[:50] = 1e110  # a few refits that ran away
    assert robust_spread(draws)[0] == pytest.approx(2.0, rel=0.03)


# -- --version, Ctrl-C, memory caps, pipes -----------------------------------------------------
def test_version(capsys):
    code, out, _ = call_cli(["--version"], capsys)
    assert code == 0 and out.startswith("scaling ")


def _cli(*args: str, timeout: float = 300, **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        env=env, capture_output=True, text=True, timeout=timeout, **kwargs,
    )  # fmt: skip


def sigint_as_on_a_terminal() -> None:
    """In the child: Ctrl-C's default handling. A suite started in the background (a shell's
    `&`, cron, nohup) ignores SIGINT, and its children would inherit that and never see it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


# Ctrl-C one second after the command starts its work (imports done): a real SIGINT.
def interrupt_once_running(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    """Run `scaling ARGV`, press Ctrl-C once a second after DuckDB opened the log (its worker
    threads appear), and wait: a fixed timer from the start fires during the imports on a
    loaded machine, where a library may swallow it and leave the query to run on."""
    command = [sys.executable, "-m", "cli", *argv]
    with subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, preexec_fn=sigint_as_on_a_terminal) as child:  # fmt: skip
        threads = Path(f"/proc/{child.pid}/task")
        while child.poll() is None and len(list(threads.iterdir())) < 2:
            time.sleep(0.05)
        time.sleep(1.0)
        child.send_signal(signal.SIGINT)
        try:
            out, err = child.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            child.kill()
            raise
    return subprocess.CompletedProcess(command, child.returncode, out, err)


@pytest.mark.slow
@pytest.mark.parametrize(
    "query",
    [
        "SELECT count(*) FROM range(1000000000000) a, range(1000) b",
        "WITH RECURSIVE t(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM t) SELECT count(*) FROM t",
    ],
)
def test_ctrl_c_interrupts_a_running_query(log, query):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = interrupt_once_running(["sql", query, "--db", str(log)], env)
    assert done.returncode == 130, done.stderr
    assert done.stderr.strip() == "interrupted"


@pytest.mark.slow
def test_a_huge_result_streams_under_a_memory_cap(log, tmp_path):
    """300 million rows: the table shows the first ones, csv streams them (cut by `head`)."""
    cap = 2 * 1024**3
    limit = f"import resource; resource.setrlimit(resource.RLIMIT_AS, ({cap}, {cap}))"
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "80"}
    run = f"{limit}; import sys; from cli.app import main; main(sys.argv[1:])"
    query = "SELECT * FROM range(300000000)"
    shown = subprocess.run(
        [sys.executable, "-c", run, "sql", query, "--db", str(log)],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert "showing the first 1000 rows" in shown.stdout + shown.stderr
    piped = subprocess.run(
        f"{sys.executable} -c '{run}' sql '{query}' -f csv --db {log} | head -3",
        shell=True, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert piped.stdout.splitlines() == ["range", "0", "1"]


@pytest.mark.slow
def test_a_sweep_into_a_pipe_prints_lines_and_ctrl_c_says_what_is_left(tmp_path):
    spec = tmp_path / "tiny.toml"
    spec.write_text(
        textwrap.dedent("""
        name = "tiny"
        [fixed]
        seq_len = 32
        batch_size = 8
        eval_tokens = 1024
        d_model = 32
        n_layers = 1
        n_heads = 2
        [axes]
        tokens = [8192]
        lr = [1e-3, 2e-3, 3e-3, 4e-3, 5e-3, 6e-3, 7e-3, 8e-3]
        """)
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    db = tmp_path / "sweep.duckdb"
    command = [sys.executable, "-m", "cli", "sweep", "run", str(spec), "--db", str(db)]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, preexec_fn=sigint_as_on_a_terminal)  # fmt: skip
    assert process.stdout is not None
    lines = []
    for line in process.stdout:  # plain lines, since stdout is a pipe
        lines.append(line)
        if line.startswith("finished"):
            process.send_signal(signal.SIGINT)
            break
    _, err = process.communicate(timeout=300)
    assert process.returncode == 130, err
    assert any(line.startswith("started") for line in lines)
    message = err.strip()
    assert len(message.splitlines()) == 1 and "of 8 runs of sweep tiny" in message
    assert "resumes" in message
    finished = int(message.split("interrupted: ")[1].split(" of")[0])
    with duckdb.connect(str(db), read_only=True) as con:
        done = con.execute("SELECT count(*) FROM runs WHERE status = 'done'").fetchall()[0][0]
    assert finished == done >= 1


def test_the_clis_law_names_are_the_registries():
    from cli.laws import LAW_NAMES, LOSS_LAW_NAMES
    from fits import LOSS_LAWS
    from scaling.laws import LAWS

    assert tuple(LOSS_LAWS) == LOSS_LAW_NAMES and tuple(LAWS) == LAW_NAMES


def loaded_by(argv: list[str], names: tuple[str, ...]) -> list[str]:
    """Which of `names` are imported once `scaling ARGV` has run, in a fresh interpreter."""
    probe = (
        "import json, sys\nfrom cli.app import main\ntry:\n    main(sys.argv[2:])\n"
        "except SystemExit:\n    pass\n"
        "print('LOADED', json.dumps([m for m in sys.argv[1].split(',') if m in sys.modules]))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-c", probe, ",".join(names), *argv], env=env, capture_output=True,
        text=True, timeout=120,
    )  # fmt: skip
    line = [row for row in done.stdout.splitlines() if row.startswith("LOADED ")]
    assert line, (argv, done.stdout[-300:], done.stderr[-300:])
    return list(json.loads(line[0].removeprefix("LOADED ")))


def test_help_and_sql_do_not_load_the_fitting_stack(log):
    """What `scaling --help` and `scaling sql` import (the figure: benchmarks/startup.py)."""
    names = ("scipy", "statsmodels", "torch", "pandas", "fits")
    for argv in (["--help"], ["sql", "SELECT 1", "--db", str(log)]):
        assert loaded_by(argv, names) == [], argv


def test_planning_a_sweep_does_not_load_torch(tmp_path):
    """`sweep plan` (and `status`, `suggest`, and a `run` with nothing left to train) count
    every candidate's parameters and FLOPs in runners.accounting and resolve precision auto
    from torch's build, without importing torch; only the workers that train import it (the
    figure: benchmarks/startup.py)."""
    from tests.test_adaptive import SPEC

    grid = (
        'name = "g"\n[fixed]\nseq_len = 32\n[axes]\n'
        'arch = ["llama", "tnl", "hgrn2", "cosformer2", "tnl_spread"]\nd_model = [32, 64]\n'
    )
    for name, text in (("grid", grid), ("adaptive", SPEC.format(budget="1e12"))):
        spec = tmp_path / f"{name}.toml"
        spec.write_text(text)
        argv = ["sweep", "plan", str(spec), "--db", str(tmp_path / "l.duckdb")]
        loaded = loaded_by(argv, ("scaling.sweeps.book", "scaling.sweeps.coordinator", "torch"))
        assert loaded == ["scaling.sweeps.book"], name  # planning needs no coordinator


def test_a_question_loads_neither_scipy_stats_nor_statsmodels(log):
    """A loss question loads the fitting stack but not scipy.stats, scipy.signal (which loads
    it) or statsmodels, a second or more of every such command's start (benchmarks/startup.py):
    fits.quantiles and statistics.NormalDist stand in for scipy.stats, and statsmodels loads with
    the LR and batch-size laws' fit."""
    argv = ["predict", "loss", "--N", "1e9", "--D", "2e10", "--db", str(log)]
    names = ("fits", "scipy.optimize", "scipy.stats", "scipy.signal", "statsmodels", "torch")
    assert loaded_by(argv, names) == ["fits", "scipy.optimize"]


@pytest.mark.slow
def test_every_prediction_says_how_far_beyond_the_runs_it_lies(tmp_path, capsys):
    """Nine runs of a known law, the largest N 4e6 and D 2e8 (C = 6ND = 4.8e15)."""
    N, D = np.meshgrid([1e6, 2e6, 4e6], [5e7, 1e8, 2e8])
    loss = 1.7 + 400 / N.ravel() ** 0.34 + 410 / D.ravel() ** 0.28
    csv = tmp_path / "grid.csv"
    pd.DataFrame({"N": N.ravel(), "D": D.ravel(), "loss": loss}).to_csv(csv, index=False)
    log = tmp_path / "grid.duckdb"
    assert call_cli(["import", str(csv), "--db", str(log)], capsys)[0] == 0
    argv = ["predict", "loss", "--N", "4e8", "--D", "2e8", "--law", "kaplan", "--db", str(log)]
    code, out, err = call_cli([*argv, "--json"], capsys)
    assert code == 0, err
    beyond = json.loads(out)["beyond_runs"]
    assert beyond["decades"] == {"N": 2.0, "D": 0.0, "C": 2.0}
    assert beyond["largest_run"]["C"] == pytest.approx(4.8e15)
    code, out, _ = call_cli(argv, capsys)
    assert code == 0 and "beyond the runs" in out and "N +2.00" in out
    assert "decades_below" not in beyond and "smallest" not in out
    # below the smallest run (N 1e6, C 3e14) is not "within the runs": C = 1.2e14
    argv[argv.index("4e8")] = "1e5"
    code, out, _ = call_cli([*argv, "--json"], capsys)
    beyond = json.loads(out)["beyond_runs"]
    assert beyond["decades_below"] == {"N": -1.0, "C": -0.4}
    assert beyond["smallest_run"]["C"] == pytest.approx(3e14)
    code, out, _ = call_cli(argv, capsys)
    assert code == 0 and "within the runs" not in out
    line = " ".join(out.split())
    assert "below the runs" in line and "below the smallest run: N -1.00 (1M), C -0.40" in line
    power = ["predict", "power", "--x", "N", "--at", "4e7", "--db", str(log), "--json"]
    code, out, err = call_cli(power, capsys)
    assert code == 0, err
    answer = json.loads(out)
    assert answer["beyond_runs"]["decades"] == {"N": 1.0}
    assert answer["interval"] == "uncalibrated prediction" and answer["lo"] < answer["value"]
    scored = ["backtest", "power", "--x", "N", "--holdout", "top-params", "--db", str(log)]
    code, out, err = call_cli([*scored, "--json"], capsys)
    assert code == 0, err
    result = json.loads(out)
    assert result["law"] == "power of N" and {run["N"] for run in result["runs"]} == {4e6}
    code, out, err = call_cli(["backtest", "kaplan", "--x", "N", "--db", str(log)], capsys)
    assert code == 2 and "--x applies to power fits, not kaplan" in err


@pytest.mark.slow
def test_a_question_on_repeated_tokens_says_how_far_beyond_the_most_repeated_run(tmp_path, capsys):
    """The same grid, its runs on 1, 2 and 4 epochs of their unique tokens: a question on 40
    epochs is one decade past the most repeated run; one on fresh tokens says no epochs."""
    N, D = np.meshgrid([1e6, 2e6, 4e6], [5e7, 1e8, 2e8])
    loss = 1.7 + 400 / N.ravel() ** 0.34 + 410 / D.ravel() ** 0.28
    U = D.ravel() / np.tile([1.0, 2.0, 4.0], 3)
    csv = tmp_path / "grid.csv"
    pd.DataFrame({"N": N.ravel(), "D": D.ravel(), "U": U, "loss": loss}).to_csv(csv, index=False)
    log = tmp_path / "grid.duckdb"
    assert call_cli(["import", str(csv), "--db", str(log)], capsys)[0] == 0
    argv = ["predict", "loss", "--N", "4e6", "--D", "2e8", "--law", "kaplan", "--db", str(log)]
    code, out, err = call_cli([*argv, "--U", "5e6", "--json"], capsys)
    assert code == 0, err
    beyond = json.loads(out)["beyond_runs"]
    assert beyond["decades"] == {"N": 0.0, "D": 0.0, "C": 0.0, "epochs": 1.0}
    assert beyond["largest_run"]["epochs"] == pytest.approx(4.0)
    code, out, _ = call_cli([*argv, "--U", "5e6"], capsys)
    assert code == 0 and "beyond the runs" in out and "epochs +1.00 (4)" in out
    code, out, _ = call_cli([*argv, "--U", "2e8", "--json"], capsys)
    assert code == 0 and "epochs" not in json.loads(out)["beyond_runs"]["decades"]


@pytest.mark.slow
def test_predict_lr_takes_the_step_law_method(tmp_path, capsys):
    db = str(tmp_path / "step.duckdb")
    assert call_cli(["import", "--example", "step-law", "--db", db], capsys)[0] == 0
    answers = {}
    for method in ("vertex", "near-optimal"):
        argv = ["predict", "lr", "--N", "1e9", "--D", "1e11", "--method", method, "--json"]
        code, out, err = call_cli([*argv, "--db", db], capsys)
        assert code == 0, err
        answers[method] = json.loads(out)
    assert answers["vertex"]["fit_id"] != answers["near-optimal"]["fit_id"]
    assert answers["vertex"]["value"] != answers["near-optimal"]["value"]
    code, _, err = call_cli(["predict", "lr", "--N", "1e9", "--D", "1e11", "--method", "x",
                             "--db", db], capsys)  # fmt: skip
    assert code == 2 and one_red_line(err)


def test_cautions_write_epochs_as_counts():
    from scaling.repeats import epochs_text

    assert epochs_text(119470.04) == "119,470" and epochs_text(5.23) == "5.2"
    assert epochs_text(91.4) == "91"


def test_sweep_suggest_says_when_round_0_is_trimmed_to_the_budget(tmp_path, capsys):
    """docs/sweeps.md's adaptive spec: 12 start configurations, 8 fit in 1e12 FLOPs."""
    text = (REPO / "docs" / "sweeps.md").read_text().split('name = "tiny-next"')[1]
    spec = tmp_path / "tiny.toml"
    spec.write_text('name = "tiny-next"' + text.split("```")[0])
    code, out, err = call_cli(["sweep", "suggest", str(spec), "--db", str(tmp_path / "t.duckdb")],
                              capsys)  # fmt: skip
    assert code == 0, err
    assert "round 0 trimmed to the budget: 8 of its 12 start configurations" in " ".join(
        out.split()
    )


@pytest.mark.slow
def test_isoflop_by_budget_reproduces_a_0493_in_one_line_a_budget_at_80_columns(tmp_path):
    """docs/laws.md: IsoFLOP on the Chinchilla points grouped by budget, a = 0.493."""
    db = str(tmp_path / "svg.duckdb")
    columns = "params=Model Size,flops=Training FLOP,loss=loss"
    done = _cli("import", "--example", "chinchilla-epoch-svg", "--columns", columns, "--db", db)
    assert done.returncode == 0, done.stderr
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "80"}
    fitted = subprocess.run(
        [sys.executable, "-m", "cli", "fit", "isoflop", "--resolution", "0.25", "--db", db],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert fitted.returncode == 0, fitted.stderr
    a = next(line for line in fitted.stdout.splitlines() if line.startswith("a "))
    assert a.split()[1].startswith("0.493") and "0.45504" in a and "0.53097" in a
    assert "12 of 16 budgets have their minimum in N bracketed" in fitted.stdout
    assert max(map(len, fitted.stdout.splitlines())) <= 80
    rows = [
        line for line in fitted.stdout.splitlines() if line.rstrip().endswith(("True", "False"))
    ]
    assert len(rows) == 16  # one line a budget: the notes are cut, not folded


def test_the_progress_bar_keeps_count_elapsed_and_eta_at_80_columns(monkeypatch):
    from rich.console import Console

    import cli.common as common

    screen = Console(width=80, force_terminal=True, record=True, markup=False)
    monkeypatch.setattr(common, "console", screen)
    bar = common.progress_bar()
    sweep = bar.add_task("sweep llama-isoflop-architecture-study", total=48, info="")
    bar.update(sweep, completed=17, info="2 running  123,456 tok/s")
    run = bar.add_task("  llama d=128 L=4 lr=3e-3 tokens=2M", total=1000, info="")
    bar.update(run, completed=400, info="61,728 tok/s  loss 3.214")
    screen.print(bar.make_tasks_table(bar.tasks))
    lines = screen.export_text().splitlines()
    assert len(lines) == 2 and all(len(line) <= 80 for line in lines)
    assert "17/48" in lines[0] and "400/1000" in lines[1]
    assert all(line.endswith("0:00:00 eta -:--:--") for line in lines)


def test_the_clis_option_help_is_the_registrys():
    """cli/laws.py writes the law options' help out (importing the registry is slow)."""
    import typer.main

    from cli.app import app
    from scaling.laws import OPTIONS

    command = typer.main.get_command(app).commands["fit"]  # type: ignore[attr-defined]
    shown = {p.opts[0]: (p.help, p.default) for p in command.params if p.opts}
    for option in OPTIONS.values():
        assert shown[option.flag] == (option.help, option.default), option.name


@pytest.mark.parametrize("group", [[], ["predict"], ["sweep"]])
def test_each_commands_summary_in_a_help_list_is_one_sentence_unbroken(group, capsys, monkeypatch):
    """typer kept a docstring's source line breaks in the command list: `predict --help` read
    "... L = E + A x^-alpha (as" and the rest on the next line."""
    monkeypatch.setenv("COLUMNS", "400")  # wide enough that rich wraps no summary
    code, out, _ = call_cli([*group, "--help"], capsys)
    panel = out.split("Commands")[1].splitlines()[1:]
    listed = panel[: next(i for i, line in enumerate(panel) if line.startswith("╰"))]
    continued = [line for line in listed if line[1:].startswith("  ")]  # no command's name
    assert code == 0 and listed and not continued, continued


def test_a_commands_own_help_keeps_no_line_break_of_its_source(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "400")
    code, out, _ = call_cli(["sweep", "run", "--help"], capsys)
    assert code == 0 and "--time-budget stopped it with runs left" in out  # "it" ended a line
    code, out, _ = call_cli(["report", "--help"], capsys)
    assert code == 0 and "a figure the runs cannot support is listed" in out
