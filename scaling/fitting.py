"""Fits with their identity: a law fitted on a selection of runs, stored in the run log's fits
table with that selection, and reused while the selection holds the same runs."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Any, Protocol

import pandas as pd

from fits import Fit, FitError, LossLaw, PowerLaw, from_dict
from fits.bootstrap import DEFAULT_JOBS
from fits.calibration import Calibration
from fits.machine import computed_on
from fits.noise import RunNoise
from scaling.errors import ScalingError
from scaling.fitters import Context, Fitter
from scaling.results import FittedLaw
from scaling.runlog import RunLog
from store.fit_log import find_fit, runs_fingerprint, save_fit


@dataclass(frozen=True)
class Settings:
    """How a Study fits: interval level, bootstrap resamples, seed, parallel jobs."""

    level: float = 0.90
    n_bootstrap: int = 1000
    seed: int = 0
    n_jobs: int | None = DEFAULT_JOBS

    def __post_init__(self) -> None:
        """Each setting checked here, in one line: a text level or seed raised Python's
        TypeError from a comparison deep in a fit, or was taken and failed there."""
        if not (isinstance(self.level, Real) and not isinstance(self.level, bool)
                and 0 < self.level < 1):  # fmt: skip
            raise ScalingError(f"level must be between 0 and 1, got {self.level!r}")
        whole_number("n_bootstrap", self.n_bootstrap)
        whole_number("seed", self.seed)
        if self.n_jobs is not None and not (
            isinstance(self.n_jobs, Integral) and not isinstance(self.n_jobs, bool)
        ):
            raise ScalingError(f"n_jobs must be a whole number or None, got {self.n_jobs!r}")


def whole_number(name: str, value: Any) -> int:
    """A bootstrap count (0: no bootstrap, the law's point alone) or a seed: a whole number
    >= 0."""
    if not (isinstance(value, Integral) and not isinstance(value, bool) and int(value) >= 0):
        raise ScalingError(f"{name} must be a whole number >= 0, got {value!r}")
    return int(value)


class Fittable(Protocol):
    """What the fit log needs of a law (scaling.laws.Law)."""

    @property
    def fit(self) -> Fitter: ...
    @property
    def statuses(self) -> tuple[str, ...]: ...
    @property
    def selection(self) -> Mapping[str, Any]: ...
    @property
    def options(self) -> tuple[str, ...]: ...


class FitLog:
    """Fits of laws on selections of a run log's runs, stored and reused; `laws` looks a law
    up by name (scaling.laws.get)."""

    def __init__(self, log: RunLog, settings: Settings, laws: Callable[[str], Fittable]) -> None:
        self.log = log
        self.settings = settings
        self.laws = laws

    def runs_of(
        self,
        law: str,
        arch: str | None = None,
        source: str | None = None,
        where: str | None = None,
        n_column: str = "params",
    ) -> pd.DataFrame:
        """The runs `law` is fitted on, with the columns fits/ expects (N, D, C, loss, ...)."""
        return self.log.law_runs(self.laws(law).statuses, arch, source, where, n_column)

    def check_options(self, law: str, options: dict[str, Any]) -> Fittable:
        """`law`'s registry entry, once its `options` are known to be ones it takes: a misspelt
        option would otherwise be dropped without a word (ScalingError)."""
        entry = self.laws(law)
        unknown = sorted(set(options) - {"bootstrap", *entry.options})
        if unknown:
            takes = ", ".join(["bootstrap", *entry.options])
            raise ScalingError(f"{law} takes no option {', '.join(unknown)} (it takes {takes})")
        return entry

    def fit(
        self,
        law: str,
        arch: str | None = None,
        source: str | None = None,
        where: str | None = None,
        *,
        n_column: str = "params",
        refit: bool = False,
        force: bool = False,
        run_ids: Sequence[str] | None = None,
        **options: Any,
    ) -> FittedLaw:
        """Fit `law` on the selected runs (only `run_ids` of them, when given), reusing a stored
        fit of the same runs, and store it (see Study.fit)."""
        entry = self.check_options(law, options)
        n_bootstrap = whole_number("bootstrap", options.pop("bootstrap", self.settings.n_bootstrap))
        data = self.runs_of(law, arch, source, where, n_column)
        if run_ids is not None:
            data = data[data.run_id.isin(list(run_ids))].reset_index(drop=True)
        selection: dict[str, Any] = {
            "law": law,
            "arch": arch,
            "source": source,
            "where": where,
            "n_column": n_column,
            "options": options,
            "bootstrap": n_bootstrap,
            "level": self.settings.level,
            "seed": self.settings.seed,
            "n_runs": len(data),
            "runs": runs_fingerprint(list(data.run_id)),
            **({"force": True} if force else {}),
            **entry.selection,
        }
        if not refit:
            with self.log.connection(read_only=True) as con:
                stored = find_fit(con, law, selection)
            reloaded = reload(law, selection, *stored) if stored is not None else None
            if reloaded is not None and (force or not problems(reloaded.model)):
                return reloaded
        context = Context(self.settings, self.log, n_bootstrap, force)
        try:
            fitted = entry.fit(law, data, selection, context, dict(options))
        except FitError as exc:
            raise ScalingError(f"cannot fit {law}: {exc}") from exc
        stored_record, machine = record(fitted), computed_on()
        fitted.fit_id = self.log.write(
            lambda con: save_fit(con, law, arch, selection, stored_record, machine),
            "the fit is not stored",
        )
        return fitted


def record(fitted: FittedLaw) -> dict[str, Any]:
    """What the fits table keeps: the estimator's record, the table, the residuals."""
    out = fitted.model.to_dict()
    if fitted.table is not None:
        out["table"] = json.loads(fitted.table.to_json(orient="records"))
    if fitted.residuals is not None:
        out.update(fitted.residuals.to_dict())
    if fitted.forms is not None:
        out["forms"] = json.loads(fitted.forms.to_json(orient="records"))
    if fitted.calibration is not None:
        out["calibration"] = fitted.calibration.to_dict()
    return out


def reload(
    law: str, selection: dict[str, Any], fit_id: str, stored: dict[str, Any]
) -> FittedLaw | None:
    """A stored fit as a FittedLaw (None for a record without a model, or in a format newer
    than this release reads: fit it again)."""
    if "params" not in stored:
        return None
    try:
        model = from_dict(stored)
    except ValueError:
        return None
    table = pd.DataFrame(stored["table"]) if "table" in stored else None
    residuals = RunNoise.from_dict(stored)
    forms = pd.DataFrame(stored["forms"]) if "forms" in stored else None
    cal = Calibration.from_dict(stored["calibration"]) if "calibration" in stored else None
    return FittedLaw(law, model, selection, fit_id, table, residuals, forms, cal)


def problems(model: Fit) -> list[str]:
    """Identification problems of a law that reports them (loss laws, power laws)."""
    return model.identification_problems() if isinstance(model, LossLaw | PowerLaw) else []
