"""Schedule questions: a schedule law fitted on runs' loss curves, the curve of any schedule,
and the schedule that ends lowest.

The laws live in fits.schedule; this module turns selected runs into the frame they fit on
(every step's LR rebuilt from the run's schedule, the loss where it was measured), names the
runners' schedules for comparisons, and shapes the answers.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import numpy as np
import pandas as pd

from fits import FitError
from fits.errors import each_reason_once
from fits.schedule import AnnealingLaw, MultiPowerLaw, ScheduleLaw
from fits.schedule.design import optimal_schedule
from runners.errors import RunnerError
from runners.schedule import parse_schedule
from scaling.curves import curves_frame as frame_of
from scaling.errors import ScalingError
from scaling.fitters import Context
from scaling.results import FittedLaw, Prediction, fmt

SCHEDULE_LAWS: dict[str, type[ScheduleLaw]] = {
    "multi-power": MultiPowerLaw,
    "annealing": AnnealingLaw,
}
LOSS_COLUMNS = {"val": "val_loss", "train": "train_loss"}
# Peak memory of a predicted curve per step, the heaviest measured: a wsd schedule under the
# multi-power law took 8.7 GB at 30M steps (annealing about 80 bytes a step).
BYTES_PER_STEP = 300


def check_steps(steps: int) -> None:
    """ScalingError for a horizon whose per-step curve would need more than half this
    machine's memory: the process would be killed for memory instead (1e9 steps was)."""
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # no sysconf (Windows): nothing to check
        return
    if steps * BYTES_PER_STEP > memory / 2:
        raise ScalingError(
            f"{steps:,} steps would need about {steps * BYTES_PER_STEP / 1e9:,.0f} GB of memory "
            f"for the curve ({BYTES_PER_STEP} bytes a step) and this machine has "
            f"{memory / 1e9:,.0f} GB: ask for at most {int(memory / 2 / BYTES_PER_STEP):,} steps"
        )


def schedule_lrs(spec: str, steps: int, warmup: int, peak: float) -> np.ndarray:
    """Per-step LRs of a schedule written as the runners take it (`scaling run --schedule`)."""
    if steps < 2 or warmup < 0 or not peak > 0:
        raise ScalingError("a schedule needs steps >= 2, warmup >= 0 and a positive LR")
    check_steps(steps)
    if warmup >= steps:
        raise ScalingError(f"a {warmup}-step warmup leaves nothing of a {steps}-step schedule")
    try:
        return peak * parse_schedule(spec).factors(steps, warmup)
    except RunnerError as exc:
        raise ScalingError(str(exc)) from exc


def curves_frame(runs: pd.DataFrame, curves: pd.DataFrame, loss: str = "val") -> pd.DataFrame:
    """The run, step, lr, loss frame of `runs` with their val or train loss."""
    if loss not in LOSS_COLUMNS:
        raise ScalingError(f"unknown loss {loss!r}: choose {', '.join(LOSS_COLUMNS)}")
    if runs.empty:
        raise ScalingError("no runs selected")
    return frame_of(runs, curves, LOSS_COLUMNS[loss])


def fit_runs(law: str, data: pd.DataFrame, selection: dict[str, Any], ctx: Context,
             options: dict[str, Any]) -> FittedLaw:  # fmt: skip
    """The registry's fitter: a schedule law on the runs' loss curves, every step's LR
    rebuilt from its run; its table says how each run left out was predicted."""
    form, loss = options.pop("schedule_law", "auto"), options.pop("loss", "val")
    runs = ctx.log.runs(status=None)
    runs = runs[runs.run_id.isin(list(data.run_id))]
    frame = curves_frame(runs, ctx.log.curves(list(runs.run_id)), loss)
    model = fit_schedule_law(form, frame, ctx.settings.level)
    return FittedLaw(law, model, selection, table=holdout_table(model))


def fit_schedule_law(law: str, frame: pd.DataFrame, level: float) -> ScheduleLaw:
    """Fit `law` (or both, for auto: the one whose held-out schedules it predicts best)."""
    names = list(SCHEDULE_LAWS) if law == "auto" else [law]
    if any(name not in SCHEDULE_LAWS for name in names):
        raise ScalingError(f"unknown schedule law {law!r}: choose auto, {', '.join(SCHEDULE_LAWS)}")
    fitted: list[ScheduleLaw] = []
    refused: dict[str, str] = {}
    for name in names:
        try:
            fitted.append(SCHEDULE_LAWS[name](level=level).fit(frame))
        except FitError as exc:
            if law != "auto":
                raise ScalingError(f"cannot fit {name}: {exc}") from exc
            refused[name] = str(exc)
    if not fitted:
        reasons = each_reason_once(refused.items())
        raise ScalingError(f"no schedule law fits these runs' curves ({reasons})")
    return min(fitted, key=holdout_error)


def holdout_table(model: ScheduleLaw) -> pd.DataFrame:
    """Per run left out: how well the law refitted without it predicted its curve."""
    rows, start = [], 0
    for run in model.holdout_runs_:
        weights = model.holdout_weights_[start:]
        n = round(1 / weights[0]) if len(weights) else 0
        errors = model.holdout_errors_[start : start + n]
        start += n
        rows.append({"held out": run, "points": n,
                     "mean |error|": float(np.mean(np.abs(np.expm1(errors)))),
                     "worst": float(np.max(np.abs(np.expm1(errors)))),
                     "note": "|measured / predicted - 1| at its logged points"})  # fmt: skip
    return pd.DataFrame(rows)


