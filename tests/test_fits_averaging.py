"""Stacking weights, the averaged law, hull distance, Harrell-Davis quantiles, calibration."""

import dataclasses
import json
import math
from functools import partial

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import minimize
from scipy.stats.mstats import hdquantiles
from statsmodels.regression.quantile_regression import QuantReg

from fits import LOSS_LAWS, ChinchillaLaw, FitError, KaplanLaw, from_dict
from fits.auto import LIGHT_NOTE, fit_auto
from fits.averaging import (
    AveragedLaw,
    average,
    cross_weights,
    held_out_errors,
    split_keys,
    split_weights,
    stack,
    stacking_weights,
)
from fits.bootstrap import observation_interval
from fits.calibration import (
    FLOOR,
    Calibration,
    calibrate,
    departures,
    effective_size,
    few_scores_caution,
    harrell_davis,
    hull_distance,
    hull_vertices,
    min_kind_size,
)
from fits.chinchilla import chinchilla_loss
from fits.extrapolation import nested_backtest
from fits.laws import refit_predict
from fits.noise import RunNoise
from fits.prediction import calibrated, question_frame

AWAY = {"C": (math.sqrt(0.5), math.sqrt(0.5)), "N": (1.0, 0.0), "D": (0.0, 1.0)}


def nested(
    bias: float, seed: int, splits=(("C", 0.5), ("N", 0.5), ("D", 0.8)), sd: float = 0.01
) -> pd.DataFrame:
    """A fake nested backtest: 6 held-out runs per split erring by bias (+ noise), each
    leaving its split's hull along its coordinate (C = 6 N D: the diagonal)."""
    rng = np.random.default_rng(seed)
    rows = [{"coord": c, "q": q, "row": r, "log_error": bias + rng.normal(0, sd),
             "distance": 0.2, "hull": 0.2 + 0.1 * r, "scatter": 0.0, "in_data": 0.0,
             "dir_N": AWAY[c][0], "dir_D": AWAY[c][1]}
            for c, q in splits for r in range(6)]  # fmt: skip
    return pd.DataFrame(rows)


def test_stacking_minimises_the_weighted_absolute_error_on_the_simplex():
    """Two forms: the objective is piecewise linear in w, so its minimum is at w = 0, w = 1 or
    where one run's averaged error is zero; every candidate is evaluated. Three forms: no point
    of a fine grid on the simplex does better."""
    rng = np.random.default_rng(1)
    for n in (7, 40):
        errors = rng.normal(0, 1, (n, 2)) + rng.normal(0, 1, 2)
        weights = rng.uniform(0.5, 2, n)

        def value(v, errors=errors, weights=weights):
            return float(weights @ np.abs(errors @ np.array([v, 1 - v])))

        a, b = errors.T
        kinks = [bb / (bb - aa) for aa, bb in zip(a, b, strict=True) if 0 < bb / (bb - aa) < 1]
        w = stack(errors, weights)
        assert w.sum() == pytest.approx(1) and (w >= 0).all()
        assert value(w[0]) == pytest.approx(min(map(value, [0.0, 1.0, *kinks])), abs=1e-9)
    errors = rng.normal(0, 1, (40, 3)) + np.array([0.5, -0.4, 2.0])
    weights = rng.uniform(0.5, 2, 40)
    grid = np.array([(i, j, 200 - i - j) for i in range(201) for j in range(201 - i)]) / 200
    w = stack(errors, weights)
    best_on_grid = (np.abs(errors @ grid.T) * weights[:, None]).sum(axis=0).min()
    assert float(weights @ np.abs(errors @ w)) <= best_on_grid + 1e-12


def test_a_few_outlying_runs_do_not_set_the_weights():
    """Form a errs by 0.01 on 30 runs; form b by 0.03 on them, but less than a on two outliers
    that every form misses by far (runs the laws' Huber fits also set aside). Squared error
    would give b most of the weight; absolute error keeps it on a."""
    errors = np.vstack([np.tile([0.01, -0.03], (30, 1)), [[0.30, 0.20], [0.25, 0.17]]])
    weights = np.ones(len(errors))
    assert stack(errors, weights)[0] > 0.7
    squared = minimize(lambda v: float(weights @ (errors @ [v[0], 1 - v[0]]) ** 2), [0.5],
                       bounds=[(0, 1)]).x[0]  # fmt: skip
    assert squared < 0.3  # what least squares would have chosen


