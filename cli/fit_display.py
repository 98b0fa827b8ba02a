"""How `scaling fit` shows a fit: its JSON, and its text (the model, the law forms' table of
an averaged fit with its calibration, and a per-group table), one table a row at the width
there is."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from cli.common import console, print_frame, print_rows

if TYPE_CHECKING:
    import pandas as pd

    from scaling.results import FittedLaw


def fit_payload(fitted: FittedLaw) -> dict[str, Any]:
    """The JSON of a fit: parameter names as keys, then intervals and the rest."""
    model = fitted.model
    out: dict[str, Any] = dict(model.params_)
    out["intervals"] = {k: list(v) for k, v in model.intervals_.items()}
    out["stderr"] = dict(model.stderr_)
    out["level"] = model.level_
    out["n_points"] = model.n_points_
    out["objective"] = model.objective_
    for name in ("derived_", "derived_intervals_"):
        if hasattr(model, name):
            out[name.rstrip("_")] = getattr(model, name)
    if hasattr(model, "identification_problems"):
        out["problems"] = model.identification_problems()
    if hasattr(model, "cautions"):
        out["cautions"] = model.cautions()
    if fitted.table is not None:
        out["table"] = json.loads(fitted.table.to_json(orient="records"))
    if fitted.forms is not None:
        out["forms"] = json.loads(fitted.forms.to_json(orient="records"))
        out["calibration"] = None if fitted.calibration is None else fitted.calibration.to_dict()
    if fitted.residuals is not None:
        for key, runs in (("set_aside", fitted.residuals.aside_runs()),
                          ("kept_outliers", fitted.residuals.kept_outlier_runs())):  # fmt: skip
            if runs:
                out[key] = runs
    out.update({"law": fitted.law, "fit_id": fitted.fit_id, "n_runs": fitted.selection["n_runs"]})
    return out


def print_fit(fitted: FittedLaw, title: str | None, groups: bool) -> None:
    """The fit as text; its per-group table under `title` (the law's), or "per group" when
    `groups` asks for a table the law does not print by default."""
    console.print(f"{fitted.law} fit {fitted.fit_id} on {fitted.selection['n_runs']} runs")
    console.print(fitted.model.summary(), highlight=False)
    if fitted.forms is not None:
        from scaling.results import FORMS_HEADING

        console.print(FORMS_HEADING, highlight=False)
        print_forms(fitted.forms)
        for line in fitted.calibration_lines():
            console.print(line, highlight=False)
    table = fitted.table
    if table is None:
        return
    if "bracketed" in table.columns:
        said = (
            "budgets have their minimum in N bracketed by the sizes run"
            if fitted.law == "isoflop"
            else "groups have their LR optimum bracketed by the LRs run"
        )
        console.print(f"{int(table.bracketed.sum())} of {len(table)} {said}")
    if title or groups:
        # One line a row at the width there is: short headers, a column the same in every
        # row said once, and the note cut to what the numbers leave.
        shown = table.assign(note=table["note"].fillna("").astype(str))
        print_frame(shown, title=title or "per group", short=True, squeeze="note")


def print_forms(forms: pd.DataFrame, title: str | None = None) -> None:
    """The law forms' table (scaling.results.shown_forms); a note wraps inside its column."""
    from scaling.results import FORMS_TEXT, shown_forms

    shown = shown_forms(forms)
    numeric = [c not in FORMS_TEXT for c in shown.columns]
    print_rows(list(shown.columns), list(shown.itertuples(index=False)), title, numeric)
