"""Compute-optimal allocations when the runs cannot tell the offset E from zero.

When a law's offset E is unseen (`LossLaw.offset_unseen`: its interval reaches under 1% of
the loss at the largest run), fits with E near zero and with E large describe the runs about
equally well, yet put their exponents, and so the compute-optimal split, in different places
(issue 23 saw llama's allocation exponent move 0.76 -> 0.52 between E = 0.9 and E = 0). The
bootstrap does not show it: every resample lands near the same E. The allocation's interval
then also spans the two ends of E's profile-likelihood interval:

- profile fit at E: the law's other parameters by least squares on log loss with E held;
- E's interval at `level`: every E whose profile fit is not rejected against the best one,
  n log(RSS(E) / RSS_min) <= chi2_1(level) (Wilks; Gaussian errors in log loss);
- the answer's interval runs from the lowest to the highest of the bootstrap interval and
  the allocations of the profile fits at both ends.

Only forms whose offset is additive (L = E + terms; `LossLaw.additive_offset`) have such an
E; in an average each such form with an unseen offset is profiled, the others kept as fitted.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy.optimize import brentq, least_squares

from fits.averaging import AveragedLaw
from fits.laws import LossLaw
from fits.quantiles import chi2_quantile

NO_FIT = 1e3  # the log residual of a run the parameters cannot predict (loss not finite)


def profile_fit(
    law: LossLaw, runs: pd.DataFrame, E: float | None, start: np.ndarray | None = None
) -> tuple[np.ndarray, float]:
    """The law's parameters (a row in param_names order) minimising the sum of squared log
    residuals on runs with the offset held at E (None: fitted too), from `start` (the fit's
    own by default), and that sum. Parameters other than a held E stay positive."""
    names = law.param_names
    held = names.index("E")
    first = np.asarray(law._params_row() if start is None else start, dtype=float)
    free = np.ones(len(names), dtype=bool)
    if E is not None:
        free[held] = False
    cols = law.frame_columns(runs)
    log_loss = np.log(runs["loss"].to_numpy(dtype=float))

    def params(x: np.ndarray) -> np.ndarray:
        row = first.copy()
        row[free] = np.exp(x)
        if E is not None:
            row[held] = E
        return row

    def residuals(x: np.ndarray) -> np.ndarray:
        with np.errstate(all="ignore"):
            r = np.log(law.loss_of(params(x)[None, :], *cols)[0]) - log_loss
        return np.where(np.isfinite(r), r, NO_FIT)

    fit = least_squares(residuals, np.log(np.maximum(first[free], 1e-12)))
    return params(fit.x), 2.0 * float(fit.cost)


def offset_limits(
    law: LossLaw, runs: pd.DataFrame, level: float
) -> tuple[tuple[float, np.ndarray], tuple[float, np.ndarray]]:
    """(E, profile fit) at the low and the high end of E's profile-likelihood interval at
    `level` (module docstring). The low end is 0 when E = 0 is not rejected; the high end is
    under the smallest run's loss (no offset can exceed a loss the runs reached)."""
    best, rss_min = profile_fit(law, runs, None)
    e_hat = float(best[law.param_names.index("E")])
    threshold = float(chi2_quantile(level, 1))
    n = len(runs)

    def excess(E: float) -> float:
        _, rss = profile_fit(law, runs, E, best)
        return n * math.log(max(rss, rss_min) / rss_min) - threshold

    ceiling = float(runs["loss"].min()) * (1 - 1e-6)
    e_lo = 0.0 if excess(0.0) <= 0 else brentq(excess, 0.0, e_hat, xtol=1e-6 * ceiling)
    e_hi = ceiling if excess(ceiling) <= 0 else brentq(excess, e_hat, ceiling, xtol=1e-6 * ceiling)
    ends = [(e, profile_fit(law, runs, e, best)[0]) for e in (e_lo, e_hi)]
    return ends[0], ends[1]


def offset_span(
    model: LossLaw, runs: pd.DataFrame, C: np.ndarray, level: float
) -> tuple[np.ndarray, np.ndarray, dict[str, tuple[float, float]]]:
    """N_opt and D_opt at budgets C (arrays (2, m): the fits at E's low and high ends) and
    each profiled form's E interval; the forms not profiled (offset seen, or not additive)
    as fitted. The limits are empty when no form was profiled."""
    forms = model.forms_ if isinstance(model, AveragedLaw) else {model.law: model}
    low, high, limits = [], [], {}
    for name, form in forms.items():
        row = form._params_row()
        if form.additive_offset and form.offset_unseen():
            (e_lo, row_lo), (e_hi, row_hi) = offset_limits(form, runs, level)
            low.append(row_lo)
            high.append(row_hi)
            limits[name] = (e_lo, e_hi)
        else:
            low.append(row)
            high.append(row)
    rows = np.vstack([np.concatenate(low), np.concatenate(high)])
    n_opt, d_opt = model.allocation_of(rows, np.asarray(C, dtype=float).reshape(-1))
    return n_opt, d_opt, limits
