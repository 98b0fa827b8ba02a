"""Designs: how a spec's axes become run configs.

- grid: the cross product of the axes.
- isoflop: the cross product without tokens, once per compute budget C, with
  tokens = C / (exact training FLOPs per token of that model, runners.accounting.count),
  so that every run of a budget spends C FLOPs to within one sequence.
- lr_scan: the grid, read as groups that differ only in LR. With refine, each group whose
  best LR is the smallest or largest sampled gets one more LR beyond it (the scan's own
  spacing), until the best LR has a worse neighbour on both sides or the group holds
  `max_runs` runs. Diverged and failed runs count as worse than any finished one.

Plans are pure functions of the spec and of the losses seen so far, so a restarted sweep
recomputes exactly the runs it planned before and their run ids find the finished ones.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from runners.accounting import Counts, count
from runners.branches import Cooldown, branch_plan
from runners.checkpoint import Branch
from runners.config import MAX_TOKENS, ModelConfig, RunConfig, TrainConfig, setting_problem
from runners.corpus import load_corpus
from runners.errors import RunnerError
from runners.sweeps.spec import MODEL_FIELDS, SHAPE, Branches, Size, SweepSpec

DEFAULT_EXTRA_RUNS = 4  # refine adds at most this many LRs per group unless max_runs says

# The final validation loss of a finished run (inf if it diverged or failed), None while
# it has not finished.
LossOf = Callable[[RunConfig], float | None]


@dataclass(frozen=True)
class Timing:
    """How long a finished run took: wall seconds in all, training tokens per second."""

    wall_s: float
    tokens_per_s: float


# A finished run's Timing, None while it runs or when it recorded none (it failed).
TimingOf = Callable[[RunConfig], Timing | None]


class Planner:
    """The runs of a spec: the initial design, then lr_scan refinements as losses come in,
    and the branches of each stable run once it has finished ([design.branches])."""

    def __init__(self, spec: SweepSpec, device: str = "auto") -> None:
        self.spec = spec
        self.initial = initial_configs(spec, device)
        self._branches: dict[RunConfig, list[tuple[RunConfig, Branch]]] = {}
        self._parents: dict[RunConfig, tuple[RunConfig, int]] = {}
        if spec.design.branches is not None:
            self._plan_branches(spec.design.branches, device)

    def __call__(
        self, loss_of: LossOf | None = None, timing_of: TimingOf | None = None
    ) -> list[RunConfig]:
        plan = list(self.initial)
        if self.spec.design.refine and loss_of is not None:
            plan += refinements(self.initial, loss_of, self.spec.design.max_runs)
        for parent, branches in self._branches.items():
            loss = loss_of(parent) if loss_of is not None else None
            if loss is not None and math.isfinite(loss):  # the stable run finished well
                plan += [config for config, _ in branches]
        return plan

    def branches_of(self, config: RunConfig) -> list[Branch]:
        """The checkpoints a stable run writes for its branches."""
        return [branch for _, branch in self._branches.get(config, [])]

    def parent_of(self, config: RunConfig) -> tuple[RunConfig, int] | None:
        """A branch's stable run and the step it leaves it at; None for other runs."""
        return self._parents.get(config)

    def _plan_branches(self, spec: Branches, device: str) -> None:
        cooldown = Cooldown(spec.cooldown_steps, spec.shape, spec.floor)
        for parent in self.initial:
            sha256 = load_corpus(parent.train.corpus).sha256
            try:
                branches = branch_plan(parent, spec.at, cooldown, sha256, device)
            except RunnerError as exc:
                raise RunnerError(f"spec.design.branches: {exc}") from None
            self._branches[parent] = branches
            for config, branch in branches:
                self._parents[config] = (parent, branch.step)


def initial_configs(spec: SweepSpec, device: str = "auto") -> list[RunConfig]:
    """The design's runs before any result is known, resolved for `device` (precision auto),
    without duplicates."""
    keys = list(spec.axes)
    configs = []
    for combo in itertools.product(*(spec.axes[k] for k in keys)):
        values = dict(zip(keys, combo, strict=True))
        for budget in spec.design.budgets or (None,):
            configs.append(_config(spec, values, budget, device))
    return list(dict.fromkeys(configs))


