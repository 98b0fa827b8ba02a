"""Adaptive design: the criterion against naive recomputation, determinism, restart safety,
cost, the spec, and the CLI's refusal of a budget that buys nothing."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fits.chinchilla import theta_jacobian, theta_loss
from runners.errors import RunnerError
from runners.sweeps.designs import Timing
from runners.sweeps.spec import loads_spec
from scaling.errors import ScalingError
from scaling.sweeps.adaptive import (
    LawState,
    expected_width,
    fit_law,
    plan_round,
)
from scaling.sweeps.planner import AdaptivePlanner, row
from scaling.sweeps.rounds import Target
from scaling.sweeps.suggestion import suggest
from scaling.sweeps.timing import EVAL_COST, RUN_START_S
from store.db import connect
from store.fit_log import save_fit, sweep_fits
from store.sweeps import planned_loss
from tests.conftest import run_cli

TRUE = {"E": 1.7, "A": 400.0, "B": 400.0, "alpha": 0.34, "beta": 0.28}
TARGET = Target("loss", (3e9,), (6e10,))


def law_loss(N: np.ndarray, D: np.ndarray) -> np.ndarray:
    return TRUE["E"] + TRUE["A"] / N ** TRUE["alpha"] + TRUE["B"] / D ** TRUE["beta"]


def synthetic_runs() -> pd.DataFrame:
    """Five small sizes x six token counts from a known law, 0.5% multiplicative noise."""
    N, D = np.meshgrid(np.geomspace(1e7, 1e8, 5), np.geomspace(2e8, 4e9, 6))
    N, D = N.ravel(), D.ravel()
    noise = np.exp(np.random.default_rng(0).normal(0, 0.005, N.size))
    return pd.DataFrame({"N": N, "D": D, "loss": law_loss(N, D) * noise})


@pytest.fixture(scope="module")
def runs() -> pd.DataFrame:
    return synthetic_runs()


@pytest.fixture(scope="module")
def state(runs: pd.DataFrame) -> LawState:
    return fit_law(runs, "chinchilla")


def candidates(cost: str = "6ND") -> pd.DataFrame:
    N, D = np.meshgrid(np.geomspace(1e7, 1e9, 7), np.geomspace(2e8, 2e10, 5))
    frame = pd.DataFrame({"N": N.ravel(), "D": D.ravel()})
    return frame.assign(cost=6 * frame.N * frame.D if cost == "6ND" else 1.0)


@pytest.mark.slow
def test_fit_recovers_the_law(state: LawState) -> None:
    params = state.model.params_
    assert params["alpha"] == pytest.approx(TRUE["alpha"], rel=0.25)
    assert params["E"] == pytest.approx(TRUE["E"], rel=0.1)
    assert 0.002 < state.sigma < 0.02  # the 0.5% noise, as the estimator sees it


def test_jacobian_matches_finite_differences() -> None:
    theta = np.array([math.log(400.0), math.log(400.0), math.log(1.7), 0.34, 0.28])
    N, D = np.array([1e7, 3e9]), np.array([1e9, 5e10])
    numeric = np.empty((2, 5))
    for i in range(5):
        step = np.zeros(5)
        step[i] = 1e-6
        up, down = np.log(theta_loss(theta + step, N, D)), np.log(theta_loss(theta - step, N, D))
        numeric[:, i] = (up - down) / 2e-6
    assert np.allclose(theta_jacobian(theta, N, D), numeric, rtol=1e-6, atol=1e-9)


def test_round_widths_match_a_recomputation_from_scratch(
    runs: pd.DataFrame, state: LawState
) -> None:
    """Each pick's width (Sherman-Morrison, stretched box) is the width of runs + picks."""
    plan = plan_round(runs, candidates(), TARGET, state, round_size=3)
    assert len(plan.picks) == 3
    assert plan.width_now == pytest.approx(expected_width(runs, TARGET, state))
    chosen = runs
    for pick in plan.picks.itertuples():
        chosen = pd.concat([chosen, pd.DataFrame({"N": [pick.N], "D": [pick.D], "loss": [2.0]})])
        assert pick.width == pytest.approx(expected_width(chosen, TARGET, state), rel=1e-9)
    assert (np.diff([plan.width_now, *plan.picks.width]) < 0).all()


