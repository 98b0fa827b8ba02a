"""The committed architecture-study runs (benchmarks/architecture_study.py), refitted.

Real training runs exported to Parquet (benchmarks/data/architecture_runs.parquet); these
tests refit them with our estimators and check the claims docs/architectures.md makes about
them. Tolerances come from the measured seed noise (the runs trained with two seeds), not
from the digits of one refit: a claim must survive a rerun with other seeds.
Marked `golden` (and `slow`): outside the fast lane, run with `pytest -m golden`.
"""

from __future__ import annotations

import itertools
import json
import math

import duckdb
import numpy as np
import pandas as pd
import pytest

from fits import LOSS_LAWS, IsoFLOPFit
from fits.bends import token_bends
from fits.throughput import backtest, with_flops_per_token
from scaling.experiments import architecture as study
from scaling.study import Study
from tests.conftest import REPO

DATA = REPO / "benchmarks" / "data"  # the study's committed runs (data, not code)
SPECS = REPO / "benchmarks" / "experiments"

pytestmark = [pytest.mark.golden, pytest.mark.slow]  # figures pinned to the committed runs
FIRST_ARCHS = study.FIRST_ARCHS
KAPLAN_A, HOFFMANN_A = 0.73, 0.46  # N_opt ~ C^a: Kaplan et al. 2020; Hoffmann et al.'s approach 3
FIRST_STUDY_END = "2026-12-02"  # the first study's (issue 13) runs finished before this
LOADED_SINCE = "2026-12-04"  # runs finished from here on trained on a shared, loaded machine
UNIQUE_TOKENS = 11.7e6  # the default corpus's training split


@pytest.fixture(scope="module")
def runs() -> pd.DataFrame:
    path = DATA / "architecture_runs.parquet"
    return duckdb.sql("SELECT * FROM read_parquet(?)", params=[str(path)]).df()


@pytest.fixture(scope="module")
def first(runs: pd.DataFrame) -> pd.DataFrame:
    """The first study's IsoFLOP runs (one seed each, four budgets 2e11..6.3e12)."""
    iso = runs[runs.sweep.str.startswith("arch-isoflop-") & (runs.status == "done")]
    iso = iso[(iso.finished_at < pd.Timestamp(FIRST_STUDY_END)) & iso.arch.isin(FIRST_ARCHS)]
    return iso.assign(budget=iso.flops.round(-10))


@pytest.fixture(scope="module")
def seed_sd(runs: pd.DataFrame) -> float:
    """The pooled run-to-run SD of the final loss over every configuration trained with two
    or more seeds (study.seed_noise): the unit of every tolerance below."""
    assert study.seed_noise(runs).configs.sum() >= 3, "too few seed pairs to measure the noise"
    pooled = study.pooled_seed_sd(runs)
    assert 0.0 < pooled < 0.1
    return pooled


def test_first_study_grid(first: pd.DataFrame) -> None:
    """4 budgets 2e11..6.3e12: 6xs..xs at the three smallest, 7xs at the two smallest, 5xs..xs
    at 6.3e12: 25 runs per arch, seed 0, at least 5 sizes per budget."""
    for arch in FIRST_ARCHS:
        data = first[first.arch == arch]
        assert len(data) == 25 and data.budget.nunique() == 4 and set(data.seed) == {0}
        assert data.flops.max() / data.flops.min() == pytest.approx(31.6, rel=0.01)
        assert data.groupby("budget").params.nunique().min() >= 5


