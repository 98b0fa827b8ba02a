"""The prediction API: fit laws on a selection of runs and answer questions with intervals.

A `Study` is a facade over four parts: the run log it reads runs from (scaling.runlog), the
fits it stores and reuses while a selection holds the same runs (scaling.fitting, over the law
registry scaling.laws), the questions answered from those fits with prediction intervals
(scaling.questions) and the backtests that score a law on runs it did not see
(scaling.backtests).
"""

from __future__ import annotations

import math
from numbers import Real
from pathlib import Path
from typing import Any

import pandas as pd

from fits import LossLaw
from fits.bootstrap import DEFAULT_JOBS
from runners.numbers import parse_number
from scaling import laws, schedules
from scaling.backtests import backtest_runs
from scaling.errors import ScalingError
from scaling.fitters import LOSS_FORMS, LR_GROUP
from scaling.fitting import FitLog, Settings
from scaling.laws import LAWS
from scaling.questions import Questions
from scaling.results import (
    Backtest,
    ComputeOptimal,
    Crossover,
    FittedLaw,
    HparamBacktest,
    Prediction,
)
from scaling.runlog import RunLog
from scaling.wallclock import WallclockAnswer

__all__ = ["LAWS", "LR_GROUP", "FittedLaw", "Study"]


class Study:
    """Questions about large runs, answered from the small runs in a run log."""

    def __init__(
        self,
        db: str | Path | RunLog | None = None,
        *,
        level: float = 0.90,
        n_bootstrap: int = 1000,
        seed: int = 0,
        n_jobs: int | None = DEFAULT_JOBS,
    ) -> None:
        """db: the run log's file (None: SCALING_DB or ./scaling.duckdb), or a RunLog.
        n_jobs: worker processes for a fit (-1, the default on Linux: every core this process
        may run on, so `taskset` limits them; 1 elsewhere, fits.bootstrap.DEFAULT_JOBS); the
        answers are the same for any number."""
        self.settings = Settings(level, n_bootstrap, seed, n_jobs)
        self.log = db if isinstance(db, RunLog) else RunLog(db)
        self.fits = FitLog(self.log, self.settings, laws.get)
        self.ask = Questions(self.fits)

    @classmethod
    def from_frame(
        cls, runs: pd.DataFrame, vocab_size: float | None = None, **options: Any
    ) -> Study:
        """A study over runs that live in a DataFrame (columns N, D, loss, lr, ... or the
        run-log names); fits and predictions are kept in memory. vocab_size: the runs'
        vocabulary when the frame has no vocab_size column, so that a loss interval's top is
        at most ln(vocab_size), the loss of a uniform guess (unknown: not clipped)."""
        if vocab_size is not None:
            whole = isinstance(vocab_size, Real) and math.isfinite(vocab_size)
            if not (whole and vocab_size >= 2 and vocab_size == int(vocab_size)):
                raise ScalingError(f"vocab_size must be a whole number >= 2, got {vocab_size!r}")
            if "vocab_size" in runs and runs["vocab_size"].notna().any():
                raise ScalingError("the frame has a vocab_size column: give vocab_size once")
            runs = runs.assign(vocab_size=float(vocab_size))
        return cls(RunLog.from_frame(runs), **options)

    @property
    def db(self) -> str | Path | None:
        return self.log.db

    @property
    def level(self) -> float:
        return self.settings.level

    # -- data and fits ---------------------------------------------------------------------
    def runs(
        self,
        arch: str | None = None,
        status: str | None = "done",
        source: str | None = None,
        where: str | None = None,
        sweep: str | None = None,
    ) -> pd.DataFrame:
        """Runs as a DataFrame (by default only finished ones)."""
        return self.log.runs(arch, status, source, where, sweep)

    def law_runs(
        self,
        law: str,
        arch: str | None = None,
        source: str | None = None,
        where: str | None = None,
        n_column: str = "params",
    ) -> pd.DataFrame:
        """The runs `law` is fitted on, with the columns fits/ expects (N, D, C, loss, ...)."""
        return self.fits.runs_of(law, arch, source, where, n_column)

    def fit(
        self,
        law: str,
        arch: str | None = None,
        source: str | None = None,
        where: str | None = None,
        *,
        n_column: str = "params",
        refit: bool = False,
        force: bool = False,
        **options: Any,
    ) -> FittedLaw:
        """Fit `law` on the selected runs (reusing a stored fit of the same runs) and store it.

        Options: power: x = N | D | C | width, E = fixed offset (e.g. 0);
        lr-law: form = auto | step | porian | bjorck; bootstrap: resamples (loss laws, power).
        An option the law does not take is refused (ScalingError), not dropped.
        force: keep a loss law the data cannot identify, flagged (stored apart from good
        fits and never picked up by the questions, which fit without force).
        """
        return self.fits.fit(
            law, arch, source, where, n_column=n_column, refit=refit, force=force, **options
        )

    # -- questions -------------------------------------------------------------------------
    def loss_law(
        self, law: str, arch: str | None = None, source: str | None = None,
        where: str | None = None,
    ) -> tuple[FittedLaw, LossLaw]:  # fmt: skip
        """A fitted loss law (auto: the form that extrapolated best) for a question about loss."""
        return self.ask.loss_law(law, arch, source, where)

    def predict_loss(
        self, N: float, D: float, arch: str | None = None, source: str | None = None,
        where: str | None = None, *, law: str = "auto", U: float | None = None,
    ) -> Prediction:  # fmt: skip
        """Loss of one model of N parameters trained on D tokens, with a prediction interval.

        U: unique tokens the run can see (data-constrained; None: unlimited).
        """
        N, D, U = _asked("N", N), _asked("D", D), None if U is None else _asked("U", U)
        return self.ask.predict_loss(N, D, arch, source, where, law, U)

    def loss_at(self, fitted: FittedLaw, N: float, D: float, U: float | None = None) -> Prediction:
        """The loss of (N, D) by a law already fitted, with its (calibrated) interval; not
        logged. U: unique tokens the run can see (None: unlimited)."""
        if not isinstance(fitted, FittedLaw) or fitted.law not in LOSS_FORMS:
            law = fitted.law if isinstance(fitted, FittedLaw) else None
            got = repr(fitted) if law is None else f"a {law} fit"
            hint = ": power_loss answers a power law" if law == "power" else ""
            laws_of_n_and_d = ", ".join(LOSS_FORMS)
            raise ScalingError(f"loss_at takes a fit of a loss law of N and D ({laws_of_n_and_d}),"
                               f" got {got}{hint}")  # fmt: skip
        N, D, U = _asked("N", N), _asked("D", D), None if U is None else _asked("U", U)
        return self.ask.loss_at(fitted, N, D, U)

    def compute_optimal(
        self, C: float, arch: str | None = None, source: str | None = None,
        where: str | None = None, *, law: str = "auto",
    ) -> ComputeOptimal:  # fmt: skip
        """N and D that minimise the fitted loss at compute C = 6 N D, and that loss."""
        return self.ask.compute_optimal(_asked("C", C), arch, source, where, law)

    def optimal_lr(
        self, N: float, D: float, arch: str | None = None, source: str | None = None,
        where: str | None = None, method: str = "vertex",
    ) -> Prediction:  # fmt: skip
        """Optimal peak LR from the fitted LR law, with the prediction interval of one new
        (N, D) group's optimum (the law's uncertainty plus the groups' scatter about it).
        method: the law's data, vertex (per-group optimum) or near-optimal (Step Law)."""
        return self.ask.optimal_lr(_asked("N", N), _asked("D", D), arch, source, where, method)

    def power_loss(
        self, at: float, x: str = "C", E: float | None = None, arch: str | None = None,
        source: str | None = None, where: str | None = None,
    ) -> Prediction:  # fmt: skip
        """Loss at `at` of the variable x (N, D, C or width) from the power law L = E + A x^-alpha
        fitted on the selected runs (Kaplan's single-variable laws; muP loss against width),
        with the law's own prediction interval (uncalibrated: no backtest widens it)."""
        return self.ask.power_loss(_asked(x, at), x, E, arch, source, where)

    def optimal_batch_size(
        self, D: float, arch: str | None = None, source: str | None = None, where: str | None = None
    ) -> Prediction:
        """Optimal batch size in tokens at horizon D from BS* = c D^gamma (prediction
        interval of one new group's optimum, as for the LR)."""
        return self.ask.optimal_batch_size(_asked("D", D), arch, source, where)

    def crossover(
        self, arch_a: str, arch_b: str, C_range: tuple[float, float] = (1e15, 1e27),
        source: str | None = None, *, law: str = "auto",
    ) -> Crossover:  # fmt: skip
        """Compute at which the compute-optimal frontiers of two architectures cross."""
        try:
            low, high = C_range
        except (TypeError, ValueError):
            raise ScalingError(
                f"C_range must be two computes (from, to), got {C_range!r}"
            ) from None
        C_range = (_asked("C_range[0]", low), _asked("C_range[1]", high))
        return self.ask.crossover(arch_a, arch_b, C_range, source, law)

    def optimal_within(
        self, hours: float, arch: str | None = None, seq_len: int | None = None,
        source: str | None = None, where: str | None = None, *, law: str = "auto",
    ) -> WallclockAnswer:  # fmt: skip
        """Best N and D within `hours` on the device the local runs were timed on, for every
        architecture with a loss law, and which one wins (scaling.wallclock). source/where
        select the runs the loss laws are fitted on; the throughput model takes every timed
        local run."""
        return self.ask.optimal_within(_asked("hours", hours), arch, seq_len, source, where, law)

    # -- schedules -------------------------------------------------------------------------
    def fit_schedule(
        self, law: str = "auto", arch: str | None = None, source: str | None = None,
        where: str | None = None, *, loss: str = "val", refit: bool = False,
    ) -> FittedLaw:  # fmt: skip
        """A schedule law (multi-power, annealing, or auto: the one that predicts its held-out
        schedules best) fitted on the selected runs' val or train loss curves."""
        return self.fit("schedule", arch, source, where, refit=refit, schedule_law=law, loss=loss)

    def predict_curve(
        self, lrs: Any, fitted: FittedLaw | None = None, **select: Any
    ) -> schedules.CurvePrediction:
        """The loss after every step of one schedule (per-step LRs), with its band; `select`
        goes to fit_schedule when no fit is given."""
        return schedules.predict_curve(fitted or self.fit_schedule(**select), lrs, self.level)

    def optimal_schedule(
        self, steps: int, fitted: FittedLaw | None = None, **select: Any
    ) -> schedules.ScheduleAnswer:
        """The non-increasing-after-warmup schedule with the lowest predicted final loss at
        `steps` steps, and its predicted gain over cosine and WSD at the same horizon."""
        horizon = _asked("steps", steps)
        if horizon != int(horizon):
            raise ScalingError(f"steps must be a whole number, got {steps!r}")
        fitted = fitted or self.fit_schedule(**select)
        return schedules.best_schedule(fitted, int(horizon), self.level)

    def backtest(
        self,
        law: str = "auto",
        arch: str | None = None,
        holdout: str = "top-compute",
        fraction: float = 0.25,
        source: str | None = None,
        where: str | None = None,
        method: str | None = None,
        **options: Any,
    ) -> Backtest | HparamBacktest:
        """Fit on all but the held-out runs, predict those, and score the predictions.

        The fit calibrates its intervals inside the training runs only, so the coverage is
        measured on runs that were never used to calibrate; lo_law, hi_law are the law's own
        (uncalibrated) interval, distance the decades outside the training runs.
        lr-law and bs-law hold out whole (N, D) groups; `method` is how lr-law is fitted.
        `options` are the fit's, as Study.fit takes them (power: x, E; lr-law: form).
        """
        entry = laws.REGISTRY.get(law)
        if entry is None or entry.backtest is None or entry.predict is None:
            raise ScalingError(f"backtest supports {', '.join(laws.BACKTESTED)}")
        if method is not None and entry.backtest is backtest_runs:  # it would go unread
            raise ScalingError(f"method applies to the lr-law and bs-law backtests, not {law}")
        self.fits.check_options(law, options)
        method = method or options.pop("method", None)  # lr-law's, given as a fit option
        how = (holdout, fraction, source, where, method)
        return entry.backtest(self.fits, law, entry.predict, arch, *how, **options)  # type: ignore[no-any-return]


def _asked(name: str, value: Any) -> float:
    """A question's N, D, U, C, hours or steps as one finite positive number (text such as
    "70B" read as the CLI reads it), else ScalingError in one line: a NaN, a zero or a list
    would otherwise come back as a loss of nan or inf, or as numpy's error from deep in a fit."""
    number: float | None = None
    if isinstance(value, str):
        try:
            number = parse_number(value)
        except ValueError:
            number = None
    elif isinstance(value, Real) and not isinstance(value, bool):
        number = float(value)
    if number is None or not (math.isfinite(number) and number > 0):
        raise ScalingError(f"{name} must be one positive number, got {value!r}")
    return number
