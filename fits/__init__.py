"""Scaling-law estimators: pure numerics on numpy arrays and pandas DataFrames.

Every estimator follows scikit-learn (`fit` returns self, learned values end in `_`) and
reports its uncertainty, prints a `summary()`, and round-trips through `to_dict()` /
`from_dict()`. Data that cannot identify a law raise `FitError` with the reason.
"""

from fits.base import Estimate, Fit, IntervalFit, from_dict
from fits.bootstrap import percentile_interval, resample_weights
from fits.chinchilla import (
    ChinchillaLaw,
    allocation_exponents,
    chinchilla_loss,
    compute_optimal_allocation,
    starting_grid,
)
from fits.chinchilla_shared import SharedChinchillaLaw
from fits.crossing import crossing_draws, frontier_crossing
from fits.data_constrained import DataConstrainedLaw
from fits.errors import FitError
from fits.farseer import FarseerLaw
from fits.hparams import (
    LogLinearLaw,
    batch_size_law,
    bjorck_lr,
    fit_per_group,
    near_optimal_runs,
    porian_lr,
    step_law_lr,
)
from fits.isoflop import EnvelopeFit, IsoFLOPFit
from fits.kaplan import KaplanLaw
from fits.laws import LOSS_LAWS, LossLaw
from fits.lbfgs import BatchResult, minimize_batched
from fits.lr import LROptima, optimal_lr
from fits.overfitting import OverfittingLaw
from fits.power import PowerLaw, power_law
from fits.schedule import AnnealingLaw, MultiPowerLaw, ScheduleLaw

__all__ = [
    "LOSS_LAWS",
    "AnnealingLaw",
    "BatchResult",
    "ChinchillaLaw",
    "DataConstrainedLaw",
    "EnvelopeFit",
    "Estimate",
    "FarseerLaw",
    "Fit",
    "FitError",
    "IntervalFit",
    "IsoFLOPFit",
    "KaplanLaw",
    "LROptima",
    "LogLinearLaw",
    "LossLaw",
    "MultiPowerLaw",
    "OverfittingLaw",
    "PowerLaw",
    "ScheduleLaw",
    "SharedChinchillaLaw",
    "allocation_exponents",
    "batch_size_law",
    "bjorck_lr",
    "chinchilla_loss",
    "compute_optimal_allocation",
    "crossing_draws",
    "fit_per_group",
    "from_dict",
    "frontier_crossing",
    "minimize_batched",
    "near_optimal_runs",
    "optimal_lr",
    "percentile_interval",
    "porian_lr",
    "power_law",
    "resample_weights",
    "starting_grid",
    "step_law_lr",
]