def test_tnl_check_a_spread_of_decay_rates_closes_the_one_head_gap(runs: pd.DataFrame,
                                                                    seed_sd: float):  # fmt: skip
    """d 20, 1 layer, 7.4M tokens, LR 0.0691, two seeds each: TNL's one head (only the slowest
    ALiBi rate) sits far above cosformer2 of the same shape; four heads (rates 2^-2..2^-8)
    close most of that gap, what they leave within about two seed SDs (unresolved); one head
    with a rate per key channel (tnl_spread) closes all of it, to within one seed SD. Margins
    in units of the seed noise."""
    table = study.tnl_check(runs, SPECS).set_index(["arch", "n_heads"])
    checked = [("cosformer2", 1), ("tnl", 1), ("tnl", 4), ("tnl_spread", 1)]
    assert (table.loc[checked, "seeds"] == 2).all()
    gap = table["gap to cosformer2"]
    one_head, four_heads = gap[("tnl", 1)], gap[("tnl", 4)]
    spread = gap[("tnl_spread", 1)]
    assert one_head > 0.25 and one_head > 6 * seed_sd
    assert one_head - four_heads > 4 * seed_sd  # closes most of it, beyond the seeds' reach
    assert 0 < four_heads < 3 * seed_sd  # what is left: not resolved by two seeds
    assert one_head - spread > 6 * seed_sd and abs(spread) < seed_sd  # all of it


def _noisy_exponents(data: pd.DataFrame, sd: float, draws: int = 200) -> np.ndarray:
    """N_opt's exponent refitted with each run's loss moved by N(0, sd): how far a rerun with
    other seeds would move it."""
    rng = np.random.default_rng(0)
    fits = IsoFLOPFit(n_neighbors=study.ISOFLOP_NEIGHBORS)
    out = []
    for _ in range(draws):
        loss = data.final_val_loss + rng.normal(0, sd, len(data))
        try:
            out.append(fits.fit(data.params, loss, C=data.flops).params_["a"])
        except Exception:  # a draw that leaves fewer than 3 usable budgets
            continue
    return np.array(out)


def test_first_study_exponents_do_not_order_the_architectures(
    first: pd.DataFrame, seed_sd: float
) -> None:
    """Three bracketed budgets (6.3e11..6.3e12): the 90% intervals on N_opt's exponent
    overlap pairwise, and seed noise alone moves each point visibly: the ordering the first
    README read into the points is unresolved."""
    points, intervals = {}, {}
    for arch in FIRST_ARCHS:
        data = first[first.arch == arch]
        fit = IsoFLOPFit(n_neighbors=study.ISOFLOP_NEIGHBORS).fit(
            data.params, data.final_val_loss, C=data.flops
        )
        points[arch], intervals[arch] = fit.params_["a"], fit.intervals_["a"]
        spread = _noisy_exponents(data, seed_sd)
        assert len(spread) > 100 and np.std(spread) > 0.02  # a rerun moves it visibly
    for (a, (lo_a, hi_a)), (b, (lo_b, hi_b)) in itertools.combinations(intervals.items(), 2):
        assert lo_a < hi_b and lo_b < hi_a, (a, b)


def test_cosformer2_validation_miss_is_the_collapsed_e(first: pd.DataFrame, runs: pd.DataFrame):
    """The first study's prediction for cosformer2 (7xs, 61M tokens, 5.2 epochs) came from a
    Chinchilla law whose E collapsed to ~0: it lets an 11k-parameter model reach < 0.5 nats.
    Muennighoff's repeat discount (R* = 15.4) moves the prediction by < 5% of the miss, and
    the measured curve flattens on fresh data already: 9.5x the tokens of the in-fit 6.3e11
    run (6.46M, one epoch) bought under 0.06 nats where the law promised over 0.4."""
    fitted = first[(first.arch == "cosformer2") & (first.flops < 3e12)]  # as predicted then
    law = Study.from_frame(fitted.drop(columns="budget"), n_bootstrap=0)
    p = law.fit("chinchilla", "cosformer2").model.params_
    n = 10960.0

    def loss(d: float) -> float:
        return p["E"] + p["A"] / n ** p["alpha"] + p["B"] / d ** p["beta"]

    assert p["E"] < 1e-3 and loss(math.inf) < 0.5
    predictions = json.loads((SPECS / "generated" / "predictions.json").read_text())
    predicted, d = predictions["cosformer2"]["loss"], predictions["cosformer2"]["D"]
    validation = runs[(runs.sweep == "arch-validate") & (runs.arch == "cosformer2")]
    measured = float(validation.final_val_loss.iloc[0])
    assert loss(d) == pytest.approx(predicted, abs=0.01)  # the same law as then
    miss = measured - predicted
    assert miss > 0.4
    repeats = d / UNIQUE_TOKENS - 1
    effective = UNIQUE_TOKENS * (1 + 15.4 * (1 - math.exp(-repeats / 15.4)))
    assert 0 < loss(effective) - loss(d) < 0.05 * miss
    in_fit = fitted[(fitted.params == n) & (fitted.tokens < UNIQUE_TOKENS)]
    short = in_fit.loc[in_fit.tokens.idxmax()]
    assert measured > short.final_val_loss - 0.06
    assert loss(short.tokens) - loss(d) > 0.4


