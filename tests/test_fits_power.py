"""Single-variable power laws against Mu-scaling's published fit and synthetic data."""

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from scipy.optimize import curve_fit

from fits import FitError, PowerLaw, from_dict
from scaling import datasets


@pytest.fixture(scope="module")
def mu():
    return pd.read_csv(datasets.path("mu-scaling"))


@pytest.fixture(scope="module")
def mu_fit(mu):
    return PowerLaw().fit(mu.params_millions[:7], mu.train_loss_at_20k_steps[:7])


def test_mu_scaling_reference_fit(mu_fit):
    """Yao et al.: L = a x^b + c on the first 7 widths: a 2.4694, b -0.42311, c 2.9233.

    Tolerance: the published figures are given to 5 significant digits, so 1e-4 relative.
    """
    assert mu_fit.params_["A"] == pytest.approx(2.4694, rel=1e-4)
    assert -mu_fit.params_["alpha"] == pytest.approx(-0.42311, rel=1e-4)
    assert mu_fit.params_["E"] == pytest.approx(2.9233, rel=1e-4)


def test_mu_scaling_reference_predictions(mu, mu_fit):
    """Predictions for the 3 largest widths: 3.1890, 3.0800, 3.0369 (to 4 decimals: 5e-4)."""
    pred = mu_fit.predict(mu.params_millions[7:].to_numpy())
    np.testing.assert_allclose(pred, [3.1890, 3.0800, 3.0369], atol=5e-4)
    err = pred / mu.train_loss_at_20k_steps[7:].to_numpy() - 1
    np.testing.assert_allclose(err, [0.0029, -0.0018, -0.0018], atol=1e-4)


def test_jacobian_errors_match_curve_fit(mu, mu_fit):
    """Standard errors from s^2 (J'J)^-1 agree with scipy's curve_fit covariance."""
    x, y = mu.params_millions[:7].to_numpy(), mu.train_loss_at_20k_steps[:7].to_numpy()
    popt, pcov = curve_fit(
        lambda x, E, A, alpha: E + A * x**-alpha, x, y, p0=[3.0, 2.0, 0.5], maxfev=20000
    )
    se = np.sqrt(np.diag(pcov))
    np.testing.assert_allclose(popt, [mu_fit.params_[k] for k in ("E", "A", "alpha")], rtol=1e-5)
    np.testing.assert_allclose(se, [mu_fit.stderr_[k] for k in ("E", "A", "alpha")], rtol=1e-4)
    assert mu_fit.df_resid_ == 4


def test_prediction_interval_covers_held_out_points_and_widens(mu, mu_fit):
    p = mu_fit.predict_interval(mu.params_millions[7:].to_numpy())
    assert np.all(p.lo < p.estimate) and np.all(p.estimate < p.hi)
    assert np.all(np.diff(p.hi - p.lo) > 0)  # further out, less certain
    true = mu.train_loss_at_20k_steps[7:].to_numpy()
    assert np.all((p.lo < true) & (true < p.hi))


def test_both_interval_kinds_match_curve_fits_covariance(mu, mu_fit):
    """Confidence: t sqrt(g' C g) with curve_fit's covariance C (the independent reference);
    prediction adds the residual variance SSR / df under the root, as OLS does."""
    x, y = mu.params_millions[:7].to_numpy(), mu.train_loss_at_20k_steps[:7].to_numpy()
    law = lambda x, E, A, alpha: E + A * x**-alpha  # noqa: E731
    popt, pcov = curve_fit(law, x, y, p0=[3.0, 2.0, 0.5], maxfev=20000)
    new = mu.params_millions[7:].to_numpy()
    _, A, alpha = popt
    grad = np.column_stack([np.ones_like(new), new**-alpha, -A * new**-alpha * np.log(new)])
    var_mean = np.einsum("ij,jk,ik->i", grad, pcov, grad)
    s2 = np.sum((y - law(x, *popt)) ** 2) / (len(x) - 3)
    t = stats.t.ppf(0.95, len(x) - 3)
    frame = mu_fit.summary_frame(new, level=0.9)
    np.testing.assert_allclose(frame["mean"], law(new, *popt), rtol=1e-6)
    half_mean, half_obs = t * np.sqrt(var_mean), t * np.sqrt(var_mean + s2)
    np.testing.assert_allclose(frame.mean_ci_upper - frame["mean"], half_mean, rtol=1e-3)
    np.testing.assert_allclose(frame.obs_ci_upper - frame["mean"], half_obs, rtol=1e-3)
    assert mu_fit.predict_interval(new, kind="prediction").kind == "prediction"


