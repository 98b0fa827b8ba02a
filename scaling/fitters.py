"""Each law's fitter and predictor (scaling.laws registers them): a fitter calls fits/ and keeps
what the answers need beside the estimator (table, residuals, forms, calibration); a predictor
gives a fitted law's point and own interval at some rows (the interval math is fits/':
fits.prediction for loss, each law's predict_interval for the rest)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
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
    LogLinearLaw,
    LossLaw,
    LROptima,
    PowerLaw,
    batch_size_law,
    near_optimal_runs,
    optimal_lr,
)
from fits.auto import fit_auto
from fits.hparams import LR_FORMS, lr_law
from fits.noise import RunNoise
from fits.prediction import Interval, own_interval
from scaling.errors import ScalingError
from scaling.results import FittedLaw
from scaling.runlog import RunLog

POWER_X = {"N": "N", "D": "D", "C": "C", "width": "d_model"}
LR_GROUP = ("arch", "parametrization", "N", "D", "batch_size")  # runs that differ only in LR
NEAR_GROUP = ("arch", "N", "D")  # the groups whose near-optimal runs Step Law fits on
LOSS_FORMS = ("auto", *LOSS_LAWS)  # laws of loss in (N, D): selected and calibrated
CALIBRATION = "kinds-v10"  # in the selection, so fits made before it are not reused: bump it
# whenever a change moves a loss law's stored fit (its calibration, weights or parameters)


@dataclass(frozen=True)
class Context:
    """What a fitter needs besides the runs: the Study's settings and its run log."""

    settings: Any  # scaling.fitting.Settings: level, seed, n_jobs
    log: RunLog
    n_bootstrap: int
    force: bool


Fitter = Callable[[str, pd.DataFrame, dict[str, Any], Context, dict[str, Any]], FittedLaw]
Predictor = Callable[[FittedLaw, pd.DataFrame, float, int], Interval]


def fit_isoflop(law: str, data: pd.DataFrame, selection: dict[str, Any], ctx: Context,
                 options: dict[str, Any]) -> FittedLaw:  # fmt: skip
    n_neighbors = options.pop("n_neighbors", None)
    resolution = options.pop("resolution", None)  # budgets: log10 C rounded to this
    grouping = {"log10_resolution": resolution} if resolution else {}
    level = ctx.settings.level
    model = IsoFLOPFit(level=level, n_neighbors=n_neighbors, **grouping).fit(
        data.N, data.loss, C=data.C
    )
    return FittedLaw(law, model, selection, table=model.budgets_)


def fit_envelope(law: str, data: pd.DataFrame, selection: dict[str, Any], ctx: Context,
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


def fit_power(law: str, data: pd.DataFrame, selection: dict[str, Any], ctx: Context,
               options: dict[str, Any]) -> FittedLaw:  # fmt: skip
    x_name = options.pop("x", "C")
    if x_name not in POWER_X:
        raise ScalingError(f"power law x must be one of {', '.join(POWER_X)}, got {x_name!r}")
    x = data[POWER_X[x_name]]
    model = PowerLaw(
        E=options.pop("E", None), level=ctx.settings.level, n_bootstrap=ctx.n_bootstrap,
        random_state=ctx.settings.seed, force=ctx.force, x=POWER_X[x_name],
    ).fit(data)  # fmt: skip
    with np.errstate(all="ignore"):
        residuals = np.log(data.loss) - np.log(model.predict(x))
    return FittedLaw(law, model, selection, residuals=RunNoise(residuals.to_numpy()))


def fit_lr(law: str, data: pd.DataFrame, selection: dict[str, Any], ctx: Context,
            options: dict[str, Any]) -> FittedLaw:  # fmt: skip
    model = LROptima(group_keys=LR_GROUP, level=ctx.settings.level).fit(data)
    return FittedLaw(law, model, selection, table=model.table_)


def fit_lr_law(law: str, data: pd.DataFrame, selection: dict[str, Any], ctx: Context,
                options: dict[str, Any]) -> FittedLaw:  # fmt: skip
    method = options.get("method", "vertex")
    form, level = options.get("form", "auto"), ctx.settings.level
    if method == "near-optimal":
        near = _near_optimal(data, "lr")
        return _lr_law(law, near, near.lr, selection, form, level, near="lr")
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
            level: float, near: str | None = None) -> FittedLaw:  # fmt: skip
    """LR* against N and/or D; `auto` drops a variable that does not vary. near: the points
    are near-optimal runs, several to a group, of groups that scanned this column. Points of
    one (N, D) group (near-optimal runs, or optima at several batch sizes) are one cluster."""
    if form != "auto" and form not in LR_FORMS:
        raise ScalingError(f"unknown lr-law form {form!r}: auto, {', '.join(LR_FORMS)}")
    model = lr_law(points, form, level, NEAR_GROUP)
    if near is not None:
        _enough_groups(points, model.variables, near)
    return FittedLaw(law, model.fit(points, lr), selection, table=points)


