"""Adaptive sweeps that find their LRs: the LR design criterion against statsmodels' prediction
interval and a direct recomputation, and the planner's scans, LR law and restart safety on a
synthetic loss surface with a known optimal LR."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from runners.config import RunConfig
from runners.sweeps.spec import loads_spec
from scaling.errors import ScalingError
from scaling.sweeps.adaptive_lr import LRDesign, fit_lr_law, plan_lr_round
from scaling.sweeps.planner import SCAN, AdaptivePlanner
from scaling.sweeps.rounds import Target
from tests.conftest import run_cli
from tests.test_adaptive import SPEC, law_loss

TARGET = Target("lr", (2e6,), (2e7,))


def true_lr(N: np.ndarray | float, D: np.ndarray | float) -> np.ndarray:
    return 0.4 * np.asarray(N, dtype=float) ** -0.35 * np.asarray(D, dtype=float) ** 0.05


def lr_groups(scatter: float = 0.1) -> pd.DataFrame:
    """Optima of 4 sizes x 3 token counts on the true law, a deterministic scatter in log LR."""
    N, D = np.meshgrid(np.geomspace(2e4, 2e5, 4), np.geomspace(4e3, 6.4e4, 3))
    N, D = N.ravel(), D.ravel()
    wiggle = np.exp(scatter * np.sin(7.0 * np.arange(N.size)))
    return pd.DataFrame({"N": N, "D": D, "lr_opt": true_lr(N, D) * wiggle})


def test_width_is_the_prediction_interval_of_one_new_group() -> None:
    groups = lr_groups()
    law = fit_lr_law(groups)
    assert law.variables == ("N", "D")
    design = LRDesign(law, groups, TARGET, 0.90)
    est = law.model.predict_interval({"N": [2e6], "D": [2e7]}, 0.90, "prediction")
    assert design.estimate() == pytest.approx(est.estimate[0])
    assert design.width() == pytest.approx((est.hi[0] - est.lo[0]) / est.estimate[0], rel=1e-9)


def test_adding_a_group_matches_a_direct_recomputation() -> None:
    groups = lr_groups()
    law = fit_lr_law(groups)
    design = LRDesign(law, groups, TARGET, 0.90)
    N, D = np.array([1e6, 3e4]), np.array([1e4, 2e5])
    widths = design.widths_with(N, D)
    s2 = law.model.objective_ / law.model.df_resid_
    x0 = np.array([1.0, math.log(2e6), math.log(2e7)])
    for n, d, width in zip(N, D, widths, strict=True):
        X = np.column_stack([np.ones(13), np.log([*groups.N, n]), np.log([*groups.D, d])])
        q = x0 @ np.linalg.inv(X.T @ X) @ x0
        t = stats.t.ppf(0.95, len(groups) - 3 + 1)
        assert width == pytest.approx(2 * math.sinh(t * math.sqrt(s2 * (1 + q))), rel=1e-9)
    design.add(N[0], D[0])
    assert design.width() == pytest.approx(widths[0], rel=1e-9)


def test_a_group_toward_the_target_beats_one_inside_unless_it_costs_far_more() -> None:
    groups = lr_groups()
    law = fit_lr_law(groups)
    inside = {"N": 6e4, "D": 1.6e4}
    outward = {"N": 6e5, "D": 1.6e5}
    for far_cost, winner in ((1.0, 6e5), (1e6, 6e4)):
        candidates = pd.DataFrame([inside, outward]).assign(cost=[1.0, far_cost])
        plan = plan_lr_round(groups, candidates, TARGET, law, round_size=1)
        assert plan.picks.N.tolist() == [winner]
        assert plan.picks.width.iloc[0] < plan.width_now


def test_the_law_uses_the_variables_that_vary() -> None:
    one_d = lr_groups().assign(D=1e4)
    assert fit_lr_law(one_d).variables == ("N",)
    with pytest.raises(ScalingError, match="LR law needs"):
        fit_lr_law(lr_groups().head(2).assign(D=1e4))


# -- the planner on a synthetic surface: loss at the law's optimum times a parabola in log LR
LR_SPEC = SPEC.replace('ask = "loss"', 'ask = "lr"').replace("round_size = 2", "round_size = 3")


def surface(planner: AdaptivePlanner, known: set[RunConfig] | None = None):  # type: ignore[no-untyped-def]
    """loss_of for every run (or those in `known`): Chinchilla loss, 20% worse per ln(2)^2
    of LR off the candidate's optimum (the true law with a per-candidate scatter)."""
    fixed = planner.configs[0].train.lr
    index = {c: i for i, c in enumerate(planner.configs)}

    def loss_of(config: RunConfig) -> float | None:
        if known is not None and config not in known:
            return None
        i = index[replace(config, train=replace(config.train, lr=fixed))]
        n, d = planner.candidates.N[i], planner.candidates.D[i]
        best = float(true_lr(n, d)) * math.exp(0.1 * math.sin(7.0 * i))
        off = math.log(config.train.lr / best) / math.log(2.0)
        return float(law_loss(n * 300, d * 300)) * (1 + 0.2 * off**2)

    return loss_of


