"""The loss-law forms that `auto` chooses among, behind the four calls selection needs.

Fit on a frame of runs, predict a frame, draw losses for intervals, refit fast on other runs.
Each call is one line per form here; once every form is a LossLaw in the registry, each
becomes one line over LOSS_LAWS.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from fits.chinchilla import ChinchillaLaw, chinchilla_loss, quick_refit_chinchilla

FORMS: dict[str, type[ChinchillaLaw]] = {"chinchilla": ChinchillaLaw}


def fit_form(name: str, runs: pd.DataFrame, **config: Any) -> ChinchillaLaw:
    """The form `name` fitted on runs (columns N, D, loss) with estimator config."""
    return FORMS[name](**config).fit(runs.N, runs.D, runs.loss)


def predict_frame(model: ChinchillaLaw, runs: pd.DataFrame) -> np.ndarray:
    """Predicted loss of each run."""
    return model.predict(runs.N.to_numpy(float), runs.D.to_numpy(float))


def loss_draws(model: ChinchillaLaw, runs: pd.DataFrame) -> np.ndarray:
    """(n_draws, n_runs) losses from the bootstrap draws of the law."""
    return chinchilla_loss(model._draws(), runs.N.to_numpy(float), runs.D.to_numpy(float))


def quick_refit(model: ChinchillaLaw, runs: pd.DataFrame) -> ChinchillaLaw:
    """A point fit on other runs, warm-started from `model`: the nested backtests' refit."""
    return quick_refit_chinchilla(model, runs.N, runs.D, runs.loss)
