"""HGRN2's token mixer: a gated linear recurrence with a per-channel forget gate.

f_t = gamma_l + (1 - gamma_l) sigma(x Wf) (forget gate, lower-bounded per layer),
k_t = 1 - f_t, q_t = swish(x Wq), i_t = x Wi; per head S_t = diag(f_t) S_{t-1} + k_t i_t^T,
o_t = S_t^T q_t; RMSNorm (with gain, over the concatenated heads) and W_o. No output gate and
no scale on q (open choices in DESIGN.md; the swish on q follows the reference code).

The lower bounds couple the layers: gamma_l = sum_{j=1..l} softmax(P)_j, the softmax taken
over layers of one learnable P (L x d, zero-initialised), so gamma is 0 at layer 0, grows
with depth and stays below 1. P is a `LowerBounds` module that every layer's mixer holds a
reference to; the LM makes them share one through `HGRN2Mixer.tie_layers` (a mixer built on
its own keeps a private P). Gates are handled as log f (`runners/ops/vector_decay.py`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from runners.config import ModelConfig
from runners.errors import RunnerError
from runners.models.layers import RMSNorm
from runners.models.recurrent import RecurrentState
from runners.ops import (
    chunk_vector_decay,
    recurrent_vector_decay,
    step_vector_decay,
)


class LowerBounds(nn.Module):
    """P (L x d, zero init) and gamma_l = sum_{j=1..l} softmax_over_layers(P)_j."""

    def __init__(self, n_layers: int, d_model: int) -> None:
        super().__init__()
        self.shape = (n_layers, d_model)
        # kept flat (1-D) so the LM's init leaves it at zero and AdamW does not decay it
        self.logits = nn.Parameter(torch.zeros(n_layers * d_model))

    def forward(self, layer: int) -> torch.Tensor:
        """gamma_layer, shape (d,): 0 at layer 0, increasing with depth, below 1."""
        return self.logits.view(self.shape).softmax(dim=0)[1 : layer + 1].sum(dim=0)


class HGRN2Mixer(nn.Module):
    """Gated linear recurrence with state expansion (see the module docstring).

    `impl` picks the sequence form: "chunk" (training, default) or "recurrent" (the naive
    reference loop); `step` decodes one token with O(1) state.
    """

    def __init__(self, cfg: ModelConfig, layer: int) -> None:
        super().__init__()
        d = cfg.d_model
        self.layer = layer
        self.n_heads, self.head_dim, self.chunk_size = cfg.n_heads, cfg.head_dim, cfg.chunk_size
        self.impl = "chunk"
        if cfg.chunk_size & (cfg.chunk_size - 1):
            raise RunnerError(f"hgrn2 needs a power-of-two chunk size, got {cfg.chunk_size}")
        self.qfi = nn.Linear(d, 3 * d, bias=False)  # query, forget gate, input in one matmul
        self.norm = RMSNorm(d)
        self.out = nn.Linear(d, d, bias=False)
        self.bounds = LowerBounds(cfg.n_layers, d)

    @staticmethod
    def tie_layers(mixers: list[HGRN2Mixer]) -> None:
        """Make every layer read the first layer's lower bounds: one P for the whole stack."""
        for mixer in mixers[1:]:
            mixer.bounds = mixers[0].bounds

    def gates(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Forget-gate pre-activations -> (log f, k = 1 - f).

        Layer 0 (gamma = 0) takes log f = log sigma(z), finite for any z; deeper layers have
        f >= gamma > 0, so log f is finite there too. k = (1 - gamma) sigma(-z) avoids 1 - f.
        """
        if self.layer == 0:
            return F.logsigmoid(z), torch.sigmoid(-z)
        gamma = self.bounds(self.layer).view(self.n_heads, 1, self.head_dim)
        log_f = torch.log(gamma + (1 - gamma) * torch.sigmoid(z))
        return log_f, (1 - gamma) * torch.sigmoid(-z)

    def project(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """x (B, T, d) -> q, k, v (= i), log f, each (B, H, T, head_dim)."""
        b, t, _ = x.shape
        q, z, v = self.qfi(x).view(b, t, 3, self.n_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        log_f, k = self.gates(z)
        return F.silu(q), k, v, log_f

    def output(self, o: torch.Tensor) -> torch.Tensor:
        """Heads (B, H, T, D) -> RMSNorm over the concatenated heads, then W_o: (B, T, d)."""
        return self.out(self.norm(o.transpose(1, 2).flatten(2)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_state(x)[0]

    def forward_state(
        self, x: torch.Tensor, state: RecurrentState | None = None
    ) -> tuple[torch.Tensor, RecurrentState]:
        """Whole sequence x (B, T, d) from `state` (None: empty) -> (y, state after it)."""
        start = 0 if state is None else state.position
        memory = None if state is None else state.memory
        q, k, v, log_f = self.project(x)
        if self.impl == "chunk":
            o, memory = chunk_vector_decay(q, k, v, log_f, self.chunk_size, memory)
        else:
            o, memory = recurrent_vector_decay(q, k, v, log_f, memory)
        return self.output(o), RecurrentState(memory, start + x.shape[1])

    def step(
        self, x: torch.Tensor, state: RecurrentState | None = None
    ) -> tuple[torch.Tensor, RecurrentState]:
        """One token x (B, d) -> (y (B, d), state)."""
        q, k, v, log_f = (u[:, :, 0] for u in self.project(x.unsqueeze(1)))
        if state is None:
            state = RecurrentState(q.new_zeros(*q.shape, v.shape[-1]), 0)
        o, memory = step_vector_decay(q, k, v, log_f, state.memory)
        return self.output(o.unsqueeze(2))[:, 0], RecurrentState(memory, state.position + 1)