def fit_bs_law(law: str, data: pd.DataFrame, selection: dict[str, Any], ctx: Context,
                options: dict[str, Any]) -> FittedLaw:  # fmt: skip
    if data.loc[data.status == "done", "batch_tokens"].isna().any():
        raise ScalingError(
            "runs lack seq_len, so batch size in tokens is unknown "
            "(import with --columns seq_len=LENGTH)"
        )
    if data["batch_tokens"].nunique() < 2:
        raise ScalingError(
            f"no spread in batch size: every run used {data.batch_tokens.iloc[0]:g} tokens "
            "per batch (scan batch sizes to fit bs-law)"
        )
    near = _near_optimal(data, "batch_tokens")
    model = batch_size_law("D", ctx.settings.level, NEAR_GROUP)
    _enough_groups(near, model.variables, "batch_size")
    return FittedLaw(law, model.fit(near, near.batch_tokens), selection, table=near)


def _near_optimal(data: pd.DataFrame, scanned: str) -> pd.DataFrame:
    """The near-optimal finished runs of the (N, D) groups that tried two or more values of
    `scanned`: a run alone in its group is its best by default, not an optimum found."""
    done = data[data.status == "done"]
    scans = done.groupby(list(NEAR_GROUP))[scanned].transform("nunique") >= 2
    return near_optimal_runs(done[scans], NEAR_GROUP, "loss")


def _enough_groups(near: pd.DataFrame, variables: Sequence[str], scanned: str) -> None:
    """Near-optimal runs of one (N, D) group are one optimum, not several: a law in k variables
    through k + 1 groups passes through each, and the groups' scatter about it, which an
    answer's interval carries, is not measured (one size of Step Law's, 165 runs at two token
    counts, answered a batch size of 1.42e8 [1.42e8, 1.42e8])."""
    groups, need = near.groupby(list(NEAR_GROUP)).ngroups, len(variables) + 2
    if groups < need:
        raise ScalingError(
            f"need near-optimal runs in at least {need} (N, D) groups that tried two or more "
            f"values of {scanned} to fit a law in {', '.join(variables)} with the groups' "
            f"scatter about it, found {groups}"
        )


def fit_loss_forms(law: str, data: pd.DataFrame, selection: dict[str, Any], ctx: Context,
                   options: dict[str, Any], forms: tuple[str, ...]) -> FittedLaw:  # fmt: skip
    """The default procedure (fits.auto) on the loss law `forms`: each backtested inside the
    runs, stacked and calibrated. One form is that law itself; several are their average."""
    names = list(forms)
    config: dict[str, Any] = {
        "level": ctx.settings.level,
        "random_state": ctx.settings.seed,
        "n_jobs": ctx.settings.n_jobs,
        "force": ctx.force,
    }
    makers = {name: partial(_make, LOSS_LAWS[name], config) for name in names}
    _refuse_bad_runs(data)
    try:
        auto = fit_auto(data, makers, ctx.settings.level, ctx.n_bootstrap, _vocab(data))
    except FitError as exc:
        why = str(exc)
        if len(names) == 1:  # the form's own reason, not "no law form fits"
            why = why.removeprefix(f"no law form fits ({names[0]}: ")[:-1]
        raise FitError(why + _one_variable_hint(data)) from None
    model: LossLaw = auto.model if len(names) > 1 else auto.model.forms_[names[0]]
    return FittedLaw(law, model, selection, residuals=auto.residuals, forms=auto.forms,
                     calibration=auto.calibration)  # fmt: skip


def _make(klass: type[LossLaw], config: dict[str, Any], n_bootstrap: int) -> LossLaw:
    return klass(n_bootstrap=n_bootstrap, **config)


def _vocab(data: pd.DataFrame) -> float | None:
    """The runs' vocabulary size when every run records the same one (None otherwise)."""
    if "vocab_size" not in data or data.vocab_size.isna().any() or data.vocab_size.nunique() != 1:
        return None
    return float(data.vocab_size.iloc[0])


def _refuse_bad_runs(data: pd.DataFrame) -> None:
    """FitError naming by run id the runs whose N, D or loss no law can read: the fit names
    them by their place in its own order, which no user can look up. A column no run gives
    is left to the fit's own message."""
    for column in ("N", "D", "loss"):
        values = data[column].to_numpy(dtype=float)
        bad = ~(np.isfinite(values) & (values > 0))
        if bad.any() and not np.isnan(values).all():
            ids = list(data.run_id[bad])
            shown = ", ".join(ids[:3]) + (f" and {len(ids) - 3} more" if len(ids) > 3 else "")
            runs = "run" if len(ids) == 1 else "runs"
            raise FitError(f"non-positive or NaN values in {column} ({runs} {shown})")


def _one_variable_hint(data: pd.DataFrame) -> str:
    """Where the runs hold one token count (or one size), the law that can read them."""
    for fixed, x in (("D", "N"), ("N", "D")):
        if data[fixed].nunique() == 1 and data[x].nunique() >= 3:
            law = f"the law of {x} alone reads them (predict power --x {x})"
            return f"; the runs have one {fixed}: {law}"
    return ""


def predict_loss(fitted: FittedLaw, runs: pd.DataFrame, level: float, seed: int) -> Interval:
    """A loss or power law's prediction at runs, with the law's own interval."""
    return own_interval(fitted.model, fitted.residuals, runs, level, seed)


def predict_optimum(fitted: FittedLaw, rows: pd.DataFrame, level: float, seed: int) -> Interval:
    """An LR or batch-size law's optimum at rows, with the prediction interval of one new
    group's optimum (the law's uncertainty plus the groups' scatter about it)."""
    model: LogLinearLaw = fitted.model  # type: ignore[assignment]
    p = model.predict_interval(rows, level, kind="prediction")
    return np.ravel(p.estimate), np.ravel(p.lo), np.ravel(p.hi)
