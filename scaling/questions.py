"""The questions a Study answers from its fits: loss at (N, D) or along one variable, the
compute-optimal model, the optimal LR and batch size, where two frontiers cross, the best
model within some hours.

Loss answers carry prediction intervals: the bootstrap draws of the law times a resampled
run residual, since a question about a run is answered by one run, not by the mean of many;
a calibrated loss law widens them by the error its backtests saw at the question's distance
from the data. Every answer is logged in the run log's predictions table when it can be.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from fits import LossLaw, crossing_draws, frontier_crossing
from fits.allocation import ratio_window
from fits.base import holding_point
from fits.bootstrap import percentile_interval
from fits.errors import FitError
from fits.offset import offset_span
from fits.prediction import own_interval, run_interval
from fits.throughput import ThroughputModel
from scaling.errors import ScalingError
from scaling.fitters import POWER_X, predict_optimum
from scaling.fitting import FitLog
from scaling.laws import LOSS_FORMS
from scaling.repeats import repeats_note, unpriced_repeats_note, unread_repeats_note
from scaling.results import ComputeOptimal, Crossover, FittedLaw, Prediction
from scaling.wallclock import WallclockAnswer, compare, optimal_within, size_ladder
from store.fit_log import save_prediction


class Questions:
    """Answers with intervals, from the fits of a FitLog; each logged as it is given."""

    def __init__(self, fits: FitLog) -> None:
        self.fits = fits
        self.level = fits.settings.level
        self.seed = fits.settings.seed

    def loss_law(
        self, law: str, arch: str | None = None, source: str | None = None,
        where: str | None = None,
    ) -> tuple[FittedLaw, LossLaw]:  # fmt: skip
        """A fitted loss law (auto: the form that extrapolated best) for a question about loss."""
        if law not in LOSS_FORMS:
            what = "power is a law of one variable (fit it to read it), not of N and D"
            what = what if law == "power" else f"unknown loss law {law!r}"
            raise ScalingError(f"{what}: choose one of {', '.join(LOSS_FORMS)}")
        fitted = self.fits.fit(law, arch, source, where)
        assert isinstance(fitted.model, LossLaw)
        return fitted, fitted.model

    def predict_loss(self, N: float, D: float, arch: str | None, source: str | None,
                     where: str | None, law: str, U: float | None) -> Prediction:  # fmt: skip
        fitted, _ = self.loss_law(law, arch, source, where)
        asked = {"ask": "loss", "N": N, "D": D, "arch": arch, "law": law}
        return self.answer(self.loss_at(fitted, N, D, U), asked if U is None else {**asked, "U": U})

    def loss_at(self, fitted: FittedLaw, N: float, D: float, U: float | None = None) -> Prediction:
        question = pd.DataFrame({"N": [N], "D": [D], "U": [math.nan if U is None else U]})
        value, lo, hi = run_interval(fitted.model, fitted.residuals, fitted.calibration, question,
                                     self.level, self.seed)  # fmt: skip
        kind = _interval_kind(fitted)
        fresh = U is None or U >= D  # repeats the law reads need no caution, nor the runs read
        runs = self._fitted_runs(fitted) if fresh else pd.DataFrame()
        repeats = "" if U is not None else repeats_note("D", D, runs)
        unpriced = unpriced_repeats_note(fitted.model, runs) if fresh else ""
        unread = unread_repeats_note(fitted.model, D, U)
        note = _joined(repeats, unpriced, unread, _calibration_note(fitted))
        return Prediction("loss", value[0], lo[0], hi[0], self.level, fitted.fit_id, kind, note)

    def _fitted_runs(self, fitted: FittedLaw) -> pd.DataFrame:
        """The runs a fit's selection names, as fitted (for what they say beside the law)."""
        sel = fitted.selection
        return self.fits.runs_of(sel["law"], sel["arch"], sel["source"], sel["where"],
                                 sel["n_column"])  # fmt: skip

    def compute_optimal(self, C: float, arch: str | None, source: str | None, where: str | None,
                        law: str) -> ComputeOptimal:  # fmt: skip
        fitted, model = self.loss_law(law, arch, source, where)
        try:  # an optimum below one parameter, or far past the runs' D/N, is no answer
            n_pred, d_pred = model.compute_optimal_interval(np.array([C]), self.level)
        except FitError as exc:
            raise ScalingError(str(exc)) from exc
        value, lo, hi = run_interval(fitted.model, fitted.residuals, fitted.calibration, None,
                                     self.level, self.seed, optimal_at=C)  # fmt: skip
        fid, level, runs = fitted.fit_id, self.level, self._fitted_runs(fitted)
        n_opt, d_opt = _scalar("N_opt", n_pred, fid), _scalar("D_opt", d_pred, fid)
        if model.offset_unseen():
            n_opt, d_opt = _offset_spanned(model, runs, C, level, n_opt, d_opt)
        d_opt = replace(d_opt, note=_joined(d_opt.note, repeats_note("D_opt", d_opt.value, runs)))
        answer = ComputeOptimal(
            C,
            n_opt,
            d_opt,
            Prediction(
                "loss",
                value[0],
                lo[0],
                hi[0],
                level,
                fid,
                _interval_kind(fitted),
                _joined(unpriced_repeats_note(model, runs), _calibration_note(fitted)),
            ),
        )
        for part in (answer.N, answer.D, answer.loss):
            self.answer(part, {"ask": "compute_optimal", "C": C, "arch": arch, "law": law})
        return answer

    def optimal_lr(self, N: float, D: float, arch: str | None, source: str | None,
                   where: str | None, method: str = "vertex") -> Prediction:  # fmt: skip
        fitted = self.fits.fit("lr-law", arch, source, where, method=method)
        p = predict_optimum(fitted, pd.DataFrame({"N": [N], "D": [D]}), self.level, self.seed)
        answer = _optimum("lr_opt", p, fitted.fit_id, self.level)
        return self.answer(
            replace(answer, note=_unseen_variable_note(fitted, {"N": N, "D": D})),
            {"ask": "lr", "N": N, "D": D, "arch": arch},
        )

    def power_loss(self, value: float, x: str, E: float | None, arch: str | None,
                   source: str | None, where: str | None) -> Prediction:  # fmt: skip
        """Loss at `value` of a power law's variable x (N, D, C or width), with the law's own
        interval: no backtest widens it for the distance beyond the runs."""
        options: dict[str, Any] = {"x": x} if E is None else {"x": x, "E": E}
        fitted = self.fits.fit("power", arch, source, where, **options)
        asked = pd.DataFrame({POWER_X[x]: [value]})
        try:
            point, lo, hi = own_interval(
                fitted.model, fitted.residuals, asked, self.level, self.seed
            )
        except FitError as exc:
            raise ScalingError(str(exc)) from exc
        note = "the law's own interval: its error beyond the runs is not in it"
        answer = Prediction("loss", float(point[0]), float(lo[0]), float(hi[0]), self.level,
                            fitted.fit_id, "uncalibrated prediction", note)  # fmt: skip
        return self.answer(answer, {"ask": "power", "x": x, "at": value, "arch": arch})

    def optimal_batch_size(self, D: float, arch: str | None, source: str | None,
                           where: str | None) -> Prediction:  # fmt: skip
        fitted = self.fits.fit("bs-law", arch, source, where)
        p = predict_optimum(fitted, pd.DataFrame({"D": [D]}), self.level, self.seed)
        return self.answer(
            _optimum("batch_tokens_opt", p, fitted.fit_id, self.level),
            {"ask": "batch_size", "D": D, "arch": arch},
        )

    def crossover(self, arch_a: str, arch_b: str, C_range: tuple[float, float],
                  source: str | None, law: str) -> Crossover:  # fmt: skip
        lo_c, hi_c = C_range
        if not 0 < lo_c < hi_c:
            raise ScalingError(f"compute range must satisfy 0 < low < high, got {C_range}")
        if arch_a == arch_b:  # it answered "llama is better throughout" of llama against itself
            raise ScalingError(f"a crossover needs two architectures, got {arch_a!r} twice")
        (fa, ma), (fb, mb) = (self.loss_law(law, a, source) for a in (arch_a, arch_b))
        point = frontier_crossing(ma, mb, lo_c, hi_c)[0]
        draws = crossing_draws(ma, mb, lo_c, hi_c)
        fraction = float(((draws > lo_c) & (draws < hi_c)).mean())
        a_better_low = ma.frontier(lo_c) < mb.frontier(lo_c)
        low_winner, high_winner = (arch_a, arch_b) if a_better_low else (arch_b, arch_a)
        if not np.isfinite(point):
            note = f"none in range {lo_c:.3g}..{hi_c:.3g} FLOPs: {low_winner} is better throughout"
            return Crossover(
                arch_a, arch_b, None, None, None, low_winner, low_winner, fraction, note
            )
        log_lo, log_hi = percentile_interval(np.log(draws), self.level)
        c_lo, c_hi = (math.exp(float(v)) for v in holding_point(math.log(point), log_lo, log_hi))
        note = f"{high_winner}'s frontier passes {low_winner}'s"
        if c_lo <= lo_c * (1 + 1e-9) or c_hi >= hi_c * (1 - 1e-9):  # exp(log(x)) round-off
            note += "; its interval reaches an end of the range searched: it may lie beyond"
        winner, fid = (ma, fa.fit_id) if high_winner == arch_a else (mb, fb.fit_id)
        (n_pred, d_pred) = winner.compute_optimal_interval(np.array([point]), self.level)
        return Crossover(
            arch_a,
            arch_b,
            Prediction("C_cross", point, c_lo, c_hi, self.level, fid),
            _scalar(f"N_opt ({high_winner})", n_pred, fid),
            _scalar(f"D_opt ({high_winner})", d_pred, fid),
            low_winner,
            high_winner,
            fraction,
            note,
        )

    def optimal_within(
        self, hours: float, arch: str | None, seq_len: int | None, source: str | None,
        where: str | None, law: str,
    ) -> WallclockAnswer:  # fmt: skip
        """The throughput model from the log's timed local runs, the loss law of every
        architecture that has one, at the most common context length (scaling.wallclock);
        the loss at each optimum with the calibrated interval `predict loss` gives."""
        runs = self.fits.log.runs(source="local")
        runs = runs[runs["tokens_per_s"].fillna(0) > 0]
        if runs.empty:
            raise ScalingError("no timed local runs: the throughput model needs runs trained here")
        try:
            speed = ThroughputModel().fit(runs)
        except FitError as exc:
            raise ScalingError(f"cannot fit the throughput model: {exc}") from exc
        if arch is not None and arch not in speed.coef_:
            raise ScalingError(f"no timed local runs of arch {arch!r}")
        context = seq_len or int(runs["seq_len"].mode().iloc[0])
        optima, left_out = {}, []
        for name in sorted(speed.coef_):
            try:
                fitted, model = self.loss_law(law, name, source, where)
            except ScalingError:
                if name == arch:
                    raise
                continue
            rungs, ratios = size_ladder(name, context), ratio_window(model.data_range_)
            if context > speed.tokens_per_s(rungs).max() * 3600.0 * hours:
                raise ScalingError(f"{hours:g} hours train {name} on less than one sequence "
                                   f"of {context}: give more hours")  # fmt: skip
            try:
                optimum = optimal_within(
                    _UnlimitedData(model), speed, rungs, hours, self.level, ratios=ratios
                )
            except ScalingError as exc:
                if name == arch or (arch is None and len(speed.coef_) == 1):
                    raise
                left_out.append(f"{name} left out: {exc}")
                continue
            if context > optimum.D:
                raise ScalingError(
                    f"{hours:g} hours train {name} on {optimum.D:.3g} tokens, less than one "
                    f"sequence of {context}: give more hours"
                )
            optima[name] = replace(optimum, loss=self.loss_at(fitted, optimum.N, optimum.D))
        if not optima and left_out:
            raise ScalingError("; ".join(left_out))
        answer = compare(optima, arch)
        answer = replace(answer, note=_joined(answer.note, *left_out))
        for name in [arch] if arch else list(answer.optima):
            optimum = answer.optima[name]
            question = {"ask": "optimal_within", "hours": hours, "arch": name, "N": optimum.N,
                        "D": optimum.D, "winner": answer.winner}  # fmt: skip
            self.answer(optimum.loss, question)
        return answer

    def answer(self, prediction: Prediction, question: dict[str, Any]) -> Prediction:
        """Log the answer in `predictions` when the run log can be written; answer anyway."""
        self.fits.log.write(
            lambda con: save_prediction(
                con, prediction.fit_id, {**question, "quantity": prediction.quantity},
                prediction.value, prediction.lo, prediction.hi, prediction.level,
            ),
            "the answer is not logged",
        )  # fmt: skip
        return prediction


