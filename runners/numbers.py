"""Numbers as people write them (7e9, 7B, 1.4T, 2M, 500k): one reader for flags and specs."""

from __future__ import annotations

import math
import re

SUFFIXES = {"": 1.0, "k": 1e3, "m": 1e6, "b": 1e9, "g": 1e9, "t": 1e12}
NUMBER = re.compile(r"^\s*([+-]?(?:\d[\d_]*\.?\d*|\.\d+)(?:e[+-]?\d+)?)\s*([kmbgt]?)\s*$", re.I)


def parse_number(text: str) -> float:
    """Read 7e9, 7B, 1.4T, 2M, 500k, 2_000_000 as a float (ValueError if it is not one).

    A number beyond a float (1e400) or a nonzero one below its smallest (1e-400) is an
    error, not inf or 0: either would answer a different question than the one written."""
    match = NUMBER.match(str(text))
    if not match:
        raise ValueError(f"not a number: {text!r} (examples: 2e6, 7B, 1.4T, 500k)")
    literal = match.group(1).replace("_", "")
    value = float(literal) * SUFFIXES[match.group(2).lower()]
    if not math.isfinite(value):
        raise ValueError(f"{text.strip()!r} is too large for a number (at most about 1.8e308)")
    if value == 0 and any(digit in "123456789" for digit in literal.lower().split("e")[0]):
        raise ValueError(f"{text.strip()!r} is too small for a number (at least about 5e-324)")
    return value
