"""Schedule laws: the fast loss-drop sum against the double sum, fits that recover known
parameters, intervals calibrated exactly as documented, and the JSON round trip."""

from __future__ import annotations

import copy
import math

import numpy as np
import pandas as pd
import pytest

from fits import Fit, FitError
from fits.schedule import (
    AnnealingLaw,
    MultiPowerLaw,
    annealing_area,
    kernel,
    loss_drop,
    loss_drop_grad,
    loss_drop_naive,
)
from fits.schedule.curves import curves_from_frame

WARMUP, PEAK = 20, 3e-3


def schedule(kind: str, steps: int = 300, peak: float = PEAK) -> np.ndarray:
    p = np.linspace(0, 1, steps - WARMUP)
    rng = np.random.default_rng(7)
    shape = {
        "constant": np.ones_like(p),
        "cosine": 0.1 + 0.45 * (1 + np.cos(np.pi * p)),
        "two-stage": np.where(p < 0.6, 1.0, 0.2),
        "wsd": np.where(p < 0.8, 1.0, np.clip(1 - (p - 0.8) / 0.2, 0, 1)),
        "linear-zero": 1 - p,
        "zero-then-up": np.where((p > 0.5) & (p < 0.6), 0.0, 0.5),
        "random-decreasing": np.sort(rng.uniform(0, 1, len(p)))[::-1],
        "non-monotone": rng.uniform(0, 1, len(p)),
    }[kind]
    return peak * np.r_[np.arange(1, WARMUP + 1) / WARMUP, shape]


KINDS = ["cosine", "two-stage", "wsd", "linear-zero", "zero-then-up", "random-decreasing",
         "non-monotone"]  # fmt: skip
PARAMS = [(0.5, 0.5, 2.0), (0.3, 0.7, 20.0), (1.5, 0.3, 0.3), (3.0, 0.1, 0.01), (0.1, 0.9, 100.0)]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("beta, gamma, C", PARAMS)
def test_loss_drop_equals_the_double_sum(kind: str, beta: float, gamma: float, C: float) -> None:
    lrs = schedule(kind)
    fast, naive = loss_drop(lrs, beta, gamma, C), loss_drop_naive(lrs, beta, gamma, C)
    scale = max(np.max(np.abs(naive)), 1e-300)
    assert np.max(np.abs(fast - naive)) <= 1e-10 * scale
    assert np.all(fast[:WARMUP] == 0)


def test_loss_drop_at_other_lr_scales() -> None:
    for peak in (1e-5, 1.0):
        lrs = schedule("cosine", peak=peak)
        fast, naive = loss_drop(lrs, 0.6, 0.5, 3.0), loss_drop_naive(lrs, 0.6, 0.5, 3.0)
        assert np.max(np.abs(fast - naive)) <= 1e-10 * np.max(np.abs(naive))


def drop_grad_naive(lrs: np.ndarray, beta: float, gamma: float, C: float) -> np.ndarray:
    """d(LD / B) by beta, gamma and C as double sums of the closed-form derivatives of
    1 - (1 + c S)^-beta, c = C lr^-gamma (zero-LR terms do not move)."""
    w = int(np.argmax(lrs))
    k = np.arange(w + 1, len(lrs))
    k = k[(lrs[k - 1] != lrs[k]) & (lrs[k] > 0)]
    drop, c = lrs[k - 1] - lrs[k], C * lrs[k] ** -gamma
    out = np.zeros((3, len(lrs)))
    for t in range(w + 1, len(lrs)):
        live = k <= t
        S = np.array([np.sum(lrs[j : t + 1]) for j in k[live]])
        base = 1 + c[live] * S
        by_c = beta * S * base ** (-beta - 1)  # d/dc of 1 - base^-beta
        out[0, t] = np.sum(drop[live] * base**-beta * np.log(base))
        out[1, t] = np.sum(drop[live] * by_c * -c[live] * np.log(lrs[k[live]]))
        out[2, t] = np.sum(drop[live] * by_c * c[live] / C)
    return out


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("beta, gamma, C", PARAMS)
def test_loss_drop_grad_equals_the_derivatives_double_sum(
    kind: str, beta: float, gamma: float, C: float
) -> None:
    lrs = schedule(kind)
    fast, naive = loss_drop_grad(lrs, beta, gamma, C), drop_grad_naive(lrs, beta, gamma, C)
    value = loss_drop(lrs, beta, gamma, C)
    assert np.max(np.abs(fast[0] - value)) <= 1e-12 * np.max(np.abs(value))
    for row, expected in zip(fast[1:], naive, strict=True):
        assert np.max(np.abs(row - expected)) <= 1e-8 * max(np.max(np.abs(expected)), 1e-300)


