"""The fit / predict / backtest / report commands on the real Chinchilla points."""

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scaling import datasets
from tests.conftest import REPO, run_cli

# Real `scaling` subprocesses and training: the fast lane (-m "not slow") skips them.
pytestmark = pytest.mark.slow

WHERE = "run_id NOT IN (SELECT run_id FROM runs ORDER BY final_val_loss DESC LIMIT 5)"


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    path = tmp_path_factory.mktemp("laws") / "log.duckdb"
    data = datasets.path("chinchilla-epoch")
    done = run_cli("import", str(data), "--source", "chinchilla", "--db", str(path))
    assert done.returncode == 0, done.stderr
    return path


def test_fit_json_has_the_law_parameters_and_intervals(db):
    done = run_cli(
        "fit", "chinchilla", "--where", WHERE, "--bootstrap", "200", "--json", "--db", str(db)
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert {"E", "A", "B", "alpha", "beta", "intervals", "fit_id"} <= set(out)
    assert out["n_points"] == 240
    for name in ("E", "A", "B", "alpha", "beta"):
        lo, hi = out["intervals"][name]
        assert lo < out[name] < hi
    assert 1.769 < out["E"] < 1.871 and 0.317 < out["alpha"] < 0.373


def test_predictions_are_answered_and_logged(db):
    loss = run_cli(
        "predict", "loss", "--N", "70B", "--D", "1.4T", "--where", WHERE, "--law", "chinchilla",
        "--json", "--db", str(db),
    )  # fmt: skip
    assert loss.returncode == 0, loss.stderr
    answer = json.loads(loss.stdout)
    assert answer["lo"] < answer["value"] < answer["hi"] and answer["level"] == 0.9
    optimal = run_cli(
        "predict", "optimal", "--compute", "5.76e23", "--where", WHERE, "--law", "chinchilla",
        "--json", "--db", str(db),
    )  # fmt: skip
    parts = json.loads(optimal.stdout)
    assert parts["N"]["lo"] < 70e9 < parts["N"]["hi"]
    logged = run_cli("sql", "SELECT count(*) AS n FROM predictions", "-f", "csv", "--db", str(db))
    assert logged.stdout.splitlines()[1] == "4"


def test_backtest_and_report(db, tmp_path):
    done = run_cli("backtest", "chinchilla", "--where", WHERE, "--json", "--db", str(db))
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["n_test"] == 60 and 0 <= result["coverage"] <= 1
    # as text: one line a held-out run at 80 columns, the law's own interval from 120
    for columns in (80, 120):
        shown = run_cli("backtest", "chinchilla", "--where", WHERE, "--db", str(db),
                        columns=columns)  # fmt: skip
        lines = shown.stdout.splitlines()
        assert max(len(line) for line in lines) <= columns
        header = next(line.split() for line in lines if line.split()[:2] == ["N", "D"])
        assert header[:5] == ["N", "D", "C", "actual", "pred"]
        assert ("lo_law" in header) == (columns >= 120)
        rows = [line for line in lines if line.rstrip().endswith(("True", "False"))]
        assert len(rows) == 60  # every held-out run on one line
    out = tmp_path / "report"
    drawn = run_cli("report", "--out", str(out), "--bootstrap", "100", "--db", str(db))
    assert drawn.returncode == 0, drawn.stderr
    assert (out / "index.html").exists() and (out / "frontier.png").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            [
                "fit",
                "chinchilla",
                "--where",
                "params IN (SELECT DISTINCT params FROM runs ORDER BY params LIMIT 2)",
            ],
            "need at least 3 distinct model sizes, found 2",
        ),
        (["fit", "nonsense"], "unknown law"),
        (["predict", "loss", "--N", "7B", "--D", "1T", "--arch", "tnl"], "no finished runs"),
        (["fit", "chinchilla", "--where", "nonsense_column > 1"], "bad --where"),
        (["predict", "lr", "--N", "1e9", "--D", "1e10"], "lr"),
        (["predict", "loss", "--N", "7B", "--M", "20"], "give --N and --D, or --compute and --M"),
        (["predict", "loss", "--N", "7B", "--D", "1T", "--law", "power"], "power is a law of one"),
    ],
)
def test_law_mistakes_are_one_line(db, args, message):
    done = run_cli(*args, "--db", str(db))
    assert done.returncode == 2, done.stdout
    assert message in done.stderr and "Traceback" not in done.stderr


