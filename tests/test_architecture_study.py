"""The architecture study's plumbing: a real sweep exported to Parquet and restored into a
fresh run log trains nothing twice; generated specs parse; throughput of all four archs."""

from __future__ import annotations

import tomllib
from pathlib import Path

import duckdb
import numpy as np
import pytest

from fits.throughput import ThroughputModel
from runners.sweeps.spec import load_spec, loads_spec
from scaling.experiments import architecture as study
from store import archive
from store.schema import RUN_COLUMNS
from tests.conftest import REPO, run_cli

SPECS = REPO / "benchmarks" / "experiments"  # the study's templates (data, not code)

TINY = """
name = "arch-tiny"
[fixed]
seq_len = 64
batch_size = 8
tokens = 2_048
eval_tokens = 1_024
lr = 3e-3
[axes]
arch = ["llama", "tnl", "hgrn2", "cosformer2"]
size = ["5xs", "4xs", "3xs"]
"""


def table(db: Path, sql: str) -> list[tuple]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """12 tiny real runs (four archs x three sizes) through the driver's sweep + export."""
    tmp = tmp_path_factory.mktemp("arch")
    paths = {
        "spec": tmp / "tiny.toml", "db": tmp / "first.duckdb",
        "runs": tmp / "runs.parquet", "curves": tmp / "curves.parquet",
    }  # fmt: skip
    paths["spec"].write_text(TINY)
    finished = study.sweep(
        paths["spec"], paths["db"], study.Clock(None), 2, paths["runs"], paths["curves"]
    )
    assert finished
    return paths


@pytest.mark.slow
def test_export_holds_the_run_log_columns_and_curves(trained: dict[str, Path]) -> None:
    frame = duckdb.sql("SELECT * FROM read_parquet(?)", params=[str(trained["runs"])]).df()
    assert list(frame.columns) == [c for c in RUN_COLUMNS if c != "config"]
    assert len(frame) == 12 and set(frame.status) == {"done"}
    assert set(frame.arch) == {"llama", "tnl", "hgrn2", "cosformer2"}
    (n_curves,) = table(trained["db"], "SELECT count(*) FROM curves")[0]
    exported = duckdb.sql("SELECT count(*) FROM read_parquet(?)", params=[str(trained["curves"])])
    assert exported.fetchall()[0][0] == n_curves > 12


@pytest.mark.slow
def test_restore_round_trip_trains_nothing_twice(trained: dict[str, Path], tmp_path) -> None:
    fresh = tmp_path / "fresh.duckdb"

    def restore() -> int:
        return archive.restore(fresh, study.PREFIX, trained["runs"], trained["curves"])

    assert restore() == 12
    assert restore() == 0  # idempotent
    query = "SELECT run_id, status, final_val_loss, sweep FROM runs ORDER BY run_id"
    assert table(fresh, query) == table(trained["db"], query)
    curves = "SELECT run_id, step, tokens, train_loss, val_loss FROM curves ORDER BY run_id, step"
    assert table(fresh, curves) == table(trained["db"], curves)
    killed = "SELECT run_id FROM runs ORDER BY run_id LIMIT 1"  # as if killed mid-run here
    with duckdb.connect(str(fresh)) as con:
        con.execute(f"UPDATE runs SET status = 'running' WHERE run_id IN ({killed})")
        con.execute(f"DELETE FROM curves WHERE run_id IN ({killed}) AND step > 1")
    assert restore() == 1  # replaced, curve too
    assert table(fresh, query) == table(trained["db"], query)
    assert table(fresh, curves) == table(trained["db"], curves)
    result = run_cli("sweep", "run", str(trained["spec"]), "--db", str(fresh), "--workers", "2")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "trained 0 run(s)" in result.stdout and "12 of 12 finished" in result.stdout
    assert table(fresh, "SELECT count(*) FROM sweep_runs WHERE sweep = 'arch-tiny'") == [(12,)]
    assert study.finished(trained["spec"], fresh)  # so the driver skips it
    empty = tmp_path / "empty.duckdb"
    assert not study.finished(trained["spec"], empty)
    spent = study.Clock(0.0)  # a spent --time-budget starts nothing and reports it
    assert not study.sweep(trained["spec"], empty, spent, 2, tmp_path / "r.pq", tmp_path / "c.pq")
    assert not empty.exists() and not (tmp_path / "r.pq").exists()


