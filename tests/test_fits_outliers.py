"""Gross outliers (fits.noise.gross_outliers) set aside from `auto`'s fit, and forms under 1% of
the average left out (fits.averaging.stack)."""

from __future__ import annotations

import json
import statistics

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import linprog

from fits import LOSS_LAWS
from fits.auto import fit_auto, fit_forms, fit_screened, outliers_under
from fits.averaging import MIN_WEIGHT, stack
from fits.errors import FitError
from fits.noise import RunNoise, gross_outliers, modified_z, n_neighbours, places
from scaling import datasets
from tests.conftest import run_cli


def test_modified_z_is_a_plain_loop_over_each_runs_nearest_others():
    rng = np.random.default_rng(7)
    where, residuals = rng.normal(size=(40, 3)), rng.normal(0, 0.01, 40)
    k = n_neighbours(40)
    got = modified_z(residuals, where)
    for i in range(40):
        others = sorted((j for j in range(40) if j != i),
                        key=lambda j: float(((where[j] - where[i]) ** 2).sum()))[:k]  # fmt: skip
        pool = [residuals[j] for j in others]
        centre = statistics.median(pool)
        mad = statistics.median(abs(x - centre) for x in pool)
        assert got[i] == pytest.approx(0.6745 * (residuals[i] - centre) / mad)


def test_runs_set_aside_are_named_with_the_counts_they_were_given():
    """N and D come back from their log10 places as recorded, not 219712.00000000012."""
    rng = np.random.default_rng(3)
    N = np.concatenate([[219_712.0, 6_795_600_349.0], rng.integers(1, 10**14, 500).astype(float)])
    D = rng.integers(1, 10**14, N.size).astype(float)
    runs = pd.DataFrame({"N": N, "D": D, "loss": rng.uniform(1, 5, N.size)})
    noise = RunNoise.of(runs, np.zeros(N.size), np.ones(N.size, dtype=bool))
    named = noise.aside_runs()
    assert [r["N"] for r in named] == N.tolist() and [r["D"] for r in named] == D.tolist()
    assert [10**x for x in places(runs)[:, 0]] != N.tolist()  # the places alone do not


def grid_runs() -> pd.DataFrame:
    N = np.repeat(np.geomspace(1e7, 1e10, 8), 10)
    D = np.tile(np.geomspace(1e8, 1e11, 10), 8)
    return pd.DataFrame({"N": N, "D": D})


def test_runs_far_off_their_neighbours_under_every_form_are_set_aside_and_no_others():
    """Four runs in one corner 25% above a law with 1% noise: set aside under two forms that
    differ by a smooth trend; one of them placed by a form (its residual there ordinary) is
    kept, as a bend that form sees; 20 runs or fewer, or one form, are never screened; a
    neighbourhood with no spread flags nothing."""
    runs = grid_runs()
    where = places(runs)
    rng = np.random.default_rng(8)
    noise = rng.normal(0, 0.01, len(runs))
    corner = np.flatnonzero((runs.N >= 3e9).to_numpy() & (runs.D <= 3e8).to_numpy())
    assert len(corner) == 4
    first = noise.copy()
    first[corner] += 0.25
    second = first + 0.002 * np.log10(runs.N.to_numpy())
    np.testing.assert_array_equal(np.flatnonzero(gross_outliers([first, second], where)), corner)
    placed = second.copy()
    placed[corner[0]] = noise[corner[0]]
    assert set(np.flatnonzero(gross_outliers([first, placed], where))) == set(corner[1:])
    assert not gross_outliers([first[:20], second[:20]], where[:20]).any()
    assert not gross_outliers([first], where).any()  # one form cannot tell a bend from them
    spotless = np.zeros(len(runs))
    spotless[corner[0]] = 0.25
    assert not gross_outliers([spotless, spotless], where).any()


class LeastSquares:
    """Least squares of log loss on 1, log N, log D (and log N log D): a fit every run pulls,
    so that outliers side by side bend it toward themselves."""

    def __init__(self, cross: bool) -> None:
        self.cross = cross

    def features(self, runs: pd.DataFrame) -> np.ndarray:
        n, d = np.log10(runs.N.to_numpy()), np.log10(runs.D.to_numpy())
        return np.column_stack([np.ones_like(n), n, d] + ([n * d] if self.cross else []))

    def fit_frame(self, runs: pd.DataFrame) -> LeastSquares:
        self.coef = np.linalg.lstsq(self.features(runs), np.log(runs.loss), rcond=None)[0]
        return self

    def quick_refit(self, runs: pd.DataFrame) -> LeastSquares:
        """The screen refits a form it fitted before this way; least squares has no start."""
        return LeastSquares(self.cross).fit_frame(runs)

    def predict_frame(self, runs: pd.DataFrame) -> np.ndarray:
        return np.exp(self.features(runs) @ self.coef)


