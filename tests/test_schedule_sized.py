"""The Multi-Power Law across sizes (fits.schedule.sized) against a naive reference.

The synthetic curves come from a plain-Python double loop of the law as written (not the
kernel the fit uses): four sizes, each at its own LR (an LR law), under four schedules.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from fits.errors import FitError
from fits.schedule.sized import SizedMultiPowerLaw

STEPS, WARMUP, EVERY = 200, 10, 4
TRUE = {"E": 1.5, "K": 0.8, "g": 0.35, "A": 0.6, "a": 0.15, "alpha": 0.45,
        "B": 12.0, "b": 0.2, "beta": 0.6, "gamma": 0.5, "C": 2.0}  # fmt: skip
SIZES = (1e4, 3e4, 1e5, 3e5)
N_REF = math.exp(sum(math.log(n) for n in SIZES) / len(SIZES))


def lr_law(N: float) -> float:
    return 0.02 * (N / 1e4) ** -0.4


def schedule(kind: str, peak: float, steps: int = STEPS) -> list[float]:
    out = []
    for s in range(steps):
        if s < WARMUP:
            out.append(peak * (s + 1) / WARMUP)
            continue
        x = (s - WARMUP) / (steps - 1 - WARMUP)
        factor = {
            "constant": 1.0,
            "cosine": 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * x)),
            "wsd": 1.0 if x < 0.8 else 1.0 - (1 - 0.02) * (x - 0.8) / 0.2,
            "two-stage": 1.0 if x < 0.6 else 0.25,
        }[kind]
        out.append(peak * factor)
    return out


def naive_curve(lrs: list[float], L0: float, A: float, B: float, p: dict) -> list[float]:
    """L(t) = L0 + A (sum_{i<=t} lr_i)^-alpha - B sum_{k=w+1..t} (lr_{k-1} - lr_k)
    (1 - (1 + C lr_k^-gamma S_k(t))^-beta), S_k(t) = sum_{i=k..t} lr_i, w the peak."""
    w = lrs.index(max(lrs))
    out = []
    for t in range(len(lrs)):
        drop = 0.0
        for k in range(w + 1, t + 1):
            area = sum(lrs[k : t + 1])
            x = p["C"] * lrs[k] ** -p["gamma"] * area
            drop += (lrs[k - 1] - lrs[k]) * (1.0 - (1.0 + x) ** -p["beta"])
        out.append(L0 + A * sum(lrs[: t + 1]) ** -p["alpha"] - B * drop)
    return out


def tied(N: float, p: dict) -> tuple[float, float, float]:
    n = N / N_REF
    return p["E"] + p["K"] * n ** -p["g"], p["A"] * n ** -p["a"], p["B"] * n ** -p["b"]


def frame(sizes: tuple[float, ...], kinds: tuple[str, ...]) -> pd.DataFrame:
    parts = []
    for N in sizes:
        for kind in kinds:
            lrs = schedule(kind, lr_law(N))
            loss = np.array(naive_curve(lrs, *tied(N, TRUE), TRUE))
            loss[np.arange(STEPS) % EVERY != EVERY - 1] = np.nan  # measured every 4th step
            parts.append(pd.DataFrame({"run": f"{kind}-{N:g}", "step": np.arange(STEPS),
                                       "lr": lrs, "loss": loss, "N": N}))  # fmt: skip
    return pd.concat(parts, ignore_index=True)


@pytest.fixture(scope="module")
def fitted() -> SizedMultiPowerLaw:
    return SizedMultiPowerLaw().fit(frame(SIZES, ("constant", "cosine", "two-stage")))


def test_recovers_the_parameters_of_naive_curves_at_four_sizes(fitted: SizedMultiPowerLaw):
    assert fitted.n_ref_ == pytest.approx(N_REF)
    assert fitted.objective_ < 1e-10
    for name, value in TRUE.items():
        assert fitted.params_[name] == pytest.approx(value, rel=1e-3), name


def test_predicts_an_unseen_size_and_schedule_as_the_naive_law(fitted: SizedMultiPowerLaw):
    """Beyond the largest fitted size, at twice the horizon, under a schedule not fitted."""
    N = 1e6
    lrs = schedule("wsd", lr_law(N), 2 * STEPS)
    truth = np.array(naive_curve(lrs, *tied(N, TRUE), TRUE))
    predicted = fitted.predict(lrs, N)
    assert np.max(np.abs(predicted[WARMUP:] / truth[WARMUP:] - 1)) < 2e-3


def test_predict_at_a_fitted_size_is_the_one_size_formula(fitted: SizedMultiPowerLaw):
    """predict(lrs, N) equals the Multi-Power Law with L0, A, B tied to N as documented."""
    p, N = fitted.params_, SIZES[1]
    lrs = schedule("wsd", lr_law(N))
    expected = naive_curve(lrs, *tied(N, p), p)
    assert fitted.predict(lrs, N) == pytest.approx(expected, rel=1e-9)
    assert fitted.law_at(N).predict(lrs) == pytest.approx(expected, rel=1e-9)


def test_refuses_two_sizes_in_one_line():
    with pytest.raises(FitError) as caught:
        SizedMultiPowerLaw().fit(frame(SIZES[:2], ("constant", "cosine")))
    assert "at least 3" in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize("problem", ["no N", "N varies in a run", "N zero"])
def test_refuses_a_frame_without_one_positive_N_per_run(problem: str):
    data = frame(SIZES[:3], ("constant",))
    if problem == "no N":
        data = data.drop(columns="N")
    elif problem == "N varies in a run":
        data.loc[5, "N"] = 2e4
    else:
        data["N"] = 0.0
    with pytest.raises(FitError, match="N"):
        SizedMultiPowerLaw().fit(data)


def test_predict_refuses_a_bad_size(fitted: SizedMultiPowerLaw):
    with pytest.raises(FitError, match="positive"):
        fitted.predict(schedule("cosine", 0.01), -1.0)


def test_predict_refuses_a_curve_that_reaches_zero_loss(fitted: SizedMultiPowerLaw):
    """A law whose decay amplitude grows with N drives a large size's loss below zero."""
    broken = SizedMultiPowerLaw()
    broken.__dict__.update(fitted.__dict__)
    broken.params_ = {**fitted.params_, "b": -3.0}
    with pytest.raises(FitError, match="loss <= 0 from step") as caught:
        broken.predict(schedule("cosine", lr_law(1e7)), 1e7)
    assert "\n" not in str(caught.value)


