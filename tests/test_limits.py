"""Settings beyond what the run log holds or any sane model needs are one red line, exit 2.

Before these limits, `scaling run --tokens 1e30` trained and then crashed in DuckDB,
`--n-layers 1000000` ran until killed, and `sweep plan` accepted what `sweep run` crashed on.
"""

from __future__ import annotations

import pytest

from runners.config import UPPER, ModelConfig, RunConfig, TrainConfig
from runners.errors import RunnerError
from runners.sweeps.designs import initial_configs
from runners.sweeps.spec import loads_spec
from tests.conftest import call_cli


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tokens", "1e30"], "tokens must be at most 1,000,000,000,000,000, got"),
        (["--d-model", "1000000000", "--n-heads", "1"], "d-model must be at most 65,536 (a sanity"),
        (["--n-layers", "1000000"], "n-layers must be at most 1,024 (a sanity limit)"),
        (["--seq-len", "10000000"], "seq-len must be at most 1,048,576"),
        (["--batch-size", "100000000"], "batch-size must be at most 1,048,576"),
        (["--seed", "100000000000"], "seed must be at most 2,147,483,647"),
        (["--warmup", "-1"], "warmup must be >= 0"),
        (["--lr", "1e400"], "too large for a number"),
        (["--eval-tokens", "1e20"], "eval-tokens must be at most"),
    ],
)
def test_run_refuses_out_of_range_settings_before_training(tmp_path, capsys, args, message):
    db = tmp_path / "x.duckdb"
    code, out, err = call_cli(["run", *args, "--db", str(db)], capsys)
    assert code == 2, out + err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not db.exists()  # refused before the run log was touched


def test_the_limits_hold_what_the_run_log_columns_hold():
    # the largest allowed model and horizon still fit BIGINT params/tokens and INTEGER columns
    from runners.accounting import count

    biggest = ModelConfig(d_model=UPPER["d_model"], n_layers=UPPER["n_layers"], n_heads=64)
    assert count(biggest).params < 2**63
    assert UPPER["tokens"] < 2**63
    assert max(UPPER[k] for k in ("d_model", "n_layers", "seq_len", "batch_size", "seed")) < 2**31
    config = RunConfig(biggest, TrainConfig(tokens=UPPER["tokens"]))
    assert config.validate() is config


SPEC = """
name = "big"
[fixed]
seq_len = 32
batch_size = 8
{fixed}
[axes]
size = [{{ d_model = {d_model}, n_layers = 1, n_heads = 2 }}]
{axes}
"""


@pytest.mark.parametrize(
    ("fixed", "d_model", "axes", "message"),
    [
        ("", 1_000_000_000, "", r"spec\.axes\.size\[0\]\.d_model: must be at most 65,536"),
        ("", 32, "tokens = [1e30]", r"spec\.axes\.tokens: must be at most"),
        ("n_layers = 1000000", 32, "", r"spec\.fixed\.n_layers: the size axis sets the shape"),
        ("seed = 1e20", 32, "", r"spec\.fixed\.seed: must be at most 2,147,483,647"),
        ("eval_every = 0", 32, "", r"spec\.fixed\.eval_every: must be positive"),
    ],
)
def test_specs_refuse_what_a_run_could_not_hold(fixed, d_model, axes, message):
    text = SPEC.format(fixed=fixed, d_model=d_model, axes=axes)
    with pytest.raises(RunnerError, match=message):
        initial_configs(loads_spec(text))


def test_sweep_plan_refuses_a_width_sweep_run_would_crash_on(tmp_path, capsys):
    spec = tmp_path / "big.toml"
    spec.write_text(SPEC.format(fixed="", d_model=1_000_000_000, axes=""))
    code, _, err = call_cli(
        ["sweep", "plan", str(spec), "--db", str(tmp_path / "x.duckdb")], capsys
    )
    assert code == 2 and "must be at most 65,536 (a sanity limit)" in err
    assert len(err.strip().splitlines()) == 1


def test_spec_numbers_read_as_the_cli_reads_them():
    text = SPEC.format(
        fixed='eval_tokens = "4k"', d_model=32, axes='tokens = ["2M", 8192]\nlr = ["3e-3"]'
    )
    configs = initial_configs(loads_spec(text))
    assert sorted(c.train.tokens for c in configs) == [8192, 2_000_000]
    assert {c.train.lr for c in configs} == {3e-3} and configs[0].train.eval_tokens == 4000
    with pytest.raises(RunnerError, match=r"spec\.axes\.tokens: expected a whole number"):
        loads_spec(SPEC.format(fixed="", d_model=32, axes='tokens = ["lots"]'))
    with pytest.raises(RunnerError, match=r"spec\.axes\.tokens: expected a whole number"):
        loads_spec(SPEC.format(fixed="", d_model=32, axes='tokens = ["2.5"]'))


def test_a_setting_in_fixed_and_axes_names_both_tables(tmp_path, capsys):
    spec = tmp_path / "twice.toml"
    spec.write_text(SPEC.format(fixed="lr = 1e-3", d_model=32, axes="lr = [1e-3, 1e-2]"))
    code, _, err = call_cli(
        ["sweep", "plan", str(spec), "--db", str(tmp_path / "x.duckdb")], capsys
    )
    assert code == 2
    assert "spec.fixed.lr: also given under [axes]; set it in one place" in err