@pytest.mark.parametrize("kind", ["cosine", "zero-then-up"])
def test_loss_drop_grad_matches_finite_differences_of_the_double_sum(kind: str) -> None:
    lrs, theta = schedule(kind), np.array([0.7, 0.4, 3.0])
    fast = loss_drop_grad(lrs, *theta)
    for i in range(3):
        h = np.zeros(3)
        h[i] = 1e-5 * theta[i]
        central = (loss_drop_naive(lrs, *(theta + h)) - loss_drop_naive(lrs, *(theta - h))) / (
            2 * h[i]
        )
        assert np.max(np.abs(fast[1 + i] - central)) <= 1e-6 * np.max(np.abs(central))


@pytest.mark.parametrize("chunk", [1, 7, 2048])
@pytest.mark.parametrize("kind", KINDS)
def test_loss_drop_at_measured_steps_only(kind: str, chunk: int, monkeypatch) -> None:
    """The sums run from one measured step to the next, in chunks of rows of any size, give
    the numbers of the sums over every step (which equal the double sum, above)."""
    lrs, theta = schedule(kind), PARAMS[0]
    everywhere = loss_drop_grad(lrs, *theta)
    scale = np.max(np.abs(everywhere), axis=1, keepdims=True)
    monkeypatch.setattr(kernel, "_CHUNK", chunk)
    for at in (np.arange(300), np.arange(5, 300, 6), np.array([0, 21, 22, 150, 299])):
        grad = loss_drop_grad(lrs, *theta, at=at)
        assert np.all(np.abs(grad - everywhere[:, at]) <= 1e-12 * scale)
        value = loss_drop(lrs, *theta, at=at)
        assert np.all(np.abs(value - everywhere[0, at]) <= 1e-12 * scale[0])


def test_fit_jacobians_match_finite_differences() -> None:
    """The variable-projection Jacobian of the fit's residuals (exact and coarse drop) by
    alpha, beta, gamma, C, against central differences of the residuals themselves."""
    data = curves_from_frame(
        curves(lambda lrs: mpl_naive(lrs, TRUE), ["constant", "cosine", "two-stage"], 1e-3)
    )
    law, theta = MultiPowerLaw(), np.array([0.45, 0.8, 0.4, 3.0])
    for coarse in (False, True):
        _, J = law._residuals(data, theta, coarse)
        for i in range(4):
            h = np.zeros(4)
            h[i] = 1e-6 * theta[i]
            up, down = (
                law._residuals(data, theta + h, coarse)[0],
                law._residuals(data, theta - h, coarse)[0],
            )
            central = (up - down) / (2 * h[i])
            assert np.max(np.abs(J[:, i] - central)) <= 1e-5 * np.max(np.abs(central)), (coarse, i)


def test_annealing_area_is_the_momentum_sum() -> None:
    lrs, decay = schedule("wsd"), 0.95
    m, total, expected = 0.0, 0.0, []
    for t in range(len(lrs)):
        drop = lrs[t - 1] - lrs[t] if t > WARMUP - 1 else 0.0
        m = decay * m + drop
        total += m
        expected.append(total)
    assert np.allclose(annealing_area(lrs, decay), expected, rtol=1e-12, atol=1e-15)


TRUE = {"L0": 1.5, "A": 0.6, "alpha": 0.5, "B": 300.0, "beta": 0.6, "gamma": 0.5, "C": 2.0}


def mpl_naive(lrs: np.ndarray, p: dict[str, float]) -> np.ndarray:
    forward = np.cumsum(lrs) ** -p["alpha"]
    return p["L0"] + p["A"] * forward - p["B"] * loss_drop_naive(lrs, p["beta"], p["gamma"], p["C"])


def curves(law, kinds: list[str], noise: float, steps: int = 300, every: int = 6) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    frames = []
    for kind in kinds:
        lrs = schedule(kind, steps)
        loss = np.full(steps, np.nan)
        at = np.arange(every - 1, steps, every)
        loss[at] = law(lrs)[at] * (1 + noise * rng.standard_normal(len(at)))
        frames.append(
            pd.DataFrame({"run": kind, "step": np.arange(steps), "lr": lrs, "loss": loss})
        )
    return pd.concat(frames, ignore_index=True)


@pytest.fixture(scope="module")
def mpl() -> MultiPowerLaw:
    data = curves(lambda lrs: mpl_naive(lrs, TRUE), ["constant", "cosine", "two-stage"], 5e-4)
    return MultiPowerLaw().fit(data)


def test_multi_power_predict_is_the_formula(mpl: MultiPowerLaw) -> None:
    lrs = schedule("wsd", 400)
    assert np.allclose(mpl.predict(lrs), mpl_naive(lrs, mpl.params_), rtol=1e-10, atol=0)


