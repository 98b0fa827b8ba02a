"""The prediction API: fit laws on a selection of runs and answer questions with intervals.

A `Study` reads runs from a DuckDB run log (or a DataFrame), fits the laws of fits/ on a
selection of them, stores every fit with the selection it came from, and reuses a stored fit
while the selection holds the same runs. Loss predictions carry prediction intervals: the
bootstrap draws of the law plus the scatter of single runs around it (log residuals), since a
question about a run is answered by one run, not by the mean of many.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
from scipy.optimize import brentq

from fits import (
    ChinchillaLaw,
    EnvelopeFit,
    Fit,
    FitError,
    IsoFLOPFit,
    PowerLaw,
    batch_size_law,
    bjorck_lr,
    chinchilla_loss,
    compute_optimal_allocation,
    from_dict,
    near_optimal_runs,
    optimal_lr,
    porian_lr,
    step_law_lr,
)
from fits.bootstrap import percentile_interval
from scaling.errors import ScalingError
from scaling.results import Backtest, ComputeOptimal, Crossover, Prediction
from scaling.wallclock import WallclockAnswer, for_study
from store.db import connect, migrate
from store.fits import find_fit, runs_fingerprint, save_fit, save_prediction
from store.imports import normalise_columns
from store.runs import read_curves, read_runs

LAWS = ("chinchilla", "isoflop", "envelope", "power", "lr", "lr-law", "bs-law")
POWER_X = {"N": "N", "D": "D", "C": "C", "width": "d_model"}
LR_GROUP = ("arch", "parametrization", "N", "D", "batch_size")  # runs that differ only in LR
HOLDOUTS = ("top-compute", "top-params", "top-tokens", "random")


@dataclass
class FittedLaw:
    """A fit with its identity: which law, on which runs, stored under which id."""

    law: str
    model: Fit | None
    selection: dict[str, Any]
    fit_id: str | None = None
    table: pd.DataFrame | None = field(default=None, repr=False)
    residuals: np.ndarray | None = field(default=None, repr=False)

    def summary(self) -> str:
        head = f"{self.law} fit {self.fit_id or '(not stored)'} on {self.selection['n_runs']} runs"
        body = self.model.summary() if self.model is not None else ""
        if self.table is not None:
            body = (body + "\n" if body else "") + self.table.to_string(index=False)
        return f"{head}\n{body}"

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
        **options: Any,
    ) -> FittedLaw:
        """Fit `law` on the selected runs (reusing a stored fit of the same runs) and store it.

        Options: power: x = N | D | C | width, E = fixed offset (e.g. 0);
        lr-law: form = auto | step | porian | bjorck; bootstrap: resamples (chinchilla, power).
        """
        if law not in LAWS:
            raise ScalingError(f"unknown law {law!r}: choose one of {', '.join(LAWS)}")
        data = self._data(law, arch, source, where, n_column)
        n_bootstrap = int(options.pop("bootstrap", self.n_bootstrap))
        selection = {
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
        }
        if not refit:
            with self._connection(read_only=True) as con:
                stored = find_fit(con, law, selection)
            if stored is not None:
                return _reload(law, selection, *stored)
        try:
            fitted = self._fit_law(law, data, selection, n_bootstrap, dict(options))
        except FitError as exc:
            raise ScalingError(f"cannot fit {law}: {exc}") from exc
        record = _record(fitted)
        with self._connection() as con:
            fitted.fit_id = save_fit(con, law, arch, selection, record)
        return fitted

    def _fit_law(
        self,
        law: str,
        data: pd.DataFrame,
        selection: dict[str, Any],
        n_bootstrap: int,
        options: dict[str, Any],
    ) -> FittedLaw:
        level, seed = self.level, self.seed
        if law == "chinchilla":
            model = ChinchillaLaw(
                level=level, n_bootstrap=n_bootstrap, random_state=seed, n_jobs=self.n_jobs
            ).fit(data.N, data.D, data.loss)
            residuals = np.log(data.loss) - np.log(model.predict(data.N, data.D))
            return FittedLaw(law, model, selection, residuals=residuals.to_numpy())
        if law == "isoflop":
            model = IsoFLOPFit(level=level).fit(data.N, data.loss, C=data.C)
            return FittedLaw(law, model, selection, table=model.budgets_)
        if law == "envelope":
            return FittedLaw(law, self._envelope(data, level), selection)
        if law == "power":
            x_name = options.pop("x", "C")
            if x_name not in POWER_X:
                raise ScalingError(f"power law x must be one of {', '.join(POWER_X)}")
            x = data[POWER_X[x_name]]
            model = PowerLaw(
                E=options.pop("E", None), level=level, n_bootstrap=n_bootstrap, random_state=seed
            ).fit(x, data.loss)
            residuals = np.log(data.loss) - np.log(model.predict(x))
            return FittedLaw(law, model, selection, residuals=residuals.to_numpy())
        optima = optimal_lr(data, LR_GROUP)
        if law == "lr":
            return FittedLaw(law, None, selection, table=optima)
        if law == "lr-law":
            method = options.get("method", "vertex")
            if method == "near-optimal":
                near = near_optimal_runs(data[data.status == "done"], ["arch", "N", "D"], "loss")
                return self._lr_law(near, near.lr, selection, options.get("form", "auto"))
            if method != "vertex":
                raise ScalingError("lr-law method must be vertex or near-optimal")
            usable = optima[optima.bracketed.astype(bool)]
            if len(usable) < 3:
                raise ScalingError(
                    f"need at least 3 groups with a bracketed LR optimum, found {len(usable)} "
                    f"of {len(optima)} (scan LRs on both sides of the best one)"
                )
            fitted = self._lr_law(usable, usable.lr_opt, selection, options.get("form", "auto"))
            fitted.table = optima
            return fitted
        near = near_optimal_runs(data[data.status == "done"], ["arch", "N", "D"], "loss")
        if near["batch_tokens"].isna().any():
            raise ScalingError(
                "runs lack seq_len, so batch size in tokens is unknown "
                "(import with --columns seq_len=LENGTH)"
            )
        model = batch_size_law("D", level=level).fit(near, near.batch_tokens)
        return FittedLaw(law, model, selection, table=near)

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
    def predict_loss(
        self,
        N: float,
        D: float,
        arch: str | None = None,
        source: str | None = None,
        where: str | None = None,
    ) -> Prediction:
        """Loss of one model of N parameters trained on D tokens, with a prediction interval."""
        fitted = self.fit("chinchilla", arch, source, where)
        value, lo, hi = self._loss_interval(fitted, np.array([N]), np.array([D]))
        return self._answer(
            Prediction("loss", value[0], lo[0], hi[0], self.level, fitted.fit_id, "prediction"),
            {"ask": "loss", "N": N, "D": D, "arch": arch},
        )

    def compute_optimal(
        self, C: float, arch: str | None = None, source: str | None = None, where: str | None = None
    ) -> ComputeOptimal:
        """N and D that minimise the fitted loss at compute C = 6 N D, and that loss."""
        fitted = self.fit("chinchilla", arch, source, where)
        model: ChinchillaLaw = fitted.model  # type: ignore[assignment]
        n_pred, d_pred = model.compute_optimal_interval(np.array([C]), self.level)
        value, lo, hi = self._loss_interval(fitted, n_pred.estimate, d_pred.estimate, optimal_at=C)
        fid, level = fitted.fit_id, self.level
        answer = ComputeOptimal(
            C,
            _scalar("N_opt", n_pred, fid),
            _scalar("D_opt", d_pred, fid),
            Prediction("loss", value[0], lo[0], hi[0], level, fid, "prediction"),
        )
        for part in (answer.N, answer.D, answer.loss):
            self._answer(part, {"ask": "compute_optimal", "C": C, "arch": arch})
        return answer

    def optimal_lr(
        self,
        N: float,
        D: float,
        arch: str | None = None,
        source: str | None = None,
        where: str | None = None,
    ) -> Prediction:
        """Optimal peak LR from the fitted LR law (interval of the regression mean)."""
        fitted = self.fit("lr-law", arch, source, where)
        p = fitted.model.predict_interval({"N": [N], "D": [D]}, self.level)  # type: ignore[union-attr]
        return self._answer(
            _scalar("lr_opt", p, fitted.fit_id), {"ask": "lr", "N": N, "D": D, "arch": arch}
        )

    def optimal_batch_size(
        self, D: float, arch: str | None = None, source: str | None = None, where: str | None = None
    ) -> Prediction:
        """Optimal batch size in tokens at horizon D from BS* = c D^gamma."""
        fitted = self.fit("bs-law", arch, source, where)
        p = fitted.model.predict_interval({"D": [D]}, self.level)  # type: ignore[union-attr]
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
    ) -> Crossover:
        """Compute at which the compute-optimal frontiers of two architectures cross."""
        lo_c, hi_c = C_range
        if not 0 < lo_c < hi_c:
            raise ScalingError(f"compute range must satisfy 0 < low < high, got {C_range}")
        fa, fb = (self.fit("chinchilla", a, source) for a in (arch_a, arch_b))
        ma: ChinchillaLaw = fa.model  # type: ignore[assignment]
        mb: ChinchillaLaw = fb.model  # type: ignore[assignment]
        point = _crossing(ma._params_row()[None], mb._params_row()[None], lo_c, hi_c)[0]
        draws = _crossing(ma._draws(), mb._draws(), lo_c, hi_c)
        fraction = float(np.isfinite(draws).mean())
        a_at_low = frontier(ma._params_row()[None], np.array([lo_c]))[0, 0]
        b_at_low = frontier(mb._params_row()[None], np.array([lo_c]))[0, 0]
        low_winner, high_winner = (arch_a, arch_b) if a_at_low < b_at_low else (arch_b, arch_a)
        if not np.isfinite(point):
            note = f"none in range {lo_c:.3g}..{hi_c:.3g} FLOPs: {low_winner} is better throughout"
            return Crossover(
                arch_a, arch_b, None, None, None, low_winner, low_winner, fraction, note
            )
        crossing = draws[np.isfinite(draws)]
        c_lo, c_hi = percentile_interval(np.log(crossing), self.level)
        winner = ma if high_winner == arch_a else mb
        fid = (fa if winner is ma else fb).fit_id
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
        self, hours: float, arch: str | None = None, seq_len: int | None = None
    ) -> WallclockAnswer:
        """Best N and D within `hours` on the device the local runs were timed on, for every
        architecture with a Chinchilla fit, and which one wins (scaling.wallclock)."""
        answer = for_study(self, hours, arch, seq_len)
        for name in [arch] if arch else list(answer.optima):
            optimum = answer.optima[name]
            question = {"ask": "optimal_within", "hours": hours, "arch": name, "N": optimum.N,
                        "D": optimum.D, "winner": answer.winner}  # fmt: skip
            self._answer(optimum.loss, question)
        return answer

    def backtest(
        self,
        law: str = "chinchilla",
        arch: str | None = None,
        holdout: str = "top-compute",
        fraction: float = 0.25,
        source: str | None = None,
        where: str | None = None,
    ) -> Backtest:
        """Fit on all but the held-out runs, predict those, and score the predictions."""
        if law not in ("chinchilla", "power"):
            raise ScalingError("backtest supports the loss laws: chinchilla and power")
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
        if law == "chinchilla":
            value, lo, hi = self._loss_interval(fitted, test.N.to_numpy(), test.D.to_numpy())
        else:
            value, lo, hi = self._loss_interval(fitted, test.C.to_numpy(), None)
        frame = (
            test[["run_id", "N", "D", "C"]]
            .assign(
                actual=test.loss.to_numpy(),
                predicted=value,
                lo=lo,
                hi=hi,
            )
            .reset_index(drop=True)
        )
        frame["rel_error"] = (frame.predicted - frame.actual) / frame.actual
        frame["covered"] = (frame.lo <= frame.actual) & (frame.actual <= frame.hi)
        return Backtest(law, holdout, fraction, self.level, len(train), frame)

    # -- helpers ---------------------------------------------------------------------------
    def _loss_interval(
        self,
        fitted: FittedLaw,
        x1: np.ndarray,
        x2: np.ndarray | None,
        optimal_at: float | None = None,
    ) -> tuple[np.ndarray, ...]:
        """Point loss and a prediction interval: law draws times a resampled run residual."""
        model = fitted.model
        if isinstance(model, ChinchillaLaw):
            point = model.predict(x1, x2)
            draws_params = model._draws()
            if optimal_at is None:
                draws = chinchilla_loss(draws_params, x1, x2)
            else:
                draws = frontier(draws_params, np.array([optimal_at]))
        else:
            point = model.predict(x1)  # type: ignore[union-attr]
            draws = _power_draws(model, x1)  # type: ignore[arg-type]
        rng = np.random.default_rng(self.seed)
        residuals = fitted.residuals if fitted.residuals is not None else np.zeros(1)
        noise = rng.choice(residuals, size=draws.shape, replace=True)
        lo, hi = percentile_interval(draws * np.exp(noise), self.level)
        return np.asarray(point, dtype=float).ravel(), np.ravel(lo), np.ravel(hi)

    def _answer(self, prediction: Prediction, question: dict[str, Any]) -> Prediction:
        with self._connection() as con:
            save_prediction(
                con,
                prediction.fit_id,
                {**question, "quantity": prediction.quantity},
                prediction.value,
                prediction.lo,
                prediction.hi,
                prediction.level,
            )
        return prediction


def _scalar(quantity: str, p: Any, fit_id: str | None, interval: str = "confidence") -> Prediction:
    """The first point of a fits.Prediction (arrays) as one answer."""
    return Prediction(
        quantity,
        float(np.ravel(p.estimate)[0]),
        float(np.ravel(p.lo)[0]),
        float(np.ravel(p.hi)[0]),
        p.level,
        fit_id,
        interval,
    )


def _run_columns(con: duckdb.DuckDBPyConnection) -> set[str]:
    return {
        r[0]
        for r in con.execute(
            "SELECT column_name FROM duckdb_columns() WHERE table_name = 'runs'"
        ).fetchall()
    }


def _record(fitted: FittedLaw) -> dict[str, Any]:
    """What the fits table keeps: the estimator's record, the table, the residuals."""
    record = fitted.model.to_dict() if fitted.model is not None else {"law": fitted.law}
    if fitted.table is not None:
        record["table"] = json.loads(fitted.table.to_json(orient="records"))
    if fitted.residuals is not None:
        record["residuals"] = fitted.residuals.tolist()
    return record


