"""The Python prediction API: fit laws on small runs, answer questions about large ones."""

from scaling.errors import ScalingError
from scaling.results import Backtest, ComputeOptimal, Crossover, Prediction
from scaling.study import FittedLaw, Study

__all__ = [
    "Backtest",
    "ComputeOptimal",
    "Crossover",
    "FittedLaw",
    "Prediction",
    "ScalingError",
    "Study",
]
