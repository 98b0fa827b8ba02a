"""Farseer's law against its formula written out, finite differences and known parameters."""

import copy
import json
import math

import numpy as np
import pandas as pd
import pytest

from fits import ChinchillaLaw, FarseerLaw, FitError, compute_optimal_allocation, from_dict
from fits.allocation import allocation
from fits.farseer import _FarseerProblem, farseer_loss, starting_phi

# A Farseer law whose data exponent grows with N (0.26 at 1e8, 0.31 at 1e10) over a floor.
TRUTH = {"s": 2.0, "q": -0.25, "S": math.log(1.8), "B": 0.4, "b": 0.05, "Q": 6.0,
         "A": -0.8, "a": -0.05, "E": -0.7}  # fmt: skip
ROW = np.array([list(TRUTH.values())])
SIZES, TOKENS = np.geomspace(3e7, 1e9, 6), np.geomspace(1e9, 1e11, 6)
N, D = (a.ravel() for a in np.meshgrid(SIZES, TOKENS))


def written_out(N, D, s, q, S, B, b, Q, A, a, E):
    return math.exp(s * N**q + S) + math.exp(B * N**b + Q) * D ** (-math.exp(A * N**a + E))


def runs(seed: int, sd: float = 0.002) -> pd.DataFrame:
    loss = farseer_loss(ROW, N, D)[0]
    noise = np.random.default_rng(seed).normal(0, sd, N.size)
    return pd.DataFrame({"N": N, "D": D, "loss": loss * np.exp(noise)})


@pytest.fixture(scope="module")
def fitted():
    return FarseerLaw(n_bootstrap=50).fit_frame(runs(seed=1))


def test_loss_is_the_formula_written_out():
    for n, d in [(1e8, 2e9), (3e9, 5e11), (7e6, 1e8)]:
        assert farseer_loss(ROW, [n], [d])[0, 0] == pytest.approx(written_out(n, d, **TRUTH))


def test_objective_gradient_matches_finite_differences():
    frame = runs(seed=0)
    problem = _FarseerProblem(np.log(frame.N.to_numpy()), np.log(frame.D.to_numpy()))
    log_loss = np.log(frame.loss.to_numpy())
    objective = problem.objective(log_loss, 1e-2, np.linspace(0.5, 2.0, len(frame)))
    phi = starting_phi(problem, log_loss)[::97] + 0.03
    rows = np.arange(len(phi))
    _, grad = objective(phi, rows)
    numeric = np.empty_like(grad)
    for j in range(9):
        step = np.zeros(9)
        step[j] = 1e-6
        numeric[:, j] = (objective(phi + step, rows)[0] - objective(phi - step, rows)[0]) / 2e-6
    np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(problem.to_theta(problem.to_phi(ROW)), ROW, rtol=1e-12)


@pytest.mark.slow
def test_fit_recovers_the_law_and_extrapolates_with_it(fitted):
    assert fitted.identification_problems() == []
    bigger = np.array([3e9, 1e10]), np.array([3e11, 1e12])
    np.testing.assert_allclose(fitted.predict(*bigger), farseer_loss(ROW, *bigger)[0], rtol=0.01)
    value, low = fitted.offset_interval()
    assert 0 <= low <= value < fitted.predict([1e10], [1e12])[0]


def test_generic_allocation_finds_chinchillas_closed_form():
    params = np.array([[1.69, 406.4, 410.7, 0.34, 0.28], [1.8, 482.0, 2085.4, 0.348, 0.366]])
    budgets = np.array([1e20, 1e23])
    numeric = allocation(chinchilla_loss_rows, params, budgets)
    closed = compute_optimal_allocation(params, budgets)
    np.testing.assert_allclose(numeric[0], closed[0], rtol=1e-6)
    np.testing.assert_allclose(numeric[1], closed[1], rtol=1e-6)


