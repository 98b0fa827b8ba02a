"""The fit / predict / backtest / report commands on the real Chinchilla points."""

import json

import pytest

from scaling import datasets
from tests.conftest import run_cli

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
        "predict", "loss", "--N", "70B", "--D", "1.4T", "--where", WHERE, "--json", "--db", str(db)
    )
    assert loss.returncode == 0, loss.stderr
    answer = json.loads(loss.stdout)
    assert answer["lo"] < answer["value"] < answer["hi"] and answer["level"] == 0.9
    optimal = run_cli(
        "predict", "optimal", "--compute", "5.76e23", "--where", WHERE, "--json", "--db", str(db)
    )
    parts = json.loads(optimal.stdout)
    assert parts["N"]["lo"] < 70e9 < parts["N"]["hi"]
    logged = run_cli("sql", "SELECT count(*) AS n FROM predictions", "-f", "csv", "--db", str(db))
    assert logged.stdout.splitlines()[1] == "4"


def test_backtest_and_report(db, tmp_path):
    done = run_cli("backtest", "chinchilla", "--where", WHERE, "--json", "--db", str(db))
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["n_test"] == 60 and 0 <= result["coverage"] <= 1
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
    ],
)
def test_law_mistakes_are_one_line(db, args, message):
    done = run_cli(*args, "--db", str(db))
    assert done.returncode == 2, done.stdout
    assert message in done.stderr and "Traceback" not in done.stderr