def test_the_screen_is_repeated_until_a_pass_sets_aside_no_run():
    """Three runs 120% above a law in one corner bend two least-squares forms toward their
    fourth neighbour there (16% above), which one pass keeps; the forms refitted without the
    three leave it alone off the law, and the second pass sets it aside. The forms returned
    are those fitted on the runs kept, on which a further pass finds nothing; clean runs are
    fitted whole."""
    runs = grid_runs()
    log_loss = np.log(1.7 + 400 / runs.N**0.34 + 410 / runs.D**0.28).to_numpy(copy=True)
    log_loss += np.random.default_rng(8).normal(0, 0.01, len(runs))
    clean = runs.assign(loss=np.exp(log_loss))
    corner = np.flatnonzero((runs.N >= 3e9).to_numpy() & (runs.D <= 3e8).to_numpy())
    log_loss[corner[:3]] += 0.8
    log_loss[corner[3]] += 0.15
    dirty = runs.assign(loss=np.exp(log_loss))
    forms = {"plane": lambda b: LeastSquares(False), "saddle": lambda b: LeastSquares(True)}
    one_pass = outliers_under(fit_forms(dirty, forms)[0], dirty)
    np.testing.assert_array_equal(np.flatnonzero(one_pass), corner[:3])
    fitted, _, aside, flagged_kept = fit_screened(dirty, forms)
    np.testing.assert_array_equal(np.flatnonzero(aside), corner)
    assert not flagged_kept.any()
    kept = dirty[~aside].reset_index(drop=True)
    assert not outliers_under(fitted, kept).any()
    for name, model in fitted.items():
        np.testing.assert_allclose(model.coef, forms[name](0).fit_frame(kept).coef)
    fitted, _, aside, flagged_kept = fit_screened(clean, forms)
    assert not aside.any() and not flagged_kept.any()
    np.testing.assert_allclose(fitted["saddle"].coef, LeastSquares(True).fit_frame(clean).coef)


@pytest.mark.slow
def test_a_run_without_which_no_form_fits_is_kept_however_far_off():
    """Two sizes of twelve runs and one run of a third size, 50% above the law: every form
    flags it, but without it no form sees three sizes, so the screen keeps it and the forms
    are those fitted on every run, where setting it aside would refuse the whole fit. `auto`
    names it in its summary and its stored record as an outlier kept."""
    N = np.repeat([1e7, 3e7, 1e8], [12, 12, 1])
    D = np.concatenate([np.geomspace(1e8, 1e10, 12)] * 2 + [[1e9]])
    loss = (1.7 + 400 / N**0.34 + 410 / D**0.28) * np.exp(
        np.random.default_rng(0).normal(0, 0.01, len(N)))  # fmt: skip
    loss[-1] *= 1.5
    runs = pd.DataFrame({"N": N, "D": D, "loss": loss})
    forms = {k: (lambda b, k=k: LOSS_LAWS[k](n_bootstrap=b, level=0.9, random_state=0))
             for k in ("chinchilla-shared", "kaplan")}  # fmt: skip
    fitted, _ = fit_forms(runs, forms)
    flagged = outliers_under(fitted, runs)
    np.testing.assert_array_equal(np.flatnonzero(flagged), [len(runs) - 1])
    with pytest.raises(FitError, match="3 distinct model sizes, found 2"):
        fit_forms(runs[~flagged], forms)
    kept, _, aside, flagged_kept = fit_screened(runs, forms)
    assert not aside.any()
    np.testing.assert_array_equal(flagged_kept, flagged)
    question = pd.DataFrame({"N": [1e9], "D": [1e11]})
    for name, model in kept.items():
        np.testing.assert_allclose(
            model.predict_frame(question), fitted[name].predict_frame(question)
        )
    noise = fit_auto(runs, forms, 0.9, 0).residuals
    assert noise.set_aside is None
    assert noise.kept_outlier_runs() == [{"N": 1e8, "D": 1e9, "loss": loss[-1]}]
    named = f"(N 1e+08 D 1e+09 loss {loss[-1]:.4g})"
    assert f"1 kept in the fit though as far off, since without them no form fits {named}" in (
        noise.describe()
    )
    assert RunNoise.from_dict(noise.to_dict()).kept_outlier_runs() == noise.kept_outlier_runs()


