"""Cautions on repeated tokens: where a question, or the runs a law was fitted on, repeat
their unique tokens and the law does not price that, the answer says what it assumed."""

from __future__ import annotations

import numpy as np
import pandas as pd

from fits import LossLaw
from scaling.results import fmt

NEARLY_FRESH_EPOCHS = 4.0
"""Epochs of repeated data that are worth about as much as fresh tokens: Muennighoff et al.
(2023, "Scaling Data-Constrained Language Models") find up to 4 epochs change the loss
negligibly against unique data, and more cost ever more."""


def epochs_text(count: float) -> str:
    """Epochs as a person reads them: 5.2, 91, 119,470 (not 119470.0)."""
    return f"{count:.1f}" if count < 10 else f"{count:,.0f}"


def unpriced_repeats_note(model: object, runs: pd.DataFrame) -> str:
    """A caution on fresh tokens when some runs repeat their data more than
    NEARLY_FRESH_EPOCHS times and no form of the law prices repetition: such a law counts their
    repeated tokens as fresh, so it learns tokens to be worth less than fresh ones are and
    predicts too high a loss on fresh tokens."""
    if "U" not in runs or not isinstance(model, LossLaw) or model.prices_repeats():
        return ""
    with np.errstate(divide="ignore", invalid="ignore"):
        epochs = (runs.D / runs.U).to_numpy(dtype=float)
    many = np.nan_to_num(epochs, nan=0.0, posinf=0.0) > NEARLY_FRESH_EPOCHS
    if not many.any():
        return ""
    return (
        f"{many.sum()} of the {len(runs)} runs repeat their unique tokens more than "
        f"{NEARLY_FRESH_EPOCHS:.0f} times (up to {epochs_text(float(epochs[many].max()))} epochs) "
        "and no form of this law prices repetition (law data-constrained does, where it "
        "fits): it counts repeated tokens as fresh, so on fresh tokens the loss is likely "
        "lower than predicted"
    )


def repeats_note(name: str, tokens: float, runs: pd.DataFrame) -> str:
    """A caution when `tokens` exceed the one corpus every run trained on (known, equal U):
    the loss laws, asked without U, and every law's allocation assume unlimited unique data."""
    unique = runs.U
    if unique.isna().any() or unique.nunique() != 1:
        return ""
    corpus = float(unique.iloc[0])
    if tokens <= corpus:
        return ""
    return (
        f"{name} = {fmt(tokens)} tokens is {epochs_text(tokens / corpus)} epochs of the "
        f"{fmt(corpus)} unique tokens the runs trained on (the longest run: "
        f"{epochs_text(runs.D.max() / corpus)}); the "
        "law assumes unlimited unique data, and repeated tokens are worth less (predict loss "
        "--U with law data-constrained or overfitting, fitted on runs that repeat data, prices "
        "them)"
    )


def unread_repeats_note(model: object, D: float, U: float | None) -> str:
    """A caution when a question repeats its data (U < D) and no form of the law reads U: the
    answer is the loss on D fresh tokens, which repeated ones are worth less than."""
    if U is None or U >= D or not isinstance(model, LossLaw) or model.prices_repeats():
        return ""
    return (
        f"this law does not read U: the loss is that on {fmt(D)} fresh tokens, not on "
        f"{epochs_text(D / U)} epochs of {fmt(U)} unique ones, which are worth less (law "
        "data-constrained or overfitting, fitted on runs that repeat data, prices them)"
    )
