"""The laws a Study fits, one registry entry each: which runs it is fitted on, the options it
takes (the CLI reads them from here), and its fitter, which calls fits/ and keeps what the
answers need beside the estimator (table, residuals, forms, calibration)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import pandas as pd

from fits import (
    LOSS_LAWS,
    EnvelopeFit,
    FitError,
    IsoFLOPFit,
    LossLaw,
    LROptima,
    PowerLaw,
    batch_size_law,
    bjorck_lr,
    near_optimal_runs,
    optimal_lr,
    porian_lr,
    step_law_lr,
)
from fits.extrapolation import assess
from scaling.errors import ScalingError
from scaling.results import FittedLaw
from scaling.runlog import RunLog

POWER_X = {"N": "N", "D": "D", "C": "C", "width": "d_model"}
LR_GROUP = ("arch", "parametrization", "N", "D", "batch_size")  # runs that differ only in LR
LOSS_FORMS = ("auto", *LOSS_LAWS)  # laws of loss in (N, D): selected and calibrated
CALIBRATION = "nested-backtest-v1"  # in the selection, so fits made before it are not reused
WITH_DIVERGED = ("done", "diverged")  # an LR scan's diverged runs bound its optimum


@dataclass(frozen=True)
class Context:
    """What a fitter needs besides the runs: the Study's settings and its run log."""

    settings: Any  # scaling.fitting.Settings: level, seed, n_jobs
    log: RunLog
    n_bootstrap: int
    force: bool


Fitter = Callable[[str, pd.DataFrame, dict[str, Any], Context, dict[str, Any]], FittedLaw]


def _fit_isoflop(law: str, data: pd.DataFrame, selection: dict[str, Any], ctx: Context,
                 options: dict[str, Any]) -> FittedLaw:  # fmt: skip
    neighbors = options.pop("neighbors", None)
    level = ctx.settings.level
    model = IsoFLOPFit(level=level, neighbors=neighbors).fit(data.N, data.loss, C=data.C)
    return FittedLaw(law, model, selection, table=model.budgets_)


def _fit_envelope(law: str, data: pd.DataFrame, selection: dict[str, Any], ctx: Context,
                  options: dict[str, Any]) -> FittedLaw:  # fmt: skip
    curves = ctx.log.curves(data.run_id)
    if curves.empty:
        raise ScalingError("no loss curves for these runs (imported runs have none)")
    per_token = (data.C / data.D).rename("flops_per_token")
    curves = curves.merge(data[["run_id", "N"]].join(per_token), on="run_id")
    curves["flops"] = curves.tokens * curves.flops_per_token
    model = EnvelopeFit(level=ctx.settings.level).fit(
        curves, N="N", tokens="tokens", loss="train_loss", flops="flops"
    )
    return FittedLaw(law, model, selection)


def _fit_power(law: str, data: pd.DataFrame, selection: dict[str, Any], ctx: Context,
               options: dict[str, Any]) -> FittedLaw:  # fmt: skip
    x_name = options.pop("x", "C")
    if x_name not in POWER_X:
        raise ScalingError(f"power law x must be one of {', '.join(POWER_X)}")
    x = data[POWER_X[x_name]]
    model = PowerLaw(
        E=options.pop("E", None), level=ctx.settings.level, n_bootstrap=ctx.n_bootstrap,
        random_state=ctx.settings.seed, force=ctx.force,
    ).fit(x, data.loss)  # fmt: skip
    with np.errstate(all="ignore"):
        residuals = np.log(data.loss) - np.log(model.predict(x))
    return FittedLaw(law, model, selection, residuals=residuals.to_numpy())


def _fit_lr(law: str, data: pd.DataFrame, selection: dict[str, Any], ctx: Context,
            options: dict[str, Any]) -> FittedLaw:  # fmt: skip
    model = LROptima(group_keys=LR_GROUP, level=ctx.settings.level).fit(data)
    return FittedLaw(law, model, selection, table=model.table_)


def _fit_lr_law(law: str, data: pd.DataFrame, selection: dict[str, Any], ctx: Context,
                options: dict[str, Any]) -> FittedLaw:  # fmt: skip
    method = options.get("method", "vertex")
    form, level = options.get("form", "auto"), ctx.settings.level
    if method == "near-optimal":
        near = near_optimal_runs(data[data.status == "done"], ["arch", "N", "D"], "loss")
        return _lr_law(law, near, near.lr, selection, form, level)
    if method != "vertex":
        raise ScalingError("lr-law method must be vertex or near-optimal")
    optima = optimal_lr(data, LR_GROUP)
    usable = optima[optima.bracketed.astype(bool)]
    if len(usable) < 3:
        raise ScalingError(
            f"need at least 3 groups with a bracketed LR optimum, found {len(usable)} "
            f"of {len(optima)} (scan LRs on both sides of the best one)"
        )
    fitted = _lr_law(law, usable, usable.lr_opt, selection, form, level)
    fitted.table = optima
    return fitted