@pytest.mark.slow
def test_prediction_interval_covers_new_observations_at_its_level():
    """Noise 0.02 about L = 1 + 2 x^-0.5 at 12 sizes; a new y at a size inside: the 90%
    prediction interval held it in 0.85..0.95 of 400 repeats, the confidence one far less."""
    rng = np.random.default_rng(3)
    x = np.geomspace(1.0, 100.0, 12)
    held = {"prediction": 0, "confidence": 0}
    for _ in range(400):
        fit = PowerLaw().fit(x, 1 + 2 * x**-0.5 + rng.normal(0, 0.02, x.size))
        y_new = 1 + 2 * 30.0**-0.5 + rng.normal(0, 0.02)
        for kind in held:
            p = fit.predict_interval([30.0], level=0.9, kind=kind)
            held[kind] += int(p.lo[0] <= y_new <= p.hi[0])
    assert 0.85 <= held["prediction"] / 400 <= 0.95
    assert held["confidence"] / 400 < 0.7


def test_noiseless_synthetic_recovered_including_kaplan_form():
    x = np.geomspace(1e6, 1e10, 12)
    y = 1.7 + 400.0 * x**-0.34
    m = PowerLaw().fit(x, y)
    assert m.params_ == pytest.approx({"E": 1.7, "A": 400.0, "alpha": 0.34}, rel=1e-6)
    # Kaplan et al.: L(N) = (N_c / N)^alpha_N with N_c = 8.8e13, alpha_N = 0.076 (E = 0).
    y0 = (8.8e13 / x) ** 0.076
    k = PowerLaw(E=0.0).fit(x, y0)
    assert k.params_["alpha"] == pytest.approx(0.076, rel=1e-8)
    assert k.params_["A"] ** (1 / k.params_["alpha"]) == pytest.approx(8.8e13, rel=1e-6)
    assert k.params_["E"] == 0.0 and "E" not in k.stderr_


def test_noisy_synthetic_covered_by_jacobian_and_bootstrap_intervals():
    rng = np.random.default_rng(4)
    x = np.geomspace(1e7, 1e10, 15)
    truth = {"E": 2.0, "A": 150.0, "alpha": 0.3}
    y = truth["E"] + truth["A"] * x ** -truth["alpha"] + 0.003 * rng.standard_normal(x.size)
    for model in (PowerLaw(level=0.95), PowerLaw(level=0.95, n_bootstrap=300, random_state=2)):
        m = model.fit(x, y)
        for name, value in truth.items():
            lo, hi = m.intervals_[name]
            assert lo < value < hi, (name, model.n_bootstrap)


def test_bootstrap_seed_reproducible(mu):
    x, y = mu.params_millions.to_numpy(), mu.train_loss_at_20k_steps.to_numpy()
    a = PowerLaw(n_bootstrap=50, random_state=3).fit(x, y)
    b = PowerLaw(n_bootstrap=50, random_state=3).fit(x, y)
    c = PowerLaw(n_bootstrap=50, random_state=4).fit(x, y)
    np.testing.assert_array_equal(a.bootstrap_params_, b.bootstrap_params_)
    assert not np.array_equal(a.bootstrap_params_, c.bootstrap_params_)
    for name, (lo, hi) in a.intervals_.items():
        assert lo <= a.params_[name] <= hi


def test_round_trip_and_summary(mu_fit):
    back = from_dict(json.loads(json.dumps(mu_fit.to_dict())))
    assert isinstance(back, PowerLaw) and back.params_ == mu_fit.params_
    a, b = mu_fit.predict_interval([2000.0]), back.predict_interval([2000.0])
    np.testing.assert_array_equal([a.estimate, a.lo, a.hi], [b.estimate, b.lo, b.hi])
    text = mu_fit.summary()
    assert "alpha" in text and "t with 4 df" in text
    assert "lo (5%)" in text


def test_refuses_unidentifiable_data():
    with pytest.raises(FitError, match="need at least 3 distinct x values, found 2"):
        PowerLaw().fit([1.0, 1.0, 2.0, 2.0], [3.0, 3.1, 2.9, 2.8])
    with pytest.raises(FitError, match="no spread in x"):
        PowerLaw(E=0.0).fit([5.0, 5.0, 5.0], [3.0, 3.1, 2.9])
    with pytest.raises(FitError, match="need at least 4 points"):
        PowerLaw().fit([1.0, 2.0, 3.0], [3.0, 2.5, 2.3])
    with pytest.raises(FitError, match=r"non-positive or NaN values in x \(row 1\)"):
        PowerLaw().fit([1.0, 0.0, 3.0, 4.0], [3.0, 2.5, 2.3, 2.2])
    with pytest.raises(FitError, match=r"NaN or infinite values in y \(row 2\)"):
        PowerLaw().fit([1.0, 2.0, 3.0, 4.0], [3.0, 2.5, np.nan, 2.2])