def test_forms_erring_both_ways_share_weight_and_a_noisy_one_gets_little():
    weights, frame, left = average({"a": nested(0.05, 0), "b": nested(-0.05, 1),
                                    "c": nested(0.0, 2, sd=0.5)})  # fmt: skip
    assert left == {} and weights["c"] < 0.01
    assert weights["a"] == pytest.approx(0.5, abs=0.05)
    assert np.abs(frame.log_error).median() < 0.02  # the average cancels the two biases
    np.testing.assert_allclose(split_weights(frame).sum(), 1.0)


def test_a_form_that_failed_a_split_is_left_out_not_compared_on_fewer():
    short = nested(0.0, 3, splits=(("C", 0.5), ("N", 0.5)))
    weights, _, left = average({"a": nested(0.05, 0), "b": short})
    assert weights == {"a": 1.0} and left == {"b": "completed 2 of the 3 nested splits"}


def test_weights_are_stacked_on_the_largest_cut_along_each_coordinate():
    """A form with more parameters that errs on the smaller cuts (fewer training runs) but not
    on the largest ones gets the weight: the largest cuts are the nearest to the fit on all
    runs. The smaller cuts are still scored, with the weights of the largest cuts."""
    small = (("C", 0.5), ("N", 0.5), ("D", 0.5))
    large = (("C", 0.8), ("N", 0.8), ("D", 0.8))
    simple = pd.concat([nested(0.0, 0, small, sd=0.001), nested(0.05, 1, large, sd=0.001)])
    rich = pd.concat([nested(0.08, 2, small, sd=0.001), nested(0.0, 3, large, sd=0.001)])
    weights, frame, left = average({"simple": simple, "rich": rich})
    assert left == {} and weights["rich"] == pytest.approx(1.0, abs=0.01)
    on_every_cut = stack(frame[["simple", "rich"]].to_numpy(), split_weights(frame))
    assert on_every_cut[0] > 0.5  # what stacking on every cut would have chosen
    smaller = frame.q == 0.5
    np.testing.assert_allclose(frame.log_error[smaller], frame.rich[smaller], atol=2e-3)


def test_a_light_form_counts_zero_on_the_cuts_it_was_not_backtested_on():
    """A form with no weight on the largest cuts, backtested on those alone (`light`), gives
    the weights and the average's errors that backtesting it on every cut gives; a light form
    missing a largest cut is left out, and a form with weight must have every split."""
    small = (("C", 0.5), ("N", 0.5), ("D", 0.5))
    large = (("C", 0.8), ("N", 0.8), ("D", 0.8))
    forms = {name: pd.concat([nested(bias, seed, small, sd), nested(bias, seed + 10, large, sd)],
                             ignore_index=True)
             for name, bias, seed, sd in (("a", 0.05, 0, 0.01), ("b", -0.05, 1, 0.01),
                                          ("c", 0.0, 2, 0.5))}  # fmt: skip
    full_w, full_frame, _ = average(forms)
    assert full_w["c"] == 0.0
    light = {**forms, "c": forms["c"][forms["c"].q == 0.8].reset_index(drop=True)}
    weights, frame, left = average(light, light={"c"})
    assert weights == full_w and left == {}
    np.testing.assert_array_equal(frame.log_error, full_frame.log_error)
    assert frame.c.isna().sum() == 18 and frame.c.notna().sum() == 18
    short = {**light, "c": light["c"][light["c"].coord != "D"]}
    assert "c" in average(short, light={"c"})[2]
    assert "c" in average(light)[2]  # not light: held to every split
    broken = frame.assign(a=np.where(frame.q == 0.5, np.nan, frame.a))
    with pytest.raises(ValueError, match="positive weight"):
        held_out_errors(broken, ["a", "b", "c"])