def test_width_of_a_mean_by_hand(runs: pd.DataFrame, state: LawState) -> None:
    """Two target points: the variance of the mean prediction, scatter / sqrt(2), mean distance,
    from the information matrix summed run by run in a loop."""
    theta = np.array(
        [math.log(state.model.params_[k]) for k in ("A", "B", "E")]
        + [state.model.params_["alpha"], state.model.params_["beta"]]
    )
    info = np.diag([1 / 100, 1 / 100, 1 / 100, 1.0, 1.0])
    for n, d in zip(runs.N, runs.D, strict=True):
        j = theta_jacobian(theta, np.array([n]), np.array([d]))[0]
        info += np.outer(j, j) / state.sigma**2
    points = Target("loss", (1e8, 3e9), (4e9, 6e10))
    g = theta_jacobian(theta, np.array(points.N), np.array(points.D)).mean(axis=0)
    # decades outside the runs' box: the first point is inside, the second beyond C, N and D
    along = [
        np.log10(3e9 * 6e10 / (runs.N * runs.D).max()),
        np.log10(3e9 / runs.N.max()),
        np.log10(6e10 / runs.D.max()),
    ]
    far = max(k * d for k, d in zip(state.kappa, along, strict=True))
    h = math.sqrt(1.6448536**2 * g @ np.linalg.solve(info, g) + state.scatter**2 / 2)
    h += far / 2
    assert expected_width(runs, points, state) == pytest.approx(2 * math.sinh(h), rel=1e-6)


def test_same_runs_in_same_picks_out(runs: pd.DataFrame, state: LawState) -> None:
    cands = candidates()
    first = plan_round(runs, cands, TARGET, state, round_size=4)
    shuffled = cands.sample(frac=1.0, random_state=3)
    again = plan_round(runs, shuffled, TARGET, state, round_size=4)
    key = ["N", "D", "cost", "width"]
    pd.testing.assert_frame_equal(first.picks[key], again.picks[key])
    assert list(shuffled.index[again.picks["index"]]) == list(first.picks["index"])


def test_a_candidate_the_law_is_sure_of_loses(runs: pd.DataFrame, state: LawState) -> None:
    """At equal cost, a size and horizon the runs already hold loses to one toward the target."""
    sure = {"N": runs.N.iloc[7], "D": runs.D.iloc[7], "cost": 1.0}  # inside the data
    informative = {"N": 4e8, "D": 1e10, "cost": 1.0}
    cands = pd.DataFrame([sure, informative])
    plan = plan_round(runs, cands, TARGET, state, round_size=1)
    assert plan.picks["index"].tolist() == [1]
    gain_sure = plan.width_now - plan_round(runs, cands.iloc[[0]], TARGET, state, 1).picks.width
    assert float(gain_sure.iloc[0] if len(gain_sure) else 0.0) < 0.1 * (
        plan.width_now - plan.picks.width.iloc[0]
    )


def test_cost_counts(runs: pd.DataFrame, state: LawState) -> None:
    """The same run at 100x the cost loses to a slightly less informative one."""
    a = {"N": 4e8, "D": 1e10, "cost": 100.0}
    b = {"N": 3e8, "D": 1e10, "cost": 1.0}
    plan = plan_round(runs, pd.DataFrame([a, b]), TARGET, state, round_size=1)
    assert plan.picks["index"].tolist() == [1]
    free = plan_round(runs, pd.DataFrame([{**a, "cost": 1.0}, b]), TARGET, state, round_size=1)
    assert free.picks["index"].tolist() == [0]


def test_budget_limits_the_round(runs: pd.DataFrame, state: LawState) -> None:
    cands = candidates()
    plan = plan_round(runs, cands, TARGET, state, round_size=10, budget=float(cands.cost.min()))
    assert plan.picks.cost.sum() <= cands.cost.min()
    assert plan_round(runs, cands, TARGET, state, 4, budget=cands.cost.min() / 2).picks.empty


def test_optimal_target_has_a_width(runs: pd.DataFrame, state: LawState) -> None:
    plan = plan_round(runs, candidates(), Target("optimal", compute=1e21), state, round_size=2)
    assert len(plan.picks) == 2 and 0 < plan.picks.width.iloc[-1] < plan.width_now


