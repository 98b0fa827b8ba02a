"""Report figures are checked by the data they were drawn from, not by pixels."""

import math

import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg

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


@pytest.mark.slow
def test_every_figure_is_written_with_its_data(report):
    result, _ = report
    assert set(result.figures) == {"frontier", "isoflop", "lr", "lr_law", "residuals", "backtest"}
    for figure in result.figures.values():
        assert figure.png.stat().st_size > 5_000
        assert pd.read_csv(figure.csv).shape == figure.data.shape
    page = result.index.read_text()
    assert all(f"{name}.png" in page for name in result.figures)
    assert "chinchilla" in page and "alpha" in page
    assert "law forms: out-of-range error" in page  # the calibration and any caution with it
    assert "intervals widened per decade outside the runs" in page
    assert not result.skipped


@pytest.mark.slow
def test_frontier_figure_shows_every_run_and_a_band(report):
    result, frame = report
    data = result.figures["frontier"].data
    runs = data[data.kind == "run"]
    assert sorted(runs.loss) == pytest.approx(sorted(frame.loss))
    line = data[data.kind == "frontier"]
    assert (line.lo <= line.loss).all() and (line.loss <= line.hi).all()
    assert line.C.min() < frame.C.min() and line.C.max() > frame.C.max()


@pytest.mark.slow
def test_lr_figures_use_the_scans_and_the_fitted_optima(report):
    result, frame = report
    assert len(result.figures["lr"].data) == len(frame)
    optima = result.figures["lr_law"].data
    assert len(optima) == frame.groupby(["N", "D"]).ngroups
    expected = 0.2 * optima.N**-0.25
    assert np.allclose(np.log(optima.lr_opt), np.log(expected), atol=0.1)


@pytest.mark.slow
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
    with pytest.raises(ScalingError, match=r"no finished runs to report on \(arch=tnl\)$"):
        write_report(Study.from_frame(frame, n_bootstrap=50), tmp_path, arch="tnl")
    assert "lr" in result.skipped and "lr" in result.skipped["lr"]
    assert "Not drawn" in result.index.read_text()


def test_runs_of_no_architecture_beside_named_ones_get_their_own_frontier(tmp_path):
    """Imported runs (no arch) beside trained llama runs: their frontier was fitted on every
    run, llama's included, so it drew a law neither set follows."""
    grid = [(N, D) for N in (1e6, 2e6, 4e6, 8e6) for D in (1e8, 2e8, 4e8, 8e8)]

    def runs(arch, E):
        return [
            {"arch": arch, "N": N, "D": D, "loss": E + 60 / N**0.3 + 90 / D**0.3} for N, D in grid
        ]

    imported = pd.DataFrame(runs(None, 2.6))
    both = pd.concat([imported, pd.DataFrame(runs("llama", 1.8))], ignore_index=True)
    result = write_report(Study.from_frame(both, n_bootstrap=20), tmp_path)
    drawn = result.figures["frontier"].data
    line = drawn[(drawn.kind == "frontier") & (drawn.arch == "")]
    _, alone = Study.from_frame(imported, n_bootstrap=20).loss_law("chinchilla")
    assert np.allclose(line.loss, alone.frontier(line.C.to_numpy()), rtol=1e-6)
    assert (line.loss > 2.6).all()  # above the imported runs' floor, where a pooled fit is not


@pytest.mark.slow
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


def _kept_figures(monkeypatch) -> dict:
    """The matplotlib figures the report saves, by name, to inspect what was drawn."""
    import scaling.report as report

    drawn = {}
    save = report._save

    def keep(rep, name, caption, data, fig):
        drawn[name] = fig
        save(rep, name, caption, data, fig)

    monkeypatch.setattr(report, "_save", keep)
    return drawn


def _scan_rows(scans: dict[float, tuple[int, ...]], tokens: tuple[float, ...]) -> pd.DataFrame:
    """Runs of a known law; each size N is scanned at the LR steps scans[N] around 3e-3."""
    return pd.DataFrame(
        [
            {"arch": "llama", "N": N, "D": D, "C": 6 * N * D, "lr": 3e-3 * 2.0**k,
             "batch_size": 16, "seq_len": 128,
             "loss": 2.0 + 50 / N**0.3 + 80 / D**0.3 + 0.03 * k * k}
            for N, steps in scans.items()
            for D in tokens
            for k in steps
        ]
    )  # fmt: skip


@pytest.mark.slow
def test_the_lr_figure_marks_an_optimum_only_where_three_lrs_make_a_parabola(tmp_path, monkeypatch):
    drawn = _kept_figures(monkeypatch)
    frame = _scan_rows({1e5: (0,), 2e5: (0, 1), 4e5: (-2, -1, 0, 1, 2)}, (5e5, 1e6, 2e6))
    write_report(Study.from_frame(frame, n_bootstrap=20), tmp_path, "llama")
    (ax,) = drawn["lr"].axes
    dotted = [line for line in ax.lines if line.get_linestyle() == ":"]
    assert len(dotted) == 3  # one for each D of the fully scanned size, none for 1 or 2 LRs
    assert all(line.get_xdata()[0] == pytest.approx(3e-3, rel=0.05) for line in dotted)


@pytest.mark.slow
def test_residual_tick_labels_do_not_overlap_within_a_decade_of_compute(tmp_path, monkeypatch):
    drawn = _kept_figures(monkeypatch)
    frame = _scan_rows({N: (0,) for N in (1e5, 1.3e5, 1.7e5, 2.2e5)}, (1e6, 1.4e6, 2e6))
    assert frame.C.max() / frame.C.min() < 10
    write_report(Study.from_frame(frame, n_bootstrap=20), tmp_path, "llama")
    shown = _shown_x_labels(drawn["residuals"])
    assert shown  # the axis is labelled
    for i, a in enumerate(shown):
        assert not any(a.overlaps(b) for b in shown[i + 1 :])


@pytest.mark.parametrize("low, span", [(1.4e11, 1.5), (1.4e11, 2), (2.1e11, 20), (6.2e11, 1.5)])
def test_thinned_tick_labels_never_overlap_and_never_vanish(low, span):
    """Spans where matplotlib's own log labels collide (the first three) or where labelling
    majors only would leave none (inside one decade)."""
    import matplotlib.pyplot as plt

    from scaling.report import thin_tick_labels

    fig, ax = plt.subplots(figsize=(7, 4))
    ax.scatter(np.geomspace(low, low * span, 12), np.zeros(12))
    ax.set(xscale="log")
    fig.tight_layout()
    fig.canvas.draw()
    thin_tick_labels(ax)
    shown = _shown_x_labels(fig)
    plt.close(fig)
    assert shown
    for i, a in enumerate(shown):
        assert not any(a.overlaps(b) for b in shown[i + 1 :])


def _shown_x_labels(fig) -> list:
    """The window extents of the visible x tick labels inside the view, after a fresh draw."""
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    (ax,) = fig.axes
    low, high = sorted(ax.get_xlim())
    return [
        tick.label1.get_window_extent(renderer)
        for tick in [*ax.xaxis.get_major_ticks(), *ax.xaxis.get_minor_ticks()]
        if tick.label1.get_visible() and tick.label1.get_text() and low <= tick.get_loc() <= high
    ]
