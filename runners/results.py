"""What a run produces, and its rows for the run log (plain dicts: the store needs no torch)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from runners.accounting import Counts, count
from runners.config import RunConfig


@dataclass(frozen=True)
class CurvePoint:
    step: int
    tokens: int
    train_loss: float
    val_loss: float | None
    lr: float


@dataclass(frozen=True)
class Progress:
    step: int
    steps: int
    tokens: int
    loss: float
    tokens_per_s: float


@dataclass
class RunResult:
    """What a run produced; `status` is done, diverged or failed."""

    run_id: str
    config: RunConfig
    counts: Counts
    corpus: str
    corpus_sha256: str
    unique_tokens: int | None = None  # the corpus's training split: tokens the run could see
    status: str = "done"
    final_val_loss: float | None = None
    final_train_loss: float | None = None
    wall_s: float = 0.0
    tokens_per_s: float = 0.0
    device: str = "cpu"
    error: str | None = None
    curve: list[CurvePoint] = field(default_factory=list)
    resumed_at: int | None = None  # the checkpoint's step, when this session resumed one

    def row(self, sweep: str | None = None) -> dict[str, Any]:
        """This run as a row of the `runs` table."""
        return {
            **config_row(self.config, self.corpus, self.corpus_sha256, sweep, self.unique_tokens),
            "status": self.status,
            "final_val_loss": self.final_val_loss,
            "final_train_loss": self.final_train_loss,
            "wall_s": self.wall_s,
            "tokens_per_s": self.tokens_per_s,
            "device": self.device,
            "error": self.error,
            "finished_at": datetime.now(UTC).replace(tzinfo=None),
        }

    def curve_rows(self) -> list[dict[str, Any]]:
        return [asdict(p) for p in self.curve]


def lineage(row: dict[str, Any]) -> dict[str, Any]:
    """A branch's parent run and branch step from its planned row (runners.branches): what
    its result's row does not know."""
    return {k: row[k] for k in ("parent_run_id", "branch_step") if k in row}


def config_row(
    config: RunConfig,
    corpus: str,
    corpus_sha256: str,
    sweep: str | None = None,
    unique_tokens: int | None = None,
) -> dict[str, Any]:
    """The columns of a `runs` row known before the run: its config's, and its corpus's
    (name, hash, and the training split's size in tokens, the unique tokens it can see)."""
    config = config.resolved()
    m, t = config.model, config.train
    counts = count(m)
    return {
        "run_id": config.run_id(corpus_sha256),
        "sweep": sweep,
        "arch": m.arch,
        "parametrization": m.parametrization,
        "d_model": m.d_model,
        "n_layers": m.n_layers,
        "n_heads": m.n_heads,
        "seq_len": m.seq_len,
        "vocab_size": m.vocab_size,
        "params": counts.params,
        "params_nonembed": counts.params_nonembed,
        "tokens": config.tokens,
        "flops": float(counts.flops_per_token) * config.tokens,
        "lr": t.lr,
        "batch_size": t.batch_size,
        "warmup": t.warmup,
        "schedule": t.schedule,
        "precision": t.precision,
        "seed": t.seed,
        "corpus": corpus,
        "corpus_sha256": corpus_sha256,
        "unique_tokens": unique_tokens,
        "config": config.to_dict(),
    }
