"""Schedules as data: each kind against its closed form, the old meanings kept, LRs rebuilt
exactly from the run log."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import duckdb
import numpy as np
import pytest

from runners.errors import RunnerError
from runners.schedule import canonical, parse_schedule, schedule_from_table
from runners.sweeps.spec import loads_spec
from scaling.curves import curves_frame, schedule_lrs
from tests.conftest import REPO, run_cli, tiny_config

STEPS, WARMUP = 1000, 50


def factor(spec: str, step: int, steps: int = STEPS, warmup: int = WARMUP) -> float:
    return parse_schedule(spec).factor(step, steps, warmup)


def legacy_factor(step: int, steps: int, warmup: int, schedule: str) -> float:
    """The schedules as the code before the schedule syntax wrote them (commit be164e8)."""
    if step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    if schedule == "cosine":
        progress = (step - warmup) / max(1, steps - 1 - warmup)
        return 0.1 + (1 - 0.1) * 0.5 * (1 + math.cos(math.pi * progress))
    decay_start = max(warmup, int(steps * (1 - 0.2)))
    if step < decay_start:
        return 1.0
    progress = (step - decay_start) / max(1, steps - 1 - decay_start)
    return 1.0 - (1 - 0.1) * progress


@pytest.mark.parametrize("steps", [1, 2, 7, 100, 1000, 12345])
@pytest.mark.parametrize("name", ["cosine", "wsd", "constant"])
def test_old_names_keep_their_meaning_bit_for_bit(name, steps):
    warmup = max(1, min(200, steps // 20))
    got = parse_schedule(name).factors(steps, warmup)
    want = [legacy_factor(s, steps, warmup, name) for s in range(steps)]
    assert got.tolist() == want


@pytest.mark.parametrize(
    ("spec", "name"),
    [
        ("cosine:floor=0.1", "cosine"),
        ("wsd:cooldown=0.2,shape=linear,floor=0.1", "wsd"),
        ("wsd:floor=0.10", "wsd"),
        (" constant ", "constant"),
        ("linear:floor=0", "linear"),
        ("cosine:floor=0", "cosine:floor=0"),
        ("wsd:floor=0,shape=1-sqrt,cooldown=0.25", "wsd:cooldown=0.25,shape=1-sqrt,floor=0"),
        ("steps:0.5=0.3,0.8=0.1", "steps:0.5=0.3,0.8=0.1"),
        ("points:0=1,0.9=1.0,1=0", "points:0=1,0.9=1,1=0"),
    ],
)
def test_canonical_forms(spec, name):
    assert canonical(spec) == name
    assert canonical(name) == name


def test_old_run_ids_are_unchanged():
    """Ids computed by the code before the schedule syntax (commit be164e8)."""
    want = {"cosine": "92cb6ab36b04159c", "wsd": "f8ec3a5b313a07bf", "constant": "fbfd0d9526a63bd9"}
    for name, run_id in want.items():
        config = tiny_config(schedule=name, precision="fp32")
        assert config.run_id("abc") == run_id
    spelled_out = tiny_config(schedule="cosine:floor=0.1", precision="fp32")
    assert spelled_out.run_id("abc") == want["cosine"]
    assert tiny_config(schedule="cosine:floor=0", precision="fp32").run_id("abc") != want["cosine"]


def test_cosine_to_any_floor():
    for floor in (0.0, 0.05, 0.5):
        spec = f"cosine:floor={floor}"
        for step in (WARMUP, 300, 600, STEPS - 1):
            p = (step - WARMUP) / (STEPS - 1 - WARMUP)
            want = floor + (1 - floor) * (1 + math.cos(math.pi * p)) / 2
            assert factor(spec, step) == pytest.approx(want, rel=1e-14, abs=1e-15)
        assert factor(spec, STEPS - 1) == pytest.approx(floor, abs=1e-15)


def test_linear_decay_straight_to_zero_and_to_a_floor():
    assert factor("linear", STEPS - 1) == 0.0
    assert factor("linear", WARMUP) == 1.0
    mid = WARMUP + (STEPS - 1 - WARMUP) // 2
    p = (mid - WARMUP) / (STEPS - 1 - WARMUP)
    assert factor("linear", mid) == pytest.approx(1 - p, rel=1e-14)
    assert factor("linear:floor=0.2", mid) == pytest.approx(0.2 + 0.8 * (1 - p), rel=1e-14)
    assert factor("linear:floor=0.2", STEPS - 1) == pytest.approx(0.2)


@pytest.mark.parametrize(
    ("shape", "closed_form"),
    [
        ("linear", lambda p, f: 1 - (1 - f) * p),
        ("1-sqrt", lambda p, f: 1 - (1 - f) * math.sqrt(p)),
        ("cosine", lambda p, f: f + (1 - f) * (1 + math.cos(math.pi * p)) / 2),
        ("exp", lambda p, f: math.exp(p * math.log(f))),
    ],
)
@pytest.mark.parametrize("cooldown", [0.1, 0.5])
def test_wsd_cooldown_shapes(shape, closed_form, cooldown):
    floor = 0.01 if shape == "exp" else 0.0
    spec = f"wsd:cooldown={cooldown},shape={shape},floor={floor}"
    start = int(STEPS * (1 - cooldown))
    assert factor(spec, start - 1) == 1.0 and factor(spec, WARMUP) == 1.0
    for step in (start, start + 17, (start + STEPS) // 2, STEPS - 1):
        p = (step - start) / (STEPS - 1 - start)
        assert factor(spec, step) == pytest.approx(closed_form(p, floor), rel=1e-12, abs=1e-15)
    assert factor(spec, STEPS - 1) == pytest.approx(floor, abs=1e-15)


def test_wsd_cooldown_in_steps():
    spec = "wsd:cooldown_steps=100,floor=0"
    assert factor(spec, STEPS - 101) == 1.0
    assert factor(spec, STEPS - 100) == 1.0  # the cooldown's first step is at progress 0
    assert factor(spec, STEPS - 1) == 0.0
    assert factor(spec, STEPS - 50) == pytest.approx(1 - 50 / 99)


def test_multi_step():
    spec = "steps:0.5=0.3,0.8=0.1"
    f = parse_schedule(spec).factors(STEPS, WARMUP)
    position = np.arange(STEPS) / (STEPS - 1)
    want = np.where(position >= 0.8, 0.1, np.where(position >= 0.5, 0.3, 1.0))
    want[:WARMUP] = (np.arange(WARMUP) + 1) / WARMUP
    assert f.tolist() == want.tolist()
    assert factor("steps:0.9=0.316", STEPS - 1) == 0.316  # two-stage


def test_points_interpolate_linearly_in_the_fraction_of_the_run():
    spec = "points:0=1,0.9=1,1=0"
    last = STEPS - 1
    assert factor(spec, 500) == 1.0
    for step in (900, 950, last):
        p = step / last
        want = 1.0 if p <= 0.9 else (1 - p) / 0.1
        assert factor(spec, step) == pytest.approx(want, abs=1e-12)
    assert factor("points:0=0.5,1=0.5", 10, warmup=0) == 0.5


def test_warmup_replaces_the_first_steps_of_every_kind():
    for spec in ("constant", "linear", "cosine:floor=0", "wsd", "steps:0.5=0.1", "points:0=0,1=1"):
        ramp = [factor(spec, s) for s in range(WARMUP)]
        assert ramp == [(s + 1) / WARMUP for s in range(WARMUP)]
    assert factor("points:0=0.3,1=0.3", 0, warmup=0) == 0.3


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("sawtooth", "unknown schedule 'sawtooth'"),
        ("cosine:floor=2", "floor must be in"),
        ("cosine:floor=x", "expected a number"),
        ("cosine:floor=nan", "finite"),
        ("cosine:cooldown=0.1", "cosine takes floor, not 'cooldown'"),
        ("constant:floor=0", "constant takes no parameters"),
        ("wsd:shape=square", "shape must be one of"),
        ("wsd:cooldown=0", "cooldown is a fraction"),
        ("wsd:cooldown=20", "cooldown_steps= takes"),
        ("wsd:cooldown_steps=2.5", "whole number"),
        ("wsd:cooldown=0.1,cooldown_steps=5", "not both"),
        ("wsd:shape=exp,floor=0", "needs floor > 0"),
        ("wsd:floor", "expected key=value"),
        ("wsd:floor=0,floor=0.1", "floor given twice"),
        ("steps", "needs fraction=factor pairs"),
        ("steps:0.8=0.1,0.5=0.3", "fractions must increase"),
        ("steps:1.5=0.1", "in [0, 1]"),
        ("steps:0.5=-1", "factors must be >= 0"),
        ("points:0.1=1,1=0", "start at fraction 0 and end at 1"),
    ],
)
def test_bad_specs_are_one_named_error(spec, message):
    with pytest.raises(RunnerError, match=message.replace("[", r"\[").replace("(", r"\(")):
        parse_schedule(spec)


def test_toml_tables_and_strings_in_sweep_specs():
    spec = loads_spec(
        """
        name = "schedules"
        [fixed]
        schedule = { kind = "wsd", cooldown = 0.1, shape = "1-sqrt", floor = 0 }
        [axes]
        seed = [0]
        """
    )
    assert spec.fixed["schedule"] == "wsd:cooldown=0.1,shape=1-sqrt,floor=0"
    spec = loads_spec(
        """
        name = "schedules"
        [axes]
        schedule = ["cosine:floor=0.1", "linear", { kind = "points", points = [[0, 1], [1, 0]] }]
        """
    )
    assert spec.axes["schedule"] == ("cosine", "linear", "points:0=1,1=0")
    with pytest.raises(RunnerError, match=r"spec.axes.schedule: unknown schedule 'cosin'"):
        loads_spec('name = "x"\n[axes]\nschedule = ["cosin"]\n')
    with pytest.raises(RunnerError, match=r"spec.fixed.schedule.kind"):
        loads_spec('name = "x"\n[fixed]\nschedule = { kind = "zigzag" }\n')
    assert schedule_from_table({"kind": "steps", "points": [[0.5, 0.3]]}) == parse_schedule(
        "steps:0.5=0.3"
    )


def test_bad_schedule_on_the_command_line_is_one_red_line(tmp_path: Path):
    result = run_cli("run", "--schedule", "wsd:shape=square", "--db", str(tmp_path / "x.duckdb"))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "shape must be one of" in lines[0]
    assert not (tmp_path / "x.duckdb").exists()


def test_lrs_of_a_config_follow_its_schedule():
    config = tiny_config(schedule="wsd:cooldown=0.5,floor=0", lr=1e-3).resolved("cpu")
    lrs = config.lrs()
    assert len(lrs) == config.steps == 20
    assert lrs[-1] == 0.0 and lrs[config.train.warmup] == 1e-3
    assert schedule_lrs(config).tolist() == lrs.tolist()


def test_committed_runs_rebuild_their_logged_lr_at_every_logged_step():
    """180 runs trained before the schedule syntax (benchmarks/data): the LR at each of their
    ~41k logged steps comes back exactly from their runs rows."""
    con = duckdb.connect()
    data = REPO / "benchmarks" / "data"
    runs = con.execute(f"SELECT * FROM '{data / 'architecture_runs.parquet'}'").df()
    runs = runs[runs.status == "done"]  # a failed run logged no curve
    curves = con.execute(f"SELECT * FROM '{data / 'architecture_curves.parquet'}'").df()
    assert len(runs) >= 100 and len(curves) > 10_000
    frame = curves_frame(runs, curves)
    merged = frame.assign(step=frame.step + 1).merge(
        curves.rename(columns={"run_id": "run"}), on=["run", "step"], suffixes=("", "_logged")
    )
    assert len(merged) == len(curves)
    assert (merged["lr"] == merged["lr_logged"]).all()
    assert (merged["loss"] == merged["train_loss"]).all()
    sizes = frame.groupby("run").size()
    steps = -(-runs.tokens // (runs.batch_size * runs.seq_len))
    assert (sizes[runs.run_id].to_numpy() == steps.to_numpy()).all()
    assert (curves.groupby("run_id").step.max()[runs.run_id].to_numpy() == steps.to_numpy()).all()


def test_replace_keeps_the_schedule_canonical_in_the_hash():
    a = tiny_config(schedule="wsd:floor=0.0,cooldown=0.3")
    b = replace(a, train=replace(a.train, schedule="wsd:cooldown=0.3,floor=0"))
    assert a.run_id("x") == b.run_id("x")
    assert a.resolved("cpu").train.schedule == "wsd:cooldown=0.3,floor=0"


@pytest.mark.slow
@pytest.mark.parametrize("schedule", ["wsd:cooldown=0.3,shape=1-sqrt,floor=0", "steps:0.5=0.3"])
def test_a_real_run_rebuilds_its_logged_lr_at_every_logged_step(db, schedule):
    from scaling.curves import read_schedule_curves
    from scaling.execute import run_and_record

    config = tiny_config(tokens=64 * 16 * 30, schedule=schedule, eval_every=7)
    result, run_id = run_and_record(config, db=db, device="cpu")
    assert result is not None and result.status == "done"
    frame = read_schedule_curves(db)
    assert set(frame.run) == {run_id} and frame.step.tolist() == list(range(30))
    logged = frame[frame.loss.notna()]
    assert len(logged) == len(result.curve) == 30  # 30 steps: every step is logged
    assert logged.lr.tolist() == [p.lr for p in result.curve]
    assert logged.loss.tolist() == [p.train_loss for p in result.curve]
    val = read_schedule_curves(db, loss="val_loss")
    assert val.loss.notna().sum() == sum(p.val_loss is not None for p in result.curve) >= 4