def test_the_band_is_calibrated_on_sizes_left_out(fitted: SizedMultiPowerLaw):
    """Noiseless curves: every size left out is predicted to the truth, so the band is tight
    and holds the true curve of an unseen size; the errors it rests on are one set per size."""
    assert fitted.holdout_sizes_ == pytest.approx(list(SIZES))
    assert np.abs(fitted.holdout_errors_).max() < 2e-3
    N = 1e6
    lrs = schedule("wsd", lr_law(N), 2 * STEPS)
    truth = np.array(naive_curve(lrs, *tied(N, TRUE), TRUE))
    lo, hi = fitted.predict_interval(lrs, N)
    assert (lo[WARMUP:] <= truth[WARMUP:] * (1 + 2e-3)).all()
    assert (truth[WARMUP:] <= hi[WARMUP:] * (1 + 2e-3)).all()
    assert (hi / lo - 1).max() < 5e-3


def test_a_size_off_the_law_widens_the_band_by_its_error():
    """One of five sizes 6% above the tied law: left out, the others predict it 6% low, and
    the band's upper end (each size weighing a fifth) reaches that error; fitting without the
    band's refits leaves none."""
    sizes = (*SIZES, 1e6)
    data = frame(sizes, ("constant", "cosine"))
    data.loc[data.N == 1e5, "loss"] *= 1.06
    law = SizedMultiPowerLaw().fit(data)
    assert law.holdout_errors_.max() > 0.03
    lrs = schedule("cosine", lr_law(1e5))
    _, hi = law.predict_interval(lrs, 1e5)
    assert (hi / law.predict(lrs, 1e5) - 1)[WARMUP:].min() > 0.02
    quiet = SizedMultiPowerLaw(calibrate=False).fit(data)
    with pytest.raises(FitError, match="sizes left out") as caught:
        quiet.predict_interval(lrs, 1e5)
    assert "\n" not in str(caught.value)
