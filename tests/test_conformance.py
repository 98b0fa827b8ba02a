"""Every estimator in fits/ (the registry `fits.from_dict` reads) passes the same checks, as
scikit-learn's parametrize_with_checks, through one signature: `fit(runs)` returns self, a
refit keeps nothing of the last fit (it equals a fresh fit on the new data), the
to_dict/from_dict round trip predicts the same, and the summary prints. The laws that predict
with intervals (fits.base.IntervalFit) return the kind asked for, named in the Estimate and in
`summary_frame`, or refuse it with a FitError. Each case says only how its estimator is built,
what data it is fitted on and the arguments of its `predict` at the rows of a frame; every
`predict` and `predict_interval` also takes that table of runs itself. The schedule laws
(`predict(lrs)`, `predict_interval(lrs, level) -> (lo, hi)`) are exempt (docs/development.md)."""

from __future__ import annotations

import importlib
import json
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pytest

import fits
from fits import (
    LOSS_LAWS,
    EnvelopeFit,
    Fit,
    FitError,
    IsoFLOPFit,
    LROptima,
    PowerLaw,
    SharedChinchillaLaw,
    batch_size_law,
    chinchilla_loss,
    from_dict,
    step_law_lr,
)
from fits.averaging import AveragedLaw
from fits.base import _REGISTRY, IntervalFit
from fits.schedule import AnnealingLaw, MultiPowerLaw, annealing_area
from fits.throughput import RateLaw, ThroughputModel

TRUTH = np.array([1.7, 400.0, 900.0, 0.34, 0.3])  # E, A, B, alpha, beta


def loss_runs(seed: int) -> pd.DataFrame:
    """An IsoFLOP-like grid from a known Chinchilla law, 0.5% noise, one corpus U of 3e10."""
    rng = np.random.default_rng(seed)
    n = np.tile(np.geomspace(1e7, 1e9, 6), 5)
    c = np.repeat(np.geomspace(1e17, 1e20, 5), 6)
    d = c / (6 * n)
    loss = chinchilla_loss(TRUTH[None, :], n, d)[0] * np.exp(rng.normal(0, 0.005, n.size))
    return pd.DataFrame({"N": n, "D": d, "C": c, "U": 3e10, "loss": loss})


def lr_runs(seed: int) -> pd.DataFrame:
    """LR scans of (N, D) groups whose loss is a parabola in log LR about a power law."""
    rng = np.random.default_rng(seed)
    rows = []
    for n in (1e6, 4e6, 1.6e7):
        for d in (1e8, 4e8):
            best = 0.5 * n**-0.3 * d**-0.05 * np.exp(rng.normal(0, 0.05))
            for lr in best * np.geomspace(0.125, 8, 7):
                rows.append({"arch": "a", "N": n, "D": d, "lr": lr,
                             "loss": 3 + 0.1 * np.log(lr / best) ** 2, "status": "done",
                             "batch_size": 32 * (1 + (n > 2e6))})  # fmt: skip
    return pd.DataFrame(rows)


