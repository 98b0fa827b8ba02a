"""Run configuration: what a run is, validated, resolved and hashed into its run_id."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

import numpy as np

from runners.errors import RunnerError
from runners.schedule import canonical, parse_schedule

ARCHS = ("llama", "tnl", "hgrn2", "cosformer2", "tnl_spread")
PRECISIONS = ("auto", "fp32", "bf16")
PARAMETRIZATIONS = ("sp", "mup")
INT32 = 2**31 - 1  # shape, batch, warmup and seed columns are INTEGER in the run log
# Upper bounds of the whole-number settings: what the run log's columns hold, and for the
# shape sanity limits far above any model this project trains, so that a typo (an extra
# zero) is one line of error and not an out-of-memory crash or a run that never ends.
MAX_TOKENS = 10**15
UPPER = {
    "d_model": 65_536,
    "n_layers": 1_024,
    "n_heads": 1_024,
    "seq_len": 1_048_576,
    "vocab_size": 1_048_576,
    "mup_base_width": 65_536,
    "chunk_size": 65_536,
    "tokens": MAX_TOKENS,
    "eval_tokens": MAX_TOKENS,
    "batch_size": 1_048_576,
    "warmup": INT32,
    "eval_every": INT32,
    "seed": INT32,
}
SANITY = {"d_model", "n_layers", "n_heads", "seq_len", "vocab_size", "mup_base_width",
          "chunk_size", "batch_size"}  # fmt: skip
NON_NEGATIVE = {"warmup", "seed", "weight_decay"}
BELOW_ONE = {"beta1", "beta2"}


def setting_problem(name: str, value: Any) -> str | None:
    """What is wrong with one value of a numeric setting, or None; the caller names it."""
    if value is None and name in ("warmup", "eval_every"):
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"must be a number, got {value!r}"
    if isinstance(value, float) and not math.isfinite(value):
        return f"must be a finite number, got {value!r}"
    if name in UPPER and value > UPPER[name]:
        why = " (a sanity limit)" if name in SANITY else ""
        return f"must be at most {UPPER[name]:,}{why}, got {value:,}"
    if name in NON_NEGATIVE:
        return None if value >= 0 else f"must be >= 0, got {value!r}"
    if name in BELOW_ONE:
        return None if 0 <= value < 1 else f"must be in [0, 1), got {value!r}"
    return None if value > 0 else f"must be positive, got {value!r}"


def _check(config: Any, names: tuple[str, ...]) -> None:
    for name in names:
        problem = setting_problem(name, getattr(config, name))
        if problem:
            raise RunnerError(f"{name.replace('_', '-')} {problem}")


@dataclass(frozen=True)
class ModelConfig:
    """Shape of a decoder LM; the token mixer is chosen by `arch`."""

    arch: str = "llama"
    d_model: int = 128
    n_layers: int = 4
    n_heads: int = 4
    seq_len: int = 256
    vocab_size: int = 256
    parametrization: str = "sp"
    mup_base_width: int = 128
    chunk_size: int = 64

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @property
    def ffn_hidden(self) -> int:
        """GLU hidden width 8d/3 (so the channel mixer holds 8 d^2), rounded to a multiple of 8."""
        return max(8, round(8 * self.d_model / 3 / 8) * 8)

    @property
    def width_mult(self) -> float:
        """muP width multiplier m = d / d_base (1 under standard parametrization)."""
        return self.d_model / self.mup_base_width if self.parametrization == "mup" else 1.0

    def validate(self) -> None:
        if self.arch not in ARCHS:
            raise RunnerError(f"unknown arch {self.arch!r}: choose one of {', '.join(ARCHS)}")
        _check(self, ("d_model", "n_layers", "n_heads", "seq_len", "vocab_size", "chunk_size",
                      "mup_base_width"))  # fmt: skip
        if self.d_model % self.n_heads:
            raise RunnerError(f"d-model {self.d_model} is not divisible by n-heads {self.n_heads}")
        if self.arch == "llama" and self.head_dim % 2:
            raise RunnerError(
                f"llama's rotary embedding needs an even head dim, got d-model {self.d_model} / "
                f"n-heads {self.n_heads} = {self.head_dim}"
            )
        if self.parametrization not in PARAMETRIZATIONS:
            raise RunnerError(f"unknown parametrization {self.parametrization!r}: choose sp or mup")


@dataclass(frozen=True)
class TrainConfig:
    """How a model is trained: token horizon, optimiser, schedule, data."""

    tokens: int = 2_000_000
    lr: float = 3e-3
    batch_size: int = 16
    warmup: int | None = None
    schedule: str = "cosine"
    precision: str = "auto"  # resolved to fp32 or bf16 before hashing (runners.precision)
    seed: int = 0
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    beta1: float = 0.9
    beta2: float = 0.95
    eval_every: int | None = None
    eval_tokens: int = 65_536
    corpus: str = "default"

    def validate(self) -> None:
        _check(self, ("lr", "batch_size", "tokens", "warmup", "eval_every", "eval_tokens"))
        _check(self, ("seed", "weight_decay", "grad_clip", "beta1", "beta2"))
        canonical(self.schedule)  # one RunnerError naming what is wrong
        if self.precision not in PRECISIONS:
            raise RunnerError(
                f"unknown precision {self.precision!r}: choose {', '.join(PRECISIONS)}"
            )


@dataclass(frozen=True)
class RunConfig:
    """One training run. Its id is a hash of everything that changes the result."""

    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    @property
    def tokens_per_step(self) -> int:
        return self.train.batch_size * self.model.seq_len

    @property
    def steps(self) -> int:
        """Whole optimiser steps; the last one may be a smaller batch so the horizon is exact."""
        return -(-self.tokens // self.tokens_per_step)

    @property
    def tokens(self) -> int:
        """Trained tokens: the requested horizon rounded down to whole sequences."""
        return (self.train.tokens // self.model.seq_len) * self.model.seq_len

    def validate(self) -> RunConfig:
        self.model.validate()
        self.train.validate()
        if self.train.tokens < self.tokens_per_step:
            raise RunnerError(
                f"token horizon {self.train.tokens:,} is shorter than one batch "
                f"({self.train.batch_size} x {self.model.seq_len} = "
                f"{self.tokens_per_step:,} tokens)"
            )
        return self

    def resolved(self, device: str = "auto") -> RunConfig:
        """Fill defaults that depend on the horizon and the device (precision auto), so
        that the hash names what actually ran."""
        self.validate()
        steps = self.steps
        train = replace(self.train, schedule=canonical(self.train.schedule))
        if train.precision == "auto":
            from runners.precision import auto_precision

            train = replace(train, precision=auto_precision(device))
        if train.warmup is None:
            train = replace(train, warmup=max(1, min(200, steps // 20)))
        if train.eval_every is None:
            # Evaluations cost about a third of a training token each: keep them near 10%
            # of the training compute, between 1 (the final one) and 10 per run.
            n_evals = min(10, max(1, round(0.3 * self.tokens / train.eval_tokens)))
            train = replace(train, eval_every=max(1, steps // n_evals))
        return replace(self, train=train)

    def lrs(self) -> np.ndarray:
        """The LR of every optimiser step, from step 0, as training sets it (bit-identical)."""
        config = self.resolved()
        train = config.train
        assert train.warmup is not None
        factors = parse_schedule(train.schedule).factors(config.steps, train.warmup)
        return train.lr * factors

    def to_dict(self) -> dict[str, Any]:
        return {"model": asdict(self.model), "train": asdict(self.train)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunConfig:
        return cls(
            _build(ModelConfig, data.get("model", {})), _build(TrainConfig, data.get("train", {}))
        )

    def run_id(self, corpus_sha256: str) -> str:
        """Hash of the resolved config and the corpus bytes: the same run is never trained twice."""
        payload = json.dumps(
            {**self.resolved().to_dict(), "corpus_sha256": corpus_sha256}, sort_keys=True
        )
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _build(cls: type, values: dict[str, Any]) -> Any:
    known = {f.name for f in fields(cls)}
    unknown = set(values) - known
    if unknown:
        raise RunnerError(f"unknown {cls.__name__} setting(s): {', '.join(sorted(unknown))}")
    return cls(**values)
