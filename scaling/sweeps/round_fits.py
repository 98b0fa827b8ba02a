"""Each adaptive round's loss-law fit, kept in the run log's `fits` table.

A round is planned on the law fitted to the runs of the rounds before it
(scaling.sweeps.adaptive.fit_law: a grid fit and nested backtests, seconds each). A replay
(`sweep status`, `sweep suggest`, each restart of `sweep run`) would fit every round again,
minutes for a long sweep; instead the coordinator stores each fit, keyed by the runs it came
from, and a replay reads it back. A round is planned on its fit as stored: theta, the run
noise and kappa round-trip JSON exactly, so a replay on another machine, where an
ill-conditioned fit can land elsewhere, still plans the same rounds. A record this release
cannot read is fitted again.
"""

from __future__ import annotations

import json
from typing import Any

import duckdb
import pandas as pd

from fits.machine import computed_on
from scaling.sweeps.adaptive import LEVEL, LawState, fit_law
from store.fit_log import runs_fingerprint, save_fit, sweep_fits


class RoundFits:
    """The loss-law fits of one adaptive sweep's rounds, by the runs each was fitted on."""

    def __init__(self, sweep: str, law: str, level: float = LEVEL) -> None:
        self.sweep, self.law, self.level = sweep, law, level
        self._states: dict[str, LawState] = {}
        self._unsaved: dict[str, tuple[int, dict[str, Any]]] = {}  # key -> (runs, record)

    def fit(self, runs: pd.DataFrame) -> LawState:
        """The law on runs (N, D, loss): stored or fitted before, else fitted now."""
        key = runs_key(runs)
        if key not in self._states:
            record = fit_law(runs, self.law, self.level).to_record()
            self._states[key] = LawState.from_record(record)  # as a replay will read it
            self._unsaved[key] = (len(runs), record)
        return self._states[key]

    def recall(self, con: duckdb.DuckDBPyConnection) -> None:
        """Read this sweep's stored fits (of this law and level)."""
        for selection, record in sweep_fits(con, self.sweep):
            key = str(selection.get("runs"))
            if key in self._states or selection != self._selection(key, selection.get("n_runs")):
                continue
            try:
                self._states[key] = LawState.from_record(record)
            except (KeyError, TypeError, ValueError):  # another release's record: fit again
                continue

    @property
    def unsaved(self) -> int:
        """How many fits were made since the last `remember`."""
        return len(self._unsaved)

    def remember(self, con: duckdb.DuckDBPyConnection) -> None:
        """Store the fits made since the last call."""
        machine = computed_on()
        for key, (n_runs, record) in list(self._unsaved.items()):
            save_fit(con, self.law, None, self._selection(key, n_runs), record, machine)
            del self._unsaved[key]

    def _selection(self, key: str, n_runs: int | None) -> dict[str, Any]:
        return {
            "adaptive_sweep": self.sweep,
            "law": self.law,
            "level": self.level,
            "n_runs": n_runs,
            "runs": key,
        }


def runs_key(runs: pd.DataFrame) -> str:
    """The store's hash of a set of runs (store.fit_log.runs_fingerprint), over each run's
    (N, D, loss) rather than its id: what the fit depends on, in any order."""
    rows = zip(runs.N.astype(float), runs.D.astype(float), runs.loss.astype(float), strict=True)
    return runs_fingerprint([json.dumps(row) for row in rows])
