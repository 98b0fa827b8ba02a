"""Loss-law forms against closed forms and known parameters; unidentifiable fits refused."""

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import minimize_scalar

from fits import (
    LOSS_LAWS,
    ChinchillaLaw,
    DataConstrainedLaw,
    FitError,
    KaplanLaw,
    SharedChinchillaLaw,
    chinchilla_loss,
    from_dict,
)
from fits.crossing import CROSSING_TOL, bracketed_roots
from fits.data_constrained import data_constrained_loss, n_opt_for_tokens
from fits.laws import refit_predict

GRID_N, GRID_D = (
    a.ravel() for a in np.meshgrid(np.geomspace(1e7, 1e9, 7), np.geomspace(1e9, 1e11, 7))
)


def kaplan(N, D, N_c=6.4e13, D_c=1.8e13, alpha_n=0.076, alpha_d=0.103):
    """Kaplan et al. eq. 1.5 written out."""
    return ((N_c / N) ** (alpha_n / alpha_d) + D_c / D) ** alpha_d


def noisy(loss: np.ndarray, seed: int, sd: float = 0.002) -> np.ndarray:
    return loss * np.exp(np.random.default_rng(seed).normal(0, sd, np.shape(loss)))


def test_the_registry_holds_every_loss_law():
    assert set(LOSS_LAWS) == {
        "chinchilla",
        "chinchilla-shared",
        "kaplan",
        "data-constrained",
        "farseer",
        "overfitting",
    }
    assert LOSS_LAWS["kaplan"] is KaplanLaw and LOSS_LAWS["chinchilla"].columns == ("N", "D")
    assert DataConstrainedLaw.columns == ("N", "D", "U")


@pytest.fixture(scope="module")
def kaplan_fit() -> KaplanLaw:
    return KaplanLaw(n_bootstrap=100).fit(GRID_N, GRID_D, noisy(kaplan(GRID_N, GRID_D), 0))


def test_kaplan_recovers_known_parameters(kaplan_fit):
    p = kaplan_fit.params_
    assert p["alpha_N"] == pytest.approx(0.076, rel=0.03)
    assert p["alpha_D"] == pytest.approx(0.103, rel=0.08)
    assert p["N_c"] == pytest.approx(6.4e13, rel=0.3)
    for name, truth in (("alpha_N", 0.076), ("alpha_D", 0.103)):
        lo, hi = kaplan_fit.intervals_[name]
        assert lo < truth < hi
    assert kaplan_fit.predict(1e10, 1e12) == pytest.approx(kaplan(1e10, 1e12), rel=0.01)


def test_kaplans_objective_is_the_huber_loss_of_eq_1_5_with_each_starts_weights():
    """The objective the grid search and the bootstrap minimise, on 5,000 runs: each start's
    value is the Huber loss of eq. 1.5 in log loss, weighted by that start's resample."""
    from scipy.special import huber

    rng = np.random.default_rng(5)
    N, D = 10 ** rng.uniform(7, 9.5, 5000), 10 ** rng.uniform(8.5, 11.5, 5000)
    loss = kaplan(N, D) * np.exp(rng.normal(0, 0.01, 5000))
    w = rng.integers(0, 3, size=(3, 5000)).astype(float)
    theta = np.column_stack([rng.uniform(5, 40, 30), rng.uniform(0.25, 4, 30),
                             rng.uniform(10, 40, 30), rng.uniform(0.05, 0.4, 30)])  # fmt: skip
    problem = KaplanLaw().problem(np.log(N), np.log(D))
    rows = np.arange(30)
    f, _ = problem.objective(np.log(loss), 1e-3, w, rows % 3)(problem.to_phi(theta), rows)
    for i, (c, r, d, q) in enumerate(theta):  # N_c^r = e^c, D_c = e^d, alpha_N = r alpha_D
        predicted = kaplan(N, D, N_c=math.exp(c / r), D_c=math.exp(d), alpha_n=r * q, alpha_d=q)
        residual = np.log(predicted) - np.log(loss)
        assert f[i] == pytest.approx(float((w[i % 3] * huber(1e-3, residual)).sum()), rel=1e-9)