def curves(seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for i, n in enumerate(np.geomspace(1e7, 1e9, 8)):
        tokens = np.geomspace(1e8, 1e11, 40)
        loss = chinchilla_loss(TRUTH[None, :], n, tokens)[0] * np.exp(rng.normal(0, 0.002, 40))
        rows.append(pd.DataFrame({"run_id": f"r{i}", "N": n, "tokens": tokens, "loss": loss}))
    return pd.concat(rows, ignore_index=True)


def speed_runs(seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for arch in ("llama", "tnl") if seed == 0 else ("tnl",):
        for d_model, layers in ((64, 2), (128, 4), (256, 4), (256, 8), (512, 8)):
            fpt = 6 * 12 * layers * d_model**2
            seconds = 2e-11 * fpt + 4e-8 * layers * d_model + 5e-6
            rows.append({"arch": arch, "d_model": d_model, "n_layers": layers, "n_heads": 4,
                         "seq_len": 256, "flops_per_token": fpt,
                         "tokens_per_s": 1 / seconds * np.exp(rng.normal(0, 0.02))})  # fmt: skip
    return pd.DataFrame(rows)


def schedule_curves(seed: int) -> pd.DataFrame:
    """Loss curves of three schedules under the annealing law, with 0.1% noise."""
    rng = np.random.default_rng(seed)
    rows = []
    for name, shape in (("constant", np.ones(190)), ("cosine", np.linspace(1, 0.1, 190)),
                        ("two-stage", np.where(np.arange(190) < 120, 1.0, 0.3))):  # fmt: skip
        lrs = 1e-3 * np.r_[np.arange(1, 11) / 10, shape]
        loss = 2 + 0.5 * np.cumsum(lrs) ** -0.4 - 2.0 * annealing_area(lrs, 0.95)
        loss *= np.exp(rng.normal(0, 0.001, len(lrs)))
        rows.append(pd.DataFrame({"run": name, "step": np.arange(len(lrs)), "lr": lrs,
                                  "loss": loss}))  # fmt: skip
    return pd.concat(rows, ignore_index=True)


def wsd(_: pd.DataFrame) -> np.ndarray:
    return 1e-3 * np.r_[np.arange(1, 11) / 10, np.ones(150), np.linspace(1, 0, 40)]


@dataclass(frozen=True)
class Case:
    make: Callable[[], Fit]
    data: Callable[[int], pd.DataFrame]
    ask: Callable[[pd.DataFrame], tuple[Any, ...]]  # `predict`'s own arguments at a frame's rows
    table: Callable[[pd.DataFrame], pd.DataFrame] | None = lambda r: r  # the runs `predict` reads


def _loss_case(name: str) -> Case:
    columns = LOSS_LAWS[name].columns
    return Case(  # force: the repeat costs of data-constrained are not what is checked here
        lambda: LOSS_LAWS[name](n_bootstrap=0, force=True), loss_runs,
        lambda r: tuple(r[c] for c in columns),
    )  # fmt: skip


CASES: dict[str, Case] = {
    **{name: _loss_case(name) for name in LOSS_LAWS},
    "isoflop": Case(IsoFLOPFit, loss_runs, lambda r: (r.C,)),
    "envelope": Case(lambda: EnvelopeFit(n_bins=20), curves, lambda r: (6 * r.N * r.tokens,),
                     lambda r: r.assign(C=6 * r.N * r.tokens)),
    "power": Case(lambda: PowerLaw(n_bootstrap=0), loss_runs, lambda r: (r.C,)),
    "lr": Case(lambda: LROptima(group_keys=("arch", "N", "D", "batch_size")), lr_runs,
               lambda r: (r,)),
    "lr-law": Case(step_law_lr, lr_runs, lambda r: (r,)),
    "bs-law": Case(batch_size_law, lr_runs, lambda r: (r,)),
    "chinchilla-shared": Case(lambda: SharedChinchillaLaw(n_bootstrap=0), loss_runs,
                              lambda r: (r.N, r.D)),
    "annealing": Case(AnnealingLaw, schedule_curves, lambda r: (wsd(r),), None),  # exempt
    "multi-power": Case(MultiPowerLaw, schedule_curves, lambda r: (wsd(r),), None),
    "throughput": Case(ThroughputModel, speed_runs, lambda r: (r[r.arch == "tnl"],)),
    "rate": Case(RateLaw, speed_runs, lambda r: (r.flops_per_token,)),
    "average": Case(lambda: AveragedLaw(weights={"chinchilla": 0.6, "kaplan": 0.4},
                                        n_bootstrap=0), loss_runs, lambda r: (r.N, r.D, r.U)),
}  # fmt: skip
BOTH_KINDS = {"power", "lr-law", "bs-law", "isoflop", "envelope"}  # the others: bootstrap only


def test_every_estimator_has_a_case():
    """Every module of fits/ imported first, so the registry is whole whatever ran before."""
    for module in pkgutil.walk_packages(fits.__path__, "fits."):
        importlib.import_module(module.name)
    assert {type(case.make()).law for case in CASES.values()} == set(_REGISTRY)


def same(a: Any, b: Any) -> None:
    if isinstance(a, pd.DataFrame):
        pd.testing.assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True),
                                      check_dtype=False)  # fmt: skip
    else:
        np.testing.assert_allclose(np.asarray(a, float), np.asarray(b, float), rtol=1e-9)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CASES))
