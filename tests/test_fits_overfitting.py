"""Lovelace et al.'s overfitting penalty (fits.overfitting) against its formula written out,
finite differences and known parameters; refused where the runs cannot identify it."""

import math
import re

import duckdb
import numpy as np
import pandas as pd
import pytest

from fits import LOSS_LAWS, ChinchillaLaw, FitError, OverfittingLaw, from_dict
from fits.overfitting import _PenaltyObjective, overfitting_loss, starting_phi
from fits.two_stage import NO_REPEATS
from scaling.study import Study
from tests.conftest import REPO

# E, A, B, alpha, beta (Hoffmann et al.'s published fit) and a penalty that reaches a tenth
# of the loss at 60 repeats by a model a tenth the size of its unique data.
TRUTH = np.array([1.69, 406.4, 410.7, 0.34, 0.28, 0.02, 0.5, 0.4])


def chinchilla(N, D, E, A, B, alpha, beta):
    """Hoffmann et al.'s form written out."""
    return E + A / np.asarray(N) ** alpha + B / np.asarray(D) ** beta


def runs_of(truth: np.ndarray, seed: int, sd: float = 0.002) -> pd.DataFrame:
    """Single-epoch runs on a grid, plus runs that repeat 1e8 or 1e9 unique tokens 2-61 times."""
    rows = [(N, D, math.nan) for N in np.geomspace(1e7, 1e9, 6) for D in np.geomspace(1e8, 1e11, 7)]
    rows += [(N, U * (R + 1), U) for U in (1e8, 1e9) for N in np.geomspace(1e7, 3e9, 6)
             for R in (1, 3, 8, 20, 60)]  # fmt: skip
    runs = pd.DataFrame(rows, columns=["N", "D", "U"])
    loss = overfitting_loss(truth[None], runs.N, runs.D, runs.U)[0]
    runs["loss"] = loss * np.exp(np.random.default_rng(seed).normal(0, sd, len(runs)))
    return runs


@pytest.fixture(scope="module")
def fitted() -> OverfittingLaw:
    return OverfittingLaw(n_bootstrap=100).fit_frame(runs_of(TRUTH, 0))


def test_it_is_a_registered_form_that_reads_unique_tokens():
    assert LOSS_LAWS["overfitting"] is OverfittingLaw
    assert OverfittingLaw.columns == ("N", "D", "U") and OverfittingLaw().prices_repeats()


def test_the_loss_against_the_formula_written_out():
    E, A, B, alpha, beta, P, delta, kappa = TRUTH
    for N, D, U in ((3e8, 6e10, 1e9), (1e7, 2e9, 1e8), (5e8, 5e9, 5e9), (5e8, 5e9, math.nan)):
        repeats = D / U - 1 if D > U else 0.0
        extra = P * repeats**delta * (N / U) ** kappa if repeats > 0 else 0.0
        want = E + A / N**alpha + B / D**beta + extra
        got = overfitting_loss(TRUTH[None], np.array([N]), np.array([D]), np.array([U]))[0, 0]
        assert got == pytest.approx(want, rel=1e-12)


def test_it_is_chinchilla_where_data_do_not_repeat():
    N, D = np.geomspace(1e7, 1e10, 5), np.geomspace(1e9, 1e12, 5)
    for U in (np.full(5, np.nan), D, 2 * D):
        got = overfitting_loss(TRUTH[None], N, D, U)[0]
        assert np.allclose(got, chinchilla(N, D, *TRUTH[:5]), rtol=1e-12)


def test_the_penalty_gradient_against_finite_differences():
    runs = runs_of(TRUTH, 1)
    rep = runs[runs.U.fillna(np.inf) < runs.D]
    log_r, log_ratio = np.log(rep.D / rep.U - 1).to_numpy(), np.log(rep.N / rep.U).to_numpy()
    base = chinchilla(rep.N.to_numpy(), rep.D.to_numpy(), *TRUTH[:5])[None, :]
    objective = _PenaltyObjective(base, log_r, log_ratio, np.log(rep.loss.to_numpy()), 0.05,
                                  None, np.zeros(1, int))  # fmt: skip
    phi = np.array([[math.log(0.03), 0.6, 0.3]])
    _, grad = objective(phi, np.zeros(1, int))
    for i in range(3):
        step = np.zeros_like(phi)
        step[0, i] = 1e-6
        up, _ = objective(phi + step, np.zeros(1, int))
        down, _ = objective(phi - step, np.zeros(1, int))
        assert grad[0, i] == pytest.approx((up[0] - down[0]) / 2e-6, rel=1e-5)


def test_the_starts_put_the_penalty_at_their_share_of_the_median_loss():
    log_r, log_ratio, loss = (
        np.log([2.0, 8.0, 20.0]),
        np.log([0.1, 1.0, 3.0]),
        np.array([3, 4, 5.0]),
    )
    for log_p, delta, kappa in starting_phi(log_r, log_ratio, loss):
        share = math.exp(log_p + delta * math.log(8.0) + kappa * math.log(1.0)) / 4.0
        assert min(abs(share - 0.01), abs(share - 0.1)) < 1e-12


