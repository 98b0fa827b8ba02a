"""Hyperparameter laws (OLS in log space) against closed forms, statsmodels and Step Law."""

import json

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy import stats

from fits import (
    FitError,
    LogLinearLaw,
    batch_size_law,
    bjorck_lr,
    fit_per_group,
    from_dict,
    near_optimal_runs,
    porian_lr,
    step_law_lr,
)
from scaling import datasets


def grid_nd():
    N, D = np.meshgrid(np.geomspace(1e8, 1e9, 4), np.geomspace(4e9, 1e11, 5))
    return pd.DataFrame({"N": N.ravel(), "D": D.ravel()})


def test_noiseless_step_law_recovered_exactly():
    X = grid_nd()
    lr = 1.7973 * X.N**-0.7129 * X.D**0.3075
    m = step_law_lr().fit(X, lr)
    assert m.params_ == pytest.approx({"a": 1.7973, "alpha": -0.7129, "beta": 0.3075}, rel=1e-9)
    assert m.rsquared_ == pytest.approx(1.0)


def test_ols_matches_the_normal_equations():
    rng = np.random.default_rng(0)
    X = grid_nd()
    y = 0.58 * X.D**0.57 * np.exp(0.1 * rng.standard_normal(len(X)))
    m = batch_size_law().fit(X, y)
    A = np.column_stack([np.ones(len(X)), np.log(X.D)])
    beta = np.linalg.solve(A.T @ A, A.T @ np.log(y))
    resid = np.log(y) - A @ beta
    s2 = resid @ resid / (len(X) - 2)
    se = np.sqrt(np.diag(s2 * np.linalg.inv(A.T @ A)))
    t = stats.t.ppf(0.95, len(X) - 2)
    assert m.params_["gamma"] == pytest.approx(beta[1], rel=1e-10)
    assert m.params_["c"] == pytest.approx(np.exp(beta[0]), rel=1e-10)
    assert m.stderr_["gamma"] == pytest.approx(se[1], rel=1e-8)
    assert m.intervals_["gamma"] == pytest.approx((beta[1] - t * se[1], beta[1] + t * se[1]))
    assert m.intervals_["c"] == pytest.approx(
        (np.exp(beta[0] - t * se[0]), np.exp(beta[0] + t * se[0]))
    )
    assert m.rsquared_ == pytest.approx(
        1 - resid @ resid / np.sum((np.log(y) - np.log(y).mean()) ** 2)
    )


def noisy_lr_law(seed: int, level: float):
    """A Step Law LR fit on noisy grid data, the points asked about, and statsmodels' own
    prediction there (the independent reference)."""
    rng = np.random.default_rng(seed)
    X = grid_nd()
    lr = 2.0 * X.N**-0.7 * X.D**0.3 * np.exp(0.05 * rng.standard_normal(len(X)))
    m = step_law_lr(level=level).fit(X, lr)
    new = pd.DataFrame({"N": [3e9, 1e10], "D": [2e11, 1e12]})
    ols = sm.OLS(np.log(lr), sm.add_constant(np.log(X[["N", "D"]]))).fit()
    return m, new, ols.get_prediction(sm.add_constant(np.log(new), has_constant="add"))


def test_predict_interval_is_the_mean_confidence_interval():
    m, new, ref = noisy_lr_law(1, level=0.8)
    p = m.predict_interval(new)
    ci = ref.conf_int(alpha=0.2)
    np.testing.assert_allclose(np.log(p.estimate), ref.predicted_mean, rtol=1e-10)
    np.testing.assert_allclose(np.log(p.lo), ci[:, 0], rtol=1e-10)
    np.testing.assert_allclose(np.log(p.hi), ci[:, 1], rtol=1e-10)
    assert p.level == 0.8
    np.testing.assert_allclose(m.predict(new), p.estimate, rtol=1e-12)


def test_predict_interval_of_an_observation_is_the_ols_prediction_interval():
    m, new, ref = noisy_lr_law(2, level=0.9)
    p = m.predict_interval(new, kind="prediction")
    frame = ref.summary_frame(alpha=0.1)
    assert p.kind == "prediction"
    np.testing.assert_allclose(np.log(p.lo), frame.obs_ci_lower, rtol=1e-10)
    np.testing.assert_allclose(np.log(p.hi), frame.obs_ci_upper, rtol=1e-10)
    mean = m.predict_interval(new)
    assert mean.kind == "confidence"
    assert (p.lo < mean.lo).all() and (p.hi > mean.hi).all()
    # both kinds side by side, named and valued as statsmodels' frame (ours exp'd: log space)
    ours = m.summary_frame(new)
    columns = ["mean", "mean_ci_lower", "mean_ci_upper", "obs_ci_lower", "obs_ci_upper"]
    assert list(ours) == columns
    np.testing.assert_allclose(np.log(ours.to_numpy()), frame[columns].to_numpy(), rtol=1e-10)


