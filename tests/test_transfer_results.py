"""The committed hyperparameter-transfer runs (benchmarks/transfer_experiments.py), refitted.

Real training runs exported to Parquet; these tests refit them with our estimators and check
the claims the README makes about them.
"""

import duckdb
import numpy as np
import pandas as pd
import pytest

from fits import FitError, PowerLaw, optimal_lr
from tests.conftest import REPO

RUNS = REPO / "benchmarks" / "data" / "transfer_runs.parquet"
WIDTHS = [32, 64, 128, 256]


@pytest.fixture(scope="module")
def runs() -> pd.DataFrame:
    frame = duckdb.sql("SELECT * FROM read_parquet(?)", params=[str(RUNS)]).df()  # no pyarrow
    return frame.assign(loss=frame.final_val_loss)[frame.n_layers == 2]


@pytest.fixture(scope="module")
def width_optima(runs) -> pd.DataFrame:
    data = runs[(runs.tokens == 499_968) & runs.d_model.isin(WIDTHS)]
    optima = optimal_lr(data, ("parametrization", "d_model"))
    assert optima.bracketed.all() and len(optima) == 8
    return optima.set_index(["parametrization", "d_model"])


def test_muP_keeps_the_optimal_lr_across_8x_width_and_sp_does_not(width_optima):
    mup = width_optima.loc["mup"].lr_opt
    sp = width_optima.loc["sp"].lr_opt
    assert mup.max() / mup.min() < 2.0
    assert sp.is_monotonic_decreasing and sp.max() / sp.min() > 4.0
    slope = np.polyfit(np.log(WIDTHS), np.log(sp.loc[WIDTHS]), 1)[0]
    assert -1.3 < slope < -0.7  # SP's optimum falls about as 1 / width


def test_under_muP_wider_is_better_at_the_transferred_lr(width_optima):
    assert width_optima.loc["mup"].loss_opt.loc[WIDTHS].is_monotonic_decreasing


def test_smaller_models_want_larger_lrs_at_every_horizon(runs):
    data = runs[(runs.parametrization == "sp") & runs.d_model.isin([64, 128])]
    data = data[data.tokens <= 1_000_000]  # both sizes were scanned up to 1M tokens
    optima = optimal_lr(data, ("d_model", "tokens")).pivot(
        index="tokens", columns="d_model", values="lr_opt"
    )
    assert len(optima) == 4 and (optima[64] > 1.3 * optima[128]).all()


def test_muP_width_ladder_predicts_the_held_out_width_within_5_percent(runs):
    ladder = runs[(runs.parametrization == "mup") & np.isclose(runs.lr, 0.008)]
    ladder = ladder[ladder.tokens == 499_968].sort_values("d_model")
    assert list(ladder.d_model) == [32, 48, 64, 96, 128, 192, 256, 384]
    x, y = ladder.params.to_numpy() / 1e6, ladder.loss.to_numpy()
    with pytest.raises(FitError, match="does not fall as a power"):  # E free: A, alpha < 0
        PowerLaw().fit(x[:-1], y[:-1])
    law = PowerLaw(E=0).fit(x[:-1], y[:-1])
    error = law.predict(x[-1:])[0] / y[-1] - 1
    assert abs(error) < 0.05
    assert (np.diff(law.predict(x)) < 0).all()  # the fitted law falls with width


def test_the_optimum_rises_with_horizon_only_with_a_warmup_that_grows_too(runs):
    """5% warmup: the d=64 optimum at 4M tokens is well above the one at 500k; with the
    12 warmup steps of the 500k run it is back within 1.5x of it."""
    d64 = runs[(runs.parametrization == "sp") & (runs.d_model == 64)]
    fixed = d64.sweep == "transfer-horizon-warmup"
    scaled = optimal_lr(d64[~fixed], ("tokens",)).set_index("tokens").lr_opt
    short = optimal_lr(d64[fixed], ("tokens",)).set_index("tokens").lr_opt
    assert scaled.loc[4_000_000] > 2 * scaled.loc[499_968]
    assert 1 / 1.5 < short.loc[4_000_000] / scaled.loc[499_968] < 1.5