def test_multi_power_fit_recovers_known_parameters(mpl: MultiPowerLaw) -> None:
    p = mpl.params_
    for name in ("L0", "A", "alpha", "gamma"):
        assert p[name] == pytest.approx(TRUE[name], rel=0.05), name
    for kind in ("wsd", "linear-zero"):  # unseen shapes: the curve after warmup within 0.1%
        lrs = schedule(kind, 300)
        truth = mpl_naive(lrs, TRUE)
        assert np.max(np.abs(mpl.predict(lrs) / truth - 1)[WARMUP:]) < 1e-3, kind


def test_intervals_are_leave_one_schedule_out_quantiles() -> None:
    """The band is the prediction times exp of the weighted quantiles of log(measured /
    predicted) on each run when the law is refitted without it; recomputed here by hand."""
    kinds = ["constant", "cosine", "two-stage", "wsd"]
    data = curves(lambda lrs: mpl_naive(lrs, TRUE), kinds, 2e-3)
    law = AnnealingLaw(decay=0.95).fit(data)
    errors, weights = [], []
    for kind in sorted(kinds):
        rest = data[data.run != kind]
        held = data[(data.run == kind) & data.loss.notna() & (data.step >= WARMUP)]
        refit = AnnealingLaw(decay=0.95, calibrate=False).fit(rest)
        predicted = refit.predict(schedule(kind))[held.step.to_numpy()]
        e = np.log(held.loss.to_numpy() / predicted)
        errors.append(e)
        weights.append(np.full(len(e), 1 / len(e)))
    e, w = np.concatenate(errors), np.concatenate(weights)
    assert np.allclose(np.sort(law.holdout_errors_), np.sort(e), atol=1e-6)
    order = np.argsort(e)
    cdf = (np.cumsum(w[order]) - 0.5 * w[order]) / w.sum()
    lo_q, hi_q = np.interp([0.05, 0.95], cdf, e[order])
    lrs = schedule("linear-zero")
    lo, hi = law.predict_interval(lrs, level=0.9)
    mid = law.predict(lrs)
    assert np.allclose(lo, mid * math.exp(lo_q), rtol=1e-5)
    assert np.allclose(hi, mid * math.exp(hi_q), rtol=1e-5)
    assert np.all(lo <= mid) and np.all(mid <= hi)


def test_a_band_from_errors_all_one_way_holds_its_prediction(mpl: MultiPowerLaw) -> None:
    """Where every held-out schedule was under-predicted (log errors 1%, 2%, 3%), the band's
    quantiles are both above the prediction: its lower end is held at the prediction, the
    upper end stays at exp of the weighted 95% quantile."""
    law = copy.copy(mpl)
    law.holdout_errors_, law.holdout_weights_ = np.array([0.01, 0.02, 0.03]), np.ones(3)
    lrs = schedule("wsd", 300)
    lo, hi = law.predict_interval(lrs, level=0.9)
    mid = law.predict(lrs)
    assert np.array_equal(lo, mid)
    assert np.allclose(hi, mid * math.exp(0.03), rtol=1e-12)  # the top quantile is the largest


def test_a_curve_that_reaches_zero_is_refused_not_banded(mpl: MultiPowerLaw) -> None:
    """A drop term that outgrows L0 far past the runs takes the curve to 0 and below: the law
    does not hold there, and a band of a negative loss times exp(quantiles) would lie upside
    down (held at its point, of no width). Its refusal names the first such step."""
    law = copy.copy(mpl)
    law.params_ = {**mpl.params_, "L0": 0.25}
    short, long = schedule("linear-zero", 300), schedule("linear-zero", 1500)
    assert (mpl_naive(short, law.params_) > 0).all()
    assert np.allclose(law.predict(short), mpl_naive(short, law.params_), rtol=1e-10, atol=0)
    naive = mpl_naive(long, law.params_)
    assert np.allclose(law.curve(long), naive, rtol=1e-9, atol=1e-12)
    first = int(np.argmax(naive <= 0))
    assert 300 < first < 1500
    for ask in (law.predict, law.predict_interval):
        with pytest.raises(FitError, match=f"loss <= 0 from step {first:,}"):
            ask(long)


