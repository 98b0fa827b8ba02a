"""Sweep specs: TOML in, a checked `SweepSpec` out, or one RunnerError naming the bad key.

A spec names the sweep, fixes settings shared by every run, lists axes to cross and picks a
design (see runners.sweeps.designs for what each design makes of them):

    name = "lr-scan"
    [fixed]                 # any ModelConfig / TrainConfig field, one value each
    seq_len = 64
    [axes]                  # lists of values to cross (a single value is a list of one)
    size = [{ d_model = 32, n_layers = 1, n_heads = 2 }, "small"]
    lr = { logspace = [1e-3, 3e-2, 4] }
    [design]
    kind = "lr_scan"        # grid | isoflop | lr_scan | adaptive (see _parse_adaptive)
    refine = true

Every check happens here or in the designs, before anything is trained, so that a typo
costs one line of error and not a night of runs.
"""

from __future__ import annotations

import math
import stat
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from runners.config import (
    ARCHS,
    PARAMETRIZATIONS,
    PRECISIONS,
    ModelConfig,
    TrainConfig,
    setting_problem,
)
from runners.errors import RunnerError
from runners.numbers import parse_number
from runners.schedule import canonical, schedule_from_table

AXES = (
    "arch", "size", "tokens", "lr", "batch_size", "seed", "parametrization", "schedule",
    "precision",
)  # fmt: skip
DESIGNS = ("grid", "isoflop", "lr_scan", "adaptive")
SHAPE = ("d_model", "n_layers", "n_heads")
MODEL_FIELDS = {f.name: f.type for f in fields(ModelConfig)}
TRAIN_FIELDS = {f.name: f.type for f in fields(TrainConfig)}
SETTINGS = {**MODEL_FIELDS, **TRAIN_FIELDS}
CHOICES = {
    "arch": ARCHS,
    "parametrization": PARAMETRIZATIONS,
    "precision": PRECISIONS,
}
MAX_LOGSPACE = 1000
MAX_RUNS = 100_000
MAX_NUMBER = 1e300  # products of settings (6 N D) stay finite below it
MAX_SPEC_BYTES = 1 << 20  # a spec is a page of TOML; a bigger file is the wrong file


@dataclass(frozen=True)
class Size:
    """One entry of the size axis: a named size of the arch ladder or an explicit shape."""

    name: str | None = None
    d_model: int = 0
    n_layers: int = 0
    n_heads: int = 0

    @property
    def label(self) -> str:
        return self.name or f"d{self.d_model}-l{self.n_layers}-h{self.n_heads}"


@dataclass(frozen=True)
class Design:
    """How axes become runs: `budgets` (FLOPs) for isoflop; `refine`/`max_runs` for lr_scan."""

    kind: str = "grid"
    budgets: tuple[float, ...] = ()
    refine: bool = False
    max_runs: int | None = None
    adaptive: Adaptive | None = None
    branches: Branches | None = None


@dataclass(frozen=True)
class Branches:
    """[design.branches]: every run is a stable run; cooldowns of `cooldown_steps` leave it
    at each step of `at` (runners.branches), each a run of its own."""

    at: tuple[int, ...]
    cooldown_steps: int
    shape: str = "1-sqrt"
    floor: float = 0.0


@dataclass(frozen=True)
class SweepSpec:
    name: str
    fixed: Mapping[str, Any]
    axes: Mapping[str, tuple[Any, ...]]
    design: Design

    def where(self, setting: str) -> str:
        """The spec key a setting comes from, for error messages."""
        if setting in self.axes:
            return f"spec.axes.{setting}"
        if setting == "tokens" and self.design.kind == "isoflop":
            return "spec.design.budgets"
        return f"spec.fixed.{setting}"