def test_it_recovers_known_parameters(fitted):
    p = fitted.params_
    names = ("E", "A", "B", "alpha", "beta", "P", "delta", "kappa")
    for name in ("E", "alpha", "beta", "delta", "kappa"):
        assert p[name] == pytest.approx(TRUTH[names.index(name)], rel=0.1), name
        lo, hi = fitted.intervals_[name]
        assert lo < p[name] < hi, name
    assert p["P"] == pytest.approx(TRUTH[5], rel=0.3)
    assert fitted.n_repeated_ == 60 and fitted.n_single_ == 42


def test_its_loss_rises_with_repeats_and_with_size_at_the_same_unique_tokens(fitted):
    """Where the penalty dominates (60 epochs of 1e8 tokens and more, 1e9 parameters and
    more) more tokens and a larger model do worse, as the truth does; Chinchilla's form and
    Muennighoff et al.'s cannot."""
    U = np.full(3, 1e8)
    for N, D in ((np.full(3, 1e9), np.array([6e9, 2e10, 6e10])),
                 (np.array([1e9, 3e9, 1e10]), np.full(3, 6e9))):  # fmt: skip
        got = fitted.predict(N, D, U)
        assert np.all(np.diff(got) > 0)
        assert np.allclose(got, overfitting_loss(TRUTH[None], N, D, U)[0], rtol=0.02)


def test_a_stored_fit_predicts_as_the_fit(fitted):
    again = from_dict(fitted.to_dict())
    N, D, U = np.array([2e9, 5e8]), np.array([4e11, 1e10]), np.array([1e9, np.nan])
    assert np.allclose(again.predict(N, D, U), fitted.predict(N, D, U), rtol=1e-12)
    assert np.allclose(again.bootstrap_params_, fitted.bootstrap_params_, equal_nan=True)
    assert again.penalty_share_ == fitted.penalty_share_


def test_a_quick_refit_on_the_same_runs_lands_on_the_fit(fitted):
    again = fitted.quick_refit(runs_of(TRUTH, 0))
    for name, value in fitted.params_.items():
        assert again.params_[name] == pytest.approx(value, rel=1e-4), name


def test_its_allocation_is_the_base_laws_with_unlimited_unique_data(fitted):
    assert isinstance(fitted.base_, ChinchillaLaw)
    n_opt, d_opt = fitted.compute_optimal(1e22)
    n_base, d_base = fitted.base_.compute_optimal(1e22)
    assert n_opt == pytest.approx(n_base, rel=1e-12) and d_opt == pytest.approx(d_base, rel=1e-12)


@pytest.mark.parametrize(
    ("change", "why"),
    [
        (lambda r: r.assign(U=np.nan), re.escape(NO_REPEATS)),
        (lambda r: r[(r.U.fillna(np.inf) >= r.D) | (r.index < 45)], "at least 4 runs that repeat"),
        (lambda r: r[(r.U.fillna(np.inf) >= r.D) | np.isclose(r.D, 21 * r.U)], "repeat counts"),
    ],
)
def test_runs_that_cannot_identify_the_penalty_are_refused_in_one_line(change, why):
    with pytest.raises(FitError, match=why):
        OverfittingLaw(n_bootstrap=0).fit_frame(change(runs_of(TRUTH, 2)))


def test_runs_that_do_not_overfit_are_refused():
    """Without a penalty in the truth the fitted one is under 0.1% of every loss or its delta is
    not positive: P, delta and kappa are not identified, and the form says so."""
    with pytest.raises(FitError, match=r"no overfitting|not positive"):
        OverfittingLaw(n_bootstrap=0).fit_frame(runs_of(np.r_[TRUTH[:5], 1e-9, 0.5, 0.4], 3))


def test_a_penalty_scale_that_runs_away_is_a_failed_fit_not_an_overflow():
    """52 of the architecture study's hgrn2 runs (a random share that a probe of wall-clock
    answers drew): refitted on the runs up to their 80% quantile of N, as a nested backtest
    does, the penalty's log P ran past 709 and e^P raised OverflowError out of `auto`. It is
    a FitError now (the nested split fails, as any split whose fit fails), and `auto` fits."""
    runs = duckdb.read_parquet(str(REPO / "benchmarks/data/architecture_runs.parquet")).df()
    share = runs.sample(frac=0.6274591760723647, random_state=1799343698)
    study = Study.from_frame(share[share.arch == "hgrn2"], n_bootstrap=0)
    frame = study.law_runs("overfitting")
    fitted = OverfittingLaw(n_bootstrap=0).fit_frame(frame)
    with pytest.raises(FitError, match=r"the penalty's scale ran away \(log P = "):
        fitted.quick_refit(frame[frame["N"] <= frame["N"].quantile(0.8)], force=True)
    assert "overfitting" in study.fit("auto").forms.form.tolist()