def test_estimator_conforms(name: str) -> None:
    case = CASES[name]
    first, second = case.data(0), case.data(1)
    model = case.make()
    assert not model.is_fitted()
    assert model.fit(first) is model and model.is_fitted()
    record = json.loads(json.dumps(model.to_dict()))
    again = from_dict(record)
    assert type(again) is type(model)
    same(again.predict(*case.ask(second)), model.predict(*case.ask(second)))
    if case.table is not None:  # predict(runs), as fit(runs), reads the law's own columns
        same(model.predict(case.table(second)), model.predict(*case.ask(second)))
    assert again.params_ == pytest.approx(model.params_, nan_ok=True)
    summary = model.summary()
    assert isinstance(summary, str) and type(model).__name__ in summary.splitlines()[0]
    model.fit(second)  # a refit keeps nothing of the first fit
    fresh = case.make().fit(second)
    assert model.to_dict() == fresh.to_dict()


@pytest.mark.parametrize("name", sorted(n for n, c in CASES.items()
                                        if isinstance(c.make(), IntervalFit)))  # fmt: skip
def test_intervals_say_their_kind_or_refuse_it(name: str) -> None:
    """Each kind is given under its own name (level and kind in the Estimate; statsmodels'
    column names in its frame), or refused with a FitError: never the other kind renamed.
    Where both are given, the prediction interval holds the confidence interval."""
    case = CASES[name]
    model = case.make().fit(case.data(0))
    ask = case.ask(case.data(1))
    given = {}
    for kind in ("confidence", "prediction"):
        try:
            est = model.predict_interval(*ask, level=0.8, kind=kind)
        except FitError as exc:
            assert str(exc)
            continue
        assert (est.kind, est.level) == (kind, 0.8)
        np.testing.assert_allclose(est.estimate, model.predict(*ask), rtol=1e-12)
        if case.table is not None:
            from_table = model.predict_interval(case.table(case.data(1)), level=0.8, kind=kind)
            np.testing.assert_allclose([from_table.lo, from_table.hi], [est.lo, est.hi])
        assert np.all(est.lo <= est.estimate) and np.all(est.estimate <= est.hi)
        prefix = {"confidence": "mean_ci", "prediction": "obs_ci"}[kind]
        assert list(est.to_frame()) == ["mean", f"{prefix}_lower", f"{prefix}_upper"]
        given[kind] = est
    assert (set(given) == {"confidence", "prediction"}) == (name in BOTH_KINDS)
    if name in BOTH_KINDS:
        frame = model.summary_frame(*ask, level=0.8)
        assert list(frame) == ["mean", "mean_ci_lower", "mean_ci_upper", "obs_ci_lower",
                               "obs_ci_upper"]  # fmt: skip
        assert np.all(frame.obs_ci_lower < frame.mean_ci_lower)
        assert np.all(frame.mean_ci_upper < frame.obs_ci_upper)
    else:
        with pytest.raises(FitError):
            model.summary_frame(*ask)
    with pytest.raises(ValueError, match="interval kind"):
        model.predict_interval(*ask, kind="calibrated")


def test_a_loss_law_reads_its_columns_from_the_runs_table() -> None:
    """predict and the bootstrap's predict_interval at a table of runs are those at the law's
    own columns (N, D, and U for the laws that take it)."""
    runs = loss_runs(0)
    model = SharedChinchillaLaw(n_bootstrap=20, random_state=0).fit(runs)
    same(model.predict(runs), model.predict(runs.N, runs.D))
    table, own = (
        model.predict_interval(runs, level=0.8),
        model.predict_interval(runs.N, runs.D, level=0.8),
    )
    np.testing.assert_allclose([table.lo, table.hi], [own.lo, own.hi])