def holdout_error(model: ScheduleLaw) -> float:
    """Mean |log(measured / predicted)| on the runs left out in turn (inf without any)."""
    if len(model.holdout_errors_) == 0:
        return math.inf
    w = model.holdout_weights_
    return float(np.sum(w * np.abs(model.holdout_errors_)) / np.sum(w))


@dataclass(frozen=True)
class CurvePrediction:
    """The loss after every step of one schedule, with its band at `level`."""

    law: str
    fit_id: str | None
    lrs: np.ndarray
    loss: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    level: float
    note: str = ""  # what of the schedule the runs did not show the law

    def to_frame(self, points: int | None = None) -> pd.DataFrame:
        """step (updates done), lr, loss, lo, hi; thinned to about `points` rows if given."""
        steps = np.arange(1, len(self.lrs) + 1)
        frame = pd.DataFrame({"step": steps, "lr": self.lrs, "loss": self.loss,
                              "lo": self.lo, "hi": self.hi})  # fmt: skip
        if points is None or len(frame) <= points:
            return frame
        pick = np.unique(np.linspace(0, len(frame) - 1, points).round().astype(int))
        return frame.iloc[pick].reset_index(drop=True)

    def final(self) -> Prediction:
        return Prediction(
            "final loss", float(self.loss[-1]), float(self.lo[-1]), float(self.hi[-1]),
            self.level, self.fit_id, "calibrated", self.note,
        )  # fmt: skip

    def to_dict(self, points: int | None = None) -> dict[str, Any]:
        return {
            "law": self.law,
            "fit_id": self.fit_id,
            "level": self.level,
            "final": self.final().to_dict(),
            "curve": self.to_frame(points).to_dict(orient="list"),
        }


def predict_curve(fitted: FittedLaw, lrs: Any, level: float) -> CurvePrediction:
    """The fitted schedule law's curve of one schedule, with its band at `level`."""
    model, fit_id = law_of(fitted), fitted.fit_id
    check_steps(np.size(lrs))
    try:
        loss = model.predict(lrs)
        lo, hi = model.predict_interval(lrs, level)
    except FitError as exc:
        raise ScalingError(str(exc)) from exc
    note = model.unseen(lrs)
    return CurvePrediction(model.law, fit_id, np.asarray(lrs), loss, lo, hi, level, note)


@dataclass(frozen=True)
class ScheduleAnswer:
    """The schedule with the lowest predicted final loss, and its gain over the baselines.

    A gain's interval is a jackknife over the law refitted without each run: the baseline
    and the schedule are predicted by the same refit, so what they share cancels.
    """

    steps: int
    optimised: CurvePrediction
    baselines: dict[str, CurvePrediction]
    gains: dict[str, Prediction]

    def __str__(self) -> str:
        lines = [f"schedule with the lowest predicted final loss at {self.steps} steps "
                 f"({self.optimised.law} law):", "  " + str(self.optimised.final())]  # fmt: skip
        for name, gain in self.gains.items():
            base = self.baselines[name].final()
            lines.append(f"  vs {name}: final {fmt(base.value)}, {gain}")  # "gain = ..."
        return "\n".join(lines)

    def to_dict(self, points: int | None = None) -> dict[str, Any]:
        return {
            "steps": self.steps,
            "optimised": self.optimised.to_dict(points),
            "lr": self.optimised.lrs.tolist(),
            "baselines": {k: v.final().to_dict() for k, v in self.baselines.items()},
            "gains": {k: v.to_dict() for k, v in self.gains.items()},
        }


def law_of(fitted: FittedLaw) -> ScheduleLaw:
    if not isinstance(fitted.model, ScheduleLaw):
        raise ScalingError(f"a {fitted.law} fit is not a schedule law")
    return fitted.model


def best_schedule(
    fitted: FittedLaw, steps: int, level: float, baselines: tuple[str, ...] = ("cosine", "wsd")
) -> ScheduleAnswer:
    """Optimise the schedule under the fitted law and compare it with the baselines (runner
    schedule specs) at the same horizon, warmup and peak LR."""
    model, fit_id = law_of(fitted), fitted.fit_id
    check_steps(steps)
    try:
        lrs = optimal_schedule(model, steps)
    except FitError as exc:
        raise ScalingError(str(exc)) from exc
    best = predict_curve(fitted, lrs, level)
    others = {
        name: predict_curve(fitted, schedule_lrs(name, steps, model.warmup_, model.peak_lr_), level)
        for name in baselines
    }
    gains = {name: _gain(model, other.lrs, lrs, fit_id, level) for name, other in others.items()}
    return ScheduleAnswer(steps, best, others, gains)


def _gain(
    model: ScheduleLaw, base: np.ndarray, lrs: np.ndarray, fit_id: str | None, level: float
) -> Prediction:
    """Final loss of `base` minus that of `lrs`, with a jackknife interval over the refits."""
    value = float(model.predict(base)[-1] - model.predict(lrs)[-1])
    draws = np.array([m.predict(base)[-1] - m.predict(lrs)[-1] for m in model.holdout_laws()])
    n = len(draws)
    se = math.sqrt((n - 1) / n * np.sum((draws - draws.mean()) ** 2)) if n >= 2 else math.nan
    z = NormalDist().inv_cdf(0.5 + level / 2)
    return Prediction("gain", value, value - z * se, value + z * se, level, fit_id, "confidence")