def _lr_law(law: str, points: pd.DataFrame, lr: pd.Series, selection: dict[str, Any], form: str,
            level: float) -> FittedLaw:  # fmt: skip
    """LR* against N and/or D; `auto` drops a variable that does not vary."""
    if form == "auto":
        many_n, many_d = points.N.nunique() > 1, points.D.nunique() > 1
        form = "step" if many_n and many_d else "porian" if many_n else "bjorck"
    makers = {"step": step_law_lr, "porian": porian_lr, "bjorck": bjorck_lr}
    if form not in makers:
        raise ScalingError(f"unknown lr-law form {form!r}: auto, step, porian or bjorck")
    model = makers[form](level=level).fit(points, lr)
    return FittedLaw(law, model, selection, table=points)


def _fit_bs_law(law: str, data: pd.DataFrame, selection: dict[str, Any], ctx: Context,
                options: dict[str, Any]) -> FittedLaw:  # fmt: skip
    near = near_optimal_runs(data[data.status == "done"], ["arch", "N", "D"], "loss")
    if near["batch_tokens"].isna().any():
        raise ScalingError(
            "runs lack seq_len, so batch size in tokens is unknown "
            "(import with --columns seq_len=LENGTH)"
        )
    if data["batch_tokens"].nunique() < 2:
        raise ScalingError(
            f"no spread in batch size: every run used {data.batch_tokens.iloc[0]:g} tokens "
            "per batch (scan batch sizes to fit bs-law)"
        )
    model = batch_size_law("D", level=ctx.settings.level).fit(near, near.batch_tokens)
    return FittedLaw(law, model, selection, table=near)


def _fit_loss_form(law: str, data: pd.DataFrame, selection: dict[str, Any], ctx: Context,
                   options: dict[str, Any]) -> FittedLaw:  # fmt: skip
    """Fit the form (every form for auto), backtest it inside the runs, keep the best.

    Candidates are fitted without bootstrap; only the winner is refitted with it (at once
    when there is one candidate). A form the data cannot identify is left out with why.
    """
    names = list(LOSS_LAWS) if law == "auto" else [law]
    config: dict[str, Any] = {
        "level": ctx.settings.level,
        "random_state": ctx.settings.seed,
        "n_jobs": ctx.settings.n_jobs,
        "force": ctx.force,
    }
    n_bootstrap = ctx.n_bootstrap
    draws = n_bootstrap if len(names) == 1 else 0
    models: dict[str, LossLaw] = {}
    candidates: dict[str, Any] = {}
    for name in names:
        try:
            models[name] = LOSS_LAWS[name](n_bootstrap=draws, **config).fit_frame(data)
            candidates[name] = partial(_refit_predict, models[name])
        except FitError as exc:
            candidates[name] = str(exc)
    if not models:
        if len(names) == 1:
            raise FitError(candidates[names[0]])
        reasons = "; ".join(f"{k}: {v}" for k, v in candidates.items())
        raise FitError(f"no law form fits ({reasons})")
    runs = data.assign(C=questions(data.N, data.D).C.to_numpy())  # see questions
    forms, best, calibration = assess(runs, candidates, ctx.settings.level)
    best = best or next(iter(models))
    model = models[best]
    if draws != n_bootstrap:
        model = LOSS_LAWS[best](n_bootstrap=n_bootstrap, **config).fit_frame(data)
    residuals = np.log(data.loss.to_numpy()) - np.log(model.predict_frame(data))
    return FittedLaw(
        law, model, selection, residuals=residuals, forms=forms, calibration=calibration
    )


def _refit_predict(model: LossLaw, train: pd.DataFrame, test: pd.DataFrame) -> np.ndarray:
    """The nested backtests' fit-and-predict: a fast refit of `model` on the training runs."""
    return model.quick_refit(train).predict_frame(test)


def questions(N: Any, D: Any) -> pd.DataFrame:
    """Runs or questions as the calibration sees them: N, D and C = 6 N D.

    C is 6 N D and not the stored FLOPs, because a question's exact FLOPs are unknown.
    """
    N, D = np.asarray(N, dtype=float), np.asarray(D, dtype=float)
    return pd.DataFrame({"N": N, "D": D, "C": 6.0 * N * D})


FITTERS: dict[str, Fitter] = {
    **dict.fromkeys(LOSS_FORMS, _fit_loss_form),
    "isoflop": _fit_isoflop,
    "envelope": _fit_envelope,
    "power": _fit_power,
    "lr": _fit_lr,
    "lr-law": _fit_lr_law,
    "bs-law": _fit_bs_law,
}
LAWS = tuple(FITTERS)
STATUSES = {"lr": WITH_DIVERGED, "lr-law": WITH_DIVERGED}


def check(law: str) -> None:
    if law not in FITTERS:
        raise ScalingError(f"unknown law {law!r}: choose one of {', '.join(LAWS)}")


def statuses(law: str) -> tuple[str, ...]:
    """The statuses of the runs `law` is fitted on."""
    return STATUSES.get(law, ("done",))


def selection_extra(law: str) -> dict[str, Any]:
    """What a fit's selection records beyond its runs, so that a change refits."""
    extra: dict[str, Any] = {"calibration": CALIBRATION} if law in LOSS_FORMS else {}
    if law == "auto":
        extra["forms"] = list(LOSS_LAWS)  # new forms: select again
    return extra


def fit(
    law: str, data: pd.DataFrame, selection: dict[str, Any], ctx: Context, options: dict[str, Any]
) -> FittedLaw:
    return FITTERS[law](law, data, selection, ctx, options)