def clustered_law_data(rng, groups: int = 12, per_group: int = 6):
    """log bs = log 0.5 + 0.6 log D + a group's offset (sd 0.3) + a run's scatter (sd 0.05):
    each group's several runs share its offset, as an (N, D) group's near-optimal runs do."""
    D = np.repeat(np.geomspace(1e9, 1e11, groups), per_group)
    offset = np.repeat(0.3 * rng.standard_normal(groups), per_group)
    y = 0.5 * D**0.6 * np.exp(offset + 0.05 * rng.standard_normal(D.size))
    return pd.DataFrame({"D": D, "group": np.repeat(np.arange(groups), per_group), "bs": y})


def test_clustered_covariance_is_the_sandwich_with_g_minus_1_degrees_of_freedom():
    frame = clustered_law_data(np.random.default_rng(3))
    m = batch_size_law(level=0.9, clusters=("group",)).fit(frame, frame.bs)
    A = np.column_stack([np.ones(len(frame)), np.log(frame.D)])
    beta = np.linalg.solve(A.T @ A, A.T @ np.log(frame.bs))
    resid = np.log(frame.bs) - A @ beta
    bread = np.linalg.inv(A.T @ A)
    scores = [A[g].T @ resid[g] for g in (frame.group == k for k in range(12))]
    meat = sum(np.outer(u, u) for u in scores)
    n, k, G = len(frame), 2, 12
    cov = G / (G - 1) * (n - 1) / (n - k) * bread @ meat @ bread  # the small-sample factor
    np.testing.assert_allclose(m.cov_, cov, rtol=1e-9)
    assert (m.df_t_, m.df_resid_, m.n_clusters_) == (G - 1, n - k, G)
    t = stats.t.ppf(0.95, G - 1)
    se = np.sqrt(cov[1, 1])
    assert m.intervals_["gamma"] == pytest.approx((beta[1] - t * se, beta[1] + t * se))
    assert "12 clusters" in m.summary()
    back = from_dict(json.loads(json.dumps(m.to_dict())))
    a, b = m.predict_interval({"D": [1e12]}), back.predict_interval({"D": [1e12]})
    np.testing.assert_array_equal([a.lo, a.hi], [b.lo, b.hi])
    # one point to a cluster is ordinary OLS, as without clusters
    alone = batch_size_law(clusters=("D",)).fit(frame.iloc[::6], frame.bs.iloc[::6])
    plain = batch_size_law().fit(frame.iloc[::6], frame.bs.iloc[::6])
    np.testing.assert_array_equal(alone.cov_, plain.cov_)
    assert alone.df_t_ == plain.df_t_ == 10


def test_clustered_intervals_hold_where_counting_each_run_as_independent_does_not():
    rng = np.random.default_rng(11)
    new, held = {"D": [1e12]}, {"clustered": 0, "independent": 0}
    trials = 300
    for _ in range(trials):
        frame = clustered_law_data(rng)
        truth = np.log(0.5 * 1e12**0.6)  # the law's mean there: offsets average out
        for name, clusters in (("clustered", ("group",)), ("independent", ())):
            p = batch_size_law(level=0.9, clusters=clusters).fit(frame, frame.bs)
            est = p.predict_interval(new)
            held[name] += int(np.log(est.lo[0]) <= truth <= np.log(est.hi[0]))
    # CR1 with G - 1 df runs a little under its level at 12 clusters (0.84-0.85 over seeds);
    # counting 72 runs as independent holds about half the time (0.41-0.46)
    assert 0.80 <= held["clustered"] / trials <= 0.96
    assert held["independent"] / trials < 0.6


def test_bjorck_sign_convention_and_per_size_fits():
    rows = []
    for N, B, beta in ((1e8, 30.0, 0.3), (4e8, 20.0, 0.35)):
        for D in np.geomspace(1e9, 1e11, 6):
            rows.append({"N": N, "D": D, "lr": B * D**-beta})
    fits = fit_per_group(bjorck_lr, pd.DataFrame(rows), by="N", target="lr")
    assert set(fits) == {1e8, 4e8}
    assert fits[1e8].params_ == pytest.approx({"B": 30.0, "beta": 0.3}, rel=1e-9)
    assert fits[4e8].params_["beta"] == pytest.approx(0.35, rel=1e-9)  # reported positive
    lo, hi = fits[4e8].intervals_["beta"]
    assert lo <= 0.35 <= hi
    assert "D^-beta" in fits[1e8].summary()