def test_bad_requests_are_one_line() -> None:
    with pytest.raises(ScalingError, match="ask must be one of"):
        Target("size", (1.0,), (1.0,))
    with pytest.raises(ScalingError, match="an lr target needs one N and one D"):
        Target("lr", (1.0, 2.0), (1.0, 2.0))
    with pytest.raises(ScalingError, match="planned on the LR law"):
        plan_round(synthetic_runs(), candidates(), Target("lr", (1e9,), (1e10,)), "chinchilla")
    with pytest.raises(ScalingError, match="supports law"):
        fit_law(synthetic_runs(), "kaplan")
    rising = synthetic_runs().assign(loss=lambda r: 2 + 1e-3 * np.sqrt(r.N))
    with pytest.raises(ScalingError, match="is not positive") as refused:
        fit_law(rising)  # a sweep has no --force to offer
    assert "--force" not in str(refused.value)
    with pytest.raises(ScalingError, match="no run of the sweep finished with a loss"):
        fit_law(synthetic_runs().iloc[:0])


# -- the sweep: spec, restart safety, CLI ---------------------------------------------------
SPEC = """
name = "adapt"
[fixed]
seq_len = 32
batch_size = 8
eval_tokens = 1024
lr = 3e-3
[design]
kind = "adaptive"
target = {{ ask = "loss", N = 2e6, D = 2e7 }}
law = "chinchilla"
budget_flops = {budget}
round_size = 2
candidates = {{ size = [{{ d_model = 32, n_layers = 1, n_heads = 2 }}, {{ d_model = 48, n_layers = 1, n_heads = 2 }}, {{ d_model = 64, n_layers = 2, n_heads = 2 }}, {{ d_model = 96, n_layers = 2, n_heads = 2 }}], tokens = {{ logspace = [4096, 65536, 5] }} }}
"""  # noqa: E501


def test_spec_parses_an_adaptive_design() -> None:
    spec = loads_spec(SPEC.format(budget="1e12"))
    a = spec.design.adaptive
    assert spec.design.kind == "adaptive" and a is not None
    assert a.target == {"ask": "loss", "N": 2e6, "D": 2e7}
    assert (a.law, a.budget_flops, a.round_size, len(a.sizes)) == ("chinchilla", 1e12, 2, 4)
    assert a.tokens == (4096, 8192, 16384, 32768, 65536)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("lr = 3e-3\n", ""), r"spec.fixed.lr: an adaptive design needs"),
        (("budget_flops = 1e12", "budget_flops = 1e12\nbudget_hours = 1"), r"give one \(both"),
        (("budget_flops = 1e12", ""), r"needs a budget"),
        (("budget_flops = 1e12", "budget_hours = 1e9"), r"budget_hours: at most 8760 hours"),
        (('target = { ask = "loss"', 'lr = "fixed"\ntarget = { ask = "lr"'), r"lr target scans"),
        (('law = "chinchilla"', 'law = "chinchilla"\nlr = "found"'), r"spec.design.lr: expected"),
        (('ask = "loss", N = 2e6, D = 2e7', 'ask = "optimal"'), r"target.compute: a optimal"),
        (('law = "chinchilla"', 'law = "kaplan"'), r"spec.design.law: expected one of"),
        (('law = "chinchilla"', 'law = "auto"'), r'"auto" is the average of every form'),
        (("round_size = 2", "round_size = 0"), r"round_size: must be between"),
        (("budget_flops = 1e12", "budget_flops = -1"), r"budget_flops: must be positive"),
        (("budget_flops = 1e12", "budget_hours = inf"), r"budget_hours: expected a finite"),
        (("[design]", "[axes]\nseed = [0, 1]\n[design]"), r"spec.axes.seed: an adaptive"),
        (("4096, 65536, 5", "4096, 65536, 2"), r"need at least 3 sizes and 3 token"),
        (("4096, 65536", "-1, 65536"), r"spec.design.candidates.tokens.logspace"),
    ],
)
def test_spec_errors_name_the_key(change: tuple[str, str], message: str) -> None:
    text = SPEC.format(budget="1e12")
    assert change[0] in text
    with pytest.raises(RunnerError, match=message):
        loads_spec(text.replace(*change))


def of_known(planner: AdaptivePlanner, known: set[int], value):  # type: ignore[no-untyped-def]
    """A per-run callable: value(i, candidates) for the candidates in `known`, else None."""
    index = {c: i for i, c in enumerate(planner.configs)}

    def of(config):  # type: ignore[no-untyped-def]
        i = index[config]
        return value(i, planner.candidates) if i in known else None

    return of


