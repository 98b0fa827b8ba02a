"""Learning-rate schedules as data: a string (or TOML table) in, the LR factor of every step out.

A schedule is a multiplier of the peak LR at each optimiser step. Its string form, which the
run log stores in `runs.schedule` and hashes into the run id (docs/schedules.md):

    constant
    cosine[:floor=F]                                   (floor 0.1 by default)
    linear[:floor=F]                                   (floor 0 by default: straight to zero)
    wsd[:cooldown=C | cooldown_steps=K][,shape=S][,floor=F]
        shape linear (default), exp, 1-sqrt or cosine; cooldown 0.2 of the steps, floor 0.1
    steps:f1=v1,f2=v2,...                              factor v_i from fraction f_i of the run
    points:f0=v0,f1=v1,...                             piecewise linear through (f_i, v_i)

Warmup comes first as it always has: steps 0 .. warmup-1 ramp linearly to the peak and
replace the schedule's own factor there. cosine and linear decay from the end of warmup to
the last step; the fractions of wsd, steps and points count the whole run, where the last
step is fraction 1 (fraction of step s is s / (steps - 1)).

`cosine`, `wsd` and `constant` mean what they meant before this syntax existed, and their
defaults are written without parameters, so that old runs keep their run ids.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from runners.errors import RunnerError

KINDS = ("constant", "cosine", "linear", "wsd", "steps", "points")
SHAPES = ("linear", "exp", "1-sqrt", "cosine")
DEFAULTS: dict[str, dict[str, Any]] = {
    "constant": {},
    "cosine": {"floor": 0.1},
    "linear": {"floor": 0.0},
    "wsd": {"cooldown": 0.2, "cooldown_steps": None, "shape": "linear", "floor": 0.1},
}
MAX_POINTS = 1000


@dataclass(frozen=True)
class Schedule:
    """One parsed schedule. `points` holds the (fraction, factor) pairs of steps and points."""

    kind: str
    floor: float = 0.0
    cooldown: float = 0.2
    cooldown_steps: int | None = None
    shape: str = "linear"
    points: tuple[tuple[float, float], ...] = ()

    def factor(self, step: int, steps: int, warmup: int) -> float:
        """The LR multiplier of optimiser step `step` (0-based) of a run of `steps` steps."""
        if step < warmup:
            return (step + 1) / warmup
        if self.kind == "constant":
            return 1.0
        if self.kind in ("cosine", "linear"):
            progress = (step - warmup) / max(1, steps - 1 - warmup)
            if self.kind == "linear":
                return 1.0 - (1 - self.floor) * progress
            return self.floor + (1 - self.floor) * 0.5 * (1 + math.cos(math.pi * progress))
        if self.kind == "wsd":
            decay_start = max(warmup, self.decay_start(steps))
            if step < decay_start:
                return 1.0
            progress = (step - decay_start) / max(1, steps - 1 - decay_start)
            return self._cooldown(progress)
        position = step / max(1, steps - 1)
        if self.kind == "steps":
            factor = 1.0
            for fraction, value in self.points:
                if position >= fraction:
                    factor = value
            return factor
        fractions, values = zip(*self.points, strict=True)
        return float(np.interp(position, fractions, values))

    def decay_start(self, steps: int) -> int:
        """wsd: the first step of the cooldown (before warmup is taken into account)."""
        if self.cooldown_steps is not None:
            return max(0, steps - self.cooldown_steps)
        return int(steps * (1 - self.cooldown))

    def _cooldown(self, progress: float) -> float:
        if self.shape == "linear":
            return 1.0 - (1 - self.floor) * progress
        if self.shape == "1-sqrt":
            return 1.0 - (1 - self.floor) * math.sqrt(progress)
        if self.shape == "cosine":
            return self.floor + (1 - self.floor) * 0.5 * (1 + math.cos(math.pi * progress))
        return self.floor**progress  # exp: geometric from 1 to the floor

    def factors(self, steps: int, warmup: int) -> np.ndarray:
        """The factor of every step, computed step by step as training does (bit-identical)."""
        return np.array([self.factor(s, steps, warmup) for s in range(steps)], dtype=np.float64)

    def __str__(self) -> str:
        """The canonical string: parameters at their defaults are left out."""
        if self.kind in ("steps", "points"):
            return f"{self.kind}:" + ",".join(f"{_num(f)}={_num(v)}" for f, v in self.points)
        given = {
            "cooldown": None if self.cooldown_steps is not None else self.cooldown,
            "cooldown_steps": self.cooldown_steps,
            "shape": self.shape,
            "floor": self.floor,
        }
        parts = [
            f"{k}={_num(v) if isinstance(v, float) else v}"
            for k, v in given.items()
            if k in DEFAULTS[self.kind] and v is not None and v != DEFAULTS[self.kind][k]
        ]
        return self.kind + (":" + ",".join(parts) if parts else "")


def _num(value: float) -> str:
    text = repr(float(value))
    return text[:-2] if text.endswith(".0") else text


def parse_schedule(text: str) -> Schedule:
    """A schedule from its string form; one RunnerError naming what is wrong."""
    if not isinstance(text, str):
        raise RunnerError(f"schedule: expected a string such as 'cosine:floor=0', got {text!r}")
    kind, _, rest = text.strip().partition(":")
    kind = kind.strip()
    if kind not in KINDS:
        raise RunnerError(
            f"unknown schedule {kind!r}: choose {', '.join(KINDS)} (docs/schedules.md)"
        )
    pairs: list[tuple[str, str]] = []
    for item in (p.strip() for p in rest.split(",")) if rest.strip() else ():
        key, eq, value = item.partition("=")
        if not eq or not key.strip() or not value.strip():
            raise RunnerError(f"schedule {text!r}: expected key=value, got {item!r}")
        pairs.append((key.strip(), value.strip()))
    if kind in ("steps", "points"):
        points = [(_real(k, text), _real(v, text)) for k, v in pairs]
        return _breakpoints(kind, points, text)
    return _keyed(kind, dict(_unique(pairs, text)), text)


def schedule_from_table(table: Mapping[str, Any], key: str = "schedule") -> Schedule:
    """A schedule from its TOML table form, e.g. { kind = "wsd", cooldown = 0.1 } or
    { kind = "points", points = [[0, 1], [0.9, 1], [1, 0]] }."""
    kind = table.get("kind")
    if kind not in KINDS:
        raise RunnerError(f"{key}.kind: expected one of {', '.join(KINDS)}, got {kind!r}")
    rest = {k: v for k, v in table.items() if k != "kind"}
    if kind in ("steps", "points"):
        unknown = set(rest) - {"points"}
        if unknown:
            raise RunnerError(f"{key}.{sorted(unknown)[0]}: unknown key (expected points)")
        raw = rest.get("points")
        if not isinstance(raw, list) or not all(isinstance(p, list) and len(p) == 2 for p in raw):
            raise RunnerError(f"{key}.points: expected a list of [fraction, factor] pairs")
        points = [(_real(f, key), _real(v, key)) for f, v in raw]
        return _breakpoints(kind, points, key)
    return _keyed(kind, {k: v if isinstance(v, str) else repr(v) for k, v in rest.items()}, key)


def canonical(schedule: str) -> str:
    """The run log's form of a schedule string (checked): `cosine:floor=0.1` is `cosine`."""
    return str(parse_schedule(schedule))