def test_kaplan_allocation_is_the_minimum_of_the_loss_at_fixed_compute(kaplan_fit):
    for C in (1e19, 1e22, 1e25):
        n_opt, d_opt = kaplan_fit.compute_optimal(C)
        best = minimize_scalar(
            lambda log_n, C=C: float(kaplan_fit.predict(math.exp(log_n), C / 6 / math.exp(log_n))),
            bounds=(math.log(1e3), math.log(1e16)),
            method="bounded",
            options={"xatol": 1e-10},
        )
        assert float(n_opt) == pytest.approx(math.exp(best.x), rel=1e-4)
        assert 6 * n_opt * d_opt == pytest.approx(C, rel=1e-12)
        assert kaplan_fit.frontier(C) == pytest.approx(best.fun, rel=1e-9)


@pytest.fixture(scope="module")
def shared_truth() -> dict:
    return {"E": 1.8, "A": 300.0, "B": 900.0, "alpha": 0.32}


@pytest.fixture(scope="module")
def shared_fit(shared_truth) -> SharedChinchillaLaw:
    t = shared_truth
    loss = t["E"] + t["A"] / GRID_N ** t["alpha"] + t["B"] / GRID_D ** t["alpha"]
    return SharedChinchillaLaw(n_bootstrap=100).fit(GRID_N, GRID_D, noisy(loss, 1))


@pytest.mark.slow
def test_shared_law_recovers_one_exponent(shared_fit, shared_truth):
    assert set(shared_fit.params_) == {"E", "A", "B", "alpha"}
    assert shared_fit.params_["alpha"] == pytest.approx(shared_truth["alpha"], rel=0.05)
    assert shared_fit.params_["E"] == pytest.approx(shared_truth["E"], rel=0.03)


def test_shared_law_in_gadre_terms_matches_the_n_d_form(shared_fit):
    """L(C, M) = E + (a M^eta + b M^-eta) C^-eta at N = sqrt(C / 6M), D = M N."""
    C, M = np.array([1e19, 1e21, 1e23, 1e21]), np.array([20.0, 20.0, 200.0, 1.0])
    N = np.sqrt(C / (6 * M))
    np.testing.assert_allclose(shared_fit.loss_at_multiplier(C, M), shared_fit.predict(N, M * N),
                               rtol=1e-12)  # fmt: skip
    g = shared_fit.gadre_params()
    assert g["eta"] == pytest.approx(shared_fit.params_["alpha"] / 2)


def test_shared_law_optimal_multiplier_is_constant_and_minimises_loss(shared_fit):
    m_opt = shared_fit.derived_["M_opt"]
    for C in (1e19, 1e23):
        n_opt, d_opt = shared_fit.compute_optimal(C)
        assert float(d_opt / n_opt) == pytest.approx(m_opt, rel=1e-9)
        best = minimize_scalar(
            lambda log_m, C=C: float(shared_fit.loss_at_multiplier(C, math.exp(log_m))),
            bounds=(-10, 15),
            method="bounded",
            options={"xatol": 1e-10},
        )
        assert math.exp(best.x) == pytest.approx(m_opt, rel=1e-4)


def dc_runs(truth: np.ndarray, seed: int) -> pd.DataFrame:
    """Single-epoch runs on a grid, plus runs that repeat 1e8 or 1e9 unique tokens 2-61 times."""
    rows = [(N, D, math.nan) for N in np.geomspace(1e7, 1e9, 6) for D in np.geomspace(1e8, 1e11, 7)]
    rows += [(N, U * (R + 1), U) for U in (1e8, 1e9) for N in np.geomspace(1e7, 3e9, 6)
             for R in (1, 3, 8, 20, 60)]  # fmt: skip
    runs = pd.DataFrame(rows, columns=["N", "D", "U"])
    runs["loss"] = noisy(data_constrained_loss(truth[None], runs.N, runs.D, runs.U)[0], seed)
    return runs


