"""fits.quantiles against scipy.stats' ppf, the reference it replaces at import time."""

from __future__ import annotations

import numpy as np
from scipy import stats

from fits.quantiles import chi2_quantile, t_quantile

LEVELS = np.array([1e-6, 0.005, 0.05, 0.5, 0.8, 0.9, 0.95, 0.975, 0.995, 1 - 1e-6])


def test_quantiles_are_scipy_stats_ppf():
    for df in (1, 2, 3, 7.5, 30, 1e4):
        np.testing.assert_allclose(t_quantile(LEVELS, df), stats.t.ppf(LEVELS, df), rtol=1e-12)
        np.testing.assert_allclose(chi2_quantile(LEVELS, df), stats.chi2.ppf(LEVELS, df),
                                   rtol=1e-12)  # fmt: skip


def test_known_values():
    """Printed tables: t 12.7062 (97.5%, 1 df), chi-squared 3.841459 (95%, 1 df)."""
    assert abs(t_quantile(0.975, 1) - 12.7062) < 1e-4
    assert abs(chi2_quantile(0.95, 1) - 3.841459) < 1e-6
    assert t_quantile(0.5, 5) == 0.0