def load_spec(path: str | Path) -> SweepSpec:
    """Read and check a spec file."""
    path = Path(path)
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):  # a FIFO blocks, /dev/zero never ends
            raise RunnerError(f"spec {path} is not a regular file")
        if info.st_size > MAX_SPEC_BYTES:
            raise RunnerError(f"spec {path} is {info.st_size:,} bytes: not a sweep spec")
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RunnerError(f"spec file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RunnerError(f"cannot read spec {path}: {exc}") from exc
    return loads_spec(text)


def loads_spec(text: str) -> SweepSpec:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RunnerError(f"spec: not valid TOML: {exc}") from exc
    except RecursionError:
        raise RunnerError("spec: values nested too deep to be a sweep spec") from None
    return parse_spec(data)


def parse_spec(data: Any) -> SweepSpec:
    """Check a spec given as the dict TOML produces."""
    table = _table(data, "spec")
    _known(table, ("name", "fixed", "axes", "design"), "spec")
    name = table.get("name")
    if not isinstance(name, str) or not name.strip():
        raise RunnerError(f"spec.name: give the sweep a non-empty name, got {name!r}")
    axes = _parse_axes(_table(table.get("axes", {}), "spec.axes"))
    fixed = _parse_fixed(_table(table.get("fixed", {}), "spec.fixed"), axes)
    design = _parse_design(table.get("design", "grid"), axes, fixed)
    spec = SweepSpec(name.strip(), fixed, axes, design)
    n_runs = math.prod(len(v) for v in axes.values()) * max(1, len(design.budgets))
    if n_runs > MAX_RUNS:
        raise RunnerError(f"spec.axes: {n_runs:,} runs, more than {MAX_RUNS:,}: split the sweep")
    return spec


def _table(value: Any, key: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise RunnerError(f"{key}: expected a table, got {_kind(value)}")
    for k in value:
        if not isinstance(k, str):
            raise RunnerError(f"{key}: keys must be strings, got {k!r}")
    return value


def _known(table: Mapping[str, Any], known: tuple[str, ...] | Mapping[str, Any], key: str) -> None:
    for k in table:
        if k not in known:
            raise RunnerError(f"{key}.{k}: unknown key (expected one of {', '.join(known)})")


def _kind(value: Any) -> str:
    return {dict: "a table", list: "a list", bool: "a boolean", str: "a string"}.get(
        type(value), type(value).__name__
    )


def _parse_fixed(table: dict[str, Any], axes: Mapping[str, Any]) -> dict[str, Any]:
    _known(table, SETTINGS, "spec.fixed")
    fixed = {}
    for k, value in table.items():
        key = f"spec.fixed.{k}"
        if k in axes:
            raise RunnerError(f"{key}: also given under [axes]; set it in one place")
        if "size" in axes and k in SHAPE:
            raise RunnerError(f"{key}: the size axis sets the shape; remove it from [fixed]")
        fixed[k] = _setting(k, value, key)
    return fixed


def _parse_axes(table: dict[str, Any]) -> dict[str, tuple[Any, ...]]:
    _known(table, AXES, "spec.axes")
    axes = {}
    for k in AXES:
        if k not in table:
            continue
        key = f"spec.axes.{k}"
        raw = table[k]
        if isinstance(raw, dict) and k in ("lr", "tokens"):
            values = _logspace(raw, key)
            if k == "tokens":
                values = [round(v) for v in values]
        else:
            values = raw if isinstance(raw, list) else [raw]
        if not values:
            raise RunnerError(f"{key}: empty list (give at least one value)")
        if k == "size":
            axes[k] = tuple(_size(v, f"{key}[{i}]") for i, v in enumerate(values))
        else:
            axes[k] = tuple(_setting(k, v, key) for v in values)
    return axes


def _logspace(table: dict[str, Any], key: str) -> list[float]:
    """{logspace = [lo, hi, n]}: n values spaced evenly in log from lo to hi, both included."""
    _known(table, ("logspace",), key)
    spec = table.get("logspace")
    if not isinstance(spec, list) or len(spec) != 3:
        raise RunnerError(f"{key}.logspace: expected [lo, hi, n], got {spec!r}")
    lo = _real(spec[0], f"{key}.logspace[0]")
    hi = _real(spec[1], f"{key}.logspace[1]")
    n = _integer(spec[2], f"{key}.logspace[2]")
    if lo <= 0 or hi < lo:
        raise RunnerError(f"{key}.logspace: need 0 < lo <= hi, got lo={lo:g} hi={hi:g}")
    if not 1 <= n <= MAX_LOGSPACE:
        raise RunnerError(f"{key}.logspace: n must be between 1 and {MAX_LOGSPACE}, got {n}")
    if n == 1:
        return [lo]
    ratio = (math.log(hi) - math.log(lo)) / (n - 1)
    return [lo * math.exp(ratio * i) for i in range(n - 1)] + [hi]


def _size(value: Any, key: str) -> Size:
    if isinstance(value, str):
        if not value.strip():
            raise RunnerError(f"{key}: empty size name")
        return Size(name=value.strip())
    if not isinstance(value, dict):
        raise RunnerError(
            f"{key}: expected a size name or a table of {', '.join(SHAPE)}, got {_kind(value)}"
        )
    _known(value, SHAPE, key)
    missing = [k for k in SHAPE if k not in value]
    if missing:
        raise RunnerError(f"{key}: missing {', '.join(missing)}")
    shape = {k: _setting(k, value[k], f"{key}.{k}") for k in SHAPE}
    if shape["d_model"] % shape["n_heads"]:
        raise RunnerError(
            f"{key}: d_model {shape['d_model']} is not divisible by n_heads {shape['n_heads']}"
        )
    return Size(**shape)


def _setting(name: str, value: Any, key: str) -> Any:
    """One value of a RunConfig setting, typed from the config dataclasses and range-checked."""
    kind = SETTINGS[name]
    if name == "schedule":
        return _schedule(value, key)
    if name in CHOICES:
        if not isinstance(value, str) or value not in CHOICES[name]:
            raise RunnerError(f"{key}: expected one of {', '.join(CHOICES[name])}, got {value!r}")
        return value
    if kind == "str":
        if not isinstance(value, str) or not value:
            raise RunnerError(f"{key}: expected a non-empty string, got {_kind(value)}")
        return value
    if kind == "bool":
        if not isinstance(value, bool):
            raise RunnerError(f"{key}: expected true or false, got {_kind(value)}")
        return value
    number = _integer(value, key) if kind.startswith("int") else _real(value, key)
    problem = setting_problem(name, number)
    if problem:
        raise RunnerError(f"{key}: {problem}")
    return number


def _schedule(value: Any, key: str) -> str:
    """A schedule string ("wsd:cooldown=0.1") or table ({ kind = "wsd", cooldown = 0.1 }),
    kept as its canonical string (runners.schedule)."""
    if isinstance(value, dict):
        return str(schedule_from_table(value, key))
    if not isinstance(value, str):
        raise RunnerError(f"{key}: expected a schedule string or table, got {_kind(value)}")
    try:
        return canonical(value)
    except RunnerError as exc:
        raise RunnerError(f"{key}: {exc}") from None


def _integer(value: Any, key: str) -> int:
    """A whole number; floats such as 2e6 and strings such as "2M" count when they are whole."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    number = _real(value, key, "a whole number")
    if number != int(number):
        raise RunnerError(f"{key}: expected a whole number, got {value!r}")
    return int(number)


def _real(value: Any, key: str, what: str = "a number") -> float:
    """A finite number: a TOML int or float, or a string as the CLI reads it (3e-3, 2M, 7B)."""
    if isinstance(value, str):
        try:
            value = parse_number(value)
        except ValueError:
            raise RunnerError(f"{key}: expected {what} (2e6, 2M, 7B), got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RunnerError(f"{key}: expected {what}, got {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise RunnerError(f"{key}: expected a finite number, got {value!r}")
    if abs(number) >= MAX_NUMBER:
        raise RunnerError(f"{key}: {value!r} is too large (a setting is below {MAX_NUMBER:g})")
    return number


def _parse_design(raw: Any, axes: Mapping[str, Any], fixed: Mapping[str, Any]) -> Design:
    table = {"kind": raw} if isinstance(raw, str) else _table(raw, "spec.design")
    if table.get("kind") == "adaptive":
        return Design("adaptive", adaptive=_parse_adaptive(table, axes, fixed))
    _known(table, ("kind", "budgets", "refine", "max_runs", "branches"), "spec.design")
    kind = table.get("kind", "grid")
    if kind not in DESIGNS or not isinstance(kind, str):
        raise RunnerError(f"spec.design.kind: expected one of {', '.join(DESIGNS)}, got {kind!r}")
    budgets: tuple[float, ...] = ()
    if kind == "isoflop":
        budgets = _budgets(table.get("budgets"))
        for key, where in (("spec.axes.tokens", axes), ("spec.fixed.tokens", fixed)):
            if "tokens" in where:
                raise RunnerError(f"{key}: an isoflop design sets tokens from the budgets")
    elif "budgets" in table:
        raise RunnerError("spec.design.budgets: only an isoflop design takes budgets")
    refine = table.get("refine", False)
    if not isinstance(refine, bool):
        raise RunnerError(f"spec.design.refine: expected true or false, got {refine!r}")
    if refine and kind != "lr_scan":
        raise RunnerError("spec.design.refine: only an lr_scan design refines")
    if kind == "lr_scan" and "lr" not in axes:
        raise RunnerError("spec.axes.lr: an lr_scan design needs an lr axis")
    max_runs = table.get("max_runs")
    if max_runs is not None:
        if not refine:
            raise RunnerError("spec.design.max_runs: only applies with refine = true")
        max_runs = _integer(max_runs, "spec.design.max_runs")
        if max_runs < len(axes["lr"]):
            raise RunnerError(
                f"spec.design.max_runs: {max_runs} is fewer than the {len(axes['lr'])} "
                "LRs the scan starts with"
            )
    branches = None
    if "branches" in table:
        if kind != "grid":
            raise RunnerError("spec.design.branches: only a grid design branches its runs")
        branches = _branches(_table(table["branches"], "spec.design.branches"))
    return Design(kind, budgets, refine, max_runs, branches=branches)


def _branches(table: dict[str, Any]) -> Branches:
    """at = [s1, s2, ...] steps, cooldown_steps = c, shape and floor of the cooldowns."""
    key = "spec.design.branches"
    _known(table, ("at", "cooldown_steps", "shape", "floor"), key)
    at = table.get("at")
    if not isinstance(at, list) or not at:
        raise RunnerError(f"{key}.at: expected a non-empty list of steps, got {at!r}")
    steps = tuple(_integer(s, f"{key}.at") for s in at)
    if min(steps) < 1 or len(set(steps)) != len(steps):
        raise RunnerError(f"{key}.at: steps must be distinct and >= 1, got {list(steps)}")
    if "cooldown_steps" not in table:
        raise RunnerError(f"{key}.cooldown_steps: give each branch's cooldown in steps")
    cooldown = _integer(table["cooldown_steps"], f"{key}.cooldown_steps")
    if cooldown < 1:
        raise RunnerError(f"{key}.cooldown_steps: must be at least 1, got {cooldown}")
    shape = table.get("shape", "1-sqrt")
    floor = _real(table.get("floor", 0.0), f"{key}.floor")
    schedule = f"wsd:cooldown_steps={cooldown},shape={shape},floor={floor!r}"
    _schedule(schedule, key)  # shape and floor checked as a schedule would be
    return Branches(tuple(sorted(steps)), cooldown, shape, floor)


def _budgets(raw: Any) -> tuple[float, ...]:
    key = "spec.design.budgets"
    if raw is None:
        raise RunnerError(f"{key}: an isoflop design needs compute budgets (FLOPs per run)")
    values = _logspace(raw, key) if isinstance(raw, dict) else raw
    if not isinstance(values, list) or not values:
        raise RunnerError(f"{key}: expected a non-empty list of FLOPs, got {raw!r}")
    budgets = tuple(_real(v, key) for v in values)
    for b in budgets:
        if b <= 0:
            raise RunnerError(f"{key}: must be positive, got {b:g}")
    return budgets


# -- adaptive design (issue 14): the runs are chosen by scaling.sweeps.adaptive, round by round --
ADAPTIVE_KEYS = ("kind", "target", "law", "lr", "budget_flops", "budget_hours", "round_size",
                 "candidates")  # fmt: skip
ADAPTIVE_LAWS = ("chinchilla",)  # the forms the design criterion differentiates
MAX_BUDGET_HOURS = 24 * 365  # a year of wall time: beyond it a number is a typo
TARGET_KEYS = {"loss": ("ask", "N", "D"), "optimal": ("ask", "compute"), "lr": ("ask", "N", "D")}
# The least a target can ask: one parameter, one token, the FLOPs of both (6 N D).
TARGET_LEAST = {"N": (1.0, "one parameter"), "D": (1.0, "one token"), "compute": (6.0, "6 FLOPs")}
ADAPTIVE_LRS = ("fixed", "law")  # [fixed] lr for every run, or the sweep's own LR law


@dataclass(frozen=True)
class Adaptive:
    """The question, the law that answers it, the FLOPs to spend, and the runs one could do.

    target: {"ask": "loss" or "lr", "N": .., "D": ..} or {"ask": "optimal", "compute": ..}.
    lr: "fixed" ([fixed] lr for every run) or "law" (the LR law fitted on the sweep's own
    scans; [fixed] lr is the first guess). An lr target needs "law".
    budget_flops or budget_hours: one of them, the other None.
    """

    target: Mapping[str, Any]
    law: str
    lr: str
    budget_flops: float | None
    budget_hours: float | None
    round_size: int
    sizes: tuple[Size, ...]
    tokens: tuple[int, ...]

    @property
    def budget(self) -> float:
        """The budget in its unit: FLOPs, or seconds for budget_hours."""
        if self.budget_hours is not None:
            return self.budget_hours * 3600.0
        assert self.budget_flops is not None
        return self.budget_flops

    @property
    def in_seconds(self) -> bool:
        return self.budget_hours is not None


def _parse_adaptive(
    table: dict[str, Any], axes: Mapping[str, Any], fixed: Mapping[str, Any]
) -> Adaptive:
    """[design] kind = "adaptive": check every key before anything is trained."""
    key = "spec.design"
    _known(table, ADAPTIVE_KEYS, key)
    if axes:
        raise RunnerError(
            f"spec.axes.{next(iter(axes))}: an adaptive design takes its runs from "
            "design.candidates (sizes and tokens); set other settings in [fixed]"
        )
    for k in ("tokens", *SHAPE):
        if k in fixed:
            raise RunnerError(f"spec.fixed.{k}: an adaptive design sets it from its candidates")
    target = _target(table.get("target"))
    lr = table.get("lr", "law" if target["ask"] == "lr" else "fixed")
    if lr not in ADAPTIVE_LRS:
        raise RunnerError(f"{key}.lr: expected one of {', '.join(ADAPTIVE_LRS)}, got {lr!r}")
    if target["ask"] == "lr" and lr != "law":
        raise RunnerError(f'{key}.lr: an lr target scans its runs\' LRs: set lr = "law"')
    if "lr" not in fixed:
        why = "the first guess of the LR law" if lr == "law" else "the LR of its runs"
        raise RunnerError(f"spec.fixed.lr: an adaptive design needs {why} in [fixed]")
    given = [k for k in ("budget_flops", "budget_hours") if k in table]
    if len(given) != 1:
        why = "both given" if given else "an adaptive design needs a budget"
        raise RunnerError(f"{key}.budget_flops or budget_hours: give one ({why})")
    budget = _real(table[given[0]], f"{key}.{given[0]}")
    if budget <= 0:
        raise RunnerError(f"{key}.{given[0]}: must be positive, got {budget:g}")
    if given[0] == "budget_hours" and budget > MAX_BUDGET_HOURS:
        raise RunnerError(f"{key}.budget_hours: at most {MAX_BUDGET_HOURS:g} hours, got {budget:g}")
    flops, hours = (budget, None) if given[0] == "budget_flops" else (None, budget)
    law = table.get("law", "chinchilla")
    if law == "auto":  # what the planner called chinchilla before; the Study's auto averages
        raise RunnerError(
            f'{key}.law: "auto" is the average of every form, which an adaptive '
            'design cannot use: drop the key or write law = "chinchilla"'
        )
    if law not in ADAPTIVE_LAWS:
        raise RunnerError(f"{key}.law: expected one of {', '.join(ADAPTIVE_LAWS)}, got {law!r}")
    round_size = _integer(table.get("round_size", 4), f"{key}.round_size")
    if not 1 <= round_size <= 1000:
        raise RunnerError(f"{key}.round_size: must be between 1 and 1000, got {round_size}")
    sizes, tokens = _candidates(_table(table.get("candidates"), f"{key}.candidates"))
    return Adaptive(target, law, lr, flops, hours, round_size, sizes, tokens)


def _target(raw: Any) -> dict[str, Any]:
    key = "spec.design.target"
    if raw is None:
        raise RunnerError(f'{key}: give the question, e.g. {{ ask = "loss", N = 1e9, D = 2e10 }}')
    table = _table(raw, key)
    ask = table.get("ask")
    if not isinstance(ask, str) or ask not in TARGET_KEYS:
        raise RunnerError(f"{key}.ask: expected loss, optimal or lr, got {ask!r}")
    _known(table, TARGET_KEYS[ask], key)
    out: dict[str, Any] = {"ask": ask}
    for k in TARGET_KEYS[ask][1:]:
        if k not in table:
            raise RunnerError(f"{key}.{k}: a {ask} target needs {k}")
        out[k] = _real(table[k], f"{key}.{k}")
        least = TARGET_LEAST[k]
        if not (math.isfinite(out[k]) and out[k] >= least[0]):
            raise RunnerError(f"{key}.{k}: must be a finite number of at least {least[1]}, "
                              f"got {out[k]:g}")  # fmt: skip
    if "N" in out and not math.isfinite(6.0 * out["N"] * out["D"]):
        raise RunnerError(f"{key}: N = {out['N']:g} and D = {out['D']:g} need 6ND = inf FLOPs")
    return out


def _candidates(table: dict[str, Any]) -> tuple[tuple[Size, ...], tuple[int, ...]]:
    key = "spec.design.candidates"
    _known(table, ("size", "tokens"), key)
    for k in ("size", "tokens"):
        if k not in table:
            raise RunnerError(f"{key}.{k}: give the candidate {k}s")
    try:
        axes = _parse_axes({"size": table["size"], "tokens": table["tokens"]})
    except RunnerError as exc:  # name the key where the user wrote it
        raise RunnerError(str(exc).replace("spec.axes.", f"{key}.")) from None
    sizes, tokens = axes["size"], tuple(sorted(set(axes["tokens"])))
    if len(set(sizes)) < 3 or len(tokens) < 3:
        raise RunnerError(
            f"{key}: need at least 3 sizes and 3 token counts to fit the law, got "
            f"{len(set(sizes))} and {len(tokens)}"
        )
    if len(sizes) * len(tokens) > MAX_RUNS:
        raise RunnerError(f"{key}: more than {MAX_RUNS:,} candidate runs")
    return sizes, tokens