@pytest.mark.slow
def test_the_cli_names_an_outlier_it_kept(tmp_path):
    """`scaling fit auto --json` lists the run as `kept_outliers`, and nothing as set aside."""
    N = np.repeat([1e7, 3e7, 1e8], [12, 12, 1])
    D = np.concatenate([np.geomspace(1e8, 1e10, 12)] * 2 + [[1e9]])
    loss = (1.7 + 400 / N**0.34 + 410 / D**0.28) * np.exp(
        np.random.default_rng(0).normal(0, 0.01, len(N)))  # fmt: skip
    loss[-1] *= 1.5
    pd.DataFrame({"N": N, "D": D, "loss": loss}).to_csv(tmp_path / "runs.csv", index=False)
    db = str(tmp_path / "log.duckdb")
    imported = run_cli("import", str(tmp_path / "runs.csv"), "--source", "lone", "--db", db)
    assert imported.returncode == 0, imported.stderr
    done = run_cli("fit", "auto", "--bootstrap", "20", "--json", "--db", db)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert "set_aside" not in out and out["n_points"] == 25
    assert [(r["N"], r["D"]) for r in out["kept_outliers"]] == [(1e8, 1e9)]
    assert out["kept_outliers"][0]["loss"] == pytest.approx(loss[-1], rel=1e-6)


@pytest.mark.slow
def test_auto_sets_aside_four_of_epochs_five_outliers_and_fits_the_rest_as_each_form_would():
    """On Epoch's 245 points `auto` sets aside four runs of the five Epoch dropped (none of
    Epoch's 240), fits each form on the other 241 as that form's whole grid search alone
    would (refitted from its optima on all 245: the same optimum, to the polish's precision,
    1.1e-7 of the loss here), and keeps all 245 residuals as run noise, the four named in its
    summary."""
    every = datasets.load("chinchilla-epoch")
    forms = {k: (lambda b, k=k: LOSS_LAWS[k](n_bootstrap=b, level=0.9, random_state=0))
             for k in LOSS_LAWS}  # fmt: skip
    fitted = fit_auto(every, forms, 0.9, 0)
    noise = fitted.residuals
    assert noise.set_aside is not None and noise.set_aside.sum() == 4
    assert len(noise.residuals) == len(every)
    aside = every[noise.set_aside]
    kept = datasets.epoch_240()
    assert not aside.merge(kept[["N", "D"]], on=["N", "D"]).shape[0]
    assert (aside.N > 2e9).all() and (aside.D < 1e9).all()
    rest = every[~noise.set_aside]
    question = pd.DataFrame({"N": [7e10], "D": [1.4e12]})
    for name, model in fitted.model.forms_.items():
        alone = forms[name](0).fit_frame(rest)
        np.testing.assert_allclose(
            model.predict_frame(question), alone.predict_frame(question), rtol=1e-6
        )
    described = noise.describe()
    assert "4 set aside from the fit as gross outliers" in described and "loss 5.006" in described
    again = RunNoise.from_dict(json.loads(json.dumps(noise.to_dict())))
    assert again is not None and again.set_aside is not None
    np.testing.assert_array_equal(again.set_aside, noise.set_aside)
    assert "set aside" not in RunNoise.of(rest, noise.residuals[~noise.set_aside]).describe()


def simplex_lad(errors: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """min sum_i weights_i t_i with -t_i <= errors_i . w <= t_i, w on the simplex (scipy's LP)."""
    n, k = errors.shape
    cost = np.concatenate([np.zeros(k), weights])
    bound = np.block([[errors, -np.eye(n)], [-errors, -np.eye(n)]])
    total = np.concatenate([np.ones(k), np.zeros(n)])[None, :]
    found = linprog(cost, A_ub=bound, b_ub=np.zeros(2 * n), A_eq=total, b_eq=[1.0],
                    bounds=[(0, None)] * (k + n), method="highs")  # fmt: skip
    return found.x[:k]


def test_a_form_under_one_percent_of_the_average_is_left_out():
    """One run that form a misses by 1 and form b by -0.001, every other run hit by both: the
    optimum gives a 0.1% of the weight, which the floor drops."""
    errors = np.vstack([[1.0, -0.001], np.zeros((9, 2))])
    weights = np.ones(10)
    exact = simplex_lad(errors, weights)
    assert 0 < exact[0] < MIN_WEIGHT
    np.testing.assert_array_equal(stack(errors, weights), [0.0, 1.0])


def test_stacking_is_the_linear_program_with_light_forms_dropped():
    rng = np.random.default_rng(9)
    for _ in range(20):
        errors = rng.normal(0, 0.02, (30, 4)) + rng.normal(0, 0.02, 4)
        weights = rng.uniform(0.5, 2, 30)
        exact = np.clip(simplex_lad(errors, weights), 0, None)
        exact[exact < MIN_WEIGHT] = 0
        np.testing.assert_allclose(stack(errors, weights), exact / exact.sum(), atol=1e-6)
