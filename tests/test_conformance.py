"""Every estimator in fits/ (the registry `fits.from_dict` reads) passes the same checks, as
scikit-learn's parametrize_with_checks: fit returns self, a refit keeps nothing of the last fit
(it equals a fresh fit on the new data), the to_dict/from_dict round trip predicts the same,
and the summary prints. Each case says how its estimator is fitted and asked (the fit
signatures still differ: `fit(runs)` for the frame laws, columns for the others)."""

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
from fits.base import _REGISTRY
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
                rows.append({"arch": "a", "N": n, "D": d, "batch_size": 32, "lr": lr,
                             "loss": 3 + 0.1 * np.log(lr / best) ** 2, "status": "done",
                             "batch_tokens": 32 * 128 * (1 + (n > 2e6))})  # fmt: skip
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
    fit: Callable[[Any, pd.DataFrame], Any]
    ask: Callable[[Any, pd.DataFrame], Any]


def _loss_case(name: str) -> Case:
    return Case(  # force: the repeat costs of data-constrained are not what is checked here
        lambda: LOSS_LAWS[name](n_bootstrap=0, force=True), loss_runs,
        lambda m, r: m.fit_frame(r), lambda m, r: m.predict_frame(r),
    )  # fmt: skip


def _averaged(model: AveragedLaw, runs: pd.DataFrame) -> AveragedLaw:
    """An average is built, not fitted (fits.auto fits its forms and stacks their weights):
    the case builds one of two fitted forms in place, so the checks below apply to it."""
    forms = {k: LOSS_LAWS[k](n_bootstrap=0).fit_frame(runs) for k in ("chinchilla", "kaplan")}
    vars(model).update(vars(AveragedLaw.of(forms, {"chinchilla": 0.6, "kaplan": 0.4})))
    return model


CASES: dict[str, Case] = {
    **{name: _loss_case(name) for name in LOSS_LAWS},
    "isoflop": Case(IsoFLOPFit, loss_runs, lambda m, r: m.fit(r.N, r.loss, C=r.C),
                    lambda m, r: m.predict(r.C)),
    "envelope": Case(lambda: EnvelopeFit(n_bins=20), curves, lambda m, r: m.fit(r),
                     lambda m, r: m.predict(6 * r.N * r.tokens)),
    "power": Case(lambda: PowerLaw(n_bootstrap=0), loss_runs, lambda m, r: m.fit(r.C, r.loss),
                  lambda m, r: m.predict(r.C)),
    "lr": Case(lambda: LROptima(group_keys=("arch", "N", "D", "batch_size")), lr_runs,
               lambda m, r: m.fit(r), lambda m, r: m.table_),
    "lr-law": Case(step_law_lr, lr_runs, lambda m, r: m.fit(r, r.lr),
                   lambda m, r: m.predict(r)),
    "bs-law": Case(batch_size_law, lr_runs, lambda m, r: m.fit(r, r.batch_tokens),
                   lambda m, r: m.predict(r)),
    "chinchilla-shared": Case(lambda: SharedChinchillaLaw(n_bootstrap=0), loss_runs,
                              lambda m, r: m.fit_frame(r), lambda m, r: m.predict_frame(r)),
    "annealing": Case(AnnealingLaw, schedule_curves, lambda m, r: m.fit(r),
                      lambda m, r: m.predict_interval(wsd(r))),
    "multi-power": Case(MultiPowerLaw, schedule_curves, lambda m, r: m.fit(r),
                        lambda m, r: m.predict_interval(wsd(r))),
    "throughput": Case(ThroughputModel, speed_runs, lambda m, r: m.fit(r),
                       lambda m, r: m.predict(r[r.arch == "tnl"])),
    "rate": Case(RateLaw, speed_runs, lambda m, r: m.fit(r),
                 lambda m, r: m.predict(r.flops_per_token)),
    "average": Case(AveragedLaw, loss_runs, _averaged, lambda m, r: m.predict_frame(r)),
}  # fmt: skip


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


@pytest.mark.parametrize("name", sorted(CASES))
def test_estimator_conforms(name: str) -> None:
    case = CASES[name]
    first, second = case.data(0), case.data(1)
    model = case.make()
    assert not model.is_fitted()
    assert case.fit(model, first) is model and model.is_fitted()
    record = json.loads(json.dumps(model.to_dict()))
    again = from_dict(record)
    assert type(again) is type(model)
    same(case.ask(again, second), case.ask(model, second))
    assert again.params_ == pytest.approx(model.params_, nan_ok=True)
    summary = model.summary()
    assert isinstance(summary, str) and type(model).__name__ in summary.splitlines()[0]
    case.fit(model, second)  # a refit keeps nothing of the first fit
    fresh = case.fit(case.make(), second)
    assert model.to_dict() == fresh.to_dict()