DC_TRUTH = np.array([1.87, 521.0, 1488.0, 0.353, 0.353, 15.4, 5.3])  # Muennighoff's R*


@pytest.fixture(scope="module")
def dc_fit() -> DataConstrainedLaw:
    return DataConstrainedLaw(n_bootstrap=100).fit_frame(dc_runs(DC_TRUTH, 2))


@pytest.mark.slow
def test_data_constrained_recovers_the_value_of_repeated_data(dc_fit):
    assert dc_fit.fit_r_n_
    assert dc_fit.params_["R_D_star"] == pytest.approx(15.4, rel=0.1)
    assert dc_fit.params_["R_N_star"] == pytest.approx(5.3, rel=0.15)
    lo, hi = dc_fit.intervals_["R_D_star"]
    assert lo < dc_fit.params_["R_D_star"] < hi


def test_data_constrained_is_chinchilla_where_data_do_not_repeat(dc_fit):
    runs = dc_runs(DC_TRUTH, 2)
    single = runs[runs.U.isna()]
    base = ChinchillaLaw(n_bootstrap=0).fit(single.N, single.D, single.loss)
    for name in ("E", "A", "B", "alpha", "beta"):
        assert dc_fit.params_[name] == pytest.approx(base.params_[name], rel=1e-9)
    # Any R*, any U >= D: the loss is the Chinchilla formula, over-sized models included.
    params = np.array([[1.9, 400.0, 2000.0, 0.34, 0.28, 3.0, 0.5]])
    N, D = np.geomspace(1e6, 1e11, 9), np.geomspace(1e8, 1e12, 9)
    for U in (D, D * 10, np.full(9, np.nan)):
        chinchilla = 1.9 + 400.0 / N**0.34 + 2000.0 / D**0.28
        np.testing.assert_allclose(
            data_constrained_loss(params, N, D, U)[0], chinchilla, rtol=1e-12
        )


def test_data_constrained_discount_against_the_formula_written_out():
    E, A, B, a, b, rd, rn = DC_TRUTH
    N, D, U = 2e9, 2.1e10, 1e9
    G = (a * A / (b * B)) ** (1 / (a + b))
    n_opt_u = G ** (1 + b / a) * U ** (b / a)  # D_opt(C) = U solved for C, then N_opt(C)
    C_u = 6 * (U * G) ** (1 / (a / (a + b)))
    assert n_opt_u == pytest.approx(G * (C_u / 6) ** (b / (a + b)), rel=1e-9)
    assert float(n_opt_for_tokens(DC_TRUTH[None, :5], np.array([U]))[0, 0]) == pytest.approx(
        n_opt_u
    )
    u_n = min(N, n_opt_u)
    n_eff = u_n + u_n * rn * (1 - math.exp(-(N / u_n - 1) / rn))
    d_eff = U + U * rd * (1 - math.exp(-(D / U - 1) / rd))
    expected = E + A / n_eff**a + B / d_eff**b
    assert data_constrained_loss(DC_TRUTH[None], N, D, U)[0, 0] == pytest.approx(
        expected, rel=1e-12
    )


def test_data_constrained_refuses_runs_that_never_repeat():
    runs = dc_runs(DC_TRUTH, 3)
    with pytest.raises(
        FitError, match=r"needs runs that repeat data \(D > unique tokens\); none do"
    ):
        DataConstrainedLaw(n_bootstrap=0).fit_frame(runs[runs.U.isna()])
    with pytest.raises(FitError, match="none do"):
        DataConstrainedLaw(n_bootstrap=0).fit_frame(runs.drop(columns="U"))


