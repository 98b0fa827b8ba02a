"""Sweeps: the coordinator that runs a spec's runs and records them, and the adaptive
planner that picks the next round from the runs done."""

# `sweep run` stopped by --max-runs/--time-budget with runs left: start it again. A driver
# that runs sweeps in a subprocess reads it (scaling.experiments).
EXIT_RUNS_LEFT = 3