def synthetic_loss(planner: AdaptivePlanner, known: set[int]):  # type: ignore[no-untyped-def]
    """loss_of from a known law for the candidates in `known`, None for the others."""

    def loss(i, frame):  # type: ignore[no-untyped-def]
        noise = 1 + 0.003 * math.sin(7.0 * i)  # deterministic scatter
        return float(law_loss(frame.N[i] * 300, frame.D[i] * 300)[()] * noise)

    return of_known(planner, known, loss)


@pytest.mark.slow
def test_restart_mid_round_replans_the_same_runs() -> None:
    spec = loads_spec(SPEC.format(budget="1e12"))
    planner = AdaptivePlanner(spec)
    start = {g.index for g in planner.start()}
    assert len(start) == 12  # 3 smallest sizes x 4 fewest tokens
    rounds = planner.rounds(synthetic_loss(planner, start))
    assert len(rounds) == 2 and len(rounds[1].picks) == 2
    picked = rounds[1].picks
    # one run of round 1 recorded, then the coordinator is killed and started afresh
    fresh = AdaptivePlanner(spec)
    again = fresh.rounds(synthetic_loss(fresh, start | {picked[0]}))
    assert [r.picks for r in again] == [r.picks for r in rounds]
    assert fresh(synthetic_loss(fresh, start | {picked[0]})) == planner(
        synthetic_loss(planner, start)
    )
    # the whole round recorded: round 2 is planned from it, within the budget
    done = fresh.rounds(synthetic_loss(fresh, start | set(picked)))
    assert [r.picks for r in done[:2]] == [r.picks for r in rounds]
    spent = fresh.candidates.cost.iloc[[i for r in done for i in r.picks]].sum()
    assert spent <= 1e12


def test_a_law_state_survives_the_run_log_bit_for_bit(state: LawState, tmp_path: Path) -> None:
    with connect(tmp_path / "r.duckdb") as con:
        save_fit(con, "chinchilla", None, {"adaptive_sweep": "s"}, state.to_record())
        [(_, record)] = sweep_fits(con, "s")
    back = LawState.from_record(record)
    assert back.model.theta_.tobytes() == state.model.theta_.tobytes()
    assert back.kappa.tobytes() == state.kappa.tobytes()
    assert (back.sigma, back.scatter, back.form, back.calibrated) == (
        state.sigma, state.scatter, state.form, state.calibrated
    )  # fmt: skip


