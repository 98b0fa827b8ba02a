"""Quantiles of Student's t and the chi-squared distribution, from the inverses in
scipy.special that scipy.stats' `ppf` calls (the same numbers): importing scipy.stats costs
about 0.9 s of every command's start, and these are all the fits need of it (the normal's is
the standard library's `statistics.NormalDist().inv_cdf`)."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import special


def t_quantile(q: Any, df: Any) -> Any:
    """The q-quantile of Student's t with df degrees of freedom (scipy.stats.t.ppf)."""
    return special.stdtrit(df, q)


def chi2_quantile(q: Any, df: Any) -> Any:
    """The q-quantile of chi-squared with df degrees of freedom (scipy.stats.chi2.ppf)."""
    return 2.0 * special.gammaincinv(np.asarray(df) / 2.0, q)
