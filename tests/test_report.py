"""Report figures are checked by the data they were drawn from, not by pixels."""

import math

import numpy as np
import pandas as pd
import pytest

from scaling.errors import ScalingError
from scaling.report import write_report
from scaling.study import Study


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    rng = np.random.default_rng(0)
    truth = {"E": 1.7, "A": 400.0, "B": 900.0, "alpha": 0.34, "beta": 0.3}
    rows = []
    for C in np.geomspace(1e17, 1e20, 5):
        for N in np.geomspace(1e7, 1e9, 6):
            D = C / (6 * N)
            loss = truth["E"] + truth["A"] / N ** truth["alpha"] + truth["B"] / D ** truth["beta"]
            loss *= math.exp(rng.normal(0, 0.003))  # run-to-run scatter of the group
            for k in (-2, -1, 0, 1, 2):  # an LR scan around lr* = 0.2 N^-0.25
                lr = 0.2 * N**-0.25 * 2.0**k
                rows.append(
                    {
                        "arch": "llama",
                        "N": N,
                        "D": D,
                        "C": C,
                        "lr": lr,
                        "batch_size": 32,
                        "seq_len": 256,
                        "loss": loss + 0.03 * k * k + rng.normal(0, 1e-4),
                    }
                )
    frame = pd.DataFrame(rows)
    study = Study.from_frame(frame, n_bootstrap=100)
    return write_report(study, tmp_path_factory.mktemp("report"), arch="llama"), frame


def test_every_figure_is_written_with_its_data(report):
    result, _ = report
    assert set(result.figures) == {"frontier", "isoflop", "lr", "lr_law", "residuals", "backtest"}
    for figure in result.figures.values():
        assert figure.png.stat().st_size > 5_000
        assert pd.read_csv(figure.csv).shape == figure.data.shape
    page = result.index.read_text()
    assert all(f"{name}.png" in page for name in result.figures)
    assert "chinchilla" in page and "alpha" in page
    assert not result.skipped


def test_frontier_figure_shows_every_run_and_a_band(report):
    result, frame = report
    data = result.figures["frontier"].data
    runs = data[data.kind == "run"]
    assert sorted(runs.loss) == pytest.approx(sorted(frame.loss))
    line = data[data.kind == "frontier"]
    assert (line.lo <= line.loss).all() and (line.loss <= line.hi).all()
    assert line.C.min() < frame.C.min() and line.C.max() > frame.C.max()


def test_lr_figures_use_the_scans_and_the_fitted_optima(report):
    result, frame = report
    assert len(result.figures["lr"].data) == len(frame)
    optima = result.figures["lr_law"].data
    assert len(optima) == frame.groupby(["N", "D"]).ngroups
    expected = 0.2 * optima.N**-0.25
    assert np.allclose(np.log(optima.lr_opt), np.log(expected), atol=0.1)


def test_isoflop_and_backtest_figures(report):
    result, frame = report
    iso = result.figures["isoflop"].data
    assert len(iso[iso.budget.notna()]) == len(frame)
    assert iso.N_opt.notna().sum() >= 3
    backtest = result.figures["backtest"].data
    assert len(backtest) == round(0.25 * len(frame))
    assert backtest.C.min() >= np.quantile(frame.C, 0.5)


def test_missing_data_is_explained_not_drawn(tmp_path):
    frame = pd.DataFrame(
        {
            "N": [1e6, 2e6, 4e6, 8e6, 1e6, 2e6, 4e6, 8e6],
            "D": [1e8] * 4 + [4e8] * 4,
            "loss": [3.2, 3.0, 2.9, 2.85, 3.0, 2.8, 2.7, 2.6],
        }
    )
    result = write_report(Study.from_frame(frame, n_bootstrap=50), tmp_path)
    assert "frontier" in result.figures
    assert "lr" in result.skipped and "lr" in result.skipped["lr"]
    assert "Not drawn" in result.index.read_text()


def test_a_small_log_lists_the_figures_it_cannot_draw(tmp_path):
    """Nine runs, one LR: the backtest's intervals miss its estimates, the isoflop and LR laws
    cannot be fitted. Before, matplotlib's ValueError ended the report with a traceback."""
    rows = [
        {"arch": "llama", "N": N, "D": D, "C": 6 * N * D, "lr": 3e-3, "batch_size": 16,
         "seq_len": 128, "loss": 2.0 + 50 / N**0.3 + 80 / D**0.3}
        for N in (1e5, 2e5, 4e5)
        for D in (5e5, 1e6, 2e6)
    ]  # fmt: skip
    result = write_report(Study.from_frame(pd.DataFrame(rows), n_bootstrap=20), tmp_path, "llama")
    assert {"frontier", "residuals", "backtest"} <= set(result.figures)
    assert {"isoflop", "lr_law"} <= set(result.skipped)
    assert "3 compute budgets" in result.skipped["isoflop"]
    assert set(result.figures).isdisjoint(result.skipped)
    page = result.index.read_text()
    assert "Not drawn" in page and "lr_law" in page


def test_a_figure_with_nothing_positive_on_its_log_axis_is_skipped_with_the_reason():
    from scaling.report import _drawable

    frame = pd.DataFrame({"C": [0.0, -1.0, np.nan], "loss": [2.0, 2.0, 2.0]})
    with pytest.raises(ScalingError, match="no runs with finite, positive C to draw"):
        _drawable(frame, ["C"], "runs")
    assert list(_drawable(frame.assign(C=[0.0, 5.0, np.inf]), ["C"], "runs").index) == [1]
