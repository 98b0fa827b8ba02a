"""Input checks shared by the estimators, each raising FitError with a message a user can act on."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from fits.errors import FitError

_MAX_ROWS_SHOWN = 5


def _row_labels(values: object, bad: np.ndarray) -> str:
    """Name offending rows by their pandas index label when there is one, else by position."""
    where = np.flatnonzero(bad)
    if isinstance(values, pd.Series):
        labels = [str(v) for v in values.index[where[:_MAX_ROWS_SHOWN]]]
    else:
        labels = [str(i) for i in where[:_MAX_ROWS_SHOWN]]
    more = f" and {where.size - _MAX_ROWS_SHOWN} more" if where.size > _MAX_ROWS_SHOWN else ""
    noun = "row" if where.size == 1 else "rows"
    return f"{noun} {', '.join(labels)}{more}"


def as_float_array(values: object, name: str) -> np.ndarray:
    """A 1-D float array, or FitError when the values are not numbers."""
    try:
        arr = np.asarray(values, dtype=float)
    except (TypeError, ValueError) as exc:
        raise FitError(f"{name} must be numeric: {exc}") from None
    if arr.ndim != 1:
        raise FitError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if arr.size == 0:
        raise FitError(f"no data: {name} is empty")
    return arr


def positive(values: object, name: str) -> np.ndarray:
    """Values that are finite and > 0 (they enter logarithms), else FitError naming the rows."""
    arr = as_float_array(values, name)
    if np.isnan(arr).all():  # a column the runs never gave: naming every row says less
        raise FitError(f"no {name} in any of the {arr.size} rows: the runs do not give it")
    bad = ~np.isfinite(arr) | (arr <= 0)
    if bad.any():
        raise FitError(f"non-positive or NaN values in {name} ({_row_labels(values, bad)})")
    return arr


def finite(values: object, name: str) -> np.ndarray:
    """Values that are finite (NaN and inf rejected), else FitError naming the rows."""
    arr = as_float_array(values, name)
    bad = ~np.isfinite(arr)
    if bad.any():
        raise FitError(f"NaN or infinite values in {name} ({_row_labels(values, bad)})")
    return arr


def same_length(**arrays: np.ndarray) -> int:
    """The common length of the arrays, or FitError listing the lengths."""
    lengths = {name: len(a) for name, a in arrays.items()}
    if len(set(lengths.values())) > 1:
        shown = ", ".join(f"{k}={v}" for k, v in lengths.items())
        raise FitError(f"inputs differ in length: {shown}")
    return next(iter(lengths.values()))


def distinct(values: np.ndarray, minimum: int, what: str, name: str) -> int:
    """Require `minimum` distinct values; one value is reported as 'no spread in <name>'."""
    n = np.unique(values).size
    if n == 1 and minimum > 1:
        raise FitError(f"no spread in {name}: every value is {values[0]:g}")
    if n < minimum:
        raise FitError(f"need at least {minimum} distinct {what}, found {n}")
    return n


def at_least(n: int, minimum: int, what: str) -> None:
    """Require a count, e.g. enough points to leave residual degrees of freedom."""
    if n < minimum:
        raise FitError(f"need at least {minimum} {what}, found {n}")


def columns(frame: pd.DataFrame, required: Iterable[str]) -> None:
    """Require DataFrame columns, naming the missing ones and what is there."""
    if not isinstance(frame, pd.DataFrame):
        raise FitError(f"expected a pandas DataFrame, got {type(frame).__name__}")
    missing = [c for c in required if c not in frame.columns]
    if missing:
        have = ", ".join(map(str, frame.columns))
        raise FitError(f"missing column(s) {', '.join(map(repr, missing))} (have: {have})")


def level(value: float) -> float:
    """A confidence level strictly between 0 and 1."""
    if not 0.0 < float(value) < 1.0:
        raise ValueError(f"level must be between 0 and 1 (exclusive), got {value}")
    return float(value)
