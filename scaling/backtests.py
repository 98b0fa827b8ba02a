"""Backtests: fit on all but the held-out runs, predict those, and score the predictions.

Which runs are held out is a pure function of the runs (`holdout`, `held_out_groups`); the fit
on the rest is restricted by run id, so no run id is ever quoted into SQL.
"""

from __future__ import annotations

from numbers import Real
from typing import Any

import numpy as np
import pandas as pd

from fits.hparam_backtest import largest_compute, score_groups
from fits.prediction import widened
from scaling.errors import ScalingError
from scaling.fitters import Predictor
from scaling.fitting import FitLog
from scaling.results import Backtest, HparamBacktest, covered

HOLDOUTS = ("top-compute", "top-params", "top-tokens", "random")
GROUP_KEYS = ["arch", "parametrization", "N", "D"]


def holdout(
    data: pd.DataFrame, how: str, fraction: float, seed: int = 0
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, test): the top `fraction` of runs by compute, params or tokens (ties in run
    order), or a random `fraction` of them, held out as the test."""
    if how not in HOLDOUTS:
        raise ScalingError(f"unknown holdout {how!r}: choose {', '.join(HOLDOUTS)}")
    _check_fraction(fraction)
    n_test = max(1, round(fraction * len(data)))
    if how == "random":
        order = np.random.default_rng(seed).permutation(len(data))
    else:
        column = {"top-compute": "C", "top-params": "N", "top-tokens": "D"}[how]
        order = np.argsort(data[column].to_numpy(), kind="stable")
    return data.iloc[order[:-n_test]], data.iloc[order[-n_test:]]


def held_out_groups(data: pd.DataFrame, fraction: float) -> tuple[pd.DataFrame, np.ndarray]:
    """The largest-compute (N, D) groups (by compute) and which runs belong to them."""
    _check_fraction(fraction)
    groups = data[GROUP_KEYS].drop_duplicates().reset_index(drop=True)
    held = groups[largest_compute(groups, fraction)]
    held = held.iloc[np.argsort((held.N * held.D).to_numpy(), kind="stable")]
    test = data.set_index(GROUP_KEYS).index.isin(held.set_index(GROUP_KEYS).index)
    if len(groups) - len(held) < 3:
        left = f"{len(groups) - len(held)} of {len(groups)} (N, D) groups left to fit on"
        raise ScalingError(f"{left}, need at least 3")
    return held, np.asarray(test)


def backtest_runs(
    fits: FitLog, law: str, predict: Predictor, arch: str | None, how: str, fraction: float,
    source: str | None, where: str | None, method: str | None = None, **options: Any,
) -> Backtest:  # fmt: skip
    """A loss law (or power law) scored on the runs it did not see, with its calibrated
    interval (calibrated inside the training runs only) and its own (lo_law, hi_law).
    `options` are the fit's (a power law's x and E)."""
    if how not in HOLDOUTS:  # before reading the runs, as the range of fraction
        raise ScalingError(f"unknown holdout {how!r}: choose {', '.join(HOLDOUTS)}")
    _check_fraction(fraction)
    data = fits.runs_of(law, arch, source, where)
    train, test = holdout(data, how, fraction, fits.settings.seed)
    fitted = fits.fit(law, arch, source, where, run_ids=list(train.run_id), **options)
    value, lo, hi = predict(fitted, test, fits.settings.level, fits.settings.seed)
    shown = ["run_id", "N", "D", "C", *(["d_model"] if options.get("x") == "width" else [])]
    frame = (
        test[shown]
        .assign(actual=test.loss.to_numpy(), predicted=value, lo=lo, hi=hi, lo_law=lo, hi_law=hi)
        .reset_index(drop=True)
    )
    level, seed = fits.settings.level, fits.settings.seed
    frame["lo"], frame["hi"] = widened(
        fitted.model, fitted.residuals, fitted.calibration, test, value, lo, hi, level, seed
    )
    if fitted.calibration is not None:
        frame["distance"] = fitted.calibration.distance(frame)
    frame["rel_error"] = (frame.predicted - frame.actual) / frame.actual
    frame["covered"] = covered(frame.lo, frame.hi, frame.actual)
    name = f"{law} of {options['x']}" if "x" in options else law  # which power law it scored
    return Backtest(name, how, fraction, fits.settings.level, len(train), frame, fitted.forms)


def backtest_groups(
    fits: FitLog, law: str, predict: Predictor, arch: str | None, how: str, fraction: float,
    source: str | None, where: str | None, method: str | None = None, *,
    methods: tuple[str, ...], x: str, across: str, quantity: str, option: str | None = None,
    **options: Any,
) -> HparamBacktest:  # fmt: skip
    """Fit an optimum's law (LR, batch size) without the largest-compute (N, D) groups and
    score it on them: `x` is the optimised variable, scanned `across` another; `methods` the
    data it can be fitted on (the first by default), passed as its fit option `option`;
    `options` are the fit's others (lr-law's form)."""
    if how != "top-compute":
        raise ScalingError(f"{law} backtests hold out the largest-compute groups only")
    _check_fraction(fraction)
    method = method or methods[0]
    if method not in methods:
        raise ScalingError(f"{law} is fitted on the {' or '.join(methods)} runs: --method "
                           f"{' or '.join(methods)}")  # fmt: skip
    data = fits.runs_of("lr", arch, source, where)
    try:
        held, test = held_out_groups(data, fraction)
    except ScalingError as exc:
        raise ScalingError(f"{law} backtest: {exc}") from exc
    if option:
        options[option] = method
    fitted = fits.fit(law, arch, source, where, run_ids=list(data.run_id[~test]), **options)
    level = fits.settings.level
    value, lo, hi = predict(fitted, held, level, fits.settings.seed)
    predicted = held.assign(predicted=value, lo=lo, hi=hi)
    frame = score_groups(data[test], predicted, GROUP_KEYS, x, across, name=quantity)
    n_train = len(data[GROUP_KEYS].drop_duplicates()) - len(held)
    formula = fitted.model.law_formula  # type: ignore[attr-defined]
    return HparamBacktest(law, method, formula, fraction, level, n_train, frame)


def _check_fraction(fraction: float) -> None:
    if not (isinstance(fraction, Real) and not isinstance(fraction, bool) and 0 < fraction < 1):
        raise ScalingError(f"holdout fraction must be between 0 and 1, got {fraction!r}")
