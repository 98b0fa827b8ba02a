"""The prediction API: fit laws on a selection of runs and answer questions with intervals.

A `Study` reads runs from a DuckDB run log (or a DataFrame), fits the laws of fits/ on a
selection of them, stores every fit with the selection it came from, and reuses a stored fit
while the selection holds the same runs. Loss predictions carry prediction intervals: the
bootstrap draws of the law plus the scatter of single runs around it (log residuals), since a
question about a run is answered by one run, not by the mean of many. Loss laws are also
backtested inside the runs they are fitted on (fits.extrapolation): `auto` picks the form that
extrapolates best, and every loss interval is widened by the error those backtests saw at the
question's distance from the data.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import duckdb
import numpy as np
import pandas as pd

from fits import (
    LOSS_LAWS,
    EnvelopeFit,
    Fit,
    FitError,
    IsoFLOPFit,
    LogLinearLaw,
    LossLaw,
    LROptima,
    PowerLaw,
    batch_size_law,
    bjorck_lr,
    from_dict,
    frontier_crossing,
    near_optimal_runs,
    optimal_lr,
    porian_lr,
    step_law_lr,
)
from fits.bootstrap import percentile_interval
from fits.extrapolation import Calibration, assess
from fits.hparam_backtest import largest_compute, score_groups
from scaling.errors import ScalingError, ScalingWarning
from scaling.results import Backtest, ComputeOptimal, Crossover, HparamBacktest, Prediction, fmt
from scaling.wallclock import WallclockAnswer, for_study
from store.db import connect, default_path, migrate
from store.errors import StoreError
from store.fit_log import find_fit, runs_fingerprint, save_fit, save_prediction
from store.imports import normalise_columns
from store.runs import read_curves, read_runs

LAWS = ("auto", *LOSS_LAWS, "isoflop", "envelope", "power", "lr", "lr-law", "bs-law")
POWER_X = {"N": "N", "D": "D", "C": "C", "width": "d_model"}
LR_GROUP = ("arch", "parametrization", "N", "D", "batch_size")  # runs that differ only in LR
HOLDOUTS = ("top-compute", "top-params", "top-tokens", "random")
LOSS_FORMS = ("auto", *LOSS_LAWS)  # laws of loss in (N, D): selected and calibrated
CALIBRATION = "nested-backtest-v1"  # in the selection, so fits made before it are not reused
T = TypeVar("T")


@dataclass
class FittedLaw:
    """A fit with its identity: which law, on which runs, stored under which id."""

    law: str
    model: Fit
    selection: dict[str, Any]
    fit_id: str | None = None
    table: pd.DataFrame | None = field(default=None, repr=False)
    residuals: np.ndarray | None = field(default=None, repr=False)
    forms: pd.DataFrame | None = field(default=None, repr=False)
    calibration: Calibration | None = None

    def summary(self) -> str:
        head = f"{self.law} fit {self.fit_id or '(not stored)'} on {self.selection['n_runs']} runs"
        body = self.model.summary()
        if self.table is not None:
            body = (body + "\n" if body else "") + self.table.to_string(index=False)
        return "\n".join([head, body, *self.extrapolation_lines()])

    def extrapolation_lines(self) -> list[str]:
        """The forms' nested-backtest errors and the calibration, for the summary."""
        if self.forms is None:
            return []
        errors = [f"{e:.2%}" if pd.notna(e) else "-" for e in self.forms.error]
        shown = self.forms.assign(error=errors)
        lines = ["law forms, by out-of-range error of nested backtests (median |log error|):"]
        lines += ["  " + line for line in shown.to_string(index=False).splitlines()]
        cal = self.calibration
        if cal is None:
            lines.append("intervals NOT calibrated: too few runs to backtest inside the data")
        else:
            lines.append(cal.describe())
        return lines

    def __str__(self) -> str:
        return self.summary()