def test_each_row_at_its_own_budgets_is_the_closed_form_at_them():
    """C (k, m): row i at its own budgets (a bootstrap pair's crossing), numerically and in
    closed form, against each row asked alone; inside a ratio window, and with a row that
    finds no minimum there and is searched again over the whole range."""
    params = np.array([[1.69, 406.4, 410.7, 0.34, 0.28], [1.8, 482.0, 2085.4, 0.348, 0.366]])
    budgets = np.array([[1e20, 3e21], [1e23, 2e19]])
    closed = compute_optimal_allocation(params, budgets)
    for ratios in (None, (1.0, 1e3)):
        numeric = allocation(chinchilla_loss_rows, params, budgets, ratios=ratios)
        for i in range(2):
            alone = compute_optimal_allocation(params[i : i + 1], budgets[i])
            np.testing.assert_allclose(closed[0][i], alone[0][0], rtol=1e-12)
            np.testing.assert_allclose(numeric[0][i], alone[0][0], rtol=1e-6)
            np.testing.assert_allclose(numeric[1][i], alone[1][0], rtol=1e-6)
    # The second row's optima lie at 19 and 24 tokens per parameter: outside (30, 1e3), so
    # that row alone is searched again over the whole range, at its own budgets.
    n_opt, _ = allocation(chinchilla_loss_rows, params, budgets, ratios=(30.0, 1e3))
    np.testing.assert_allclose(n_opt, closed[0], rtol=1e-6)


def chinchilla_loss_rows(params, N, D):
    return ChinchillaLaw().loss_of(params, N, D)  # E + A / N^alpha + B / D^beta


def test_allocation_without_an_interior_minimum_is_no_answer():
    flat_in_n = np.array([[0.0, 1.0, math.log(1.8), 0.0, 1.0, 6.0, 0.0, 1.0, -0.7]])
    n_opt, d_opt = allocation(farseer_loss, flat_in_n, np.array([1e21]))
    assert np.isnan(n_opt).all() and np.isnan(d_opt).all()


# A fit on Farseer's 404 shared runs (median |log error| 0.11%) whose D exponent falls with N
# (a > 0, A < 0): along C = 1.08e20 its loss has an interior minimum near N = 7e8 and falls
# again toward a 1.8e19-parameter model on one token, below that minimum.
FALLS_AGAIN = np.array([[-0.655145, 0.054813, 1.233936, 131.568971, -0.153711, -0.794232,
                         -5.011115, 0.020522, 6.450200]])  # fmt: skip


def test_allocation_searches_only_the_tokens_per_parameter_an_answer_may_have(fitted):
    budget = np.array([1.08e20])
    assert np.isnan(allocation(farseer_loss, FALLS_AGAIN, budget)[0]).all()  # the far end wins
    window = (0.1, 1e4)
    n_opt, d_opt = allocation(farseer_loss, FALLS_AGAIN, budget, ratios=window)
    # Reference: a dense grid over the same window, independent of the golden-section search.
    n_grid = np.geomspace(math.sqrt(1.8e19 / window[1]), math.sqrt(1.8e19 / window[0]), 200_001)
    dense = farseer_loss(FALLS_AGAIN, n_grid, 1.8e19 / n_grid)[0]
    assert n_opt[0, 0] == pytest.approx(n_grid[dense.argmin()], rel=1e-3)
    assert 1e8 < n_opt[0, 0] < 1e10 and d_opt[0, 0] == pytest.approx(1.8e19 / n_opt[0, 0])
    # A fit on runs like Farseer's (D/N 0.16 .. 5,100) is identified through that minimum.
    law = copy.copy(fitted)
    law.params_ = dict(zip(fitted.param_names, FALLS_AGAIN[0], strict=True))
    law.data_range_ = {**fitted.data_range_, "N": (1.0e8, 6.4e9), "D": (1e9, 5.1e11)}
    assert law.identification_problems() == []
    # Searched over a wider window; a smooth minimum's argmin is known to ~sqrt(float eps).
    np.testing.assert_allclose(law.compute_optimal(1.08e20), (n_opt[0, 0], d_opt[0, 0]), rtol=1e-6)
    # q > 0, s < 0: the first term falls without a floor; the caution names the limit, not E.
    assert law.cautions()[0].startswith("the loss at unlimited N and D = 0 cannot be told")


def test_record_round_trips(fitted):
    back = from_dict(json.loads(json.dumps(fitted.to_dict())))
    frame = runs(seed=2)
    np.testing.assert_allclose(back.predict_frame(frame), fitted.predict_frame(frame), rtol=1e-12)
    np.testing.assert_allclose(back.loss_draws(frame), fitted.loss_draws(frame), rtol=1e-12)