def _reload(law: str, selection: dict[str, Any], fit_id: str, record: dict[str, Any]) -> FittedLaw:
    model = from_dict(record) if "params" in record else None
    table = pd.DataFrame(record["table"]) if "table" in record else None
    residuals = np.asarray(record["residuals"]) if "residuals" in record else None
    return FittedLaw(law, model, selection, fit_id, table, residuals)


def frontier(params: np.ndarray, C: np.ndarray) -> np.ndarray:
    """Compute-optimal loss L(N_opt(C), D_opt(C)) for each params row and each C."""
    n_opt, d_opt = compute_optimal_allocation(params, C)
    p = np.asarray(params, dtype=float)
    E, A, B, alpha, beta = (p[..., i, None] for i in range(5))
    with np.errstate(all="ignore"):  # degenerate draws give inf/nan, which intervals leave out
        return E + A / n_opt**alpha + B / d_opt**beta


def _crossing(pa: np.ndarray, pb: np.ndarray, lo_c: float, hi_c: float) -> np.ndarray:
    """First C in [lo_c, hi_c] where frontiers of paired rows cross (NaN where none)."""
    grid = np.geomspace(lo_c, hi_c, 241)
    diff = frontier(pa, grid) - frontier(pb, grid)
    out = np.full(diff.shape[0], np.nan)
    for i, row in enumerate(diff):
        change = np.flatnonzero(np.sign(row[:-1]) * np.sign(row[1:]) < 0)
        if change.size:
            j = change[0]

            def gap(log_c: float, i: int = i) -> float:
                c = np.array([math.exp(log_c)])
                return float(frontier(pa[i : i + 1], c)[0, 0] - frontier(pb[i : i + 1], c)[0, 0])

            out[i] = math.exp(brentq(gap, math.log(grid[j]), math.log(grid[j + 1])))
    return out


def _power_draws(model: PowerLaw, x: np.ndarray) -> np.ndarray:
    """Loss draws of a power law at x: bootstrap rows when present, else its covariance."""
    draws = getattr(model, "bootstrap_params_", None)
    if draws is None:
        raise ScalingError("the power-law fit has no bootstrap draws: fit it with --bootstrap")
    E, A, alpha = (draws[:, i, None] for i in range(3))
    return E + A * np.asarray(x, dtype=float)[None, :] ** (-alpha)