def test_first_study_law_lr_within_two_percent_at_xs(runs: pd.DataFrame, seed_sd: float):
    """At xs (no scan reaches it) the law's LR costs at most 2.1% against the best of x0.5,
    x1, x2; which of them is best is within a few seed SDs, so not resolved."""
    table = study.lr_checks(runs).set_index("arch")
    assert list(table.index) == list(FIRST_ARCHS)
    penalty = table.penalty.str.rstrip("%").astype(float)
    assert (penalty <= 2.1).all()
    best = table[[c for c in table.columns if c.startswith("loss at")]].min(axis=1)
    at_law = table["loss at x1"]
    assert ((at_law - best) < 3 * seed_sd).all()


def test_throughput_model_backtests_within_a_fifth_at_the_median(runs: pd.DataFrame) -> None:
    """Held out: each arch's largest 25% of shapes; median |relative error| under 15%. An
    architecture the study has trained at fewer than 3 shapes so far has nothing to hold out.
    Only the runs timed on an otherwise idle machine (before LOADED_SINCE): the runs after it
    trained beside the session's tests and benchmarks, so their speeds measure the load."""
    measured = runs[(runs.status == "done") & (runs.tokens_per_s > 0)]
    measured = measured[measured.finished_at < pd.Timestamp(LOADED_SINCE)]
    shapes = with_flops_per_token(measured).groupby("arch").flops_per_token.nunique()
    measured = measured[measured.arch.isin(shapes.index[shapes >= 3])]
    error = backtest(measured).rel_error.abs()
    assert error.median() < 0.15 and error.max() < 1.1


def test_first_study_allocation_exponent_is_not_identified(first: pd.DataFrame) -> None:
    """The sensitivity table on the first pass's runs up to 2e12 (as predicted from): the 2e11
    minima are open, so approach 2 has too few budgets; approach 3's exponent has a 90%
    interval wider than the published exponents disagree (Kaplan et al.'s 0.73 less Hoffmann
    et al.'s 0.46) for every architecture, with N counted with or without embeddings and with
    or without the two smallest rungs: the data do not identify it (the narrowest, 0.37 to
    0.43 wide, moves by the resamples' Monte Carlo error: it read 0.43 before the runs were
    fitted in an order of their own, 0.37 after). Nor
    E: its 90% profile-likelihood interval reaches 0 in every case, and holding E at its
    high end instead moves llama's exponent (all rungs) by more than 0.3."""
    grids = {a: first[(first.arch == a) & (first.flops < 3e12)] for a in FIRST_ARCHS}
    table = study.sensitivity(grids)
    assert table["isoflop a"].str.startswith("- (need at least 3 compute budgets").all()
    for text in table["chinchilla a"]:
        lo, hi = (float(v) for v in text.split("[")[1].rstrip("]").split(","))
        assert hi - lo > KAPLAN_A - HOFFMANN_A, text
    assert table["a at E low"].str.endswith("(E 0)").all()
    llama = table[(table.arch == "llama") & (table["smallest rungs"] == "with")]
    for low, high in zip(llama["a at E low"], llama["a at E high"], strict=True):
        assert float(low.split()[0]) - float(high.split()[0]) > 0.3, (low, high)


# -- the second pass (issue 23): five budgets, seeds near each minimum, LR at each minimum --
ARCHS = study.ARCHS