def test_new_law_forms_fit_and_answer(db):
    kaplan = run_cli(
        "fit", "kaplan", "--where", WHERE, "--bootstrap", "50", "--json", "--db", str(db)
    )
    assert kaplan.returncode == 0, kaplan.stderr
    out = json.loads(kaplan.stdout)
    assert {"N_c", "D_c", "alpha_N", "alpha_D"} <= set(out) and out["problems"] == []
    C, M = 5.76e23, 20.0
    N = math.sqrt(C / (6 * M))
    asked = ["--law", "chinchilla-shared", "--where", WHERE, "--json", "--db", str(db)]
    by_m = run_cli("predict", "loss", "--compute", str(C), "--M", str(M), *asked)
    by_nd = run_cli("predict", "loss", "--N", str(N), "--D", str(M * N), *asked)
    assert by_m.returncode == 0, by_m.stderr
    assert json.loads(by_m.stdout)["value"] == pytest.approx(json.loads(by_nd.stdout)["value"])
    backtest = run_cli("backtest", "kaplan", "--where", WHERE, "--json", "--db", str(db))
    assert backtest.returncode == 0, backtest.stderr
    assert json.loads(backtest.stdout)["law"] == "kaplan"


def test_data_constrained_on_runs_that_never_repeat_is_one_line(db):
    done = run_cli("fit", "data-constrained", "--bootstrap", "10", "--db", str(db))
    assert done.returncode == 2
    assert "needs runs that repeat data (D > unique tokens); none do" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_the_overfitting_form_fits_muennighoffs_runs_and_prices_more_epochs(tmp_path):
    """`scaling fit overfitting` on the shipped data-constrained runs names its penalty; on the
    same model and tokens, fewer unique tokens (more epochs) answer a higher loss, unlimited
    unique tokens the lowest."""
    db = tmp_path / "log.duckdb"
    done = run_cli("import", "--example", "data-constrained", "--db", str(db))
    assert done.returncode == 0, done.stderr
    fit = run_cli("fit", "overfitting", "--bootstrap", "20", "--json", "--db", str(db))
    assert fit.returncode == 0, fit.stderr
    out = json.loads(fit.stdout)
    assert {"P", "delta", "kappa"} <= set(out) and out["delta"] > 0 and out["problems"] == []
    asked = ["--law", "overfitting", "--N", "1e9", "--D", "1e11", "--json", "--db", str(db)]
    answers = [
        run_cli("predict", "loss", *asked, *u) for u in ([], ["--U", "1e10"], ["--U", "1e9"])
    ]
    assert all(a.returncode == 0 for a in answers), [a.stderr for a in answers]
    fresh, ten, hundred = (json.loads(a.stdout)["value"] for a in answers)
    assert fresh < ten < hundred


