"""What every fitted law shares: uncertainty reporting, a printable summary, a JSON round trip.

Estimators follow scikit-learn: constructor arguments are configuration only, `fit` returns
self, learned values end in `_`. Every fit carries `params_` (the law's parameters by name),
`stderr_` and `intervals_` (at `level_`), `n_points_` and `objective_`, prints a statsmodels-
like `summary()`, and survives `to_dict()` -> JSON -> `from_dict()` so that the store can save
it and a predictor can reload it without the data it came from.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from typing import Any, ClassVar, Self

import numpy as np
import pandas as pd

_REGISTRY: dict[str, type[Fit]] = {}
FORMAT_VERSION = 1


def holding_point(point: Any, lo: Any, hi: Any) -> tuple[np.ndarray, np.ndarray]:
    """lo and hi stretched to the point where they miss it, never narrowed (NaN left alone): a
    percentile interval of skewed bootstrap draws, or the residuals of the runs near a question
    all on one side of the law, can lie wholly beside the point, and a user reads
    "point [lo, hi]" as lo <= point <= hi."""
    point, lo, hi = (np.asarray(a, dtype=float) for a in (point, lo, hi))
    return np.where(point < lo, point, lo), np.where(point > hi, point, hi)


KINDS = ("confidence", "prediction")  # of the mean; of one new observation (e.g. one run)
FRAME_COLUMNS = {"confidence": "mean_ci", "prediction": "obs_ci"}  # as statsmodels names them


@dataclass(frozen=True)
class Estimate:
    """Point estimates with a two-sided interval at `level` (arrays of one shape), and the
    interval's `kind`: "confidence" (of the law's mean) or "prediction" (of one new
    observation, the mean's uncertainty and the scatter of observations about it).

    What estimators return; the prediction API turns one point of it into an answer
    (`scaling.results.Prediction`, a scalar with the fit it came from).
    """

    estimate: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    level: float
    kind: str

    def __post_init__(self) -> None:
        check_kind(self.kind)
        lo, hi = holding_point(self.estimate, self.lo, self.hi)
        object.__setattr__(self, "lo", lo)
        object.__setattr__(self, "hi", hi)

    def to_frame(self) -> pd.DataFrame:
        """The estimates as a table named as statsmodels' summary_frame: mean and
        mean_ci_lower/upper (confidence) or obs_ci_lower/upper (prediction)."""
        name = FRAME_COLUMNS[self.kind]
        return pd.DataFrame(
            {
                "mean": np.ravel(self.estimate),
                f"{name}_lower": np.ravel(self.lo),
                f"{name}_upper": np.ravel(self.hi),
            }
        )


def check_kind(kind: str) -> str:
    """`kind` if it is an interval kind (KINDS), else ValueError."""
    if kind not in KINDS:
        raise ValueError(f"interval kind {kind!r}: choose {' or '.join(map(repr, KINDS))}")
    return kind


class Fit:
    """Base class of every estimator in fits/; subclasses set `law` and implement `fit`."""

    law: ClassVar[str]
    formula: ClassVar[str]

    params_: dict[str, float]
    stderr_: dict[str, float]
    intervals_: dict[str, tuple[float, float]]
    level_: float
    n_points_: int
    objective_: float

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "law" in cls.__dict__:
            _REGISTRY[cls.law] = cls

    # -- configuration (scikit-learn's get_params convention) --------------------------------
    def get_params(self) -> dict[str, Any]:
        """Constructor arguments, read back from the attributes of the same name."""
        sig = inspect.signature(type(self).__init__)
        return {
            name: getattr(self, name)
            for name, p in sig.parameters.items()
            if name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
        }

    def is_fitted(self) -> bool:
        """True once `fit` (or `from_dict`) has set the learned attributes."""
        return hasattr(self, "params_")

    def _check_fitted(self) -> None:
        if not self.is_fitted():
            raise RuntimeError(f"{type(self).__name__} is not fitted yet: call fit() first")

    # -- reporting -------------------------------------------------------------------------
    def _summary_header(self) -> list[str]:
        """Lines above the parameter table; subclasses add what their fit needs to be read."""
        return [
            f"{type(self).__name__}: {self.formula}",
            f"points: {self.n_points_}    objective: {self.objective_:.6g}",
        ]

    def _summary_footer(self) -> list[str]:
        """Lines under the table (method notes, warnings)."""
        return []

    def summary(self) -> str:
        """A plain-text table of estimates, standard errors and intervals at `level_`."""
        self._check_fitted()
        lo_pct = 100 * (1 - self.level_) / 2
        hi_pct = 100 - lo_pct
        head = ("param", "estimate", "std err", f"lo ({lo_pct:g}%)", f"hi ({hi_pct:g}%)")
        rows: list[tuple[str, ...]] = [head]
        for name, value in self.params_.items():
            lo, hi = self.intervals_.get(name, (math.nan, math.nan))
            se = self.stderr_.get(name, math.nan)
            rows.append((name, *(_fmt(v) for v in (value, se, lo, hi))))
        widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
        table = [
            "  ".join(
                cell.ljust(w) if i == 0 else cell.rjust(w)
                for i, (cell, w) in enumerate(zip(r, widths, strict=True))
            )
            for r in rows
        ]
        rule = "-" * len(table[0])
        lines = [*self._summary_header(), rule, table[0], rule, *table[1:], rule]
        return "\n".join([*lines, *self._summary_footer()])

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    # -- serialisation ---------------------------------------------------------------------
    def _state(self) -> dict[str, Any]:
        """Class-specific learned state needed to predict after a reload (JSON-ready)."""
        return {}

    def _load_state(self, state: dict[str, Any]) -> None:
        """Inverse of `_state`."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable record: law, config, params, uncertainty, n_points, objective."""
        self._check_fitted()
        return _jsonable(
            {
                "law": self.law,
                "format_version": FORMAT_VERSION,
                "config": {  # a Generator cannot be stored: the record keeps no seed then
                    k: None if isinstance(v, np.random.Generator) else v
                    for k, v in self.get_params().items()
                },
                "params": self.params_,
                "uncertainty": {
                    "level": self.level_,
                    "stderr": self.stderr_,
                    "intervals": {k: list(v) for k, v in self.intervals_.items()},
                },
                "n_points": self.n_points_,
                "objective": self.objective_,
                "state": self._state(),
            }
        )

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> Self:
        """Rebuild a fitted estimator from `to_dict()` output (any law when called on Fit)."""
        law = record.get("law")
        version = int(record.get("format_version", 1))
        if version > FORMAT_VERSION:  # a newer release's record may mean other things
            raise ValueError(
                f"a {law!r} fit in record format {version}, newer than this release reads "
                f"({FORMAT_VERSION}): upgrade scaling or refit"
            )
        if law not in _REGISTRY:
            raise ValueError(f"unknown law {law!r}; known: {sorted(_REGISTRY)}")
        klass = _REGISTRY[law]
        if not issubclass(klass, cls):
            raise ValueError(f"record holds a {law!r} fit, not a {cls.__name__}")
        try:
            obj = klass(**record.get("config", {}))
        except TypeError as exc:  # a setting renamed or dropped since the record was written
            raise ValueError(
                f"a {law!r} record whose settings this release does not take ({exc}): refit"
            ) from exc
        unc = record["uncertainty"]
        obj.params_ = {k: _num(v) for k, v in record["params"].items()}
        obj.stderr_ = {k: _num(v) for k, v in unc["stderr"].items()}
        obj.intervals_ = {k: (_num(v[0]), _num(v[1])) for k, v in unc["intervals"].items()}
        obj.level_ = _num(unc["level"])
        obj.n_points_ = int(record["n_points"])
        obj.objective_ = _num(record["objective"])
        obj._load_state(record.get("state", {}))
        return obj


def runs_only(first: Any, *rest: Any) -> pd.DataFrame | None:
    """The table of the one call every estimator takes, `fit(runs)` (a DataFrame and no other
    data argument); None when the law's own array arguments were given instead."""
    if isinstance(first, pd.DataFrame) and all(r is None for r in rest):
        return first
    return None


def runs_column(x: Any, column: str) -> Any:
    """`x` itself, or its `column` when `x` is a table of runs: every estimator's `predict`
    takes the runs' table, as `fit(runs)` does, beside the law's own array arguments."""
    return x[column] if isinstance(x, pd.DataFrame) else x


class IntervalFit(Fit):
    """A law that predicts with intervals: `predict_interval(..., level=None,
    kind="confidence" | "prediction")` returns an Estimate of that kind, or raises FitError
    saying why the law cannot give it (never the other kind under its name);
    `summary_frame(...)` puts both side by side as statsmodels' get_prediction() does.
    The arguments before `level` are the law's own (its `predict`'s)."""

    def predict_interval(self, *args: Any, **kwargs: Any) -> Estimate:
        raise NotImplementedError

    def summary_frame(self, *args: Any, level: float | None = None) -> pd.DataFrame:
        """mean, mean_ci_lower/upper and obs_ci_lower/upper at `level` (default level_):
        FitError when the law cannot give one of the two kinds."""
        confidence = self.predict_interval(*args, level=level, kind="confidence").to_frame()
        prediction = self.predict_interval(*args, level=level, kind="prediction").to_frame()
        return confidence.join(prediction.drop(columns="mean"))


def from_dict(record: dict[str, Any]) -> Fit:
    """Rebuild any fitted law from its `to_dict()` record (dispatch on `record['law']`)."""
    return Fit.from_dict(record)


def _num(value: float | None) -> float:
    """JSON null (how NaN is stored) back to NaN."""
    return math.nan if value is None else float(value)


def _fmt(value: float) -> str:
    return "-" if value is None or not np.isfinite(value) else f"{value:.6g}"


def _jsonable(obj: Any) -> Any:
    """Plain Python containers and floats (NaN/inf become None) so json.dumps accepts it."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, bool | np.bool_):
        return bool(obj)
    if isinstance(obj, int | np.integer):
        return int(obj)
    if isinstance(obj, float | np.floating):
        return float(obj) if math.isfinite(obj) else None
    return obj
