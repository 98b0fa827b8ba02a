"""Training and validation batches drawn from a token array."""

from __future__ import annotations

import warnings

import numpy as np
import torch


class BatchSampler:
    """Random windows of seq_len + 1 tokens from the training split, seeded per run."""

    def __init__(self, tokens: np.ndarray, seq_len: int, seed: int) -> None:
        if len(tokens) <= seq_len + 1:
            raise ValueError(f"training split has {len(tokens)} tokens, need > {seq_len + 1}")
        with warnings.catch_warnings():  # read-only corpus bytes; the tensor is never written
            warnings.filterwarnings("ignore", "The given NumPy array is not writable")
            self.tokens = torch.from_numpy(np.asarray(tokens))
        self.window = torch.arange(seq_len + 1)
        self.high = len(tokens) - seq_len - 1
        self.generator = torch.Generator().manual_seed(seed)

    def sample(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        starts = torch.randint(0, self.high + 1, (batch_size,), generator=self.generator)
        rows = self.tokens[starts[:, None] + self.window].long()
        return rows[:, :-1], rows[:, 1:]


def validation_windows(tokens: np.ndarray, seq_len: int, n_tokens: int) -> torch.Tensor:
    """Fixed, evenly spaced held-out windows: every run is scored on the same tokens."""
    n_seq = max(1, min(-(-n_tokens // seq_len), (len(tokens) - 1) // seq_len))
    if len(tokens) <= seq_len + 1:
        raise ValueError(f"validation split has {len(tokens)} tokens, need > {seq_len + 1}")
    starts = np.linspace(0, len(tokens) - seq_len - 1, n_seq).astype(np.int64)
    rows = np.stack([tokens[s : s + seq_len + 1] for s in starts])
    return torch.from_numpy(rows.astype(np.int64))
