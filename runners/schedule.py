"""Learning-rate schedules as a multiplier of the peak LR at each optimiser step."""

from __future__ import annotations

import math

FINAL_FRACTION = 0.1  # cosine and WSD end at 10% of the peak
WSD_DECAY_FRACTION = 0.2  # WSD decays linearly over the last 20% of steps


def lr_factor(step: int, steps: int, warmup: int, schedule: str) -> float:
    """Linear warmup over `warmup` steps, then cosine to 10% / WSD / constant."""
    if step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    if schedule == "cosine":
        progress = (step - warmup) / max(1, steps - 1 - warmup)
        return FINAL_FRACTION + (1 - FINAL_FRACTION) * 0.5 * (1 + math.cos(math.pi * progress))
    if schedule == "wsd":
        decay_start = max(warmup, int(steps * (1 - WSD_DECAY_FRACTION)))
        if step < decay_start:
            return 1.0
        progress = (step - decay_start) / max(1, steps - 1 - decay_start)
        return 1.0 - (1 - FINAL_FRACTION) * progress
    raise ValueError(f"unknown schedule {schedule!r}")