def test_porian_forms():
    N = np.geomspace(1e7, 1e9, 7)
    lr = porian_lr().fit({"N": N}, 3.7 * N**-0.25)
    bs = batch_size_law("N").fit({"N": N}, 160.0 * N**0.24)
    assert lr.params_ == pytest.approx({"a": 3.7, "alpha": -0.25}, rel=1e-9)
    assert bs.params_ == pytest.approx({"c": 160.0, "gamma": 0.24}, rel=1e-9)


def test_near_optimal_selection():
    runs = pd.DataFrame(
        {
            "N": [1, 1, 1, 2, 2, 2],
            "D": [1, 1, 1, 1, 1, 1],
            "loss": [2.000, 2.004, 2.006, 3.0, np.nan, 3.01],
        }
    )
    kept = near_optimal_runs(runs, ["N", "D"], "loss", rel_tol=0.0025)
    assert kept.index.tolist() == [0, 1, 3]  # 2.006 > 2.005; NaN never kept


@pytest.fixture(scope="module")
def step_runs():
    d = pd.read_csv(datasets.path("step-law"))
    kept = near_optimal_runs(d, ["N", "D"], "smooth loss", rel_tol=0.0025)
    return kept.assign(bs_tokens=kept.bs * 2048)


def test_step_law_refit_agrees_in_sign_with_the_paper(step_runs):
    """Paper: lr* = 1.7973 N^-0.7129 D^0.3075, BS_tokens = 0.5807 D^0.5709.

    The file holds fewer runs than the paper used, so only the signs must agree: lr* grows
    with D and shrinks with N, the optimal batch grows with D, each significantly.
    """
    lr = step_law_lr().fit(step_runs, step_runs.lr)
    bs = batch_size_law().fit(step_runs, step_runs.bs_tokens)
    assert lr.intervals_["beta"][0] > 0
    assert lr.intervals_["alpha"][1] < 0
    assert bs.intervals_["gamma"][0] > 0
    # Same order of magnitude as published (a loose plausibility bound, not a match).
    assert 0.1 < lr.params_["beta"] < 0.6 and -1.2 < lr.params_["alpha"] < -0.3
    assert 0.3 < bs.params_["gamma"] < 0.9


def test_round_trip(step_runs):
    m = step_law_lr().fit(step_runs, step_runs.lr)
    back = from_dict(json.loads(json.dumps(m.to_dict())))
    assert isinstance(back, LogLinearLaw) and back.law_formula == m.law_formula
    new = {"N": [1e9], "D": [1e11]}
    a, b = m.predict_interval(new), back.predict_interval(new)
    np.testing.assert_array_equal([a.estimate, a.lo, a.hi], [b.estimate, b.lo, b.hi])
    assert back.rsquared_ == m.rsquared_


def test_refuses_unidentifiable_data():
    X = grid_nd()
    with pytest.raises(FitError, match="no spread in D"):
        step_law_lr().fit(X.assign(D=1e10), np.ones(len(X)))
    with pytest.raises(FitError, match=r"non-positive or NaN values in lr \(row 3\)"):
        step_law_lr().fit(X, np.where(np.arange(len(X)) == 3, -1.0, 1e-3))
    with pytest.raises(FitError, match="missing column 'N'"):
        step_law_lr().fit(X[["D"]], np.ones(len(X)))
    with pytest.raises(FitError, match="collinear"):
        step_law_lr().fit(pd.DataFrame({"N": X.N, "D": 20 * X.N}), np.ones(len(X)))
    with pytest.raises(FitError, match="need at least 4 points"):
        step_law_lr().fit(X.iloc[[0, 5, 11]], np.ones(3))


def test_a_record_with_undefined_r_squared_reloads():
    """JSON keeps NaN as null; the reload must read it back (it raised TypeError)."""
    X = pd.DataFrame({"D": [1e9, 2e9, 4e9, 8e9]})
    law = batch_size_law().fit(X, [1e5, 2e5, 3e5, 5e5])
    record = json.loads(json.dumps(law.to_dict()))
    record["state"]["rsquared"] = None
    back = from_dict(record)
    assert np.isnan(back.rsquared_)
    np.testing.assert_allclose(back.predict({"D": [1e10]}), law.predict({"D": [1e10]}))


def test_no_spread_in_the_target_is_refused():
    X = pd.DataFrame({"D": [1e9, 2e9, 4e9, 8e9]})
    with pytest.raises(FitError, match="no spread in batch size"):
        batch_size_law().fit(X, np.full(4, 2048.0))
