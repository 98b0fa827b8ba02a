"""The committed architecture-study runs (benchmarks/architecture_study.py), refitted.

Real training runs exported to Parquet (benchmarks/data/architecture_runs.parquet); these
tests refit them with our estimators and check the claims the README's "Four architectures:
what we measured" makes about them.
"""

from __future__ import annotations

import importlib.util
import json

import duckdb
import numpy as np
import pandas as pd
import pytest

from fits import IsoFLOPFit
from fits.errors import FitError
from fits.throughput import backtest
from scaling.study import Study
from tests.conftest import REPO

_spec = importlib.util.spec_from_file_location(
    "architecture_study", REPO / "benchmarks" / "architecture_study.py"
)
study = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(study)

ARCHS = ("llama", "tnl", "hgrn2", "cosformer2")
pytestmark = [pytest.mark.golden, pytest.mark.slow]  # figures pinned to the committed runs


@pytest.fixture(scope="module")
def runs() -> pd.DataFrame:
    return duckdb.sql("SELECT * FROM read_parquet(?)", params=[str(study.RUNS)]).df()


@pytest.fixture(scope="module")
def isoflop(runs: pd.DataFrame) -> pd.DataFrame:
    iso = runs[runs.sweep.str.startswith("arch-isoflop-") & (runs.status == "done")]
    return iso.assign(budget=iso.flops.round(-10))


def test_every_arch_has_its_isoflop_grid(isoflop: pd.DataFrame) -> None:
    """4 budgets 2e11..6.3e12: 6xs..xs at the three smallest, 7xs at the two smallest, 5xs..xs
    at 6.3e12: 25 runs per arch, at least 5 sizes per budget."""
    for arch in ARCHS:
        data = isoflop[isoflop.arch == arch]
        assert len(data) == 25 and data.budget.nunique() == 4
        assert data.flops.max() / data.flops.min() == pytest.approx(31.6, rel=0.01)
        assert data.groupby("budget").params.nunique().min() >= 5


# N_opt exponent with its 90% interval, and L(C) through the minima, as the README states them
EXPONENTS = {
    "llama": ((0.761, 0.630, 0.892), (-0.1029, -0.1281, -0.0776)),
    "tnl": ((0.853, 0.346, 1.360), (-0.1114, -0.2746, 0.0518)),
    "hgrn2": ((0.952, -0.495, 2.399), (-0.0818, -0.2239, 0.0602)),
    "cosformer2": ((0.750, 0.428, 1.073), (-0.0989, -0.1755, -0.0222)),
}
SHEN_N_OPT = {"llama": 0.712, "tnl": 0.647, "hgrn2": 0.643, "cosformer2": 0.652}


def test_isoflop_exponents_from_the_three_bracketed_budgets(isoflop: pd.DataFrame) -> None:
    """At 2e11 every arch's best run is its smallest rung (an open minimum, left out); the
    other three budgets bracket theirs. The local parabolas (best size +-2) give the README's
    exponents, whose wide intervals (t on 1 degree of freedom) hold Shen et al.'s values; a
    parabola through all sizes opens downward at 6.3e11 for cosformer2."""
    for arch in ARCHS:
        data = isoflop[isoflop.arch == arch]
        for budget, group in data.groupby("budget"):
            best = group.loc[group.final_val_loss.idxmin(), "params"]
            inside = group.params.min() < best < group.params.max()
            assert inside == (budget > 3e11), (arch, budget)
        fit = IsoFLOPFit(neighbors=study.ISOFLOP_NEIGHBORS).fit(
            data.params, data.final_val_loss, C=data.flops
        )
        assert fit.budgets_.used.tolist() == [False, True, True, True]
        (a, lo, hi), (k, k_lo, k_hi) = EXPONENTS[arch]
        assert fit.params_["a"] == pytest.approx(a, abs=5e-4)
        assert fit.intervals_["a"] == pytest.approx((lo, hi), abs=5e-4)
        assert lo < SHEN_N_OPT[arch] < hi
        envelope = study.loss_envelope(fit)
        assert envelope.params_["k_C"] == pytest.approx(k, abs=5e-5)
        assert envelope.intervals_["k_C"] == pytest.approx((k_lo, k_hi), abs=5e-5)
    cos = isoflop[isoflop.arch == "cosformer2"]
    with pytest.raises(FitError, match="opens downward"):
        IsoFLOPFit().fit(cos.params, cos.final_val_loss, C=cos.flops)


def test_law_lr_is_near_optimal_at_the_largest_size(runs: pd.DataFrame) -> None:
    """At xs (no scan reaches it) the LR law's LR is the best of x0.5, x1, x2 for llama and
    cosformer2; tnl and hgrn2 prefer half of it, at a cost of at most 2.1%."""
    table = study.lr_checks(runs).set_index("arch")
    assert list(table.index) == list(ARCHS)
    penalty = table.penalty.str.rstrip("%").astype(float)
    assert (penalty <= 2.1).all()
    assert table.loc[["llama", "cosformer2"], "best"].tolist() == ["x1", "x1"]
    assert table.loc[["tnl", "hgrn2"], "best"].tolist() == ["x0.5", "x0.5"]


def test_throughput_model_backtests_within_a_fifth_at_the_median(runs: pd.DataFrame) -> None:
    """Median 13.3%; the worst held-out run, timed while the machine was shared, is off 104%."""
    measured = runs[(runs.status == "done") & (runs.tokens_per_s > 0)]
    error = backtest(measured).rel_error.abs()
    assert error.median() < 0.15 and error.max() < 1.1


@pytest.mark.slow
def test_crossovers_against_llama(isoflop: pd.DataFrame) -> None:
    """tnl and hgrn2 never pass llama in 2e10..6e16 FLOPs; cosformer2 does, with an interval
    spanning five decades and fewer than half of the bootstrap pairs crossing."""
    fitted = Study.from_frame(isoflop.drop(columns="budget"), n_bootstrap=200)
    lo, hi = isoflop.flops.min() / 10, isoflop.flops.max() * 1e4
    for arch in ("tnl", "hgrn2"):
        assert fitted.crossover(arch, "llama", (lo, hi)).C is None
    answer = fitted.crossover("cosformer2", "llama", (lo, hi))
    assert answer.C is not None and answer.better_below == "llama"
    assert answer.fraction_crossing < 0.5
    assert np.log10(answer.C.hi / answer.C.lo) > 4


def test_validation_runs_land_in_their_prediction_intervals(runs: pd.DataFrame) -> None:
    """Predicted before training (predictions.json): all four trained and inside their 90%
    intervals; llama, tnl and hgrn2 within 3.5% of the point, cosformer2 (7xs on 5.2 epochs)
    25% worse than predicted."""
    predictions = json.loads((study.GENERATED / "predictions.json").read_text())
    assert set(predictions) == set(ARCHS)
    table = study.report_validation(runs, predictions).set_index("arch")
    assert sorted(table.index) == sorted(ARCHS)
    assert table.held.all()
    assert (table.rel_error.drop("cosformer2").abs() < 0.035).all()
    assert table.rel_error["cosformer2"] == pytest.approx(-0.252, abs=0.001)
    trained = runs[runs.sweep == "arch-validate"].set_index("arch")
    for arch in table.index:  # the run trained is the one predicted: its N, its D
        assert trained.params[arch] == predictions[arch]["N"]
        assert trained.tokens[arch] == pytest.approx(predictions[arch]["D"], rel=1e-3)
