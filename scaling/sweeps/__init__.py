"""Sweeps: the coordinator that runs a spec's runs and records them, and the adaptive
planner that picks the next round from the runs done."""