def test_a_light_form_takes_no_weight_where_the_other_splits_are_all_smaller_cuts():
    """With one coordinate's splits (a few runs of one kind of N), the largest cut's cross
    weights are stacked on the smaller cut alone, where a light form has no errors: it takes
    0 there and the others are stacked as if it were absent (benchmarks/subsets.py found it
    on 9 of Epoch's points: linprog's ValueError on the light form's NaN)."""
    splits = {"small": (("N", 0.5),), "large": (("N", 0.8),)}
    forms = {name: pd.concat([nested(bias, seed, splits["small"]),
                              nested(-bias, seed + 10, splits["large"])], ignore_index=True)
             for name, bias, seed in (("a", 0.05, 0), ("b", -0.02, 1), ("c", 0.3, 2))}  # fmt: skip
    forms["c"] = forms["c"][forms["c"].q == 0.8].reset_index(drop=True)
    weights, frame, left = average(forms, light={"c"})
    assert left == {} and weights["c"] == 0.0 and np.isfinite(frame.log_error).all()
    by_split = cross_weights(frame, ["a", "b", "c"], split_keys(frame))
    smaller = (frame.q == 0.5).to_numpy()
    alone = stack(frame.loc[smaller, ["a", "b"]].to_numpy(), split_weights(frame[smaller]))
    np.testing.assert_allclose(by_split[("N", 0.8)], [*alone, 0.0])


def test_a_light_form_gains_weight_when_a_form_with_weight_fails_a_smaller_cut():
    """A form with weight that failed a smaller cut is left out and the rest restacked: a light
    form may then get weight it has no smaller cuts for, which fits.auto must see from the
    weights alone (stacking_weights) to backtest it there, before the average's errors,
    which need them, are taken (found by benchmarks/subsets.py on 50 of Muennighoff's runs)."""
    small = (("C", 0.5), ("N", 0.5), ("D", 0.5))
    large = (("C", 0.8), ("N", 0.8), ("D", 0.8))
    a = pd.concat([nested(0.0, 0, small[1:]), nested(0.0, 10, large)], ignore_index=True)
    b = pd.concat([nested(0.05, 1, small), nested(0.05, 11, large)], ignore_index=True)
    c = nested(-0.05, 12, large)
    weights, _, left = stacking_weights({"a": a, "b": b, "c": c}, light={"c"})
    assert "a" in left and weights["c"] == pytest.approx(0.5, abs=0.1)
    with pytest.raises(ValueError, match="positive weight"):
        average({"a": a, "b": b, "c": c}, light={"c"})
    c_whole = pd.concat([nested(-0.05, 2, small), c], ignore_index=True)
    assert average({"a": a, "b": b, "c": c_whole})[0] == weights


def test_hull_distance_against_the_geometry_written_out():
    square = hull_vertices(np.array([[0, 0], [1, 0], [1, 1], [0, 1], [0.5, 0.5]], float))
    assert len(square) == 4
    points = np.array([[0.5, 0.5], [2.0, 0.5], [2.0, 2.0], [-3.0, 0.0], [1.0, 1.0]])
    np.testing.assert_allclose(hull_distance(square, points),
                               [0.0, 1.0, math.sqrt(2), 3.0, 0.0], atol=1e-12)  # fmt: skip
    segment = hull_vertices(np.array([[0, 0], [1, 1], [2, 2]], float))  # collinear
    np.testing.assert_allclose(hull_distance(segment, np.array([[1, 1], [0, 2], [3, 3]])),
                               [0.0, math.sqrt(2), math.sqrt(2)], atol=1e-12)  # fmt: skip


def test_harrell_davis_matches_scipy_and_is_not_the_maximum_at_small_n():
    rng = np.random.default_rng(0)
    for n in (5, 12, 60):
        x = rng.normal(size=n)
        for p in (0.05, 0.5, 0.95):
            assert harrell_davis(x, None, p) == pytest.approx(hdquantiles(x, [p])[0], rel=1e-9)
        assert harrell_davis(x, None, 0.95) < x.max()
    # integer weights are repeated points: the estimator on the expanded sample
    x, w = np.array([1.0, 2.0, 5.0]), np.array([2.0, 1.0, 1.0])
    expanded = np.array([1.0, 1.0, 2.0, 5.0])
    n_eff = 1 / ((w / w.sum()) ** 2).sum()
    assert n_eff == pytest.approx(16 / 6)  # Kish: not the expanded sample's 4
    assert harrell_davis(x, w, 0.5) > harrell_davis(expanded, None, 0.25)