class _UnlimitedData:
    """A fitted loss law asked with unlimited unique tokens, as scaling.wallclock asks it."""

    def __init__(self, model: LossLaw) -> None:
        self.model = model

    def predict(self, N: Any, D: Any) -> np.ndarray:
        n, d = np.broadcast_arrays(np.asarray(N, dtype=float), np.asarray(D, dtype=float))
        frame = pd.DataFrame({"N": n.ravel(), "D": d.ravel(), "U": np.nan})
        return np.asarray(self.model.predict_frame(frame)).reshape(n.shape)


def _offset_spanned(
    model: LossLaw, runs: pd.DataFrame, C: float, level: float, n_opt: Prediction,
    d_opt: Prediction,
) -> tuple[Prediction, Prediction]:  # fmt: skip
    """N_opt and D_opt whose intervals also span the fits at both ends of the unseen offset
    E's profile interval (fits.offset), with a note saying so; a note alone where no form's
    offset could be profiled (not additive)."""
    n_span, d_span, limits = offset_span(model, runs, np.array([C]), level)
    if not limits:
        note = ("the runs cannot tell the loss at unlimited N and D from zero, and no form of "
                "this law has an additive offset E to hold at both ends of its interval: the "
                "interval does not span the allocations of a small and a large limit")  # fmt: skip
        return replace(n_opt, note=note), replace(d_opt, note=note)
    ends = ", ".join(f"{k} {lo:.3g}..{hi:.3g}" for k, (lo, hi) in limits.items())
    note = (f"the runs cannot tell the offset E from zero: the interval spans the fits with E "
            f"held at both ends of its {level:.0%} profile interval ({ends})")  # fmt: skip
    out = []
    for answer, span in ((n_opt, n_span), (d_opt, d_span)):
        ends_ = np.ravel(span)[np.isfinite(np.ravel(span))]
        out.append(replace(answer, lo=float(min(answer.lo, *ends_)),
                           hi=float(max(answer.hi, *ends_)), note=note))  # fmt: skip
    return out[0], out[1]


