"""`scaling import-curves`: curves made elsewhere land in the run log whole, or not at all."""

from __future__ import annotations

import math
from pathlib import Path

import duckdb
import numpy as np
import pytest

from scaling.curves import read_schedule_curves
from scaling.errors import ScalingError
from store.curve_imports import import_curves
from store.db import connect
from store.errors import StoreError
from tests.conftest import run_cli


def cosine_curve(steps: int, peak: float = 1e-3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    step = np.arange(1, steps + 1)
    lr = peak * 0.5 * (1 + np.cos(np.pi * step / steps))
    loss = 2.0 + 3.0 / np.sqrt(step)
    return step, lr, loss


def write_csv(path: Path, rows: list[tuple], header: str = "step,lr,loss") -> Path:
    lines = [header] + [",".join("" if v is None else repr(v) for v in row) for row in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_one_file_per_run_every_step_gives_the_schedule_frame(db, tmp_path):
    step, lr, loss = cosine_curve(50)
    rows = [
        (int(s), float(r), float(v) if s % 10 == 0 else None)
        for s, r, v in zip(step, lr, loss, strict=True)
    ]
    a = write_csv(tmp_path / "run_a.csv", rows)
    b = write_csv(tmp_path / "run_b.csv", [(0, 0.0, 5.5), *rows[:30]])  # a step 0 row too
    with connect(db) as con:
        counts = import_curves(con, [a, b], "paper")
        again = import_curves(con, [a, b], "paper")
        stored = con.execute(
            "SELECT source, status, final_train_loss, config->>'run' FROM runs ORDER BY 4"
        ).fetchall()
    assert (counts.inserted, counts.present, counts.points) == (2, 0, 50 + 31)
    assert (again.inserted, again.present, again.points) == (0, 2, 0)
    assert stored == [
        ("imported:paper", "done", float(loss[49]), "run_a"),
        ("imported:paper", "done", float(loss[29]), "run_b"),
    ]
    with connect(db, read_only=True) as con:
        (run_a,) = con.execute("SELECT run_id FROM runs WHERE config->>'run' = 'run_a'").fetchone()
    frame = read_schedule_curves(db)
    assert frame.groupby("run").size().sort_values().tolist() == [30, 50]
    curve = frame[frame.run == run_a]
    assert curve.step.tolist() == list(range(50))
    assert curve.lr.tolist() == [float(x) for x in lr]  # row s: the LR of the step to s + 1
    measured = curve[curve.loss.notna()]
    assert measured.step.tolist() == [9, 19, 29, 39, 49]
    assert measured.loss.tolist() == [float(loss[s]) for s in measured.step]


@pytest.mark.parametrize("form", ["csv", "parquet", "jsonl"])
def test_one_long_file_with_a_run_column(db, tmp_path, form):
    step, lr, loss = cosine_curve(20)
    con = duckdb.connect()
    con.execute(
        "CREATE TABLE t (run VARCHAR, step BIGINT, learning_rate DOUBLE, train_loss DOUBLE)"
    )
    for name, scale in (("wsd", 1.0), ("cos", 1.1)):
        for s, r, v in zip(step, lr, loss, strict=True):
            con.execute("INSERT INTO t VALUES (?, ?, ?, ?)", [name, int(s), float(r), v * scale])
    path = tmp_path / f"curves.{form}"
    options = {"csv": "(HEADER)", "parquet": "(FORMAT PARQUET)", "jsonl": "(FORMAT JSON)"}[form]
    con.execute(f"COPY (SELECT * FROM t ORDER BY run DESC, step) TO '{path}' {options}")
    with connect(db) as log:
        counts = import_curves(log, [path])
        names = log.execute("SELECT config->>'run', source FROM runs ORDER BY 1").fetchall()
    assert counts.inserted == 2 and counts.points == 40
    assert names == [("cos", "imported:curves"), ("wsd", "imported:curves")]
    frame = read_schedule_curves(db)
    assert len(frame) == 40 and frame.loss.notna().all()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("step,loss\n1,2.0\n", "no lr column (looked for lr, learning_rate"),
        ("lr,loss\n0.1,2.0\n", "no step column"),
        ("step,lr\n1,0.1\n", "no loss column"),
        (
            "step,lr,loss\n1,0.1,2.0\n3,0.1,1.9\n2,0.1,1.8\n",
            "row 3: run 'c': steps must increase, got 2 after 3",
        ),
        ("step,lr,loss\n1,0.1,2.0\n1,0.1,1.9\n", "steps must increase, got 1 after 1"),
        ("step,lr,loss\n1,0.1,inf\n", "row 1: loss must be a finite number > 0"),
        ("step,lr,loss\n1,0.1,2\n2,nan,2\n", "row 2: step and lr must be finite"),
        ("step,lr,loss\n1,-0.1,2\n", "row 1: lr must be >= 0"),
        ("step,lr,loss\n1.5,0.1,2\n", "step must be a whole number"),
        ("step,lr,loss\n1,0.1,high\n", "row 1: loss is not a number"),
        ("step,lr,loss\n1,0.1,\n", "run 'c' has no loss"),
        ("run,step,lr,loss\nx,1,0.1,2\n,2,0.1,2\n", "row 2: empty run name"),
        ("step,lr,loss,tokens\n1,0.1,2,512.5\n", "row 1: tokens must be a whole number"),
    ],
)
def test_bad_curves_are_refused_whole(db, tmp_path, text, message):
    path = tmp_path / "c.csv"
    path.write_text(text)
    with connect(db) as con, pytest.raises(StoreError, match=message.replace("(", r"\(")):
        import_curves(con, [path])
    with connect(db, read_only=True) as con:
        assert con.execute("SELECT count(*) FROM runs").fetchone() == (0,)
        assert con.execute("SELECT count(*) FROM curves").fetchone() == (0,)


def test_a_curve_without_every_step_cannot_feed_a_schedule_fit(db, tmp_path):
    path = write_csv(tmp_path / "sparse.csv", [(10, 0.1, 3.0), (20, 0.1, 2.5)])
    with connect(db) as con:
        import_curves(con, [path])
    with pytest.raises(ScalingError, match=r"gives the LR at 2 of steps 1 .. 20"):
        read_schedule_curves(db)


@pytest.mark.slow
def test_import_curves_on_the_command_line(tmp_path):
    step, lr, loss = cosine_curve(10)
    path = write_csv(
        tmp_path / "mine.csv",
        [(int(s), float(r), float(v)) for s, r, v in zip(step, lr, loss, strict=True)],
    )
    db = tmp_path / "log.duckdb"
    done = run_cli("import-curves", str(path), "--db", str(db), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "imported 1 curve (10 points) as source 'imported:mine'" in done.stdout
    (tmp_path / "bad.csv").write_text("step,lr,loss\n2,0.1,2\n1,0.1,2\n")
    bad = run_cli("import-curves", str(tmp_path / "bad.csv"), "--db", str(db), cwd=tmp_path)
    assert bad.returncode == 2
    assert bad.stderr.count("\n") == 1 and "steps must increase" in bad.stderr
    assert math.isfinite(read_schedule_curves(db).loss.iloc[-1])