def test_too_few_runs_are_refused_in_one_line():
    small = runs(seed=0)
    small = small[small.N.isin(SIZES[:4])]
    with pytest.raises(FitError) as refused:
        FarseerLaw(n_bootstrap=0).fit_frame(small)
    assert str(refused.value).count("\n") == 0
    assert "needs 5 model sizes" in str(refused.value) and "4, 6 and 24" in str(refused.value)


def test_flat_loss_is_refused():
    flat = runs(seed=0).assign(loss=3.0)
    with pytest.raises(FitError, match="loss does not fall with"):
        FarseerLaw(n_bootstrap=0).fit_frame(flat)


@pytest.mark.slow
def test_a_nested_refit_reaches_the_optimum_a_fresh_fit_finds():
    """A nested split's refit must be a fit of the split's runs alone: on Epoch's 180 smallest
    runs by compute, the split N <= its 65% quantile, a refit warm-started from the full fit's
    optima stalled 5% above the fresh grid fit's objective (2.67e-4 against 2.53e-4), keeping
    what the full fit learnt from the held-out runs. The refit now reaches the fresh fit's
    optimum and its predictions."""
    from scaling import datasets

    points = datasets.epoch_240()
    points = points.assign(C=6.0 * points.N * points.D).nsmallest(180, "C")
    full = FarseerLaw(n_bootstrap=0, force=True).fit_frame(points)  # it rises past the runs
    cut = np.quantile(points.N, 0.65) * (1 + 1e-6)
    train = points[points["N"] <= cut]
    test = points.drop(index=train.index)
    refit = full.quick_refit(train, force=True)
    fresh = FarseerLaw(n_bootstrap=0, force=True).fit_frame(train)
    assert refit.objective_ <= fresh.objective_ * (1 + 1e-9)
    np.testing.assert_allclose(refit.predict_frame(test), fresh.predict_frame(test), rtol=1e-6)
    assert np.abs(np.log(refit.predict_frame(test) / test.loss)).max() < 0.2  # stalled: 1.5


def test_a_fit_whose_loss_explodes_past_the_runs_is_flagged(fitted):
    """A power of N far above the others makes exp(B N^b) a switch: under 1e-3 across the runs
    (largest N 1e9), it overflows two decades past them. Such a fit answers every question
    there with an infinite loss, so it is flagged where it explodes; the fit itself is not."""
    switch = copy.copy(fitted)
    switch.params_ = {**fitted.params_, "B": 1e-3 / 1e9**8, "b": 8.0}
    assert np.isfinite(switch.predict(SIZES, TOKENS[-1:].repeat(SIZES.size))).all()
    assert not np.isfinite(switch.predict([1e11], [1e11])).all()
    problems = switch.identification_problems()
    assert any("loss is not finite at N = " in p for p in problems)
    found = float(next(p for p in problems if "not finite" in p).split("N = ")[1].split(",")[0])
    assert 1e9 < found <= 1e11
    assert not any("not finite" in p for p in fitted.identification_problems())


def test_a_fit_whose_loss_rises_past_the_runs_is_flagged(fitted):
    """A power of N far above the others in the data exponent (A N^a under 1e-3 up to the
    runs' largest N, 1e9) drives it to 0 a decade past them, so the data term stops falling
    and the loss climbs toward e^Q: finite everywhere, but a larger model on proportionally
    more tokens doing worse. It is flagged where the loss rises along a tokens-per-parameter
    ray; the fit itself is not."""
    switch = copy.copy(fitted)  # the exponent's N-dependence swapped for one that is 0 up to 1e9
    switch.params_ = {**fitted.params_, "A": -1e-3 / 1e9**8, "a": 8.0}
    bigger = np.array([1e10, 1e11]), np.array([1e12, 1e13])
    assert np.isfinite(switch.predict(*bigger)).all()
    assert (switch.predict(*bigger) > 2 * runs(seed=1).loss.max()).all()
    problems = switch.identification_problems()
    assert not any("not finite" in p for p in problems)
    rise = next(p for p in problems if "the law rises beyond the runs" in p)
    at_n = float(rise.split("at N = ")[1].split(",")[0])
    assert 1e9 < at_n <= 1e12
    assert not any("rises" in p for p in fitted.identification_problems())