def _joined(*notes: str) -> str:
    """Notes joined into one caution line, the empty ones left out."""
    return "; ".join(n for n in notes if n)


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


def _optimum(quantity: str, p: tuple[np.ndarray, ...], fit_id: str | None, level: float
             ) -> Prediction:  # fmt: skip
    """An optimum's answer: its prediction interval is that of one new group's optimum."""
    return Prediction(quantity, float(p[0][0]), float(p[1][0]), float(p[2][0]), level, fit_id,
                      "prediction")  # fmt: skip


def _unseen_variable_note(fitted: FittedLaw, asked: dict[str, float]) -> str:
    """A caution where the LR law left out N or D because every point it was fitted on had one
    value of it, and the question asks at another: the answer assumes the optimum does not
    move with it (Step Law's LR* falls as N^-0.71: ten times N is 5x lower)."""
    table, variables = fitted.table, getattr(fitted.model, "variables", ())
    if table is None:
        return ""
    used = table[table["bracketed"].astype(bool)] if "bracketed" in table else table
    notes = []
    for name, value in asked.items():
        held = used[name].unique() if name in used and name not in variables else np.array([])
        if len(held) == 1 and not math.isclose(value, held[0], rel_tol=1e-6):
            notes.append(f"every point the law was fitted on has {name} = {held[0]:.3g}: it "
                         f"cannot say how the optimum moves with {name}, and at {name} = "
                         f"{value:.3g} assumes it does not")  # fmt: skip
    return _joined(*notes)


def _interval_kind(fitted: FittedLaw) -> str:
    return "prediction" if fitted.calibration is not None else "uncalibrated prediction"


def _calibration_note(fitted: FittedLaw) -> str:
    """The calibration's caution: the runs bend along D where no form can (fits.bends), or its
    scores are too few to hold its upper quantile (fits.calibration.few_scores_caution)."""
    cal = fitted.calibration
    return "" if cal is None or cal.caution is None else cal.caution
