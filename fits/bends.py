"""Do the runs bend along D where no registered loss form can follow?

At fixed N every registered form's loss falls ever slower in log D on fresh tokens (each form
fitted on our llama runs is checked in tests/test_architecture_results.py): its drop per
decade of tokens shrinks as the tokens grow. Small runs need not: a large model on few tokens
can fall slowly and then faster (our byte-level IsoFLOP runs, docs/laws.md *Why it
under-covers*). A form fitted across such a bend extrapolates it wrongly, and the
calibration's assumption (the error per decade seen inside the runs holds beyond them)
breaks, so the intervals are likely too narrow.

The check: per model size with three or more token counts, the rise of the (replicate-mean)
loss's drop per decade from one step to the next, in units of its SD; the SD from the runs'
own replicates (runs at the same N, D and U, e.g. seeds), pooled. Under noise alone each
ratio is t-distributed with the replicates' degrees of freedom; the runs are flagged when any
ratio exceeds the one-sided Bonferroni threshold for ALPHA over all the ratios tested, so noise
alone flags them at most ALPHA of the time. Without replicates the noise is not measured and
nothing is checked.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from fits.quantiles import t_quantile

ALPHA = 0.01  # family-wise false-alarm rate of the check under noise alone
MIN_DOF = 3  # replicate degrees of freedom below which the noise is not measured


def replicate_sd(runs: pd.DataFrame) -> tuple[float, int] | None:
    """(pooled SD of the loss among runs at the same N, D and U, its degrees of freedom), or
    None with fewer than MIN_DOF degrees of freedom or no spread. Rows equal in loss too are
    one run listed twice, not replicates."""
    keys = [c for c in ("N", "D", "U") if c in runs]
    runs = runs.drop_duplicates(subset=[*keys, "loss"])
    groups = runs.groupby(keys, dropna=False).loss
    dof = int((groups.size() - 1).sum())
    squares = float((runs.loss - groups.transform("mean")).pow(2).sum())
    if dof < MIN_DOF or squares == 0:
        return None
    return float(np.sqrt(squares / dof)), dof


def token_bends(runs: pd.DataFrame, sd: float) -> pd.DataFrame:
    """Per size (N, and U where given) with three or more token counts: max_rise_sd, the
    largest rise (in SDs) of the mean loss's drop per decade of D from one step to the next,
    and rises, how many were tested. The SD of a rise (linear in three mean losses) is from
    sd and each mean's count."""
    size = [c for c in ("N", "U") if c in runs]
    means = runs.groupby([*size, "D"], dropna=False).loss.agg(["mean", "size"])
    rows = []
    for (n, *_), group in means.groupby(level=size, dropna=False):
        if len(group) < 3:
            continue
        tokens = group.index.get_level_values("D").to_numpy(dtype=float)
        rises = drop_rises(tokens, group["mean"].to_numpy(), group["size"].to_numpy(), sd)
        rows.append({"N": n, "max_rise_sd": float(rises.max()), "rises": len(rises)})
    return pd.DataFrame(rows, columns=["N", "max_rise_sd", "rises"])


def drop_rises(tokens: np.ndarray, loss: np.ndarray, count: np.ndarray, sd: float) -> np.ndarray:
    """Each rise of the mean loss's drop per decade of tokens from one step to the next, in SDs
    of that rise: mean losses `loss` of `count` runs each at increasing `tokens`, one run's SD
    `sd`. A rise is linear in three mean losses, so its SD follows from theirs."""
    var = sd**2 / np.asarray(count, dtype=float)
    step = np.diff(np.log10(np.asarray(tokens, dtype=float)))
    rise = np.diff(-np.diff(loss) / step)
    rise_sd = np.sqrt(var[2:] / step[1:] ** 2 + var[:-2] / step[:-1] ** 2
                      + var[1:-1] * (1 / step[1:] + 1 / step[:-1]) ** 2)  # fmt: skip
    return rise / rise_sd


def bend_caution(runs: pd.DataFrame) -> str | None:
    """One line when the runs (N, D, loss; U optional) bend along D beyond their replicates'
    noise (module docstring), None when they do not or the noise is not measured."""
    runs = runs.drop_duplicates(subset=[c for c in ("N", "D", "U", "loss") if c in runs])
    noise = replicate_sd(runs)
    if noise is None:
        return None
    sd, dof = noise
    sizes = token_bends(runs, sd)
    if sizes.empty:
        return None
    threshold = float(t_quantile(1 - ALPHA / sizes.rises.sum(), dof))
    bent = sizes[sizes.max_rise_sd > threshold]
    if bent.empty:
        return None
    listed = ", ".join(f"N = {r.N:.3g} ({r.max_rise_sd:.1f} SDs)" for r in bent.itertuples())
    return (
        f"the loss falls faster per decade of tokens at more tokens than at fewer, beyond the "
        f"runs' replicate noise (SD {sd:.3g}; threshold {threshold:.1f} SDs), at {listed}: no "
        "law form bends that way, so predictions beyond these runs are likely biased and "
        "their intervals too narrow"
    )
