"""The laws a Study fits, one registry entry each: the runs it is fitted on, the options it
takes (the CLI reads them here), its fitter, its backtest and its predictor. Code elsewhere
looks a law up here instead of testing its name."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from fits import LOSS_LAWS
from scaling import fitters, schedules
from scaling.backtests import backtest_groups, backtest_runs
from scaling.errors import ScalingError
from scaling.fitters import CALIBRATION, Fitter, Predictor


@dataclass(frozen=True)
class Option:
    """An option of some laws: the keyword Study.fit takes, the CLI flag, default and help."""

    name: str
    flag: str
    default: Any
    help: str


_METHOD = (
    "lr-law data: vertex (per-group optimum) or near-optimal (runs within 0.25% of their "
    "(N, D) best, as Step Law)."
)
_NEIGHBORS = (
    "isoflop: each budget's parabola through its best size and this many neighbours a side "
    "(default: all sizes), for profiles sampled far past their minimum."
)
_RESOLUTION = (
    "isoflop: runs share a budget when log10 C rounds to the same multiple of this "
    "(default 0.05, within about 6%; 0.25 groups Chinchilla's budgets)."
)
OPTIONS = {
    o.name: o
    for o in (
        Option("x", "--x", "C", "power: the variable, N, D, C or width."),
        Option("E", "--E", None, "power: hold the offset E fixed (e.g. 0)."),
        Option("form", "--form", "auto", "lr-law: auto, step, porian or bjorck."),
        Option("method", "--method", "vertex", _METHOD),
        Option("n_neighbors", "--n-neighbors", None, _NEIGHBORS),
        Option("resolution", "--resolution", None, _RESOLUTION),
        Option("schedule_law", "--law", "auto", "schedule: multi-power, annealing or auto."),
        Option("loss", "--loss", "val", "schedule: fit the curves' val or train loss."),
    )
}


@dataclass(frozen=True)
class Law:
    """One law: how it is fitted, backtested and asked."""

    name: str
    fit: Fitter
    statuses: tuple[str, ...] = ("done",)  # the runs it is fitted on
    options: tuple[str, ...] = ()  # names in OPTIONS
    backtest: Callable[..., Any] | None = None  # scaling.backtests, with the law's settings
    predict: Predictor | None = None  # point and own interval at rows of its variables
    selection: Mapping[str, Any] = field(default_factory=dict)  # recorded: a change refits
    table: str | None = None  # the CLI prints the fit's table under this title
    is_loss: bool = False  # a law of loss in (N, D), for the questions about loss

    def options_from(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """The options a command line gave (name: value, defaults included) this law takes;
        one it does not take, given away from its default, is refused."""
        for name, value in given.items():
            if name not in self.options and value != OPTIONS[name].default:
                takers = ", ".join(law.name for law in REGISTRY.values() if name in law.options)
                flag = OPTIONS[name].flag
                raise ScalingError(f"{flag} applies to {takers} fits, not {self.name}")
        return {k: v for k, v in given.items() if k in self.options and v is not None}


def _loss_form(name: str, forms: tuple[str, ...], extra: Mapping[str, Any]) -> Law:
    return Law(
        name,
        partial(fitters.fit_loss_forms, forms=forms),
        backtest=backtest_runs,
        predict=fitters.predict_loss,
        selection={"calibration": CALIBRATION, **extra},
        is_loss=True,
    )


WITH_DIVERGED = ("done", "diverged")  # an LR scan's diverged runs bound its optimum
CLUSTERED = {"covariance": "clustered by (N, D)"}  # in the selection: older fits are refitted
LR_BACKTEST = partial(
    backtest_groups, methods=("vertex", "near-optimal"), option="method", x="lr",
    across="batch_size", quantity="LR",
)  # fmt: skip
BS_BACKTEST = partial(
    backtest_groups, methods=("near-optimal",), x="batch_tokens", across="lr",
    quantity="batch size",
)  # fmt: skip
REGISTRY: dict[str, Law] = {
    law.name: law
    for law in (
        _loss_form("auto", tuple(LOSS_LAWS), {"forms": list(LOSS_LAWS)}),  # new forms: refit
        *(_loss_form(name, (name,), {}) for name in LOSS_LAWS),
        Law(
            "isoflop",
            fitters.fit_isoflop,
            options=("n_neighbors", "resolution"),
            table="per budget",
        ),
        Law("envelope", fitters.fit_envelope),
        Law(
            "power",
            fitters.fit_power,
            options=("x", "E"),
            backtest=backtest_runs,
            predict=fitters.predict_loss,
        ),
        Law("lr", fitters.fit_lr, WITH_DIVERGED, table="per group"),
        Law(
            "lr-law",
            fitters.fit_lr_law,
            WITH_DIVERGED,
            options=("form", "method"),
            backtest=LR_BACKTEST,
            predict=fitters.predict_optimum,
            selection=CLUSTERED,
        ),
        Law(
            "bs-law",
            fitters.fit_bs_law,
            backtest=BS_BACKTEST,
            predict=fitters.predict_optimum,
            selection=CLUSTERED,
        ),
        Law(
            "schedule",
            schedules.fit_runs,
            options=("schedule_law", "loss"),
            table="each run held out: the law refitted without it",
            selection={"records": "least LR area"},  # fits stored before it are refitted
        ),
    )
}
LAWS = tuple(REGISTRY)
LOSS_FORMS = tuple(name for name, law in REGISTRY.items() if law.is_loss)
BACKTESTED = tuple(name for name, law in REGISTRY.items() if law.backtest is not None)


def get(name: str) -> Law:
    """The law called `name`, or a ScalingError that lists them."""
    if name not in REGISTRY:
        raise ScalingError(f"unknown law {name!r}: choose one of {', '.join(LAWS)}")
    return REGISTRY[name]
