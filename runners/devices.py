"""Which device names a run may ask for, checked without importing torch unless CUDA is named
(a sweep's parent checks `--device` before it writes to the run log, and plans without torch)."""

from __future__ import annotations

import re

from runners.errors import RunnerError

DEVICES = re.compile(r"auto|cpu|cuda(?::(\d+))?")


def check_device(device: str) -> None:
    """Refuse a device this machine cannot train on: callers check before they write to the
    run log or hand out a run, so a typo costs one line and not a sweep of failed runs."""
    match = DEVICES.fullmatch(device)
    if match is None:
        raise RunnerError(f"--device {device!r}: expected auto, cpu, cuda or cuda:N")
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise RunnerError(f"--device {device} asked for, but torch sees no CUDA device")
        index = int(match.group(1) or 0)
        if index >= torch.cuda.device_count():
            raise RunnerError(
                f"--device {device}: torch sees {torch.cuda.device_count()} CUDA device(s)"
            )