def test_departures_against_the_geometry_written_out():
    square = hull_vertices(np.array([[0, 0], [1, 0], [1, 1], [0, 1]], float))
    d, u = departures(square, np.array([[0.5, 0.5], [3.0, 0.5], [2.0, 2.0], [0.5, -2.0]]))
    np.testing.assert_allclose(d, [0.0, 2.0, math.sqrt(2), 2.0], atol=1e-12)
    r = math.sqrt(0.5)
    np.testing.assert_allclose(u, [[0, 0], [1, 0], [r, r], [0, -1]], atol=1e-12)


RUNS = pd.DataFrame({"N": [1e6, 1e8, 1e8, 1e6], "D": [1e9, 1e9, 1e11, 1e11], "loss": 2.0})


def test_calibration_is_signed_floored_and_clipped_to_ln_vocab():
    """Errors that grow as a gradient, -0.5 per decade of N and of D (a C split leaving along
    the diagonal errs by their sum over its sqrt 2 decades), are the centre exactly, with no
    spread: a question moves by the gradient along its own departure. Held-out runs nearly
    inside count FLOOR decades out."""
    r = math.sqrt(0.5)
    over = nested(-0.05, 0, sd=0.0).assign(hull=0.001)  # all over-predicted, nearly inside
    over.loc[over.coord == "C", "log_error"] = -0.05 * 2 * r  # the gradient along (r, r)
    cal = calibrate(over, RUNS, level=0.9, vocab=256)
    np.testing.assert_allclose(cal.centre, [-0.05 / FLOOR, -0.05 / FLOOR], rtol=1e-6)
    assert cal.lo_rate == pytest.approx(0, abs=1e-6) and cal.hi_rate == 0.0
    asks = pd.DataFrame({"N": [1e7, 1e9, 1e7, 1e9], "D": [1e10, 1e10, 1e12, 1e12]})
    np.testing.assert_allclose(cal.distance(asks), [0, 1, 1, math.sqrt(2)], atol=1e-12)
    lo, hi = cal.widen(np.full(4, 2.0), np.array([3.0, 9.0, 9.0, 9.0]), asks)
    np.testing.assert_allclose(lo, 2.0 * np.exp([0.0, -0.5, -0.5, -1.0]), rtol=1e-5)
    assert hi[0] == 3.0 and hi[1:] == pytest.approx([math.log(256)] * 3)
    back = Calibration.from_dict(json.loads(json.dumps(cal.to_dict())))
    np.testing.assert_allclose(back.widen(np.full(4, 2.0), np.full(4, 3.0), asks)[0], lo)
    # four runs, no replicates: fits.bends checks nothing; 18 scores are too few
    assert cal.caution == few_scores_caution(over, 0.9)
    flagged = dataclasses.replace(cal, caution="bends")
    assert Calibration.from_dict(json.loads(json.dumps(flagged.to_dict()))) == flagged
    older = {k: v for k, v in cal.to_dict().items() if k not in ("caution", "centre")}
    assert Calibration.from_dict(older) == dataclasses.replace(cal, centre=(0.0, 0.0), caution=None)


def test_the_centre_is_a_median_regression_on_the_direction_and_the_spread_its_rest():
    """The centre against statsmodels' median regression (equal weights: every split has six
    runs), the spread against scipy's Harrell-Davis quantiles of the residual scores."""
    splits = (("C", 0.5), ("N", 0.5), ("N", 0.65), ("D", 0.65), ("D", 0.8))
    noisy = pd.concat([nested(0.03, 1, splits[:3], sd=0.01), nested(-0.02, 2, splits[3:], sd=0.02)])
    cal = calibrate(noisy, RUNS, level=0.9)
    direction = noisy[["dir_N", "dir_D"]].to_numpy()
    score = noisy.log_error.to_numpy() / np.maximum(noisy.hull.to_numpy(), FLOOR)
    median = QuantReg(score, direction).fit(q=0.5).params
    np.testing.assert_allclose(cal.centre, median, atol=1e-6)
    rest = score - direction @ np.asarray(cal.centre)
    low, high = hdquantiles(rest, [0.05, 0.95])
    assert cal.lo_rate == pytest.approx(min(low, 0), abs=1e-9)
    assert cal.hi_rate == pytest.approx(max(high, 0), abs=1e-9)
    assert cal.centre[0] > 0 > cal.centre[1]  # N splits err up, D splits down