@pytest.mark.slow
def test_throughput_model_fits_tiny_runs_of_all_four_archs(trained: dict[str, Path]) -> None:
    runs = duckdb.sql("SELECT * FROM read_parquet(?)", params=[str(trained["runs"])]).df()
    model = ThroughputModel().fit(runs)
    assert set(model.coef_) == {"llama", "tnl", "hgrn2", "cosformer2"}
    assert all(v >= 0 for coef in model.coef_.values() for v in coef.values())
    assert model.coef_["tnl"]["attention"] == 0.0  # no attention term for a linear mixer
    # Timings of runs trained beside the other test worker: one run slowed 4x by that load
    # once broke a bound on every run (6 December 2026), so the fit is judged by its median.
    ratio = model.tokens_per_s(runs) / runs.tokens_per_s
    assert np.all(np.isfinite(ratio)) and 1 / 2 < np.median(ratio) < 2


def test_isoflop_specs_follow_the_template_budgets_and_keep_their_lr(tmp_path: Path) -> None:
    """A budget added to the template extends the written specs; their LR is not refitted."""
    template = tomllib.loads((SPECS / "arch_isoflop_llama.toml").read_text())
    sizes = template["axes"]["size"]
    for i, size in enumerate(sizes):  # as first written, at the two smallest budgets only
        budgets = study.budget_list(template)[:2]
        text = study.spec_text(template, {"size": [size]}, 0.001 * (i + 1), "t", budgets)
        (tmp_path / f"isoflop_llama_{size}.toml").write_text(text)
    no_log = tmp_path / "no.duckdb"  # no log: no law is fitted
    paths = study.isoflop_specs(no_log, "llama", SPECS, tmp_path)
    all_budgets = study.budget_list(template)
    assert len(all_budgets) >= 5 and all_budgets[-1] / all_budgets[0] >= 100  # two decades
    for i, (size, path) in enumerate(zip(sizes, paths, strict=True)):
        spec = load_spec(path)
        assert spec.fixed["lr"] == pytest.approx(0.001 * (i + 1))
        first, last = study.RUNG_BUDGETS[size]
        assert spec.design.budgets == pytest.approx(all_budgets[first : last + 1], rel=1e-3)
        assert [s.name for s in spec.axes["size"]] == [size]
    per_budget = [sum(first <= b <= last for first, last in study.RUNG_BUDGETS.values())
                  for b in range(len(all_budgets))]  # fmt: skip
    assert min(per_budget) >= 6  # room for two rungs either side of an inner minimum


def test_generated_isoflop_spec_keeps_the_template_with_the_law_lr() -> None:
    for arch in study.ARCHS:
        path = SPECS / f"arch_isoflop_{arch}.toml"
        template, parsed = tomllib.loads(path.read_text()), load_spec(path)
        assert parsed.design.kind == "isoflop" and len(parsed.design.budgets) >= 3
        assert max(parsed.design.budgets) / min(parsed.design.budgets) >= 10
        assert len(parsed.axes["size"]) >= 5
        text = study.spec_text(template, {"size": ["3xs"]}, 0.00421, "test")
        generated = loads_spec(text)
        assert generated.name == parsed.name and generated.fixed["lr"] == 0.00421
        assert generated.design.budgets == pytest.approx(parsed.design.budgets, rel=1e-3)
        assert [s.name for s in generated.axes["size"]] == ["3xs"]
        scan = loads_spec(
            study.spec_text(template, {"size": ["3xs"], "lr": [1e-3, 4e-3]}, None, "t")
        )
        assert "lr" not in scan.fixed and list(scan.axes["lr"]) == [1e-3, 4e-3]  # lrmin's
        lr_scan = load_spec(SPECS / f"arch_lr_{arch}.toml")
        assert lr_scan.design.kind == "lr_scan" and lr_scan.design.refine
        assert len(lr_scan.axes["size"]) >= 2
