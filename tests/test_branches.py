"""Branching runs: cooldowns that leave a stable run from its checkpoints end bit for bit
where the same runs trained from scratch end, and the run log names their parent."""

from __future__ import annotations

import pytest

from runners.branches import Cooldown, branch_config, branch_plan
from runners.checkpoint import folder_for
from runners.config import RunConfig
from runners.corpus import load_corpus
from runners.errors import RunnerError
from runners.sweeps.designs import Planner
from runners.sweeps.spec import SweepSpec, loads_spec
from runners.train import train
from scaling.execute import run_and_record
from store.db import connect
from tests.conftest import run_cli, tiny_config

STABLE_STEPS = 40


def wsd_spec(rest: str) -> SweepSpec:
    """A sweep of tiny constant-LR stable runs of STABLE_STEPS steps; `rest` adds to it."""
    fixed = {"d_model": 32, "n_layers": 1, "n_heads": 2, "seq_len": 64, "batch_size": 16}
    lines = [f"{k} = {v}" for k, v in fixed.items()]
    return loads_spec(
        'name = "wsd"\n[fixed]\n' + "\n".join(lines) + f"\ntokens = {64 * 16 * STABLE_STEPS}\n"
        'schedule = "constant"\n' + rest
    )


def stable() -> RunConfig:
    return tiny_config(tokens=64 * 16 * STABLE_STEPS, schedule="constant").resolved("cpu")


def test_a_branch_is_the_stable_run_then_its_cooldown():
    parent = stable()
    branch = branch_config(parent, 25, Cooldown(10, "1-sqrt", 0.0), "cpu")
    assert branch.steps == 35 and branch.train.warmup == parent.train.warmup
    assert branch.lrs()[:25].tolist() == parent.lrs()[:25].tolist()
    assert branch.lrs()[25] == parent.train.lr and branch.lrs()[-1] == 0.0
    assert branch.train.schedule == "wsd:cooldown_steps=10,shape=1-sqrt,floor=0"


def test_branches_are_refused_where_they_cannot_share_the_stable_phase():
    with pytest.raises(RunnerError, match="not constant up to step 25"):
        branch_config(tiny_config(tokens=64 * 16 * 40), 25, Cooldown(10))
    with pytest.raises(RunnerError, match=r"outside the stable run's steps \(1 .. 39\)"):
        branch_config(stable(), 40, Cooldown(10))
    with pytest.raises(RunnerError, match="shape must be one of"):
        branch_config(stable(), 20, Cooldown(10, "square"))


@pytest.mark.slow
def test_branches_from_checkpoints_end_as_from_scratch_and_name_their_parent(db):
    parent = stable()
    sha256 = load_corpus(parent.train.corpus).sha256
    plan = branch_plan(parent, [10, 25], Cooldown(8), sha256, "cpu")
    branches = tuple(branch for _, branch in plan)
    result, parent_id = run_and_record(
        parent, db=db, device="cpu", checkpoint_every_s=0, branches=branches
    )
    assert result is not None and result.status == "done"
    assert sorted(p.name for p in folder_for(db).iterdir()) == sorted(
        f"{b.run_id}.pt" for b in branches
    )
    parent_curve = {p.step: p for p in result.curve}
    for config, branch in plan:
        resumed, run_id = run_and_record(
            config, db=db, device="cpu", parent=(parent_id, branch.step)
        )
        assert resumed is not None and run_id == branch.run_id
        assert resumed.resumed_at == branch.step
        scratch = train(config, device="cpu")
        assert scratch.run_id == run_id
        assert resumed.final_val_loss == scratch.final_val_loss
        assert [(p.step, p.train_loss, p.lr) for p in resumed.curve] == [
            (p.step, p.train_loss, p.lr) for p in scratch.curve
        ]
        stable_phase = [p for p in scratch.curve if p.step <= branch.step]
        assert [(p.train_loss, p.lr, p.tokens) for p in stable_phase] == [
            (parent_curve[p.step].train_loss, parent_curve[p.step].lr, parent_curve[p.step].tokens)
            for p in stable_phase
        ]
    assert not list(folder_for(db).iterdir())  # each branch's checkpoint went with its commit
    with connect(db, read_only=True) as con:
        lineage = con.execute(
            "SELECT run_id, parent_run_id, branch_step FROM runs ORDER BY branch_step NULLS FIRST"
        ).fetchall()
    assert lineage == [(parent_id, None, None)] + [(b.run_id, parent_id, b.step) for b in branches]