def test_a_run_the_full_fit_misses_as_much_as_the_split_scores_no_rate():
    """The score is the shift of the prediction (the split's error less the full fit's at the
    same run): a run every fit misses by +0.2 (an outlier, or the form's misfit in-sample) is
    the run noise's business, not a rate per decade; one the full fit hits scores it all."""
    missed = calibrate(nested(0.2, 0, sd=0.0).assign(in_data=0.2), RUNS, level=0.9)
    assert missed.centre == (0.0, 0.0) and missed.lo_rate == 0.0 and missed.hi_rate == 0.0
    hit = calibrate(nested(0.2, 0, sd=0.0), RUNS, level=0.9)
    along = pd.DataFrame({"N": [1e9, 1e7], "D": [1e10, 1e12]})  # one decade out in N, in D
    _, below, above = hit.rates(along)
    assert (below == 0).all() and (above > 0.2 / (0.2 + 0.1 * 5)).all()


GRID_N, GRID_D = (a.ravel() for a in np.meshgrid(np.geomspace(1e7, 1e9, 6),
                                                 np.geomspace(1e9, 1e11, 6)))  # fmt: skip


@pytest.mark.slow
def test_the_average_is_the_geometric_mean_of_its_forms_and_round_trips():
    loss = chinchilla_loss(np.array([[1.7, 400.0, 900.0, 0.34, 0.3]]), GRID_N, GRID_D)[0]
    models = {"chinchilla": ChinchillaLaw(n_bootstrap=20).fit(GRID_N, GRID_D, loss),
              "kaplan": KaplanLaw(n_bootstrap=20).fit(GRID_N, GRID_D, loss * 1.01)}  # fmt: skip
    law = AveragedLaw.of(models, {"chinchilla": 0.25, "kaplan": 0.75})
    asks = pd.DataFrame({"N": [1e10, 3e8], "D": [1e12, 1e9]})
    expected = models["chinchilla"].predict_frame(asks) ** 0.25 * \
        models["kaplan"].predict_frame(asks) ** 0.75  # fmt: skip
    np.testing.assert_allclose(law.predict_frame(asks), expected, rtol=1e-12)
    assert law.loss_draws(asks).shape == (20, 2)
    back = from_dict(json.loads(json.dumps(law.to_dict())))
    np.testing.assert_allclose(back.predict_frame(asks), expected, rtol=1e-12)
    n_opt, d_opt = law.compute_optimal([1e20])
    budget = np.geomspace(n_opt[0] / 3, n_opt[0] * 3, 301)
    along = law.predict(budget, 1e20 / (6 * budget))
    assert along.min() >= law.predict(n_opt, d_opt)[0] - 1e-12


@pytest.mark.slow
def test_a_bootstrap_added_to_a_plain_fit_is_the_bootstrap_fit_gives():
    """auto fits each form once and adds the resamples: the draws must be fit's own."""
    loss = chinchilla_loss(np.array([[1.7, 400.0, 900.0, 0.34, 0.3]]), GRID_N, GRID_D)[0]
    loss = loss * np.exp(np.random.default_rng(3).normal(0, 0.01, loss.size))
    runs = pd.DataFrame({"N": GRID_N, "D": GRID_D, "loss": loss})
    for law in (ChinchillaLaw, KaplanLaw):
        whole = law(n_bootstrap=25, random_state=4).fit_frame(runs)
        added = law(n_bootstrap=0, random_state=4).fit_frame(runs)._with_bootstrap(runs, 25)
        np.testing.assert_array_equal(added.bootstrap_params_, whole.bootstrap_params_)
        assert added.intervals_ == whole.intervals_ and added.n_bootstrap == 25