def _config(
    spec: SweepSpec, values: dict[str, Any], budget: float | None, device: str
) -> RunConfig:
    settings = {**spec.fixed, **values}
    size = settings.pop("size", None)
    model_kw = {k: v for k, v in settings.items() if k in MODEL_FIELDS}
    train_kw = {k: v for k, v in settings.items() if k not in MODEL_FIELDS}
    label = " ".join(f"{k}={v.label if isinstance(v, Size) else v}" for k, v in values.items())
    if size is None:
        model = ModelConfig(**model_kw)
    elif size.name is not None:
        model = _named_size(size.name, model_kw)
    else:
        model = ModelConfig(**model_kw, **{k: getattr(size, k) for k in SHAPE})
    if budget is not None:
        per_token = _counts(model, spec).flops_per_token
        train_kw["tokens"] = min(round(budget / per_token), MAX_TOKENS + 1)
        label += f" budget={budget:.3g} ({per_token:,} FLOPs/token)"
    config = RunConfig(model, TrainConfig(**train_kw))
    where = spec.where("tokens")
    if config.train.tokens > MAX_TOKENS:
        raise RunnerError(f"{where}: {label}: {config.train.tokens:,} tokens is too many")
    if config.train.tokens < config.tokens_per_step:
        raise RunnerError(
            f"{where}: {label}: {config.train.tokens:,} tokens is less than one batch "
            f"({config.train.batch_size} x {model.seq_len} = {config.tokens_per_step:,} tokens)"
        )
    try:
        config = config.resolved(device)
    except RunnerError as exc:
        raise RunnerError(f"spec: {label}: {exc}") from None
    _counts(config.model, spec)
    return config


def _counts(model: ModelConfig, spec: SweepSpec) -> Counts:
    try:
        return count(model)
    except KeyError:
        raise RunnerError(
            f"{spec.where('arch')}: arch {model.arch!r} is not available in this install"
        ) from None


def _named_size(name: str, model_kw: dict[str, Any]) -> ModelConfig:
    """A named size of the arch's ladder (runners.sizes), with the spec's other model settings."""
    try:
        from runners.sizes import size_config
    except ImportError:
        raise RunnerError(
            f"spec.axes.size: named size {name!r} needs runners.sizes, which this install "
            "lacks; give d_model, n_layers and n_heads instead"
        ) from None
    arch = model_kw.get("arch", ModelConfig.arch)
    overrides = {k: v for k, v in model_kw.items() if k != "arch" and k not in SHAPE}
    try:
        return size_config(arch, name, **overrides)
    except (KeyError, ValueError, TypeError) as exc:
        raise RunnerError(f"spec.axes.size: {name!r} for arch {arch}: {exc}") from None


def refinements(
    initial: list[RunConfig], loss_of: LossOf, max_runs: int | None = None
) -> list[RunConfig]:
    """Extra LRs for each LR-scan group whose optimum is not yet bracketed.

    A group is the runs that differ only in LR. Its next LR is decided only once all its
    runs have finished, so a group adds at most one pending run at a time.
    """
    groups: dict[RunConfig, list[RunConfig]] = {}
    for config in initial:
        groups.setdefault(with_lr(config, 1.0), []).append(config)
    extra = []
    for template, members in groups.items():
        lrs = sorted(c.train.lr for c in members)
        factor = (lrs[-1] / lrs[0]) ** (1 / (len(lrs) - 1)) if lrs[-1] > lrs[0] > 0 else 2.0
        limit = max_runs or len(members) + DEFAULT_EXTRA_RUNS
        while len(members) < limit:
            known = [loss for loss in map(loss_of, members) if loss is not None]
            if len(known) < len(members):
                break
            tried = [c.train.lr for c in members]
            lr = next_lr(tried, known, factor)
            if lr is None or lr in tried or setting_problem("lr", lr):
                break  # bracketed, or a step past what a float (and a run) can take
            new = with_lr(template, lr)
            members.append(new)
            extra.append(new)
    return extra


def next_lr(lrs: list[float], losses: list[float], factor: float) -> float | None:
    """The LR that extends a scan toward its optimum, or None once the optimum is bracketed."""
    finite = [(loss, lr) for lr, loss in zip(lrs, losses, strict=True) if math.isfinite(loss)]
    low, high = min(lrs), max(lrs)
    if not finite:
        return low / factor
    best = min(finite)[1]
    if best == low:
        return low / factor
    if best == high:
        return high * factor
    return None


def with_lr(config: RunConfig, lr: float) -> RunConfig:
    """The same run at another LR (an LR scan's member; 1.0 names the scan's group)."""
    return replace(config, train=replace(config.train, lr=lr))