@pytest.mark.slow
def test_a_replay_plans_on_the_stored_fits_without_fitting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rounds' fits go to the run log; a fresh planner reads them back and plans the
    same rounds with the same widths, fitting nothing; a record it cannot read is refitted."""
    spec = loads_spec(SPEC.format(budget="1e12"))
    planner = AdaptivePlanner(spec)
    start = {g.index for g in planner.start()}
    first = planner.rounds(synthetic_loss(planner, start))
    picked = set(first[1].picks)
    rounds = planner.rounds(synthetic_loss(planner, start | picked))
    assert len(rounds) == 3
    assert planner.fits.unsaved == 2  # rounds 1 and 2 were planned on fits
    with connect(tmp_path / "r.duckdb") as con:
        planner.remember(con)
        assert planner.fits.unsaved == 0
        planner.remember(con)  # only what is new: nothing
        stored = sweep_fits(con, spec.name)
        assert sorted(s["n_runs"] for s, _ in stored) == [12, 14]
    with connect(tmp_path / "other.duckdb") as con:  # a record of another release
        save_fit(con, "chinchilla", None, stored[0][0], {"design": {}})
    fresh, unreadable = AdaptivePlanner(spec), AdaptivePlanner(spec)
    with connect(tmp_path / "r.duckdb", read_only=True) as con:
        fresh.recall(con)
    with connect(tmp_path / "other.duckdb", read_only=True) as con:
        unreadable.recall(con)

    def no_fit(*args: object) -> None:
        raise AssertionError("a stored round was fitted again")

    monkeypatch.setattr("scaling.sweeps.round_fits.fit_law", no_fit)
    again = fresh.rounds(synthetic_loss(fresh, start | picked))
    assert [r.picks for r in again] == [r.picks for r in rounds]
    for old, new in zip(rounds[1:], again[1:], strict=True):
        assert (new.plan.width_now, new.plan.estimate) == (old.plan.width_now, old.plan.estimate)
        assert new.plan.picks.width.tolist() == old.plan.picks.width.tolist()
    with pytest.raises(AssertionError, match="fitted again"):
        unreadable.rounds(synthetic_loss(unreadable, start | picked))


def synthetic_timing(planner: AdaptivePlanner, known: set[int]):  # type: ignore[no-untyped-def]
    """timing_of for the candidates in `known`: a FLOP rate of 2e9/s, 1.5 s of start-up."""

    def timing(i, frame):  # type: ignore[no-untyped-def]
        rate = 2e9 / (frame.cost[i] / frame.D[i])  # tokens per second
        return Timing(wall_s=1.5 + frame.D[i] / rate, tokens_per_s=rate)

    return of_known(planner, known, timing)


@pytest.mark.slow
def test_a_budget_in_hours_costs_runs_by_their_seconds() -> None:
    spec = loads_spec(SPEC.format(budget="1e12").replace("budget_flops = 1e12",
                                                         "budget_hours = 0.05"))  # fmt: skip
    planner = AdaptivePlanner(spec)
    assert planner.design.in_seconds and planner.budget == 180.0
    start = {g.index for g in planner.start()}
    assert len(start) == 12  # the whole start design: nothing is timed before it
    loss_of, timing_of = synthetic_loss(planner, start), synthetic_timing(planner, start)
    rounds = planner.rounds(loss_of, timing_of)
    assert len(rounds) == 2
    timings = [(i, timing_of(planner.configs[i])) for i in start]
    spent = planner.spent(timings)
    assert spent == pytest.approx(sum(1.5 + planner.candidates.D[i] * planner.candidates.cost[i]
                                      / planner.candidates.D[i] / 2e9 for i in start))  # fmt: skip
    # the costs are the measured rate's predicted seconds (evaluations and start-up in)
    c = planner.candidates
    expected = RUN_START_S + (c.D + EVAL_COST * c.eval_tokens) / (2e9 / (c.cost / c.D))
    np.testing.assert_allclose(planner.costs(timings), expected, rtol=1e-6)
    picks = rounds[1].plan.picks
    assert picks.cost.sum() <= 180.0 - spent
    np.testing.assert_allclose(picks.cost, expected.iloc[list(rounds[1].picks)], rtol=1e-6)
    # a restart with the same runs timed the same plans the same round
    again = AdaptivePlanner(spec).rounds(loss_of, timing_of)
    assert [r.picks for r in again] == [r.picks for r in rounds]
    # with the start design untimed (all failed), nothing more is planned
    assert len(planner.rounds(loss_of, lambda _: None)) == 1


@pytest.mark.slow
def test_budget_that_buys_no_run_is_one_line_exit_2(tmp_path: Path) -> None:
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC.format(budget="1e3"))
    for command in ("suggest", "run"):
        result = run_cli("sweep", command, str(spec), "--db", str(tmp_path / "r.duckdb"))
        assert result.returncode == 2, result.stdout + result.stderr
        out = (result.stdout + result.stderr).strip()
        assert "budget_flops: 1e+03 FLOPs cannot buy one run" in out
        assert len(out.splitlines()) == 1 and "Traceback" not in out
    assert not (tmp_path / "r.duckdb").exists()
    spec.write_text(SPEC.format(budget="1e12").replace("budget_flops = 1e12",
                                                        "budget_hours = 0.001"))  # fmt: skip
    result = run_cli("sweep", "suggest", str(spec), "--db", str(tmp_path / "r.duckdb"))
    out = (result.stdout + result.stderr).strip()
    assert result.returncode == 2 and "budget_hours: 3.6 s cannot buy one run" in out
    assert len(out.splitlines()) == 1


@pytest.mark.slow
def test_suggest_prints_the_start_round(tmp_path: Path) -> None:
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC.format(budget="1e12"))
    result = run_cli("sweep", "suggest", str(spec), "--db", str(tmp_path / "r.duckdb"))
    assert result.returncode == 0, result.stderr
    assert "round 0" in result.stdout and "start design" in result.stdout
    rows = [line.split() for line in result.stdout.splitlines()]
    assert sum(row[-2:] == ["planned", "-"] for row in rows) == 12  # a row per run of round 0
    shown = run_cli("sweep", "suggest", str(spec), "--db", str(tmp_path / "r.duckdb"), "--json")
    suggested = json.loads(shown.stdout)
    assert suggested["round"] == 0 and len(suggested["runs"]) == 12
    assert suggested["unit"] == "FLOPs" and suggested["budget"] == 1e12


@pytest.mark.slow
def test_live_sweep_in_hours_replays_the_same_runs_from_the_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Real runs: round 0 timed, later rounds costed in seconds; a second `sweep run` reads
    the timings and the rounds' fits back from DuckDB, plans the same runs and trains none.
    The first run's closing summary keeps the fit on all the runs, so `suggest` fits nothing."""
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC.format(budget="1e12").replace("budget_flops = 1e12",
                                                       "budget_hours = 0.015"))  # fmt: skip
    db = str(tmp_path / "r.duckdb")
    first = run_cli("sweep", "run", str(spec), "--db", db, "--workers", "2", "--threads", "1")
    assert first.returncode == 0, first.stdout + first.stderr
    shown = run_cli("sweep", "suggest", str(spec), "--db", db)
    assert shown.returncode == 0, shown.stderr
    assert "hours spent before this round (measured)" in shown.stdout
    history = [line.split() for line in shown.stdout.splitlines()]
    rounds = [row for row in history if len(row) == 5 and row[0].isdigit() and len(row[0]) < 3]
    assert len(rounds) >= 2 and rounds[0][1] == "12"  # the start design, then adaptive picks
    again = run_cli("sweep", "run", str(spec), "--db", db, "--workers", "2")
    assert again.returncode == 0 and "trained 0 run(s)" in again.stdout, again.stdout
    # every adaptive round's fit, and the closing one on all the runs, is in the log once
    # (the replays read them, adding none)
    with connect(db, read_only=True) as con:
        fitted_on = sorted(int(s["n_runs"]) for s, _ in sweep_fits(con, "adapt"))
    sizes = np.cumsum([int(row[1]) for row in rounds])
    assert fitted_on == sizes.tolist()

    def no_fit(*args: object) -> None:
        raise AssertionError("a stored fit was fitted again")

    monkeypatch.setattr("scaling.sweeps.round_fits.fit_law", no_fit)
    closing = suggest(loads_spec(spec.read_text()), db)
    assert closing.width_now is not None
    assert f"all {sizes[-1]} runs: {100 * closing.width_now:.2f}%" in " ".join(shown.stdout.split())