@pytest.mark.parametrize("name", ["kaplan", "chinchilla-shared", "data-constrained"])
def test_records_round_trip_and_quick_refit_is_a_new_estimator(
    name, kaplan_fit, shared_fit, dc_fit
):
    fitted = {"kaplan": kaplan_fit, "chinchilla-shared": shared_fit, "data-constrained": dc_fit}[
        name
    ]
    runs = dc_runs(DC_TRUTH, 2) if name == "data-constrained" else pd.DataFrame(
        {"N": GRID_N, "D": GRID_D, "U": np.nan})  # fmt: skip
    back = from_dict(json.loads(json.dumps(fitted.to_dict())))
    assert type(back) is type(fitted)
    np.testing.assert_allclose(back.predict_frame(runs), fitted.predict_frame(runs), rtol=1e-12)
    np.testing.assert_allclose(back.loss_draws(runs), fitted.loss_draws(runs), rtol=1e-12)
    assert fitted.loss_draws(runs).shape == (100, len(runs))
    assert back.identification_problems() == []
    runs = runs.assign(loss=fitted.predict_frame(runs))  # the fit's own law, no noise
    quick = fitted.quick_refit(runs)
    assert quick is not fitted and quick.bootstrap_params_ is None
    np.testing.assert_allclose(quick.predict_frame(runs), runs.loss, rtol=1e-3)


FLAT = np.full(GRID_N.size, 3.0)
RISING = 2.0 + 0.1 * np.log(GRID_N) + 0.05 * np.log(GRID_D)


@pytest.mark.slow
@pytest.mark.parametrize("law", [ChinchillaLaw, SharedChinchillaLaw, KaplanLaw])
@pytest.mark.parametrize("loss", [FLAT, RISING], ids=["flat", "rising"])
def test_unidentifiable_fits_are_refused_unless_forced(law, loss):
    with pytest.raises(
        FitError, match=r"alpha\w* = \S+ is not positive \(loss does not fall with N"
    ):
        law(n_bootstrap=0).fit(GRID_N, GRID_D, loss)
    forced = law(n_bootstrap=0, force=True).fit(GRID_N, GRID_D, loss)
    assert forced.identification_problems()
    assert "FLAGGED" in forced.summary()


@pytest.mark.slow
@pytest.mark.parametrize("floor", [0.0, 1.7])
def test_a_floor_the_runs_cannot_tell_from_zero_is_a_caution(floor):
    """Runs of a pure power law (E = 0) never see the loss flatten: the fit keeps them (it is
    identified) with a caution in its summary; the same runs over a floor of 1.7 have none."""
    loss = noisy(floor + 400 / GRID_N**0.34 + 410 / GRID_D**0.28, seed=3)
    fitted = ChinchillaLaw(n_bootstrap=100).fit(GRID_N, GRID_D, loss)
    assert fitted.identification_problems() == []
    if floor == 0.0:
        assert fitted.intervals_["E"][0] < 0.01 * loss.min()
        assert len(fitted.cautions()) == 1 and "caution: E = " in fitted.summary()
    else:
        assert fitted.cautions() == [] and "caution" not in fitted.summary()
    assert KaplanLaw(n_bootstrap=0).fit(GRID_N, GRID_D, loss).cautions() == []


N_ONLY = 1.7 + 400 / GRID_N**0.34  # loss that does not depend on D
STEP = np.where(GRID_N > 1e8, 2.0, 3.0)


@pytest.mark.slow
@pytest.mark.parametrize("loss", [N_ONLY, STEP], ids=["n-only", "step"])
@pytest.mark.parametrize("law", [ChinchillaLaw, SharedChinchillaLaw, KaplanLaw])
def test_loss_that_does_not_fall_with_d_is_refused_by_every_form(law, loss):
    """Issue 25: chinchilla-shared kept B = 2.1e-10 on N-only loss and answered N_opt = 1.5e28
    with D_opt = 1.1e-8 tokens; a step in N answered N_opt = 4e60."""
    with pytest.raises(FitError, match=r"loss (does not fall|hardly falls) with D"):
        law(n_bootstrap=0).fit(GRID_N, GRID_D, loss)