@pytest.mark.slow
def test_lr_target_scans_its_groups_and_learns_the_law() -> None:
    planner = AdaptivePlanner(loads_spec(LR_SPEC.format(budget="2e12")))
    loss_of = surface(planner)
    rounds = planner.rounds(loss_of)
    assert len(rounds) >= 3 and len(rounds[0].groups) == 12
    for g in rounds[0].groups:  # the start scans around [fixed] lr, extended until bracketed
        assert g.scanned and g.lr == 3e-3
        runs = planner.runs_of(g, loss_of)
        assert sorted(c.train.lr for c in runs[: len(SCAN)]) == [1.5e-3, 3e-3, 6e-3]
        outcome = planner.outcome(g, loss_of)
        assert outcome is not None and outcome.bracketed
        n, d = planner.candidates.N[g.index], planner.candidates.D[g.index]
        assert outcome.lr_opt == pytest.approx(
            float(true_lr(n, d)) * math.exp(0.1 * math.sin(7.0 * g.index)), rel=0.02
        )
    later = [g for r in rounds[1:] for g in r.groups]
    for g in later:  # centred on the LR law, which has learned the true one (scatter 0.1)
        n, d = planner.candidates.N[g.index], planner.candidates.D[g.index]
        assert g.scanned and abs(math.log(g.lr / float(true_lr(n, d)))) < 0.25
    last = rounds[-1].plan
    assert last is not None and last.picks.width.iloc[-1] < rounds[1].plan.width_now  # type: ignore[union-attr]
    assert abs(math.log(last.estimate / float(true_lr(2e6, 2e7)))) < math.asinh(
        last.width_now / 2
    )  # the truth lies inside the interval the plan promises
    spent = sum(planner.candidates.cost[g.index] * len(planner.runs_of(g, loss_of))
                for r in rounds[:-1] for g in r.groups)  # fmt: skip
    assert spent + last.picks.cost.sum() <= 2e12


def test_a_killed_lr_sweep_replans_the_same_runs() -> None:
    spec = loads_spec(LR_SPEC.format(budget="2e12"))
    planner = AdaptivePlanner(spec)
    everything = planner(surface(planner))
    rounds = planner.rounds(surface(planner))
    # killed after round 0 and two runs of round 1: a new coordinator sees only those
    round0 = {c for g in rounds[0].groups for c in planner.runs_of(g, surface(planner))}
    round1 = planner.runs_of(rounds[1].groups[0], surface(planner))[:2]
    fresh = AdaptivePlanner(spec)
    partial = fresh(surface(fresh, round0 | set(round1)))
    assert partial == everything[: len(partial)]  # the same runs, in the same order
    assert [g for r in fresh.rounds(surface(fresh, round0)) for g in r.groups] == [
        g for r in rounds[:2] for g in r.groups
    ]


@pytest.mark.slow
def test_a_loss_target_runs_once_where_the_law_knows_the_lr() -> None:
    text = SPEC.format(budget="2e12").replace(
        'law = "chinchilla"', 'law = "chinchilla"\nlr = "law"'
    )
    planner = AdaptivePlanner(loads_spec(text))
    loss_of = surface(planner)
    rounds = planner.rounds(loss_of)
    assert all(g.scanned for g in rounds[0].groups) and len(rounds) >= 2
    for g in (g for r in rounds[1:] for g in r.groups):  # the law is sure within 2x: one run
        n, d = planner.candidates.N[g.index], planner.candidates.D[g.index]
        assert not g.scanned and [c.train.lr for c in planner.runs_of(g, loss_of)] == [g.lr]
        assert abs(math.log(g.lr / float(true_lr(n, d)))) < 0.25


@pytest.mark.slow
def test_live_lr_sweep_stopped_and_resumed_trains_each_run_once(tmp_path: Path) -> None:
    """Real runs in a real log: an lr-target sweep stopped after 6 runs and started again
    goes on with the scans it planned, and `suggest` lists them with their LRs."""
    spec = tmp_path / "lr.toml"
    spec.write_text(LR_SPEC.format(budget="2e12"))
    db = str(tmp_path / "r.duckdb")
    for _ in range(2):
        result = run_cli("sweep", "run", str(spec), "--db", db, "--max-runs", "6",
                         "--workers", "2", "--threads", "1")  # fmt: skip
        assert result.returncode == 3, result.stdout + result.stderr  # budget left
    with duckdb.connect(db, read_only=True) as con:
        lrs = con.execute("SELECT lr, count(*) FROM runs GROUP BY ALL").fetchall()
        n_runs = con.execute("SELECT count(DISTINCT run_id), count(*) FROM runs").fetchall()[0]
    assert n_runs == (12, 12)  # two stops of 6, nothing trained twice
    steps = [math.log2(lr / 3e-3) for lr, _ in lrs]  # round 0: [fixed] lr x 0.5, 1, 2, and
    assert all(abs(k - round(k)) < 0.01 for k in steps)  # refinements by the scan's factor
    shown = run_cli("sweep", "suggest", str(spec), "--db", db)
    assert shown.returncode == 0, shown.stderr
    rows = [line.split() for line in shown.stdout.splitlines()]
    statuses = [row[-2] for row in rows if len(row) == 8 and row[-1] == "-"]
    assert statuses.count("done") == 12 and len(statuses) >= 36  # 12 groups x 3 LRs at least