@pytest.mark.slow
def test_branch_at_on_the_command_line(tmp_path):
    db = tmp_path / "b.duckdb"
    result = run_cli(
        "run", "--d-model", "32", "--n-layers", "1", "--n-heads", "2", "--seq-len", "32",
        "--batch-size", "8", "--tokens", str(32 * 8 * 30), "--eval-tokens", "1024",
        "--schedule", "constant", "--device", "cpu", "--branch-at", "10,20",
        "--cooldown-steps", "5", "--db", str(db), cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("resumed at step") == 2
    with connect(db, read_only=True) as con:
        rows = con.execute(
            "SELECT branch_step, schedule, tokens FROM runs ORDER BY branch_step NULLS FIRST"
        ).fetchall()
    assert rows == [
        (None, "constant", 32 * 8 * 30),
        (10, "wsd:cooldown_steps=5,shape=1-sqrt,floor=0", 32 * 8 * 15),
        (20, "wsd:cooldown_steps=5,shape=1-sqrt,floor=0", 32 * 8 * 25),
    ]
    bad = run_cli("run", "--branch-at", "10", "--db", str(db), cwd=tmp_path)
    assert bad.returncode == 2 and "--branch-at and --cooldown-steps go together" in bad.stderr


def test_a_sweep_spec_branches_each_stable_run_once_it_has_finished():
    spec = wsd_spec(
        '[axes]\nseed = [0, 1]\n[design]\nkind = "grid"\n'
        'branches = { at = [30, 10, 20], cooldown_steps = 8, shape = "linear", floor = 0 }'
    )
    planner = Planner(spec, "cpu")
    parents = planner()
    assert len(parents) == 2  # before any stable run finished, no branch is planned
    done = {parents[0]}
    plan = planner(lambda c: 2.0 if c in done else None)
    branches = plan[2:]
    assert len(branches) == 3 and [b.steps for b in branches] == [18, 28, 38]
    assert [planner.parent_of(b) for b in branches] == [(parents[0], s) for s in (10, 20, 30)]
    assert [b.step for b in planner.branches_of(parents[0])] == [10, 20, 30]
    assert planner.parent_of(parents[0]) is None
    assert len(planner(lambda c: float("inf"))) == 2  # a diverged stable run: no branches


@pytest.mark.parametrize(
    ("branches", "message"),
    [
        ("{ at = [], cooldown_steps = 8 }", "expected a non-empty list of steps"),
        ("{ at = [10, 10], cooldown_steps = 8 }", "distinct"),
        ("{ at = [10] }", "give each branch's cooldown in steps"),
        ("{ at = [10], cooldown_steps = 8, shape = 'round' }", "shape must be one of"),
        ("{ at = [10], cooldown_steps = 8, every = 2 }", "unknown key"),
    ],
)
def test_bad_branch_specs_name_their_key(branches, message):
    text = f'name = "x"\n[design]\nkind = "grid"\nbranches = {branches}\n'
    with pytest.raises(RunnerError, match=message):
        loads_spec(text)


@pytest.mark.slow
def test_a_sweep_trains_the_stable_run_then_its_branches_from_its_checkpoints(tmp_path):
    from scaling.sweeps.coordinator import SweepOptions, run_sweep

    spec = wsd_spec(
        'eval_tokens = 4096\nprecision = "fp32"\n[design]\nkind = "grid"\n'
        "branches = { at = [10, 25], cooldown_steps = 8 }"
    )
    db = tmp_path / "log.duckdb"
    report = run_sweep("wsd", Planner(spec, "cpu"), db, SweepOptions(workers=1, threads=1))
    assert report.trained["done"] == 3 and report.left == 0
    with connect(db, read_only=True) as con:
        rows = con.execute(
            "SELECT run_id, parent_run_id, branch_step, final_val_loss FROM runs "
            "ORDER BY branch_step NULLS FIRST"
        ).fetchall()
    (parent_id, _, _, _), *branches = rows
    assert [(p, s) for _, p, s, _ in branches] == [(parent_id, 10), (parent_id, 25)]
    assert not list(folder_for(db).iterdir())
    first_branch = Planner(spec, "cpu")(lambda c: 1.0)[1]  # the branch from step 10
    assert first_branch.steps == 18
    assert train(first_branch, device="cpu").final_val_loss == branches[0][3]