def _unique(pairs: Sequence[tuple[str, str]], text: str) -> list[tuple[str, str]]:
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            raise RunnerError(f"schedule {text!r}: {key} given twice")
        seen.add(key)
    return list(pairs)


def _keyed(kind: str, given: dict[str, str], where: str) -> Schedule:
    known = DEFAULTS[kind]
    for key in given:
        if key not in known:
            allowed = ", ".join(known) or "no parameters"
            raise RunnerError(f"schedule {where!r}: {kind} takes {allowed}, not {key!r}")
    values = {k: v for k, v in known.items() if v is not None}
    if "floor" in given:
        values["floor"] = _real(given["floor"], where)
        if not 0 <= values["floor"] <= 1:
            raise RunnerError(f"schedule {where!r}: floor must be in [0, 1], got {given['floor']}")
    if "cooldown" in given and "cooldown_steps" in given:
        raise RunnerError(f"schedule {where!r}: give cooldown or cooldown_steps, not both")
    if "cooldown" in given:
        values["cooldown"] = _real(given["cooldown"], where)
        if not 0 < values["cooldown"] <= 1:
            raise RunnerError(
                f"schedule {where!r}: cooldown is a fraction of the steps in (0, 1], "
                f"got {given['cooldown']} (cooldown_steps= takes a number of steps)"
            )
    if "cooldown_steps" in given:
        number = _real(given["cooldown_steps"], where)
        if number != int(number) or number < 1:
            raise RunnerError(
                f"schedule {where!r}: cooldown_steps must be a whole number >= 1, "
                f"got {given['cooldown_steps']}"
            )
        values["cooldown_steps"] = int(number)
    if "shape" in given:
        if given["shape"] not in SHAPES:
            raise RunnerError(
                f"schedule {where!r}: shape must be one of {', '.join(SHAPES)}, "
                f"got {given['shape']!r}"
            )
        values["shape"] = given["shape"]
    if values.get("shape") == "exp" and values["floor"] <= 0:
        raise RunnerError(f"schedule {where!r}: an exp cooldown needs floor > 0")
    return Schedule(kind, **values)


def _breakpoints(kind: str, points: list[tuple[float, float]], where: str) -> Schedule:
    if not points:
        example = "steps:0.5=0.3,0.8=0.1" if kind == "steps" else "points:0=1,0.9=1,1=0"
        raise RunnerError(f"schedule {where!r}: {kind} needs fraction=factor pairs, e.g. {example}")
    if len(points) > MAX_POINTS:
        raise RunnerError(f"schedule {where!r}: at most {MAX_POINTS} points")
    fractions = [f for f, _ in points]
    if any(b <= a for a, b in itertools.pairwise(fractions)):
        raise RunnerError(f"schedule {where!r}: fractions must increase, got {fractions}")
    if not all(0 <= f <= 1 for f in fractions):
        raise RunnerError(f"schedule {where!r}: fractions must be in [0, 1], got {fractions}")
    if any(v < 0 for _, v in points):
        raise RunnerError(f"schedule {where!r}: LR factors must be >= 0")
    if kind == "points" and (fractions[0] != 0 or fractions[-1] != 1):
        raise RunnerError(f"schedule {where!r}: points must start at fraction 0 and end at 1")
    return Schedule(kind, points=tuple(points))


def _real(value: Any, where: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise RunnerError(f"schedule {where!r}: expected a number, got {value!r}") from None
    if not math.isfinite(number):
        raise RunnerError(f"schedule {where!r}: expected a finite number, got {value!r}")
    return number
