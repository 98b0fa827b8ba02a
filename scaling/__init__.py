"""The Python prediction API: fit laws on small runs, answer questions about large ones.

The names below load on first use (PEP 562), so that `scaling.errors` or `scaling.datasets`
can be imported without the fitting stack: the CLI starts in a fraction of a second.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

WHERE = {
    "Backtest": "scaling.results",
    "ComputeOptimal": "scaling.results",
    "Crossover": "scaling.results",
    "FittedLaw": "scaling.results",
    "Prediction": "scaling.results",
    "ScalingError": "scaling.errors",
    "Study": "scaling.study",
}
__all__ = sorted(WHERE)


def __getattr__(name: str) -> Any:
    if name not in WHERE:
        raise AttributeError(f"module 'scaling' has no attribute {name!r}")
    return getattr(import_module(WHERE[name]), name)
