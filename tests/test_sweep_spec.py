"""Sweep specs: a valid plan or one RunnerError naming the key, never a traceback."""

from __future__ import annotations

import math
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runners.config import RunConfig
from runners.errors import RunnerError
from runners.sweeps.designs import Planner, initial_configs
from runners.sweeps.spec import loads_spec, parse_spec

TINY = {"seq_len": 32, "batch_size": 8, "eval_tokens": 1024}
SIZE = {"d_model": 32, "n_layers": 1, "n_heads": 2}


def spec(**parts) -> dict:
    return {"name": "s", "fixed": dict(TINY), **parts}


def test_grid_crosses_the_axes_in_spec_order():
    configs = initial_configs(
        loads_spec(
            """
            name = "grid"
            [fixed]
            seq_len = 32
            batch_size = 8
            [axes]
            size = [{ d_model = 32, n_layers = 1, n_heads = 2 },
                    { d_model = 64, n_layers = 2, n_heads = 4 }]
            tokens = [4096, 8192]
            lr = { logspace = [1e-3, 1e-1, 3] }
            seed = 7
            """
        )
    )
    assert len(configs) == 2 * 2 * 3
    assert [c.model.d_model for c in configs[:6]] == [32] * 6
    assert [c.train.lr for c in configs[:3]] == pytest.approx([1e-3, 1e-2, 1e-1])
    assert configs[2].train.lr == 0.1  # logspace hits its ends exactly
    assert {c.train.seed for c in configs} == {7}
    assert all(c == c.resolved() for c in configs)


def test_duplicate_axis_values_plan_one_run():
    configs = initial_configs(parse_spec(spec(axes={"size": [SIZE], "lr": [1e-3, 1e-3]})))
    assert len(configs) == 1


def test_isoflop_spends_each_budget_with_exact_flops_per_token():
    from runners.accounting import count

    sizes = [SIZE, {"d_model": 64, "n_layers": 2, "n_heads": 4}]
    budgets = [1e9, 4e9]
    configs = initial_configs(
        parse_spec(spec(axes={"size": sizes}, design={"kind": "isoflop", "budgets": budgets}))
    )
    assert len(configs) == 4
    for config, budget in zip(configs, budgets * 2, strict=True):
        flops = count(config.model).flops_per_token * config.tokens
        # tokens are whole sequences: within one sequence of the budget
        assert abs(flops - budget) <= count(config.model).flops_per_token * config.model.seq_len


def test_named_sizes_come_from_the_arch_ladder_with_the_specs_model_settings():
    from runners.sizes import size_config

    configs = initial_configs(parse_spec(spec(axes={"arch": ["llama", "tnl"], "size": ["s"]})))
    assert [c.model for c in configs] == [
        size_config(arch, "s", seq_len=32) for arch in ("llama", "tnl")
    ]
    with pytest.raises(RunnerError, match=r"^spec\.axes\.size: 'huge' for arch llama: unknown"):
        initial_configs(parse_spec(spec(axes={"size": ["huge"]})))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (spec(axes={"lr": [-0.1]}), r"^spec\.axes\.lr: must be positive, got -0\.1$"),
        (spec(axes={"lr": []}), r"^spec\.axes\.lr: empty list"),
        (spec(axes={"lrs": [1e-3]}), r"^spec\.axes\.lrs: unknown key"),
        (spec(colour="red"), r"^spec\.colour: unknown key"),
        (spec(fixed={"seq_len": "long"}), r"^spec\.fixed\.seq_len: expected a whole number"),
        (spec(fixed={"batch_size": 2.5}), r"^spec\.fixed\.batch_size: expected a whole number"),
        (spec(axes={"arch": ["gpt"]}), r"^spec\.axes\.arch: expected one of llama"),
        ({"fixed": {}}, r"^spec\.name: give the sweep a non-empty name"),
        (spec(axes={"lr": {"logspace": [1e-3, 1e-1]}}), r"^spec\.axes\.lr\.logspace: expected"),
        (spec(axes={"size": [{"d_model": 30, "n_layers": 1, "n_heads": 4}]}), r"not divisible"),
        (spec(axes={"size": [{"d_model": 32}]}), r"^spec\.axes\.size\[0\]: missing n_layers"),
        (spec(axes={"tokens": [100]}), r"^spec\.axes\.tokens: .*less than one batch"),
        (
            spec(axes={"size": [SIZE]}, design={"kind": "isoflop", "budgets": [1e6]}),
            r"^spec\.design\.budgets: .*less than one batch",
        ),
        (spec(design={"kind": "isoflop"}), r"^spec\.design\.budgets: an isoflop design needs"),
        (spec(design={"kind": "lr_scan"}), r"^spec\.axes\.lr: an lr_scan design needs"),
        (spec(design={"kind": "grid", "refine": True}), r"^spec\.design\.refine: only an lr_scan"),
        (spec(design="random"), r"^spec\.design\.kind: expected one of grid"),
        (spec(axes={"lr": [1e-3]}, fixed={"lr": 1e-3}), r"^spec\.fixed\.lr: also given under"),
    ],
)
def test_malformed_specs_name_the_key(data, message):
    with pytest.raises(RunnerError, match=message):
        initial_configs(parse_spec(data))


