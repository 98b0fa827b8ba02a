"""`scaling fit schedule`, `scaling predict curve`, `scaling predict schedule`: loss curves
under learning-rate schedules."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cli.common import DbOption, Json, console, emit_json, integer, print_frame, real
from cli.laws import Arch, Level, Source, Where, _study
from scaling.errors import ScalingError

if TYPE_CHECKING:  # the fitting stack loads only when a command runs (scaling --help is quick)
    from scaling.schedules import CurvePrediction

LawOption = Annotated[
    str, typer.Option("--law", help="Schedule law: auto, multi-power, annealing.")
]
Loss = Annotated[str, typer.Option(help="Fit the curves' val or train loss.")]
Plot = Annotated[
    Path | None, typer.Option(help="Draw the curve and its band to this PNG.", dir_okay=False)
]
Points = Annotated[int, typer.Option(help="Rows of the printed curve.", min=2)]
Steps = Annotated[int, typer.Option(parser=integer, help="Optimiser steps of the schedule.")]


def predict_curve(
    schedule: Annotated[
        str, typer.Option(help="A schedule as scaling run --schedule takes it (linear).")
    ],
    steps: Steps,
    lr: Annotated[
        float | None, typer.Option(parser=real, help="Peak LR (default: the runs' peak).")
    ] = None,
    warmup: Annotated[
        int | None, typer.Option(help="Warmup steps (default: the runs' median).")
    ] = None,
    law: LawOption = "auto",
    loss: Loss = "val",
    arch: Arch = None,
    source: Source = None,
    where: Where = None,
    level: Level = 0.90,
    points: Points = 12,
    plot: Plot = None,
    as_json: Json = False,
    db: DbOption = None,
) -> None:
    """The loss at every step of a schedule, with a band calibrated on held-out schedules."""
    study = _study(db, level)
    fitted = study.fit_schedule(law, arch, source, where, loss=loss)
    from scaling.schedules import law_of, schedule_lrs

    model = law_of(fitted)
    lrs = schedule_lrs(
        schedule,
        _positive(steps, "--steps"),
        model.warmup_ if warmup is None else warmup,
        model.peak_lr_ if lr is None else lr,
    )
    answer = study.predict_curve(lrs, fitted)
    if plot is not None:
        draw({f"{schedule} ({model.law})": answer}, plot)
    if as_json:
        emit_json(answer.to_dict(points))
        return
    print_frame(answer.to_frame(points), title=f"{schedule}, {steps} steps ({model.law} law)")
    console.print(str(answer.final()), highlight=False)


def predict_schedule(
    steps: Steps,
    law: LawOption = "auto",
    loss: Loss = "val",
    arch: Arch = None,
    source: Source = None,
    where: Where = None,
    level: Level = 0.90,
    points: Points = 12,
    plot: Plot = None,
    as_json: Json = False,
    db: DbOption = None,
) -> None:
    """The non-increasing schedule (after the runs' warmup, from their peak LR) with the
    lowest predicted final loss, and its gain over cosine and WSD at the same horizon."""
    study = _study(db, level)
    fitted = study.fit_schedule(law, arch, source, where, loss=loss)
    answer = study.optimal_schedule(_positive(steps, "--steps"), fitted)
    if plot is not None:
        draw({"optimised": answer.optimised, **answer.baselines}, plot)
    if as_json:
        emit_json(answer.to_dict(points))
        return
    print_frame(answer.optimised.to_frame(points), title=f"optimised schedule, {steps} steps")
    console.print(str(answer), highlight=False)


def _positive(value: int, name: str) -> int:
    if value < 2:
        raise ScalingError(f"{name} must be at least 2, got {value}")
    return value


def draw(curves: dict[str, CurvePrediction], path: Path) -> None:
    """Loss (with its band) and LR against step, one colour per schedule, to a PNG."""
    import matplotlib
    import numpy as np

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 6), sharex=True,
                                      gridspec_kw={"height_ratios": [3, 1]})  # fmt: skip
    for name, curve in curves.items():
        steps = np.arange(1, len(curve.lrs) + 1)
        start = int(np.argmax(curve.lrs))  # the band and curve from the end of warmup
        (line,) = top.plot(steps[start:], curve.loss[start:], label=name)
        top.fill_between(steps[start:], curve.lo[start:], curve.hi[start:],
                         color=line.get_color(), alpha=0.2)  # fmt: skip
        bottom.plot(steps, curve.lrs, color=line.get_color())
    level = next(iter(curves.values())).level
    top.set_ylabel(f"predicted loss ({level:.0%} band)")
    top.legend()
    bottom.set_ylabel("LR")
    bottom.set_xlabel("step")
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=110)
    except OSError as exc:
        raise ScalingError(f"cannot write {path}: {exc.strerror or exc}") from exc
    finally:
        plt.close(fig)