@pytest.mark.slow
def test_an_average_built_of_fitted_forms_is_the_one_its_settings_fit():
    """`of` records the forms' settings and the weights, so fit(runs) with them rebuilds it."""
    runs = pd.DataFrame({"N": GRID_N, "D": GRID_D})
    runs["loss"] = chinchilla_loss(np.array([[1.7, 400.0, 900.0, 0.34, 0.3]]), GRID_N, GRID_D)[0]
    models = {"chinchilla": ChinchillaLaw(n_bootstrap=0).fit(runs),
              "kaplan": KaplanLaw(n_bootstrap=0).fit(runs)}  # fmt: skip
    law = AveragedLaw.of(models, {"chinchilla": 0.25, "kaplan": 0.75})
    settings = law.get_params()
    assert settings["weights"] == {"chinchilla": 0.25, "kaplan": 0.75}
    assert settings["n_bootstrap"] == 0
    again = AveragedLaw(**settings).fit(runs)
    asks = pd.DataFrame({"N": [1e10, 3e8], "D": [1e12, 1e9]})
    np.testing.assert_allclose(again.predict_frame(asks), law.predict_frame(asks), rtol=1e-9)
    with pytest.raises(FitError, match="needs its forms' weights"):
        AveragedLaw().fit(runs)


@pytest.mark.slow
def test_the_upper_end_does_not_rise_with_tokens_at_fixed_params():
    """Loss does not rise with D at fixed N, so neither may the calibrated upper end: with a
    steep widening rate it would (the rate outgrows the law's fall in D), and the clip holds
    it at its value at fewer tokens, never below the point; the lower end is untouched."""
    loss = chinchilla_loss(np.array([[1.7, 400.0, 900.0, 0.34, 0.3]]), GRID_N, GRID_D)[0]
    loss = loss * np.exp(np.random.default_rng(5).normal(0, 0.01, loss.size))
    runs = pd.DataFrame({"N": GRID_N, "D": GRID_D, "loss": loss})
    law = ChinchillaLaw(n_bootstrap=40, random_state=0).fit_frame(runs)
    residuals = RunNoise.of(runs, np.log(loss) - np.log(law.predict_frame(runs)))
    steep = calibrate(nested(0.3, 0), runs, level=0.9)
    assert steep.hi_rate > 0.5  # the widening outgrows the fall in D beyond the runs
    asks = question_frame(np.full(12, 1e8), np.geomspace(2e11, 1e15, 12))
    lo_own, hi_own = observation_interval(law.loss_draws(asks), residuals.pools(asks), 0.9, 0)
    widened_lo, widened_hi = steep.widen(np.ravel(lo_own), np.ravel(hi_own), asks)
    assert (np.diff(widened_hi) > 0).any()  # what the clip is for
    lo, hi = calibrated(law, steep, np.ravel(lo_own), np.ravel(hi_own), asks, residuals, 0)
    np.testing.assert_allclose(lo, widened_lo)
    assert (np.diff(hi) <= 1e-12).all() and (hi <= widened_hi).all()
    assert (hi >= law.predict_frame(asks)).all()
    inside = question_frame([1e8], [1e10])  # inside the runs: the clip changes nothing there
    lo_in, hi_in = observation_interval(law.loss_draws(inside), residuals.pools(inside), 0.9, 0)
    assert calibrated(law, steep, np.ravel(lo_in), np.ravel(hi_in), inside, residuals, 0)[1] \
        == pytest.approx(steep.widen(np.ravel(lo_in), np.ravel(hi_in), inside)[1])  # fmt: skip