@pytest.fixture(scope="module")
def grids(runs: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Each architecture's IsoFLOP runs at the five study budgets, averaged over seeds."""
    return {a: study.seed_mean(study.isoflop_runs(runs, a, SPECS)) for a in ARCHS}


@pytest.fixture(scope="module")
def table(grids: dict[str, pd.DataFrame]) -> pd.DataFrame:
    return study.sensitivity(grids).set_index(["arch", "N", "smallest rungs"])


def _interval(text: str) -> tuple[float, float, float]:
    """(point, lo, hi) from the table's "0.657 [0.573, 0.740]"."""
    point, rest = text.split(" [")
    lo, hi = (float(v) for v in rest.rstrip("]").split(","))
    return float(point), lo, hi


def test_second_pass_design(
    runs: pd.DataFrame, grids: dict[str, pd.DataFrame], seed_sd: float
) -> None:
    """Five budgets over two decades per architecture; each budget's minimum (seed mean)
    bracketed by two rungs or more on each side at four of them or more. Two seeds or more at
    every budget's best seed-0 size (the rule the seeds stage was given before seed 1 ran);
    by the seed mean, the best size has two seeds at 19 of the 20 budgets, and the one
    exception (cosformer2 at 2e10, an open minimum at the smallest rung) is a tie within a
    tenth of the seed noise."""
    one_seed_best = []
    for arch, data in grids.items():
        assert data.budget.nunique() == 5 and data.budget.max() / data.budget.min() >= 99
        bracketed = 0
        for _, budget in data.groupby("budget"):
            budget = budget.sort_values("params").reset_index(drop=True)
            best = int(budget.final_val_loss.idxmin())
            bracketed += best >= 2 and len(budget) - 1 - best >= 2
            if budget.seeds[best] < 2:
                two = budget[budget.seeds >= 2].final_val_loss.min()
                one_seed_best.append(two - budget.final_val_loss[best])
        assert bracketed >= 4, arch
    assert len(one_seed_best) <= 1 and all(gap < 0.1 * seed_sd for gap in one_seed_best)
    for arch in ARCHS:
        iso = study.isoflop_runs(runs, arch, SPECS)
        for _, budget in iso.groupby("budget"):
            seed0 = budget[budget.seed == 0]
            best = seed0.loc[seed0.final_val_loss.idxmin()]
            assert (budget.params == best.params).sum() >= 2, (arch, best.budget)


def test_seed_noise_is_three_hundredths_of_a_nat(runs: pd.DataFrame, seed_sd: float) -> None:
    """Every architecture has ten or more two-seed configurations, and the pooled SD over
    them all is 0.03 nats to within a sixth (what docs/architectures.md states)."""
    noise = study.seed_noise(runs)
    assert (noise.loc[list(ARCHS), "configs"] >= 10).all()
    assert noise.configs.sum() >= 50
    assert seed_sd == pytest.approx(0.030, rel=1 / 6)


def test_no_pair_of_architectures_is_ordered_under_every_choice(
    grids: dict[str, pd.DataFrame], table: pd.DataFrame, seed_sd: float
) -> None:
    """N_opt's exponent by the study's estimator (parabola through each budget's best rung and
    two a side, all parameters, all rungs): llama's 90% interval lies above cosformer2's, and
    stays above in 95% of redraws of every run's loss by the seed noise. But for every pair
    of architectures some choice of estimator (that parabola, one through every rung, the
    Chinchilla allocation), of N (with or without embeddings) or of rungs (with or without
    the two smallest) gives overlapping intervals: no ordering survives every choice."""
    _, lo_llama, _ = _interval(table.loc[("llama", "params", "with"), "isoflop a"])
    _, _, hi_cos = _interval(table.loc[("cosformer2", "params", "with"), "isoflop a"])
    assert lo_llama > hi_cos
    redrawn = {a: _noisy_exponents(grids[a], seed_sd, draws=120) for a in ("llama", "cosformer2")}
    k = min(len(v) for v in redrawn.values())
    assert k > 100 and (redrawn["llama"][:k] > redrawn["cosformer2"][:k]).mean() > 0.95
    columns = ("isoflop a", "isoflop a (all rungs)", "chinchilla a")
    choices = list(itertools.product(("params", "params_nonembed"), ("with", "without")))
    for a, b in itertools.combinations(ARCHS, 2):
        overlap = False
        for column, choice in itertools.product(columns, choices):
            texts = [table.loc[(arch, *choice), column] for arch in (a, b)]
            if any(text.startswith("-") for text in texts):  # no fit at this choice
                continue
            (_, lo_a, hi_a), (_, lo_b, hi_b) = (_interval(text) for text in texts)
            overlap |= lo_a < hi_b and lo_b < hi_a
        assert overlap, (a, b)


def test_counting_n_without_embeddings_moves_hgrn2_more_than_its_interval(
    table: pd.DataFrame,
) -> None:
    """hgrn2's approach-2 interval is the narrowest in the table, narrower than the spread of
    the four architectures' points, yet counting N without the embeddings moves it past its
    own width: it cannot speak to Shen et al.'s value (0.643) either way."""
    points = [_interval(table.loc[(a, "params", "with"), "isoflop a"])[0] for a in ARCHS]
    _, lo, hi = _interval(table.loc[("hgrn2", "params", "with"), "isoflop a"])
    _, lo_ne, hi_ne = _interval(table.loc[("hgrn2", "params_nonembed", "with"), "isoflop a"])
    assert hi - lo < max(points) - min(points)
    assert hi < lo_ne  # the two counts of N give disjoint intervals
    assert not (lo <= 0.643 <= hi) and not (lo_ne <= 0.643 <= hi_ne)  # on either side of it


def test_e_is_identified_for_llama_and_cosformer2_not_for_the_other_two(
    table: pd.DataFrame,
) -> None:
    """With all rungs and all parameters, E's 90% profile interval stays clear of 0 for llama
    and cosformer2 (five budgets and seeds did what three could not) and still reaches 0 for
    tnl_spread (without the smallest rungs) and hgrn2; across E's interval the allocation
    exponent moves by more than 0.4 for hgrn2."""

    def held(arch: str, end: str, small: str = "with") -> tuple[float, float]:
        text = table.loc[(arch, "params", small), f"a at E {end}"]
        a, e = text.replace("(E ", "").rstrip(")").split()
        return float(a), float(e)

    for arch in ("llama", "cosformer2"):
        assert held(arch, "low")[1] > 0.5, arch
    assert held("hgrn2", "low")[1] == 0 and held("tnl_spread", "low", "without")[1] == 0
    assert held("hgrn2", "low")[0] - held("hgrn2", "high")[0] > 0.4


def test_law_lr_at_every_minimum(runs: pd.DataFrame, seed_sd: float) -> None:
    """At each budget's best size the law's LR is within 2% of the best of x0.5, x1, x2 for
    every architecture; tnl_spread's best is x2 at all five budgets (a sign that its law's
    LR is low, at 1-2 seed SDs per budget: suggestive, not resolved)."""
    lrmin = study.lr_at_minima(runs)
    assert lrmin.groupby("arch").size().loc[list(ARCHS)].min() == 5
    penalty = lrmin.penalty.str.rstrip("%").astype(float)
    assert (penalty <= 2.0).all()
    spread = lrmin[lrmin.arch == "tnl_spread"]
    assert (spread.best == "x2").all()
    gain = spread.x1 - spread.x2
    assert (gain < 2 * seed_sd).all() and gain.mean() > seed_sd


def test_predictions_refit_from_the_runs_they_hash(runs: pd.DataFrame, seed_sd: float) -> None:
    """The committed second-pass predictions: each refits from the IsoFLOP runs whose sha256
    it records, to within one seed SD; no interval end is above ln 256, committed or refitted.
    Until 4 December 2026 the refit matched to a tenth of a seed SD; then `auto` stacked its
    weights on the largest nested cuts (fits.averaging), which moved tnl_spread's point from
    1.6313 to 1.6468 (0.53 SD; the others by under 0.01 SD); on 5 December the stacking moved
    to absolute error and it is 1.630 again. The record is what was committed before the
    validation runs; the refit checks that the same runs still give it."""
    predictions = json.loads((SPECS / "generated" / "predictions_seeded.json").read_text())
    assert set(predictions) == set(ARCHS)
    for arch, p in predictions.items():
        fitted = study.isoflop_runs(runs, arch, SPECS)
        assert study.runs_sha256(fitted) == p["fitted_sha256"]
        law = Study.from_frame(study.seed_mean(fitted), n_bootstrap=200)
        loss = law.predict_loss(p["N"], p["D"], arch)
        assert loss.value == pytest.approx(p["loss"], abs=seed_sd)
        assert p["hi"] < math.log(256) and loss.hi < math.log(256)


def test_validation_runs_two_seeds_each_inside_their_committed_intervals(
    runs: pd.DataFrame,
) -> None:
    """The second pass's validation runs at 3x the largest budget, trained after their
    predictions were committed: two seeds each, every seed mean inside its 90% interval
    (each under 30% of the prediction wide), and every prediction above the measured mean."""
    predictions = json.loads((SPECS / "generated" / "predictions_seeded.json").read_text())
    done = runs[(runs.sweep == "arch-verify") & (runs.status == "done")]
    for arch, p in predictions.items():
        trained = done[(done.arch == arch) & (done.params == p["N"])]
        assert sorted(trained.seed) == [1, 2], arch
        measured = float(trained.final_val_loss.mean())
        assert p["lo"] <= measured <= p["hi"], arch
        assert (p["hi"] - p["lo"]) / p["loss"] < 0.3
        assert p["loss"] > measured


def test_largest_sizes_fall_faster_in_tokens_than_any_form_can(
    runs: pd.DataFrame, seed_sd: float
) -> None:
    """docs/laws.md (*Why it under-covers*): sizes whose loss falls faster per decade of tokens
    at more tokens by more than 2 seed SDs, per architecture, as counted there; every
    registered form, fitted on llama's IsoFLOP runs, falls ever slower in log D at each of
    llama's sizes on fresh tokens, so none follows them; and a fit on llama's runs says so in
    its summary (fits.bends, on the runs' own seed pairs), one on tnl_spread's does not. (U at
    1e6 lets the two forms that read U fit their repeat terms on these runs, and
    data-constrained's repeated tokens are checked too; overfitting's loss rises on them, as
    its penalty is built to. The shape is what is checked, not the fit.)"""
    iso = runs[runs.sweep.str.startswith("arch-isoflop-") & (runs.status == "done")]
    frames = {arch: pd.DataFrame({"N": data.params.astype(float), "D": data.tokens.astype(float),
                                  "U": 1e6, "loss": data.final_val_loss})
              for arch, data in iso.groupby("arch")}  # fmt: skip
    sizes = {arch: token_bends(frame.drop(columns="U"), seed_sd) for arch, frame in frames.items()}
    bent = {arch: set(s.N[s.max_rise_sd > 2]) for arch, s in sizes.items()}
    assert {arch: len(b) for arch, b in bent.items()} == {
        "cosformer2": 5, "hgrn2": 6, "llama": 3, "tnl": 0, "tnl_spread": 1}  # fmt: skip
    assert 357824 in bent["llama"] and len(sizes["tnl"]) == 6
    tokens = np.geomspace(1e4, 1e9, 41)
    for name, law in LOSS_LAWS.items():
        fitted = law(n_bootstrap=0, force=True).fit(frames["llama"])
        unique = (np.nan,) if name == "overfitting" else (np.nan, 1e6)
        for n, u in itertools.product(frames["llama"].N.unique(), unique):
            loss = fitted.predict_frame(pd.DataFrame({"N": n, "D": tokens, "U": u}))
            drops = -np.diff(loss)
            assert (drops >= 0).all() and (np.diff(drops) <= 1e-12).all(), (name, n, u)
    study_of = Study.from_frame(iso, n_bootstrap=20)
    assert "caution: the loss falls faster per decade" in study_of.fit("kaplan", "llama").summary()
    answer = study_of.predict_loss(1e6, 1e7, "llama", law="kaplan")
    assert "no law form bends that way" in answer.note
    assert "caution: the loss falls" not in study_of.fit("kaplan", "tnl_spread").summary()