class Study:
    """Questions about large runs, answered from the small runs in a run log."""

    def __init__(
        self,
        db: str | Path | None = None,
        *,
        level: float = 0.90,
        n_bootstrap: int = 1000,
        seed: int = 0,
        n_jobs: int | None = 1,
    ) -> None:
        if not 0 < level < 1:
            raise ScalingError(f"level must be between 0 and 1, got {level}")
        self.db = db
        self.level = level
        self.n_bootstrap = n_bootstrap
        self.seed = seed
        self.n_jobs = n_jobs
        self._memory: duckdb.DuckDBPyConnection | None = None

    @classmethod
    def from_frame(cls, runs: pd.DataFrame, **options: Any) -> Study:
        """A study over runs that live in a DataFrame (columns N, D, loss, lr, ... or the
        run-log names); fits and predictions are kept in memory."""
        study = cls(None, **options)
        frame = normalise_columns(runs, {})
        if "final_val_loss" not in frame.columns:
            raise ScalingError("the frame needs a loss column (loss or final_val_loss)")
        defaults = {
            "run_id": [f"row{i}" for i in range(len(frame))],
            "status": "done",
            "source": "frame",
        }
        frame = frame.assign(**{k: v for k, v in defaults.items() if k not in frame.columns})
        con = duckdb.connect(":memory:")
        migrate(con, Path(":memory:"))
        con.register("_frame", frame[[c for c in frame.columns if c in _run_columns(con)]])
        con.execute("INSERT INTO runs BY NAME SELECT * FROM _frame")
        con.unregister("_frame")
        study._memory = con
        return study

    @contextmanager
    def _connection(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        if self._memory is not None:
            yield self._memory
        else:
            with connect(self.db, read_only=read_only) as con:
                yield con

    # -- data ------------------------------------------------------------------------------
    def runs(
        self,
        arch: str | None = None,
        status: str | None = "done",
        source: str | None = None,
        where: str | None = None,
        sweep: str | None = None,
    ) -> pd.DataFrame:
        """Runs as a DataFrame (by default only finished ones)."""
        with self._connection(read_only=True) as con:
            try:
                return read_runs(
                    con, arch=arch, status=status, sweep=sweep, source=source, where=where
                )
            except duckdb.Error as exc:
                raise ScalingError(f"bad --where clause: {str(exc).splitlines()[0]}") from exc

    def _data(
        self, law: str, arch: str | None, source: str | None, where: str | None, n_column: str
    ) -> pd.DataFrame:
        """The runs a law is fitted on, with the columns fits/ expects (N, D, C, loss, ...)."""
        status = None if law in ("lr", "lr-law") else "done"
        runs = self.runs(arch=arch, status=status, source=source, where=where)
        if status is None:
            runs = runs[runs["status"].isin(["done", "diverged"])]
        if runs.empty:
            what = ", ".join(
                f"{k}={v}" for k, v in (("arch", arch), ("source", source), ("where", where)) if v
            )
            raise ScalingError(f"no finished runs match{' (' + what + ')' if what else ''}")
        if n_column not in runs.columns:
            raise ScalingError(f"unknown N column {n_column!r}: use params or params_nonembed")
        frame = pd.DataFrame(
            {
                "run_id": runs["run_id"],
                "arch": runs["arch"].fillna("-"),
                "N": runs[n_column].astype(float),
                "D": runs["tokens"].astype(float),
                "C": runs["flops"].astype(float),
                "loss": runs["final_val_loss"].astype(float),
                "lr": runs["lr"].astype(float),
                "batch_size": runs["batch_size"].astype(float),
                "batch_tokens": (runs["batch_size"] * runs["seq_len"]).astype(float),
                "d_model": runs["d_model"].astype(float),
                "U": runs["unique_tokens"].astype(float) if "unique_tokens" in runs else np.nan,
                "parametrization": runs["parametrization"].fillna("-"),
                "status": runs["status"],
            }
        )
        return frame.reset_index(drop=True)

    # -- fitting ---------------------------------------------------------------------------
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
        force: keep a loss law the data cannot identify, flagged (stored apart from good
        fits and never picked up by the questions, which fit without force).
        """
        if law not in LAWS:
            raise ScalingError(f"unknown law {law!r}: choose one of {', '.join(LAWS)}")
        data = self._data(law, arch, source, where, n_column)
        n_bootstrap = int(options.pop("bootstrap", self.n_bootstrap))
        selection: dict[str, Any] = {
            "law": law,
            "arch": arch,
            "source": source,
            "where": where,
            "n_column": n_column,
            "options": options,
            "bootstrap": n_bootstrap,
            "level": self.level,
            "seed": self.seed,
            "n_runs": len(data),
            "runs": runs_fingerprint(list(data.run_id)),
            **({"force": True} if force else {}),
        }
        if law in LOSS_FORMS:
            selection["calibration"] = CALIBRATION
        if law == "auto":
            selection["forms"] = list(LOSS_LAWS)  # new forms: select again
        if not refit:
            with self._connection(read_only=True) as con:
                stored = find_fit(con, law, selection)
            reloaded = _reload(law, selection, *stored) if stored is not None else None
            if reloaded is not None and (force or not _problems(reloaded.model)):
                return reloaded
        try:
            fitted = self._fit_law(law, data, selection, n_bootstrap, dict(options))
        except FitError as exc:
            raise ScalingError(f"cannot fit {law}: {exc}") from exc
        record = _record(fitted)
        fitted.fit_id = self._write(
            lambda con: save_fit(con, law, arch, selection, record), "the fit is not stored"
        )
        return fitted

    def _fit_law(
        self,
        law: str,
        data: pd.DataFrame,
        selection: dict[str, Any],
        n_bootstrap: int,
        options: dict[str, Any],
    ) -> FittedLaw:
        """Look the law up: a loss law in fits' registry, else one of the other fitters."""
        if law in LOSS_FORMS:
            return self._fit_loss_form(law, data, selection, n_bootstrap)
        fitters: dict[str, Callable[..., FittedLaw]] = {
            "isoflop": self._fit_isoflop,
            "envelope": self._fit_envelope,
            "power": self._fit_power,
            "lr": self._fit_lr,
            "lr-law": self._fit_lr_law,
            "bs-law": self._fit_bs_law,
        }
        return fitters[law](law, data, selection, n_bootstrap, options)

    def _fit_isoflop(self, law: str, data: pd.DataFrame, selection: dict[str, Any],
                     n_bootstrap: int, options: dict[str, Any]) -> FittedLaw:  # fmt: skip
        neighbors = options.pop("neighbors", None)
        model = IsoFLOPFit(level=self.level, neighbors=neighbors).fit(data.N, data.loss, C=data.C)
        return FittedLaw(law, model, selection, table=model.budgets_)

    def _fit_envelope(self, law: str, data: pd.DataFrame, selection: dict[str, Any],
                      *_: Any) -> FittedLaw:  # fmt: skip
        return FittedLaw(law, self._envelope(data, self.level), selection)

    def _fit_power(
        self,
        law: str,
        data: pd.DataFrame,
        selection: dict[str, Any],
        n_bootstrap: int,
        options: dict[str, Any],
    ) -> FittedLaw:
        x_name = options.pop("x", "C")
        if x_name not in POWER_X:
            raise ScalingError(f"power law x must be one of {', '.join(POWER_X)}")
        x = data[POWER_X[x_name]]
        model = PowerLaw(
            E=options.pop("E", None), level=self.level, n_bootstrap=n_bootstrap,
            random_state=self.seed, force=bool(selection.get("force", False)),
        ).fit(x, data.loss)  # fmt: skip
        with np.errstate(all="ignore"):
            residuals = np.log(data.loss) - np.log(model.predict(x))
        return FittedLaw(law, model, selection, residuals=residuals.to_numpy())

    def _fit_lr(self, law: str, data: pd.DataFrame, selection: dict[str, Any],
                *_: Any) -> FittedLaw:  # fmt: skip
        model = LROptima(group_keys=LR_GROUP, level=self.level).fit(data)
        return FittedLaw(law, model, selection, table=model.table_)

    def _fit_lr_law(
        self,
        law: str,
        data: pd.DataFrame,
        selection: dict[str, Any],
        n_bootstrap: int,
        options: dict[str, Any],
    ) -> FittedLaw:
        method = options.get("method", "vertex")
        if method == "near-optimal":
            near = near_optimal_runs(data[data.status == "done"], ["arch", "N", "D"], "loss")
            return self._lr_law(near, near.lr, selection, options.get("form", "auto"))
        if method != "vertex":
            raise ScalingError("lr-law method must be vertex or near-optimal")
        optima = optimal_lr(data, LR_GROUP)
        usable = optima[optima.bracketed.astype(bool)]
        if len(usable) < 3:
            raise ScalingError(
                f"need at least 3 groups with a bracketed LR optimum, found {len(usable)} "
                f"of {len(optima)} (scan LRs on both sides of the best one)"
            )
        fitted = self._lr_law(usable, usable.lr_opt, selection, options.get("form", "auto"))
        fitted.table = optima
        return fitted

    def _fit_bs_law(self, law: str, data: pd.DataFrame, selection: dict[str, Any],
                    *_: Any) -> FittedLaw:  # fmt: skip
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
        model = batch_size_law("D", level=self.level).fit(near, near.batch_tokens)
        return FittedLaw(law, model, selection, table=near)

    def _fit_loss_form(
        self, law: str, data: pd.DataFrame, selection: dict[str, Any], n_bootstrap: int
    ) -> FittedLaw:
        """Fit the form (every form for auto), backtest it inside the runs, keep the best.

        Candidates are fitted without bootstrap; only the winner is refitted with it (at once
        when there is one candidate). A form the data cannot identify is left out with why.
        """
        names = list(LOSS_LAWS) if law == "auto" else [law]
        config: dict[str, Any] = {
            "level": self.level,
            "random_state": self.seed,
            "n_jobs": self.n_jobs,
            "force": bool(selection.get("force", False)),
        }
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
        runs = data.assign(C=_questions(data.N, data.D).C.to_numpy())  # see _questions
        forms, best, calibration = assess(runs, candidates, self.level)
        best = best or next(iter(models))
        model = models[best]
        if draws != n_bootstrap:
            model = LOSS_LAWS[best](n_bootstrap=n_bootstrap, **config).fit_frame(data)
        residuals = np.log(data.loss.to_numpy()) - np.log(model.predict_frame(data))
        return FittedLaw(
            law, model, selection, residuals=residuals, forms=forms, calibration=calibration
        )

    def _lr_law(
        self, points: pd.DataFrame, lr: pd.Series, selection: dict[str, Any], form: str
    ) -> FittedLaw:
        """LR* against N and/or D; `auto` drops a variable that does not vary."""
        if form == "auto":
            many_n, many_d = points.N.nunique() > 1, points.D.nunique() > 1
            form = "step" if many_n and many_d else "porian" if many_n else "bjorck"
        makers = {"step": step_law_lr, "porian": porian_lr, "bjorck": bjorck_lr}
        if form not in makers:
            raise ScalingError(f"unknown lr-law form {form!r}: auto, step, porian or bjorck")
        model = makers[form](level=self.level).fit(points, lr)
        return FittedLaw("lr-law", model, selection, table=points)

    def _envelope(self, data: pd.DataFrame, level: float) -> EnvelopeFit:
        with self._connection(read_only=True) as con:
            curves = read_curves(con, list(data.run_id))
        if curves.empty:
            raise ScalingError("no loss curves for these runs (imported runs have none)")
        per_token = (data.C / data.D).rename("flops_per_token")
        curves = curves.merge(data[["run_id", "N"]].join(per_token), on="run_id")
        curves["flops"] = curves.tokens * curves.flops_per_token
        return EnvelopeFit(level=level).fit(
            curves, N="N", tokens="tokens", loss="train_loss", flops="flops"
        )

    # -- questions -------------------------------------------------------------------------
    def loss_law(
        self,
        law: str,
        arch: str | None = None,
        source: str | None = None,
        where: str | None = None,
    ) -> tuple[FittedLaw, LossLaw]:
        """A fitted loss law (auto: the form that extrapolated best) for a question about loss."""
        if law not in LOSS_FORMS:
            raise ScalingError(f"unknown loss law {law!r}: choose one of {', '.join(LOSS_FORMS)}")
        fitted = self.fit(law, arch, source, where)
        assert isinstance(fitted.model, LossLaw)
        return fitted, fitted.model

    def predict_loss(
        self,
        N: float,
        D: float,
        arch: str | None = None,
        source: str | None = None,
        where: str | None = None,
        *,
        law: str = "auto",
        U: float | None = None,
    ) -> Prediction:
        """Loss of one model of N parameters trained on D tokens, with a prediction interval.

        U: unique tokens the run can see (data-constrained; None: unlimited).
        """
        fitted, _ = self.loss_law(law, arch, source, where)
        asked = {"ask": "loss", "N": N, "D": D, "arch": arch, "law": law}
        return self._answer(
            self.loss_at(fitted, N, D, U), asked if U is None else {**asked, "U": U}
        )

    def loss_at(self, fitted: FittedLaw, N: float, D: float, U: float | None = None) -> Prediction:
        """The loss of (N, D) by a law already fitted, with its (calibrated) interval; not
        logged. U: unique tokens the run can see (None: unlimited)."""
        question = pd.DataFrame({"N": [N], "D": [D], "U": [math.nan if U is None else U]})
        value, lo, hi = self._loss_interval(fitted, question)
        kind = _interval_kind(fitted)
        note = "" if U is not None else _repeats_note("D", D, self._fitted_runs(fitted))
        return Prediction("loss", value[0], lo[0], hi[0], self.level, fitted.fit_id, kind, note)

    def _fitted_runs(self, fitted: FittedLaw) -> pd.DataFrame:
        """The runs a fit's selection names, as fitted (for what they say beside the law)."""
        sel = fitted.selection
        return self._data(sel["law"], sel["arch"], sel["source"], sel["where"], sel["n_column"])

    def compute_optimal(
        self,
        C: float,
        arch: str | None = None,
        source: str | None = None,
        where: str | None = None,
        *,
        law: str = "auto",
    ) -> ComputeOptimal:
        """N and D that minimise the fitted loss at compute C = 6 N D, and that loss."""
        fitted, model = self.loss_law(law, arch, source, where)
        n_pred, d_pred = model.compute_optimal_interval(np.array([C]), self.level)
        value, lo, hi = self._loss_interval(fitted, None, optimal_at=C)
        fid, level = fitted.fit_id, self.level
        d_opt = _scalar("D_opt", d_pred, fid)
        d_opt = replace(d_opt, note=_repeats_note("D_opt", d_opt.value, self._fitted_runs(fitted)))
        answer = ComputeOptimal(
            C,
            _scalar("N_opt", n_pred, fid),
            d_opt,
            Prediction("loss", value[0], lo[0], hi[0], level, fid, _interval_kind(fitted)),
        )
        for part in (answer.N, answer.D, answer.loss):
            self._answer(part, {"ask": "compute_optimal", "C": C, "arch": arch, "law": law})
        return answer

    def optimal_lr(
        self,
        N: float,
        D: float,
        arch: str | None = None,
        source: str | None = None,
        where: str | None = None,
    ) -> Prediction:
        """Optimal peak LR from the fitted LR law, with the prediction interval of one new
        (N, D) group's optimum (the law's uncertainty plus the groups' scatter about it)."""
        fitted = self.fit("lr-law", arch, source, where)
        model: LogLinearLaw = fitted.model  # type: ignore[assignment]
        p = model.predict_interval({"N": [N], "D": [D]}, self.level, observation=True)
        return self._answer(
            _scalar("lr_opt", p, fitted.fit_id), {"ask": "lr", "N": N, "D": D, "arch": arch}
        )

    def optimal_batch_size(
        self, D: float, arch: str | None = None, source: str | None = None, where: str | None = None
    ) -> Prediction:
        """Optimal batch size in tokens at horizon D from BS* = c D^gamma (prediction
        interval of one new group's optimum, as for the LR)."""
        fitted = self.fit("bs-law", arch, source, where)
        model: LogLinearLaw = fitted.model  # type: ignore[assignment]
        p = model.predict_interval({"D": [D]}, self.level, observation=True)
        return self._answer(
            _scalar("batch_tokens_opt", p, fitted.fit_id),
            {"ask": "batch_size", "D": D, "arch": arch},
        )

    def crossover(
        self,
        arch_a: str,
        arch_b: str,
        C_range: tuple[float, float] = (1e15, 1e27),
        source: str | None = None,
        *,
        law: str = "auto",
    ) -> Crossover:
        """Compute at which the compute-optimal frontiers of two architectures cross."""
        lo_c, hi_c = C_range
        if not 0 < lo_c < hi_c:
            raise ScalingError(f"compute range must satisfy 0 < low < high, got {C_range}")
        (fa, ma), (fb, mb) = (self.loss_law(law, a, source) for a in (arch_a, arch_b))
        point = frontier_crossing(ma, mb, lo_c, hi_c)[0]
        draws = frontier_crossing(ma, mb, lo_c, hi_c, draws=True)
        fraction = float(np.isfinite(draws).mean())
        a_better_low = ma.frontier(lo_c) < mb.frontier(lo_c)
        low_winner, high_winner = (arch_a, arch_b) if a_better_low else (arch_b, arch_a)
        if not np.isfinite(point):
            note = f"none in range {lo_c:.3g}..{hi_c:.3g} FLOPs: {low_winner} is better throughout"
            return Crossover(
                arch_a, arch_b, None, None, None, low_winner, low_winner, fraction, note
            )
        crossing = draws[np.isfinite(draws)]
        c_lo, c_hi = percentile_interval(np.log(crossing), self.level)
        winner, fid = (ma, fa.fit_id) if high_winner == arch_a else (mb, fb.fit_id)
        (n_pred, d_pred) = winner.compute_optimal_interval(np.array([point]), self.level)
        return Crossover(
            arch_a,
            arch_b,
            Prediction("C_cross", point, math.exp(c_lo), math.exp(c_hi), self.level, fid),
            _scalar(f"N_opt ({high_winner})", n_pred, fid),
            _scalar(f"D_opt ({high_winner})", d_pred, fid),
            low_winner,
            high_winner,
            fraction,
            f"{high_winner}'s frontier passes {low_winner}'s",
        )

    def optimal_within(
        self,
        hours: float,
        arch: str | None = None,
        seq_len: int | None = None,
        source: str | None = None,
        where: str | None = None,
        *,
        law: str = "auto",
    ) -> WallclockAnswer:
        """Best N and D within `hours` on the device the local runs were timed on, for every
        architecture with a loss law, and which one wins (scaling.wallclock). source/where
        select the runs the loss laws are fitted on; the throughput model takes every timed
        local run."""
        answer = for_study(self, hours, arch, seq_len, law, source, where)
        for name in [arch] if arch else list(answer.optima):
            optimum = answer.optima[name]
            question = {"ask": "optimal_within", "hours": hours, "arch": name, "N": optimum.N,
                        "D": optimum.D, "winner": answer.winner}  # fmt: skip
            self._answer(optimum.loss, question)
        return answer

    def backtest(
        self,
        law: str = "auto",
        arch: str | None = None,
        holdout: str = "top-compute",
        fraction: float = 0.25,
        source: str | None = None,
        where: str | None = None,
        method: str | None = None,
    ) -> Backtest | HparamBacktest:
        """Fit on all but the held-out runs, predict those, and score the predictions.

        The fit calibrates its intervals inside the training runs only, so the coverage is
        measured on runs that were never used to calibrate; lo_law, hi_law are the law's own
        (uncalibrated) interval, distance the decades outside the training runs.
        lr-law and bs-law hold out whole (N, D) groups; `method` is how lr-law is fitted.
        """
        if law in ("lr-law", "bs-law"):
            return self._backtest_hparams(law, arch, holdout, fraction, source, where, method)
        if law not in (*LOSS_FORMS, "power"):
            raise ScalingError(
                f"backtest supports the loss laws ({', '.join(LOSS_FORMS)}), power, "
                "lr-law and bs-law"
            )
        if holdout not in HOLDOUTS:
            raise ScalingError(f"unknown holdout {holdout!r}: choose {', '.join(HOLDOUTS)}")
        if not 0 < fraction < 1:
            raise ScalingError(f"holdout fraction must be between 0 and 1, got {fraction}")
        data = self._data(law, arch, source, where, "params")
        n_test = max(1, round(fraction * len(data)))
        if holdout == "random":
            order = np.random.default_rng(self.seed).permutation(len(data))
        else:
            column = {"top-compute": "C", "top-params": "N", "top-tokens": "D"}[holdout]
            order = np.argsort(data[column].to_numpy(), kind="stable")
        test, train = data.iloc[order[-n_test:]], data.iloc[order[:-n_test]]
        quoted = ", ".join("'" + r.replace("'", "''") + "'" for r in train.run_id)
        held = f"run_id IN ({quoted})"
        clause = f"({where}) AND {held}" if where else held
        fitted = self.fit(law, arch, source, clause)
        value, lo, hi = self._law_interval(fitted, test)
        frame = (
            test[["run_id", "N", "D", "C"]]
            .assign(
                actual=test.loss.to_numpy(),
                predicted=value,
                lo=lo,
                hi=hi,
                lo_law=lo,
                hi_law=hi,
            )
            .reset_index(drop=True)
        )
        if fitted.calibration is not None:
            questions = _questions(frame.N, frame.D)
            frame["lo"], frame["hi"] = fitted.calibration.widen(value, lo, hi, questions)
            frame["distance"] = fitted.calibration.distance(questions)
        frame["rel_error"] = (frame.predicted - frame.actual) / frame.actual
        frame["covered"] = (frame.lo <= frame.actual) & (frame.actual <= frame.hi)
        return Backtest(law, holdout, fraction, self.level, len(train), frame, fitted.forms)

    def _backtest_hparams(
        self,
        law: str,
        arch: str | None,
        holdout: str,
        fraction: float,
        source: str | None,
        where: str | None,
        method: str | None,
    ) -> HparamBacktest:
        """Fit the LR (BS) law without the largest-compute (N, D) groups and score it on them."""
        if holdout != "top-compute":
            raise ScalingError(f"{law} backtests hold out the largest-compute groups only")
        if not 0 < fraction < 1:
            raise ScalingError(f"holdout fraction must be between 0 and 1, got {fraction}")
        method = method or ("vertex" if law == "lr-law" else "near-optimal")
        if law == "bs-law" and method != "near-optimal":
            raise ScalingError("bs-law is fitted on the near-optimal runs: --method near-optimal")
        data = self._data("lr", arch, source, where, "params")
        keys = ["arch", "parametrization", "N", "D"]
        groups = data[keys].drop_duplicates().reset_index(drop=True)
        held = groups[largest_compute(groups, fraction)]
        held = held.iloc[np.argsort((held.N * held.D).to_numpy(), kind="stable")]  # by compute
        test = data.set_index(keys).index.isin(held.set_index(keys).index)
        if len(groups) - len(held) < 3:
            left = f"{len(groups) - len(held)} of {len(groups)} (N, D) groups left to fit on"
            raise ScalingError(f"{law} backtest: {left}, need at least 3")
        quoted = ", ".join("'" + r.replace("'", "''") + "'" for r in data.run_id[~test])
        clause = f"({where}) AND run_id IN ({quoted})" if where else f"run_id IN ({quoted})"
        options: dict[str, Any] = {"method": method} if law == "lr-law" else {}
        fitted = self.fit(law, arch, source, clause, **options)
        model: LogLinearLaw = fitted.model  # type: ignore[assignment]
        p = model.predict_interval(held, self.level, observation=True)
        predicted = held.assign(predicted=p.estimate, lo=p.lo, hi=p.hi)
        x, across, name = (
            ("lr", "batch_size", "LR") if law == "lr-law" else ("batch_tokens", "lr", "batch size")
        )
        frame = score_groups(data[test], predicted, keys, x, across, name=name)
        return HparamBacktest(
            law, method, model.law_formula, fraction, self.level, len(groups) - len(held), frame
        )

    # -- helpers ---------------------------------------------------------------------------
    def _loss_interval(
        self,
        fitted: FittedLaw,
        runs: pd.DataFrame | None,
        optimal_at: float | None = None,
    ) -> tuple[np.ndarray, ...]:
        """Point loss and its interval, widened by the calibration when the fit has one."""
        point, lo, hi = self._law_interval(fitted, runs, optimal_at)
        if fitted.calibration is not None:
            if runs is None:  # the question is the compute-optimal model at optimal_at
                model: LossLaw = fitted.model  # type: ignore[assignment]
                n_opt, d_opt = model.compute_optimal([optimal_at])
                runs = pd.DataFrame({"N": n_opt, "D": d_opt})
            lo, hi = fitted.calibration.widen(point, lo, hi, _questions(runs.N, runs.D))
        return point, lo, hi

    def _law_interval(
        self,
        fitted: FittedLaw,
        runs: pd.DataFrame | None,
        optimal_at: float | None = None,
    ) -> tuple[np.ndarray, ...]:
        """Point loss and the law's own interval: law draws times a resampled run residual.

        At the rows of `runs` (the law's columns; C for a power law), or on the
        compute-optimal frontier at `optimal_at`.
        """
        model = fitted.model
        if isinstance(model, LossLaw):
            if runs is None:
                point, draws = model.frontier(optimal_at), model.frontier_draws([optimal_at])
            else:
                point, draws = model.predict_frame(runs), model.loss_draws(runs)
        elif isinstance(model, PowerLaw) and runs is not None:
            point, draws = model.predict(runs.C), model.predict_draws(runs.C)
        else:
            raise ScalingError(f"{fitted.law} does not predict loss")
        rng = np.random.default_rng(self.seed)
        residuals = fitted.residuals if fitted.residuals is not None else np.zeros(1)
        noise = rng.choice(residuals, size=draws.shape, replace=True)
        lo, hi = percentile_interval(draws * np.exp(noise), self.level)
        return np.asarray(point, dtype=float).ravel(), np.ravel(lo), np.ravel(hi)

    def _answer(self, prediction: Prediction, question: dict[str, Any]) -> Prediction:
        """Log the answer in `predictions` when the run log can be written; answer anyway."""
        self._write(
            lambda con: save_prediction(
                con,
                prediction.fit_id,
                {**question, "quantity": prediction.quantity},
                prediction.value,
                prediction.lo,
                prediction.hi,
                prediction.level,
            ),
            "the answer is not logged",
        )
        return prediction

    def _write(self, action: Callable[[duckdb.DuckDBPyConnection], T], what: str) -> T | None:
        """Run a write on the run log; on a read-only or unwritable log warn (ScalingWarning)
        with `what` happened, and return None, so that a question is still answered."""
        try:
            with self._connection() as con:
                return action(con)
        except (StoreError, duckdb.Error, OSError) as exc:
            path = Path(self.db) if self.db is not None else default_path()
            writable = os.access(path, os.W_OK) and os.access(path.parent or ".", os.W_OK)
            reason = f"{path} is read-only" if not writable else str(exc).splitlines()[0]
            warnings.warn(f"{reason}: {what}", ScalingWarning, stacklevel=3)
            return None


def _scalar(quantity: str, p: Any, fit_id: str | None, interval: str = "confidence") -> Prediction:
    """The first point of a fits.Estimate (arrays) as one answer."""
    return Prediction(
        quantity,
        float(np.ravel(p.estimate)[0]),
        float(np.ravel(p.lo)[0]),
        float(np.ravel(p.hi)[0]),
        p.level,
        fit_id,
        interval,
    )


def _refit_predict(model: LossLaw, train: pd.DataFrame, test: pd.DataFrame) -> np.ndarray:
    """The nested backtests' fit-and-predict: a fast refit of `model` on the training runs."""
    return model.quick_refit(train).predict_frame(test)


def _questions(N: Any, D: Any) -> pd.DataFrame:
    """Runs or questions as the calibration sees them: N, D and C = 6 N D.

    C is 6 N D and not the stored FLOPs, because a question's exact FLOPs are unknown.
    """
    N, D = np.asarray(N, dtype=float), np.asarray(D, dtype=float)
    return pd.DataFrame({"N": N, "D": D, "C": 6.0 * N * D})


def _interval_kind(fitted: FittedLaw) -> str:
    return "prediction" if fitted.calibration is not None else "uncalibrated prediction"


def _run_columns(con: duckdb.DuckDBPyConnection) -> set[str]:
    return {
        r[0]
        for r in con.execute(
            "SELECT column_name FROM duckdb_columns() WHERE table_name = 'runs'"
        ).fetchall()
    }


def _record(fitted: FittedLaw) -> dict[str, Any]:
    """What the fits table keeps: the estimator's record, the table, the residuals."""
    record = fitted.model.to_dict()
    if fitted.table is not None:
        record["table"] = json.loads(fitted.table.to_json(orient="records"))
    if fitted.residuals is not None:
        record["residuals"] = fitted.residuals.tolist()
    if fitted.forms is not None:
        record["forms"] = json.loads(fitted.forms.to_json(orient="records"))
    if fitted.calibration is not None:
        record["calibration"] = fitted.calibration.to_dict()
    return record


def _reload(
    law: str, selection: dict[str, Any], fit_id: str, record: dict[str, Any]
) -> FittedLaw | None:
    """A stored fit as a FittedLaw (None for a record without a model, or in a format newer
    than this release reads: fit it again)."""
    if "params" not in record:
        return None
    try:
        model = from_dict(record)
    except ValueError:
        return None
    table = pd.DataFrame(record["table"]) if "table" in record else None
    residuals = np.asarray(record["residuals"]) if "residuals" in record else None
    forms = pd.DataFrame(record["forms"]) if "forms" in record else None
    cal = Calibration.from_dict(record["calibration"]) if "calibration" in record else None
    return FittedLaw(law, model, selection, fit_id, table, residuals, forms, cal)


def _repeats_note(name: str, tokens: float, runs: pd.DataFrame) -> str:
    """A caution when `tokens` exceed the one corpus every run trained on (known, equal U):
    the loss laws, asked without U, and every law's allocation assume unlimited unique data."""
    unique = runs.U
    if unique.isna().any() or unique.nunique() != 1:
        return ""
    corpus = float(unique.iloc[0])
    if tokens <= corpus:
        return ""
    return (
        f"{name} = {fmt(tokens)} tokens is {tokens / corpus:.1f} epochs of the {fmt(corpus)} "
        f"unique tokens the runs trained on (the longest run: {runs.D.max() / corpus:.1f}); the "
        "law assumes unlimited unique data, and repeated tokens are worth less (predict loss "
        "--U with law data-constrained, fitted on runs that repeat data, prices them)"
    )


def _problems(model: Fit) -> list[str]:
    """Identification problems of a law that reports them (loss laws, power laws)."""
    return model.identification_problems() if isinstance(model, LossLaw | PowerLaw) else []