def as_reader_only(*args: str) -> subprocess.CompletedProcess:
    """The CLI as a process that file modes bind (root keeps no DAC override)."""
    prefix: list[str] = []
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("root ignores file modes and setpriv is missing")
        prefix = [setpriv, "--bounding-set=-dac_override,-dac_read_search", "--"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200"}
    return subprocess.run([*prefix, sys.executable, "-m", "cli", *args], env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip


@pytest.mark.parametrize("locked", ["file", "folder"])
def test_a_read_only_run_log_still_answers(db, tmp_path, locked):
    folder = tmp_path / "ro"
    folder.mkdir()
    copy = folder / "log.duckdb"
    shutil.copy(db, copy)
    before = run_cli("sql", "SELECT count(*) FROM predictions", "-f", "csv", "--db", str(copy))
    (copy if locked == "file" else folder).chmod(0o555)
    try:
        done = as_reader_only("predict", "loss", "--N", "70B", "--D", "1.4T", "--where",
                              "final_val_loss < 3", "--db", str(copy))  # fmt: skip
    finally:
        copy.chmod(0o644)
        folder.chmod(0o755)
    assert done.returncode == 0, done.stderr
    assert "loss = " in done.stdout
    lines = done.stderr.strip().splitlines()
    assert lines == [
        f"warning: {copy} is read-only: the fit is not stored",
        f"warning: {copy} is read-only: the answer is not logged",
    ]
    after = run_cli("sql", "SELECT count(*) FROM predictions", "-f", "csv", "--db", str(copy))
    assert after.stdout == before.stdout


@pytest.fixture(scope="module")
def one_batch_size(tmp_path_factory) -> Path:
    """LR scans at 3 sizes x 3 horizons, all with one batch size; loss near 1e30 elsewhere."""
    rows = []
    for n in (1e7, 3e7, 1e8):
        for d in (1e9, 4e9, 1.6e10):
            for k in range(-2, 3):
                loss = 3.0 - 0.1 * math.log10(n) + 0.01 * k * k
                rows.append({"params": n, "tokens": d, "loss": loss, "lr": 1e-3 * 2.0**k,
                             "batch_size": 256, "seq_len": 8, "flops": 6 * n * d})  # fmt: skip
    path = tmp_path_factory.mktemp("bs") / "log.duckdb"
    csv = path.parent / "runs.csv"
    pd.DataFrame(rows).to_csv(csv, index=False)
    done = run_cli("import", str(csv), "--source", "scan", "--db", str(path))
    assert done.returncode == 0, done.stderr
    flops = np.array([1e15, 2e15, 1e16, 5e16, 1e17, 1e18, 1e19, 1e20])  # overflowed a square
    huge = pd.DataFrame({"params": np.round(flops / 6e10), "tokens": 1e10, "flops": flops,
                         "loss": np.r_[1e30, np.full(7, 2.0)]})  # fmt: skip
    huge.to_csv(csv, index=False)
    done = run_cli("import", str(csv), "--source", "huge", "--db", str(path))
    assert done.returncode == 0, done.stderr
    return path


def test_batch_size_law_refuses_one_batch_size_every_time(one_batch_size):
    for _ in range(2):  # the second call would reload a stored fit
        done = run_cli(
            "predict", "bs", "--D", "20B", "--source", "imported:scan", "--db", str(one_batch_size)
        )
        assert done.returncode == 2, done.stdout
        assert "no spread in batch size" in done.stderr
        assert "Traceback" not in done.stderr and "Warning" not in done.stderr


def test_numpy_warnings_do_not_reach_the_terminal(one_batch_size):
    done = run_cli(
        "fit", "power", "--x", "C", "--source", "imported:huge", "--db", str(one_batch_size)
    )
    assert "Warning" not in done.stderr and "Traceback" not in done.stderr
    assert done.returncode in (0, 2)


def test_isoflop_neighbours_reach_the_fit_and_its_stored_key(tmp_path):
    """`--n-neighbors k` fits each budget's parabola locally, as IsoFLOPFit(n_neighbors=k)
    does, and a stored all-sizes fit of the same runs is not handed back for it; the option's
    old name `--neighbors` still works."""
    from fits import IsoFLOPFit

    rows = []
    for C, far in ((1e15, 1.5), (1e16, 2.0), (1e17, 2.5)):
        n_opt = 0.1 * C**0.5
        for x in np.linspace(-1.0, far, 9):  # ever further past the minimum, on the flat side
            N = round(n_opt * 10**x)
            rows.append({"N": N, "D": round(C / (6 * N)), "loss": 2.0 + 0.3 * np.tanh(abs(x)) ** 2})
    frame = pd.DataFrame(rows)
    frame.to_csv(tmp_path / "profiles.csv", index=False)
    db = str(tmp_path / "log.duckdb")
    assert run_cli("import", str(tmp_path / "profiles.csv"), "--db", db).returncode == 0
    fitted = {}
    for k in (None, 1):
        extra = [] if k is None else ["--n-neighbors", str(k)]
        done = run_cli("fit", "isoflop", *extra, "--json", "--db", db)
        assert done.returncode == 0, done.stderr
        direct = IsoFLOPFit(n_neighbors=k).fit(frame.N, frame.loss, D=frame.D)
        fitted[k] = json.loads(done.stdout)["a"]
        assert fitted[k] == pytest.approx(direct.params_["a"], rel=1e-6)
    assert fitted[1] == pytest.approx(0.5, abs=0.02)
    assert abs(fitted[None] - fitted[1]) > 0.02
    old = run_cli("fit", "isoflop", "--neighbors", "1", "--json", "--refit", "--db", db)
    assert old.returncode == 0 and json.loads(old.stdout)["a"] == pytest.approx(fitted[1])
    wrong = run_cli("fit", "chinchilla", "--neighbors", "2", "--db", db)
    assert wrong.returncode == 2 and "--n-neighbors applies to isoflop" in wrong.stderr


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="no pseudo-terminals here")
def test_a_terminal_sees_what_is_computed_while_a_fit_runs_and_a_pipe_does_not(db):
    """stderr on a terminal shows the fit under way with its time elapsed (and removes it);
    stderr into a pipe gets none of it; stdout, a pipe both times, holds the same answer."""
    args = ("fit", "chinchilla", "--where", WHERE, "--bootstrap", "50", "--json", "--db", str(db))
    leader, follower = os.openpty()
    env = {**os.environ, "PYTHONPATH": str(REPO), "TERM": "xterm", "COLUMNS": "100"}
    on_terminal = subprocess.run([sys.executable, "-m", "cli", *args], stdout=subprocess.PIPE,
                                 stderr=follower, env=env, timeout=300)  # fmt: skip
    os.close(follower)
    shown = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the terminal's other end is closed and drained
            break
        if not chunk:
            break
        shown += chunk
    os.close(leader)
    piped = run_cli(*args)
    assert on_terminal.returncode == 0 and piped.returncode == 0, piped.stderr
    assert b"fitting chinchilla" in shown
    assert "fitting" not in piped.stderr
    assert json.loads(on_terminal.stdout) == json.loads(piped.stdout)
