"""Profile fits of the offset E (fits.offset) against an independent optimiser, Wilks' rule
and the compute-optimal answer that spans them."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import curve_fit
from scipy.stats import chi2

from fits import ChinchillaLaw, KaplanLaw
from fits.averaging import AveragedLaw
from fits.offset import offset_limits, offset_span, profile_fit
from scaling.study import Study

N, D = (a.ravel() for a in np.meshgrid(np.geomspace(1e7, 1e9, 6), np.geomspace(1e9, 1e11, 6)))
RUNS = pd.DataFrame({"N": N, "D": D})


def power_runs(E: float, seed: int, sd: float = 0.01) -> pd.DataFrame:
    """Runs of E + 400 / N^0.34 + 410 / D^0.28 with log-normal noise."""
    loss = E + 400 / N**0.34 + 410 / D**0.28
    return RUNS.assign(loss=loss * np.exp(np.random.default_rng(seed).normal(0, sd, N.size)))


def rss_held(runs: pd.DataFrame, E: float, start: np.ndarray) -> float:
    """The least-squares fit of log loss with E held, by curve_fit (Levenberg-Marquardt on the
    log parameters): the reference for profile_fit."""

    def log_loss(x, a, b, alpha, beta):
        n, d = x
        return np.log(E + np.exp(a) / n ** np.exp(alpha) + np.exp(b) / d ** np.exp(beta))

    p0 = np.log(start[1:])
    x = (runs.N.to_numpy(), runs.D.to_numpy())
    best, _ = curve_fit(log_loss, x, np.log(runs.loss.to_numpy()), p0=p0, maxfev=20000)
    return float(((log_loss(x, *best) - np.log(runs.loss.to_numpy())) ** 2).sum())


@pytest.fixture(scope="module")
def unseen() -> tuple[ChinchillaLaw, pd.DataFrame]:
    runs = power_runs(0.0, seed=1)
    return ChinchillaLaw(n_bootstrap=100).fit_frame(runs), runs


def test_profile_fit_matches_an_independent_least_squares(unseen):
    law, runs = unseen
    for E in (0.0, 0.5, 1.0):
        row, rss = profile_fit(law, runs, E)
        assert row[0] == E and np.all(row[1:] > 0)
        assert rss == pytest.approx(rss_held(runs, E, law._params_row().clip(1e-3)), rel=1e-4)
    _, free = profile_fit(law, runs, None)
    assert free <= profile_fit(law, runs, 1.0)[1]


def test_the_ends_of_e_are_where_wilks_rule_rejects(unseen):
    law, runs = unseen
    assert law.offset_unseen()
    (e_lo, row_lo), (e_hi, row_hi) = offset_limits(law, runs, 0.9)
    _, rss_min = profile_fit(law, runs, None)
    deviance = len(runs) * math.log(profile_fit(law, runs, e_hi)[1] / rss_min)
    assert e_lo == 0.0 and 0 < e_hi < runs.loss.min()
    assert deviance == pytest.approx(chi2.ppf(0.9, 1), abs=0.01)
    assert row_lo[0] == e_lo and row_hi[0] == e_hi


@pytest.mark.slow
def test_the_profile_interval_of_e_covers_the_truth_about_as_often_as_it_says():
    """Wilks: 40 noisy data sets of a law with E = 0.5 over runs that hardly see it flatten."""
    covered = 0
    for seed in range(40):
        runs = power_runs(0.5, seed, sd=0.02)
        law = ChinchillaLaw(n_bootstrap=0).fit_frame(runs)
        (e_lo, _), (e_hi, _) = offset_limits(law, runs, 0.9)
        covered += e_lo <= 0.5 <= e_hi
    assert 30 <= covered <= 40  # 90% of 40 is 36; a binomial 90% band is 32..39


def test_an_average_profiles_only_its_forms_with_an_unseen_additive_offset(unseen):
    law, runs = unseen
    kaplan = KaplanLaw(n_bootstrap=20).fit_frame(runs)
    forms = {"chinchilla": law, "kaplan": kaplan}
    average = AveragedLaw.of(forms, {"chinchilla": 0.6, "kaplan": 0.4})
    n_opt, d_opt, limits = offset_span(average, runs, np.array([1e21]), 0.9)
    assert list(limits) == ["chinchilla"] and n_opt.shape == (2, 1)
    assert n_opt[0, 0] != n_opt[1, 0]
    np.testing.assert_allclose(6 * n_opt * d_opt, 1e21, rtol=1e-6)
    alone, _, _ = offset_span(kaplan, runs, np.array([1e21]), 0.9)
    np.testing.assert_allclose(alone[0], alone[1])  # nothing to profile: as fitted


@pytest.mark.slow
@pytest.mark.parametrize("E", [0.0, 1.7])
def test_a_compute_optimal_answer_spans_e_only_where_the_runs_cannot_tell_it(E):
    runs = power_runs(E, seed=2, sd=0.005)
    study = Study.from_frame(runs, n_bootstrap=100)
    answer = study.compute_optimal(1e22, law="chinchilla")
    model = study.fit("chinchilla").model
    boot_n, boot_d = model.compute_optimal_interval(np.array([1e22]))
    if E == 0.0:
        n_span, d_span, _ = offset_span(model, runs, np.array([1e22]), 0.9)
        assert "cannot tell the offset E from zero" in answer.N.note
        assert "cannot tell the offset E from zero" in answer.D.note
        shown = str(answer).splitlines()  # the caution said once, for N; D's points to it
        assert sum("cannot tell the offset E" in line for line in shown) == 1
        assert "caution: as for N_opt" in str(answer)
        assert answer.N.lo == pytest.approx(min(boot_n.lo[0], *n_span.ravel()))
        assert answer.N.hi == pytest.approx(max(boot_n.hi[0], *n_span.ravel()))
        assert answer.D.lo == pytest.approx(min(boot_d.lo[0], *d_span.ravel()))
    else:
        assert answer.N.note == "" and answer.D.note == ""
        assert (answer.N.lo, answer.N.hi) == pytest.approx((boot_n.lo[0], boot_n.hi[0]))