def test_sweep_run_and_suggest_read_a_runs_outcome_by_one_rule() -> None:
    """Both read runs through store.sweeps.planned_loss. `suggest` had passed a done row's NaN
    loss (an import can write one) to the planner, whose min over an LR scan is then NaN: it
    showed a different next round from the one `sweep run` trains."""
    assert planned_loss(None) is None
    assert planned_loss(("running", None)) is None and planned_loss(("pending", 2.0)) is None
    assert planned_loss(("done", 2.5)) == 2.5
    for outcome in (("done", math.nan), ("done", None), ("done", math.inf), ("diverged", 3.0),
                    ("failed", None)):  # fmt: skip
        assert planned_loss(outcome) == math.inf, outcome


@pytest.mark.slow
def test_a_sweep_whose_start_round_all_diverged_shows_its_runs_and_why_it_cannot_go_on(
    tmp_path: Path,
) -> None:
    """`sweep status SPEC` had printed only the planner's error, without the table of runs that
    shows why; `sweep suggest` says it in one line, naming no --force it does not have."""
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC.format(budget="1e12"))
    db = tmp_path / "r.duckdb"
    with connect(db) as con:
        columns = {name for (name, *_) in con.execute("DESCRIBE runs").fetchall()}
        for config in AdaptivePlanner(loads_spec(spec.read_text()))(lambda config: None):
            record = {k: v for k, v in row(config).items() if k in columns}
            record.update(status="diverged", sweep="adapt", config=json.dumps(record["config"]))
            names = ", ".join(record)
            marks = ", ".join("?" * len(record))
            con.execute(f"INSERT INTO runs ({names}) VALUES ({marks})", list(record.values()))
    why = "cannot fit the law: no run of the sweep finished with a loss"
    status = run_cli("sweep", "status", str(spec), "--db", str(db))
    assert status.returncode == 0, status.stderr
    assert "adapt" in status.stdout and why in " ".join(status.stdout.split())
    assert " 12 " in status.stdout  # the start round's 12 runs, all diverged
    shown = run_cli("sweep", "suggest", str(spec), "--db", str(db))
    assert shown.returncode == 2 and why in shown.stderr and len(shown.stderr.splitlines()) == 1