@pytest.mark.slow
def test_forms_without_weight_skip_their_smaller_cuts_and_change_nothing():
    """fit_auto backtests the forms with no weight on the largest cuts on those alone; its
    weights and the average's nested errors are those of every form on every cut (written
    out here with nested_backtest), and its table says which forms were light."""
    loss = chinchilla_loss(np.array([[1.7, 400.0, 900.0, 0.34, 0.3]]), GRID_N, GRID_D)[0]
    loss = loss * np.exp(np.random.default_rng(7).normal(0, 0.01, loss.size))
    runs = pd.DataFrame({"N": GRID_N, "D": GRID_D, "loss": loss})
    names = ("chinchilla", "kaplan", "chinchilla-shared")
    forms = {n: (lambda b, n=n: LOSS_LAWS[n](n_bootstrap=b, random_state=0)) for n in names}
    auto = fit_auto(runs, forms, 0.9, 0)
    every = runs.assign(C=6.0 * runs.N * runs.D)
    fitted = {n: LOSS_LAWS[n](n_bootstrap=0, random_state=0).fit_frame(every) for n in names}
    whole = {n: nested_backtest(every, partial(refit_predict, fitted[n]), 0.9) for n in names}
    weights, frame, _ = average(whole)
    table = auto.forms.set_index("form")
    light = [n for n in names if table.note[n] == LIGHT_NOTE]
    assert light and all(weights[n] == 0.0 for n in light)
    assert table.weight.to_dict() == weights
    assert all(table.splits[n] == 3 for n in light) and table.splits.max() == 9
    np.testing.assert_array_equal(auto.nested.log_error, frame.log_error)


