"""Numbers as people write them (7e9, 7B, 1.4T, 2M, 500k): one reader for flags and specs."""

from __future__ import annotations

import re

SUFFIXES = {"": 1.0, "k": 1e3, "m": 1e6, "b": 1e9, "g": 1e9, "t": 1e12}
NUMBER = re.compile(r"^\s*([+-]?(?:\d[\d_]*\.?\d*|\.\d+)(?:e[+-]?\d+)?)\s*([kmbgt]?)\s*$", re.I)


def parse_number(text: str) -> float:
    """Read 7e9, 7B, 1.4T, 2M, 500k, 2_000_000 as a float (ValueError if it is not one)."""
    match = NUMBER.match(str(text))
    if not match:
        raise ValueError(f"not a number: {text!r} (examples: 2e6, 7B, 1.4T, 500k)")
    return float(match.group(1).replace("_", "")) * SUFFIXES[match.group(2).lower()]
