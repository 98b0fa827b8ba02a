"""lr_scan refinement as the coordinator drives it: plan, learn losses, plan again."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from runners.config import RunConfig
from runners.sweeps.designs import DEFAULT_EXTRA_RUNS, Planner, next_lr
from runners.sweeps.spec import parse_spec

SIZE = {"d_model": 32, "n_layers": 1, "n_heads": 2}


def scan(lrs, max_runs=None, tokens=(4096,)) -> Planner:
    design = {"kind": "lr_scan", "refine": True}
    if max_runs is not None:
        design["max_runs"] = max_runs
    return Planner(
        parse_spec(
            {
                "name": "scan",
                "fixed": {"seq_len": 32, "batch_size": 8},
                "axes": {"size": [SIZE], "tokens": list(tokens), "lr": lrs},
                "design": design,
            }
        )
    )


def drive(planner: Planner, loss: callable) -> list[RunConfig]:
    """What the coordinator does: run whatever the plan holds, until it stops growing."""
    seen: dict[RunConfig, float] = {}
    while True:
        plan = planner(seen.get)
        new = [c for c in plan if c not in seen]
        if not new:
            return plan
        for config in new:
            seen[config] = loss(config.train.lr)


def bracketed(configs: list[RunConfig], loss: callable) -> bool:
    lrs = sorted(c.train.lr for c in configs)
    best = min(lrs, key=loss)
    return lrs[0] < best < lrs[-1]


def test_next_lr_extends_toward_the_optimum_and_stops_when_bracketed():
    assert next_lr([1, 2, 4], [3.0, 2.0, 1.0], 2.0) == 8
    assert next_lr([1, 2, 4], [1.0, 2.0, 3.0], 2.0) == 0.5
    assert next_lr([1, 2, 4], [2.0, 1.0, 3.0], 2.0) is None
    # a diverged neighbour counts as worse; all diverged: go lower
    assert next_lr([1, 2, 4], [2.0, 1.0, math.inf], 2.0) is None
    assert next_lr([1, 2], [math.inf, math.inf], 2.0) == 0.5


def test_a_scan_below_the_optimum_climbs_until_bracketed():
    def loss(lr):
        return (math.log10(lr) + 2) ** 2  # optimum at 1e-2

    plan = drive(scan([1e-3, 2e-3]), loss)
    assert sorted(c.train.lr for c in plan) == [1e-3, 2e-3, 4e-3, 8e-3, 1.6e-2]
    assert bracketed(plan, loss)


def test_refinement_stops_at_the_run_limit():
    def loss(lr):
        return -lr  # no optimum: larger is always better

    assert len(drive(scan([1e-3, 2e-3]), loss)) == 2 + DEFAULT_EXTRA_RUNS
    assert len(drive(scan([1e-3, 2e-3], max_runs=3), loss)) == 3


def test_refinement_stops_before_a_step_past_what_a_float_can_hold():
    """A scan from 1e-8 to 1e299 whose best is its highest steps at its own spacing, 1e307 a
    step: it had planned inf four times over; one from 1e-300 to 1e-8 whose best is its lowest
    had planned 0 four times. Each now stops where the next LR would be no run's LR."""

    def rising(lr):
        return -math.log10(lr)

    high = drive(scan([1e-8, 1e299]), rising)
    assert sorted(c.train.lr for c in high) == [1e-8, 1e299]
    low = drive(scan([1e-300, 1e-8]), lambda lr: math.log10(lr))
    lrs = sorted(c.train.lr for c in low)
    assert all(lr > 0 and math.isfinite(lr) for lr in lrs) and len(set(lrs)) == len(lrs)


def test_each_group_refines_on_its_own():
    def loss(lr):
        return (math.log10(lr) + 2) ** 2

    plan = drive(scan([1e-3, 3e-3], tokens=(4096, 8192)), loss)
    for tokens in (4096, 8192):
        group = [c for c in plan if c.train.tokens == tokens]
        assert bracketed(group, loss)


@settings(max_examples=60, deadline=None)
@given(
    optimum=st.floats(-5, 0),
    start=st.floats(-5, 0),
    n=st.integers(1, 4),
    diverge_above=st.floats(-3, 1),
)
def test_refinement_terminates_bracketed_or_at_the_limit(optimum, start, n, diverge_above):
    def loss(lr):
        return math.inf if math.log10(lr) > diverge_above else (math.log10(lr) - optimum) ** 2

    lrs = [10 ** (start + 0.5 * i) for i in range(n)]
    plan = drive(scan(lrs), loss)
    assert len(plan) <= n + DEFAULT_EXTRA_RUNS
    finite = [c for c in plan if math.isfinite(loss(c.train.lr))]
    if len(plan) < n + DEFAULT_EXTRA_RUNS:
        assert finite and bracketed(plan, loss)