@pytest.mark.slow
def test_the_average_is_scored_by_the_shift_of_its_own_prediction():
    """Each held-out run's in-data error in the average's nested backtest is the full fits'
    residuals there with its split's cross weights, written out here from each form fitted
    on all runs; one form alone gets its own residual."""
    loss = chinchilla_loss(np.array([[1.7, 400.0, 900.0, 0.34, 0.3]]), GRID_N, GRID_D)[0]
    loss = loss * np.exp(np.random.default_rng(7).normal(0, 0.01, loss.size))
    runs = pd.DataFrame({"N": GRID_N, "D": GRID_D, "loss": loss})
    forms = {n: (lambda b, n=n: LOSS_LAWS[n](n_bootstrap=b, random_state=0))
             for n in ("kaplan", "chinchilla")}  # fmt: skip
    both = fit_auto(runs, forms, 0.9, 0)
    fits = {n: LOSS_LAWS[n](n_bootstrap=0, random_state=0).fit_frame(runs) for n in forms}
    residual = {n: np.log(loss) - np.log(fit.predict_frame(runs)) for n, fit in fits.items()}
    frame, names = both.nested, list(forms)
    weights = cross_weights(frame, names, split_keys(frame))
    for i in (0, len(frame) // 2, len(frame) - 1):
        row = frame.iloc[i]
        w = weights[(row.coord, row.q)]
        expected = sum(wk * residual[n][int(row.row)] for wk, n in zip(w, names, strict=True))
        assert row.in_data == pytest.approx(expected, abs=1e-12)
    alone = fit_auto(runs, {"kaplan": forms["kaplan"]}, 0.9, 0)
    np.testing.assert_allclose(alone.nested.in_data, residual["kaplan"][alone.nested.row])
    assert "scatter" not in both.nested  # a form's scatter is not the average's


SPLITS = tuple((c, q) for c in ("C", "N", "D") for q in (0.5, 0.65, 0.8))
KINDS = pd.DataFrame({"N": [1e6, 1e8, 1e8, 1e6, 1e7, 1e7], "D": [1e9, 1e9, 1e11, 1e11, 1e10, 3e9],
                      "U": [1e9, 1e10, 1e11, 1e9, 1e8, 1e8], "loss": 2.0})  # fmt: skip


def kinds_backtest(splits: tuple, repeated_error: float) -> pd.DataFrame:
    """Six held-out runs per split (nested); KINDS' rows 0-2 are on fresh tokens and err
    by +0.02, rows 3-5 repeat theirs and err by repeated_error."""
    frame = nested(0.02, 7, splits, sd=0.01)
    frame.loc[frame.row >= 3, "log_error"] += repeated_error - 0.02
    return frame


def test_questions_on_fresh_and_repeated_tokens_are_calibrated_on_their_own_kind():
    """Mondrian calibration: a question on fresh tokens gets the calibration of the fresh
    nested runs alone, one on repeated tokens that of the repeated ones (each the adopted
    calibration of that kind's rows, written out by calling it on them); the fresh answer
    does not see the repeated runs' errors at all; runs without U are one kind."""
    backtest = kinds_backtest(SPLITS, -1.0)
    cal = calibrate(backtest, KINDS, level=0.9)
    fresh_rows = (backtest.row < 3).to_numpy()
    for kind, rows in ((cal.fresh, fresh_rows), (cal.repeated, ~fresh_rows)):
        alone = calibrate(backtest[rows], KINDS, level=0.9)
        assert kind is not None and kind.n_scores == rows.sum() == 27
        assert (kind.lo_rate, kind.hi_rate) == (alone.lo_rate, alone.hi_rate)
        assert kind.centre == alone.centre
    assert cal.lo_rate < cal.fresh.lo_rate  # every score's spread holds both kinds' errors
    asks = question_frame([1e9, 1e9, 1e9], [1e12, 1e12, 1e12], [np.nan, 1e12, 1e11])
    d, below, _ = cal.rates(asks)
    assert d == pytest.approx([math.sqrt(2)] * 3) and below[0] == below[1] > below[2]
    worse = calibrate(kinds_backtest(SPLITS, -10.0), KINDS, level=0.9)
    assert worse.widen(np.full(3, 2.0), np.full(3, 2.0), asks)[0][:2] == pytest.approx(
        cal.widen(np.full(3, 2.0), np.full(3, 2.0), asks)[0][:2], rel=1e-12)  # fmt: skip
    one_kind = calibrate(backtest, KINDS.drop(columns="U"), level=0.9)
    assert one_kind.fresh is None and one_kind.repeated is None
    assert (one_kind.lo_rate, one_kind.centre) == (cal.lo_rate, cal.centre)
    back = Calibration.from_dict(json.loads(json.dumps(cal.to_dict())))
    assert back == cal
    older = {k: v for k, v in cal.to_dict().items() if k not in ("fresh", "repeated")}
    assert Calibration.from_dict(older) == one_kind
    assert "on repeated tokens" in cal.describe() and "kind" not in one_kind.describe()


def test_a_calibration_on_too_few_scores_says_its_intervals_may_be_too_narrow():
    """Too few is what a kind falls back under (min_kind_size, 19 at 90%), counted as Kish's
    effective size of the weights that make every split weigh the same: 3 splits of 6 runs
    (18) caution, 4 (24) do not; splits of 1 run and of 12 weigh their runs 1/2 and 1/24,
    so (sum w)^2 / sum w^2 = 1 / (1/4 + 12/576) = 3.69."""
    four = (("C", 0.5), ("N", 0.5), ("D", 0.8), ("C", 0.8))
    few = calibrate(nested(-0.01, 0, four[:3]), RUNS, level=0.9)
    assert few.caution is not None and "on 18 nested errors" in few.caution
    assert "fewer than the 19" in few.caution and "may be too narrow" in few.caution
    assert calibrate(nested(-0.01, 0, four), RUNS, level=0.9).caution is None
    one, twelve = nested(-0.01, 0, (("C", 0.5),)).head(1), nested(-0.01, 1, (("N", 0.5),))
    uneven = pd.concat([one, twelve, twelve.assign(row=twelve.row + 6)])
    assert effective_size(uneven) == pytest.approx(1 / (1 / 4 + 12 / 576), rel=1e-12)


def test_a_kind_with_too_few_scores_takes_every_score():
    """The smallest effective size a kind is calibrated on alone is the split-conformal one,
    the smallest n whose ceil((n + 1) 0.95)-th score lies inside the sample: 19. Each kind
    has 3 runs per split, so 6 splits (18) fall back to every score and 7 (21) do not."""
    assert min_kind_size(0.9) == next(n for n in range(1, 100) if math.ceil((n + 1) * 0.95) <= n)
    few = calibrate(kinds_backtest(SPLITS[:6], -1.0), KINDS, level=0.9)
    assert few.fresh is None and few.repeated is None
    enough = calibrate(kinds_backtest(SPLITS[:7], -1.0), KINDS, level=0.9)
    assert enough.fresh is not None and enough.repeated is not None