def test_a_schedule_the_runs_did_not_show_the_law_is_named(mpl: MultiPowerLaw) -> None:
    assert mpl.peak_lr_ == PEAK and mpl.unseen(schedule("wsd", 400)) == ""
    assert "peak LR 0.03 is above every run's (0.003)" in mpl.unseen(schedule("wsd", peak=0.03))
    first = next(step for step in range(5, 300, 6) if step >= WARMUP)  # measured after warmup
    fitted = ["constant", "cosine", "two-stage"]  # the fixture's runs
    least = min(np.cumsum(schedule(kind))[first] for kind in fitted)
    assert mpl.least_area_ == pytest.approx(least, rel=1e-12)
    tiny = mpl.unseen(schedule("constant", 300, peak=1e-9))
    assert "LR area" in tiny and "peak" not in tiny
    assert Fit.from_dict(mpl.to_dict()).least_area_ == mpl.least_area_


def test_steps_before_any_lr_have_no_loss_not_an_infinite_one(mpl: MultiPowerLaw) -> None:
    """A schedule whose first steps apply LR 0 has LR area 0 there: the model is untrained and
    the law's area^-alpha is infinite. Those steps have no loss (NaN, null in JSON), the rest
    are the formula, and the note says why."""
    lrs = np.r_[np.zeros(3), schedule("wsd", 400)]
    curve, (lo, hi) = mpl.predict(lrs), mpl.predict_interval(lrs)
    assert np.isnan(curve[:3]).all() and np.isnan(lo[:3]).all() and np.isnan(hi[:3]).all()
    naive = mpl_naive(lrs[3:], mpl.params_)  # zero LRs add no area and no drop
    assert np.allclose(curve[3:], naive, rtol=1e-10, atol=0)
    assert (lo[3:] <= curve[3:]).all() and (curve[3:] <= hi[3:]).all()
    assert "no loss at steps 1-3" in mpl.unseen(lrs)
    assert "no loss at step 1:" in mpl.unseen(lrs[2:])
    assert "no loss" not in mpl.unseen(lrs[3:])


def test_a_schedule_of_words_is_refused_as_one(mpl: MultiPowerLaw) -> None:
    for ask in (mpl.predict, mpl.predict_interval, mpl.unseen):  # numpy's ValueError before
        with pytest.raises(FitError, match=r"^a schedule's LRs must be numbers: \['a', 'b'\]"):
            ask(["a", "b"])


def test_annealing_fit_recovers_its_own_curves() -> None:
    truth = {"L0": 2.0, "A": 0.5, "alpha": 0.4, "C": 0.5}

    def law(lrs: np.ndarray) -> np.ndarray:
        S1 = np.cumsum(lrs)
        return (
            truth["L0"]
            + truth["A"] * S1 ** -truth["alpha"]
            - truth["C"] * annealing_area(lrs, 0.98)
        )

    fitted = AnnealingLaw().fit(curves(law, ["constant", "cosine", "two-stage"], 2e-4))
    assert fitted.decay_ == 0.98
    for name, value in truth.items():
        assert fitted.params_[name] == pytest.approx(value, rel=0.05), name


def test_round_trip_keeps_predictions_and_band(mpl: MultiPowerLaw) -> None:
    back = Fit.from_dict(mpl.to_dict())
    assert isinstance(back, MultiPowerLaw)
    lrs = schedule("wsd")
    assert np.array_equal(back.predict(lrs), mpl.predict(lrs))
    assert np.allclose(back.predict_interval(lrs), mpl.predict_interval(lrs))
    assert "held-out schedules: 3" in back.summary()


def test_bad_curves_raise_fit_errors() -> None:
    good = curves(lambda lrs: mpl_naive(lrs, TRUE), ["constant", "cosine"], 0.0)
    with pytest.raises(FitError, match="missing"):
        MultiPowerLaw().fit(good.drop(columns="lr"))
    with pytest.raises(FitError, match="every step"):
        MultiPowerLaw().fit(good[good.step != 5])
    with pytest.raises(FitError, match="non-negative"):
        MultiPowerLaw().fit(good.assign(lr=-good.lr))
    with pytest.raises(FitError, match="two runs"):
        AnnealingLaw().fit(good[good.run == "cosine"]).predict_interval(schedule("wsd"))
    with pytest.raises(FitError, match="1-D"):
        AnnealingLaw(calibrate=False).fit(good).predict(np.ones((2, 2)))


def test_auto_refused_on_every_law_says_why_once():
    """Curves measured once after warmup fit neither law; auto said only that none fits."""
    from scaling.errors import ScalingError
    from scaling.schedules import fit_schedule_law

    data = curves(lambda lrs: mpl_naive(lrs, TRUE), ["constant", "cosine"], 0.0, every=150)
    data.loc[data.step < WARMUP + 150, "loss"] = np.nan  # one loss left after warmup
    with pytest.raises(ScalingError) as refused:
        fit_schedule_law("auto", data, 0.9)
    said = str(refused.value)
    assert said.startswith("no schedule law fits these runs' curves (multi-power, annealing: ")
    assert said.count("fewer than two losses measured after its warmup") == 1
