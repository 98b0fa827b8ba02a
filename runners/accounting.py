"""Exact parameter counts and training FLOPs per token, from the config alone.

Every architecture's count is arithmetic on its config, kept here rather than on the torch
modules so that planning a sweep, which counts every candidate, never imports torch; tests
hold each count to the built modules' parameters and to torch's FLOP counter.
Training FLOPs = 3 x forward matmul FLOPs (backward is twice the forward). Element-wise
work (norms, activations, softmax, the pass of a state between chunks) is not counted.
"""

from __future__ import annotations

from dataclasses import dataclass

from runners.config import ModelConfig


@dataclass(frozen=True)
class Counts:
    params: int
    params_nonembed: int
    flops_per_token: int


def scalar_decay_flops(seq_len: int, chunk_size: int, dk: int, dv: int) -> int:
    """Matmul FLOPs per head of `chunk_scalar_decay` on one sequence (padded tail included)."""
    c = min(chunk_size, seq_len)
    padded = -(-seq_len // c) * c
    return padded * (2 * c * (dk + dv) + 4 * dk * dv)


def vector_chunk_length(chunk_size: int, seq_len: int) -> int:
    """The chunk `chunk_vector_decay` uses: a power of two, at most the next one above T."""
    if chunk_size & (chunk_size - 1):
        raise ValueError(f"chunk size must be a power of two for vector decay, got {chunk_size}")
    return min(chunk_size, 1 << (seq_len - 1).bit_length())


def vector_decay_flops(seq_len: int, chunk_size: int, dk: int, dv: int) -> int:
    """Matmul FLOPs per head of `chunk_vector_decay` on one sequence (padded tail included)."""
    c = vector_chunk_length(chunk_size, seq_len)
    padded = -(-seq_len // c) * c
    return padded * ((c - 1) * (dk + dv) + 4 * dk * dv)


def _matrix_params(cfg: ModelConfig) -> int:
    """The mixer's weight matrices, each one multiply-add per token in the forward pass."""
    d = cfg.d_model
    if cfg.arch in ("llama", "hgrn2"):
        return 4 * d**2  # Wq, Wk, Wv, Wo (HGRN2: Wq, Wf, Wi, Wo)
    return 4 * d**2 + 2 * d * cfg.head_dim  # TNL's four and its rank-head_dim output gate


def _vector_params(cfg: ModelConfig) -> int:
    """The mixer's parameters outside matrices: cosFormer2's LRPE theta (d); HGRN2's norm
    gain (d) and this layer's row of the forget gates' lower bounds (d)."""
    return {"cosformer2": 1, "hgrn2": 2}.get(cfg.arch, 0) * cfg.d_model


def _per_token(cfg: ModelConfig, per_head_sequence: int) -> int:
    """A chunk-wise op's FLOPs over all heads per token, rounded up."""
    return -(-(cfg.n_heads * per_head_sequence) // cfg.seq_len)


def _mixing_flops(cfg: ModelConfig) -> int:
    """Forward matmul FLOPs per token of the token mixing itself (projections aside)."""
    t, c, dh = cfg.seq_len, cfg.chunk_size, cfg.head_dim
    if cfg.arch == "llama":
        return 4 * t * cfg.d_model  # QK^T and AV over the full context (as Shen et al. count)
    if cfg.arch in ("tnl", "cosformer2"):  # cosFormer2's LRPE doubles queries' and keys' width
        width = 2 * dh if cfg.arch == "cosformer2" else dh
        return _per_token(cfg, scalar_decay_flops(t, c, width, dh))
    return _per_token(cfg, vector_decay_flops(t, c, dh, dh))  # hgrn2, tnl_spread


def count(cfg: ModelConfig) -> Counts:
    """Parameters (total, non-embedding) and training FLOPs per token of `cfg`."""
    d, v = cfg.d_model, cfg.vocab_size
    glu = 3 * d * cfg.ffn_hidden
    per_layer = _matrix_params(cfg) + _vector_params(cfg) + glu + 2 * d  # two RMSNorm gains
    nonembed = cfg.n_layers * per_layer + d  # the final norm
    embed = v * d * (2 if cfg.parametrization == "mup" else 1)  # muP unties the readout
    mixer = 2 * _matrix_params(cfg) + _mixing_flops(cfg)
    forward = cfg.n_layers * (mixer + 2 * glu) + 2 * v * d
    return Counts(nonembed + embed, nonembed, 3 * forward)
