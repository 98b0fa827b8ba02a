"""Branching runs (Hägele et al. 2024): one stable phase, cooldowns started from its steps.

A branch from step s with a cooldown of c steps is the run of s + c steps whose schedule is
`wsd:cooldown_steps=c`: its first s steps are the stable run's first s steps exactly (same
seed, batches, warmup and LR), so it can start from the stable run's checkpoint at step s
and end where training it from scratch would, bit for bit. Its run id is that of its own
config; the run log names its parent (runs.parent_run_id, runs.branch_step).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from runners.checkpoint import Branch
from runners.config import RunConfig
from runners.errors import RunnerError
from runners.schedule import SHAPES, canonical


@dataclass(frozen=True)
class Cooldown:
    """The cooldown every branch gets: its length in steps, shape and final LR factor."""

    steps: int
    shape: str = "1-sqrt"
    floor: float = 0.0

    @property
    def schedule(self) -> str:
        return canonical(f"wsd:cooldown_steps={self.steps},shape={self.shape},floor={self.floor!r}")


def branch_config(
    parent: RunConfig, at: int, cooldown: Cooldown, device: str = "auto"
) -> RunConfig:
    """The run that leaves `parent` after `at` steps for `cooldown`; refused unless the two
    agree on every step before `at`."""
    parent = parent.resolved(device)
    if cooldown.shape not in SHAPES:
        raise RunnerError(
            f"cooldown shape must be one of {', '.join(SHAPES)}, got {cooldown.shape!r}"
        )
    if cooldown.steps < 1:
        raise RunnerError(f"cooldown must be at least 1 step, got {cooldown.steps}")
    if not 0 < at < parent.steps:
        raise RunnerError(
            f"branch step {at} is outside the stable run's steps (1 .. {parent.steps - 1})"
        )
    train = replace(
        parent.train,
        tokens=(at + cooldown.steps) * parent.tokens_per_step,
        schedule=cooldown.schedule,
        eval_every=None,
    )
    branch = replace(parent, train=train).resolved(device)
    if branch.lrs()[:at].tolist() != parent.lrs()[:at].tolist():
        raise RunnerError(
            f"the stable run's schedule {parent.train.schedule!r} is not constant up to step "
            f"{at}: a branch must share its LRs there (use --schedule constant)"
        )
    return branch


def branch_plan(
    parent: RunConfig,
    at: list[int] | tuple[int, ...],
    cooldown: Cooldown,
    corpus_sha256: str,
    device: str = "auto",
) -> list[tuple[RunConfig, Branch]]:
    """Each branch's config and the checkpoint its parent writes for it."""
    if len(set(at)) != len(at):
        raise RunnerError(f"branch steps repeat: {sorted(at)}")
    plan = []
    for step in sorted(at):
        config = branch_config(parent, step, cooldown, device)
        plan.append((config, Branch(config.run_id(corpus_sha256), config.to_dict(), step)))
    return plan