def test_auto_leaves_out_a_farseer_fit_that_rises_past_the_runs():
    """Epoch's 68 runs under 4.2461e8 parameters: on one machine Farseer's fit there had its
    data exponent switch off past the runs (A = -3.3e-78, a = 8.7) and, at weight 0.19, made
    auto answer 11.3 [2.0, 12.5] at ten times their largest N and D, above every run (2.60 to
    3.41). Whatever optimum the fit lands on, the answer a decade past must be physical."""
    from scaling import datasets
    from scaling.study import Study

    small = datasets.load("chinchilla-epoch").query("N < 4.2461e8")
    assert len(small) == 68
    study = Study.from_frame(small, n_bootstrap=20)
    fitted = study.fit("auto")
    answer = study.loss_at(fitted, 10 * small.N.max(), 10 * small.D.max())
    assert answer.value < small.loss.min() and answer.hi < small.loss.max()
    assert all(np.isfinite([answer.lo, answer.value, answer.hi]))


@pytest.mark.slow  # two fits of 404 runs, one in 2 worker processes
def test_an_ill_conditioned_fit_does_not_depend_on_the_number_of_processes():
    """On Farseer's shared runs the grid search's best start lands on different optima when
    the batches' shapes change the floating-point order (objectives 3.94e-4 and 3.96e-4 when
    the starts were split by worker count): the batches are now the same for any n_jobs."""
    from scaling import datasets

    shared = datasets.load("farseer")
    one = FarseerLaw(n_bootstrap=8, random_state=0, n_jobs=1).fit_frame(shared)
    two = FarseerLaw(n_bootstrap=8, random_state=0, n_jobs=2).fit_frame(shared)
    assert one.params_ == two.params_
    np.testing.assert_array_equal(one.bootstrap_params_, two.bootstrap_params_)


ANSWER_SCRIPT = """
import json
import numpy as np
from scaling import datasets
from scaling.study import Study

study = Study.from_frame(datasets.load("farseer"), n_bootstrap=20, n_jobs=1)
fitted = study.fit("auto")
print(json.dumps({
    "simd": np.__config__.CONFIG.get("SIMD Extensions", {}).get("found", []),
    "forms": sorted(r.form for r in fitted.forms.itertuples() if r.weight > 0),
    "points": [study.loss_at(fitted, n, d).value for n, d in [(2.3e9, 1.26e11), (2.5e10, 4.53e11)]],
}))
"""


@pytest.mark.slow  # two auto fits of 404 runs, in two processes at once
def test_the_answer_on_farseers_runs_does_not_depend_on_numpys_vector_code():
    """numpy picks AVX-512, AVX2 or its SSE baseline at start-up, and Farseer's flat-valley fits
    end elsewhere when the last bits of their sums differ (its nested refits' objectives by up
    to 2%). The answer must not: the same forms averaged, and the loss at Farseer's held-out
    sizes (2.3B on 126B tokens, 25B on 453B) within 1% (measured 0.17% apart at most across
    AVX-512, AVX2 and SSE; an average without Farseer's form answers 3.5% higher)."""
    import os
    import subprocess
    import sys

    def answer(env: dict[str, str]) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-c", ANSWER_SCRIPT], env={**os.environ, **env},
                                stdout=subprocess.PIPE, text=True)  # fmt: skip

    native_simd = np.__config__.CONFIG.get("SIMD Extensions", {}).get("found", [])
    if not native_simd:
        pytest.skip("numpy runs its baseline vector code here: there is no other path to compare")
    runs = [answer({}), answer({"NPY_DISABLE_CPU_FEATURES": " ".join(native_simd)})]
    native, baseline = (json.loads(r.communicate(timeout=600)[0].splitlines()[-1]) for r in runs)
    assert native["simd"] == native_simd and baseline["simd"] == []  # the paths differ
    assert native["forms"] == baseline["forms"] and "farseer" in native["forms"]
    np.testing.assert_allclose(baseline["points"], native["points"], rtol=0.01)