def test_bad_toml_is_a_runner_error():
    with pytest.raises(RunnerError, match=r"^spec: not valid TOML"):
        loads_spec("name = \n")


# Hypothesis: anything TOML can express, near-valid or not, plans or raises RunnerError.
KEYS = ["name", "fixed", "axes", "design", "size", "lr", "tokens", "batch_size", "seed",
        "arch", "seq_len", "d_model", "n_layers", "n_heads", "kind", "budgets", "refine",
        "max_runs", "logspace", "warmup", "schedule", "precision", "x"]  # fmt: skip
scalars = st.one_of(
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.sampled_from(["llama", "tnl", "grid", "isoflop", "lr_scan", "cosine", "sp", "", "x"]),
    st.sampled_from([1e-3, 3e-2, 32, 64, 2, 1, 4096, 1e9, 1e12]),
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(KEYS), inner, max_size=4)
    ),
    max_leaves=12,
)


def _tables(keys: list[str]) -> st.SearchStrategy:
    return st.fixed_dictionaries({}, optional={k: values for k in keys})


near_valid = st.fixed_dictionaries(
    {"name": st.sampled_from(["s", "", 3])},
    optional={
        "fixed": _tables(["seq_len", "batch_size", "tokens", "lr", "arch", "warmup"]),
        "axes": _tables(["size", "lr", "tokens", "batch_size", "seed", "arch"]),
        "design": values,
    },
)


def logspace(lo: float, n: int) -> dict:
    return {"logspace": [lo, 10 * lo, n]}


shapes = [SIZE, {"d_model": 64, "n_layers": 2, "n_heads": 4}, {"d_model": 30, "n_layers": 1,
          "n_heads": 4}, "named", {"d_model": 32}]  # fmt: skip
plausible = st.fixed_dictionaries(
    {
        "name": st.just("s"),
        "fixed": st.just(TINY)
        | st.fixed_dictionaries({}, optional={"seq_len": st.integers(-1, 64), "lr": scalars}),
        "axes": st.fixed_dictionaries(
            {},
            optional={
                "size": st.lists(st.sampled_from(shapes), max_size=3),
                "lr": st.lists(st.floats(-0.1, 1.0) | scalars, max_size=3)
                | st.builds(logspace, st.floats(-1, 1), st.integers(0, 4)),
                "tokens": st.lists(st.integers(0, 20_000), max_size=3),
                "batch_size": st.lists(st.integers(-1, 16), max_size=2),
                "seed": st.lists(st.integers(-1, 3), max_size=2),
                "arch": st.lists(st.sampled_from(["llama", "tnl", "gpt"]), max_size=2),
            },
        ),
        "design": st.sampled_from(
            ["grid", {"kind": "lr_scan", "refine": True}, {"kind": "lr_scan", "max_runs": 2},
             {"kind": "isoflop", "budgets": [1e9]}, {"kind": "isoflop", "budgets": [1e5]},
             {"kind": "lr_scan", "refine": True, "max_runs": 1}, {"kind": "isoflop"}]
        ),
    }
)  # fmt: skip


def _plan_or_runner_error(data) -> None:
    try:
        configs = Planner(parse_spec(data))()
    except RunnerError as exc:
        assert str(exc).startswith("spec"), str(exc)
        return
    assert configs and all(isinstance(c, RunConfig) for c in configs)
    for c in configs:
        assert math.isfinite(c.train.lr) and c.tokens >= c.tokens_per_step


@pytest.mark.slow
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(values, near_valid, plausible))
def test_any_dict_plans_or_raises_runner_error(data):
    _plan_or_runner_error(data)


toml_text = st.lists(
    st.sampled_from(
        ['name = "s"', "[fixed]", "[axes]", "[design]", "seq_len = 32", "batch_size = 8",
         "tokens = [4096]", "lr = [1e-3, -1]", "lr = { logspace = [1e-3, 1e-1, 3] }",
         'size = [{ d_model = 32, n_layers = 1, n_heads = 2 }, "s"]', 'kind = "isoflop"',
         "budgets = [1e9]", "refine = true", "max_runs = 2", 'kind = "lr_scan"', "x = 1",
         "seed = [0, 1]", "d_model = 33", "n_heads = 0", "[[axes]]", "= 3", "tokens = 1e300"]
    )
    | st.text(string.printable, max_size=12),
    max_size=10,
).map("\n".join)  # fmt: skip


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(toml_text)
def test_any_toml_text_plans_or_raises_runner_error(text):
    try:
        configs = Planner(loads_spec(text))()
    except RunnerError as exc:
        assert str(exc).startswith("spec"), str(exc)
        return
    assert configs
