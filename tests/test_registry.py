"""The law registry (scaling.laws): every law's options, the CLI's routing of them, the LR-law
form `auto` picks, and answers that say which interval they carry."""

import numpy as np
import pandas as pd
import pytest

from fits.hparams import LR_FORMS, lr_law
from scaling.errors import ScalingError
from scaling.laws import BACKTESTED, LAWS, LOSS_FORMS, OPTIONS, REGISTRY, get
from scaling.study import Study
from tests.conftest import run_cli


def test_every_law_has_a_fitter_and_takes_only_known_options():
    assert LAWS[0] == "auto" and set(LOSS_FORMS) < set(LAWS)
    for law in REGISTRY.values():
        assert callable(law.fit) and set(law.options) <= set(OPTIONS), law.name
        assert (law.backtest is None) == (law.name not in BACKTESTED)
        assert law.backtest is None or law.predict is not None, law.name


def test_options_a_law_does_not_take_are_refused_unless_left_at_their_default():
    cli = {name: option.default for name, option in OPTIONS.items()}
    assert get("power").options_from(cli) == {"x": "C"}  # E is None: not passed
    assert get("lr-law").options_from(cli) == {"form": "auto", "method": "vertex"}
    assert get("chinchilla").options_from(cli) == {}
    assert get("isoflop").options_from({**cli, "n_neighbors": 2}) == {"n_neighbors": 2}
    with pytest.raises(ScalingError, match="--n-neighbors applies to isoflop fits, not kaplan"):
        get("kaplan").options_from({**cli, "n_neighbors": 2})
    with pytest.raises(ScalingError, match="--method applies to lr-law fits, not bs-law"):
        get("bs-law").options_from({**cli, "method": "near-optimal"})
    with pytest.raises(ScalingError, match="unknown law 'step'"):
        get("step")


@pytest.mark.parametrize(
    ("ns", "ds", "form"),
    [((1e6, 2e6, 4e6), (1e8, 3e8, 1e9), "step"), ((1e6, 2e6, 4e6), (1e8,) * 3, "porian"),
     ((1e6,) * 3, (1e8, 3e8, 1e9), "bjorck"), ((1e6,) * 3, (1e8,) * 3, "bjorck")],
)  # fmt: skip
def test_auto_lr_law_is_the_form_over_the_variables_that_vary(ns, ds, form):
    points = pd.DataFrame({"N": ns, "D": ds})
    assert lr_law(points).variables == LR_FORMS[form]().variables


def lr_scans(a: float = 0.3, alpha: float = -0.3, beta: float = -0.1) -> pd.DataFrame:
    """LR scans of 2 sizes x 2 horizons whose loss is a parabola in log LR about
    lr* = a N^alpha D^beta (times a fixed wiggle, so the law has scatter)."""
    rows = []
    for i, (n, d) in enumerate([(1e6, 1e8), (1e6, 4e8), (4e6, 1e8), (4e6, 4e8), (2e6, 2e8)]):
        best = a * n**alpha * d**beta * (1.0 + 0.05 * (-1) ** i)
        for lr in best * np.geomspace(0.125, 8.0, 7):
            loss = 3.0 + 0.1 * np.log(lr / best) ** 2
            rows.append({"N": n, "D": d, "lr": lr, "loss": loss, "batch_size": 32,
                         "seq_len": 128, "flops": 6 * n * d})  # fmt: skip
    return pd.DataFrame(rows)


def test_predict_lr_says_it_gives_a_prediction_interval(tmp_path):
    study = Study.from_frame(lr_scans())
    answer = study.optimal_lr(2e6, 2e8)
    assert answer.interval == "prediction" and "90% prediction interval" in str(answer)
    assert answer.lo < 0.3 * 2e6**-0.3 * 2e8**-0.1 < answer.hi
    assert answer.value == pytest.approx(0.3 * 2e6**-0.3 * 2e8**-0.1, rel=0.05)


def test_backtest_of_a_law_without_one_lists_those_with_one():
    study = Study.from_frame(lr_scans())
    with pytest.raises(ScalingError, match=r"backtest supports auto, .*, power, lr-law, bs-law"):
        study.backtest("isoflop")


@pytest.mark.slow
def test_cli_refuses_an_option_the_law_does_not_take(tmp_path):
    done = run_cli("fit", "chinchilla", "--form", "step", "--db", str(tmp_path / "x.duckdb"))
    assert done.returncode == 2 and "--form applies to lr-law fits, not chinchilla" in done.stderr