@pytest.mark.slow
def test_an_allocation_below_one_token_or_far_beyond_the_runs_is_no_answer():
    forced = SharedChinchillaLaw(n_bootstrap=20, force=True).fit(GRID_N, GRID_D, N_ONLY)
    n_opt, d_opt = forced.compute_optimal([1e21])
    assert d_opt[0] < 1 or d_opt[0] / n_opt[0] < 1e-3  # the answer the law would give
    with pytest.raises(FitError, match=r"no compute-optimal answer: N_opt = .* D_opt = ") as no:
        forced.compute_optimal_interval([1e21])
    assert "\n" not in str(no.value)
    sane = ChinchillaLaw(n_bootstrap=20).fit(
        GRID_N,
        GRID_D,
        noisy(chinchilla_loss(np.array([[1.7, 400.0, 900.0, 0.34, 0.3]]), GRID_N, GRID_D)[0], 5),
    )
    n_est, d_est = sane.compute_optimal_interval([1e21])
    assert 1 < d_est.estimate[0] / n_est.estimate[0] < 1e4


@pytest.mark.slow
def test_a_nested_refit_the_checks_would_refuse_still_predicts_the_held_out_loss():
    """A backtest split asks only for loss: a refit that an answer would refuse (here N-only
    loss, where the law cannot fall with D) is kept by refit_predict and predicts the held-out
    runs, instead of dropping the split (which took a form's whole stacking weight)."""
    truth = np.array([[1.7, 400.0, 900.0, 0.34, 0.3]])
    good = pd.DataFrame({"N": GRID_N, "D": GRID_D,
                         "loss": noisy(chinchilla_loss(truth, GRID_N, GRID_D)[0], 7)})  # fmt: skip
    model = ChinchillaLaw(n_bootstrap=0).fit_frame(good)
    flat = pd.DataFrame({"N": GRID_N, "D": GRID_D, "loss": N_ONLY})
    train, test = flat[GRID_N < 3e8], flat[GRID_N >= 3e8]
    with pytest.raises(FitError, match="loss does not fall with D"):
        model.quick_refit(train)
    predicted = refit_predict(model, train, test)
    assert np.all(np.isfinite(predicted))
    np.testing.assert_allclose(predicted, test.loss, rtol=0.05)


def test_bracketed_roots_are_the_closed_form_roots_of_every_row_at_once():
    """Each row's root against its closed form: a cube root, a logarithm (an end kept again
    and again by plain regula falsi), a root hit exactly on the first secant step, and a row
    whose function is not finite beside its root (bisected there)."""
    targets = np.array([2.0, 30.0, 0.5, 5.0])

    def gap(rows: np.ndarray, x: np.ndarray) -> np.ndarray:
        t = targets[rows]
        cube, log = x**3 - t, np.exp(x) - t
        with np.errstate(invalid="ignore"):
            holed = np.where(x > 1.9, np.sqrt(x - 1.9) - np.sqrt(t - 1.9), np.nan)
        return np.select([rows == 0, rows == 1, rows == 2], [cube, log, x - t], holed)

    lo, hi = np.array([0.0, 0.0, 0.0, 1.0]), np.array([3.0, 10.0, 1.0, 6.0])
    f_lo = gap(np.arange(4), lo)
    f_lo[3] = -1.0  # not finite at its low end: the sign it has just above 1.9
    roots = bracketed_roots(gap, lo, hi, f_lo, gap(np.arange(4), hi))
    expected = [2.0 ** (1 / 3), math.log(30.0), 0.5, 5.0]
    np.testing.assert_allclose(roots, expected, rtol=0, atol=CROSSING_TOL)
