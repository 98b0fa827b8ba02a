"""Training throughput of our llama runner against a plain nanoGPT-style reference.

Both train the same shape (d_model 256, 4 layers, 4 heads, context 256, batch 16) on the
embedded corpus in the same process, alternating, in fp32 and bf16. Prints tokens/s, the ratio
ours/reference, bf16/fp32, and the fraction of this machine's measured matmul peak.
Usage: python benchmarks/throughput.py [--steps 30] [--repeats 3]
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout, not an installed copy

from runners.accounting import count
from runners.batches import BatchSampler
from runners.config import ModelConfig, RunConfig, TrainConfig
from runners.corpus import load_corpus
from runners.train import train

D_MODEL, N_LAYERS, N_HEADS, SEQ_LEN, BATCH = 256, 4, 4, 256, 16


class ReferenceBlock(nn.Module):
    """A straightforward pre-norm block: fused qkv (as nanoGPT), rotary, SDPA, SwiGLU."""

    def __init__(self, d: int, heads: int, hidden: int, seq_len: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.Parameter(torch.ones(d))
        self.norm2 = nn.Parameter(torch.ones(d))
        self.qkv = nn.Linear(d, 3 * d, bias=False)
        self.proj = nn.Linear(d, d, bias=False)
        self.gate = nn.Linear(d, hidden, bias=False)
        self.up = nn.Linear(d, hidden, bias=False)
        self.down = nn.Linear(hidden, d, bias=False)
        head_dim = d // heads
        freqs = 10_000.0 ** (-torch.arange(0, head_dim, 2).float() / head_dim)
        angles = torch.outer(torch.arange(seq_len).float(), freqs).repeat(1, 2)
        self.register_buffer("cos", angles.cos())
        self.register_buffer("sin", angles.sin())

    @staticmethod
    def rms(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * weight

    def rotate(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = x.chunk(2, dim=-1)
        return x * self.cos + torch.cat([-x2, x1], dim=-1) * self.sin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(self.rms(x, self.norm1)).split(d, dim=-1)
        q, k, v = (z.view(b, t, self.heads, d // self.heads).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(self.rotate(q), self.rotate(k), v, is_causal=True)
        x = x + self.proj(y.transpose(1, 2).reshape(b, t, d))
        h = self.rms(x, self.norm2)
        return x + self.down(F.silu(self.gate(h)) * self.up(h))


class ReferenceModel(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.blocks = nn.ModuleList(
            ReferenceBlock(cfg.d_model, cfg.n_heads, cfg.ffn_hidden, cfg.seq_len)
            for _ in range(cfg.n_layers)
        )
        self.norm = nn.Parameter(torch.ones(cfg.d_model))

    def forward(self, idx: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        x = self.embed(idx)
        for block in self.blocks:
            x = block(x)
        logits = ReferenceBlock.rms(x, self.norm) @ self.embed.weight.T
        return F.cross_entropy(logits.float().flatten(0, 1), targets.flatten())


def reference_tokens_per_s(cfg: ModelConfig, steps: int, bf16: bool) -> float:
    torch.manual_seed(0)
    model = ReferenceModel(cfg)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.95))
    sampler = BatchSampler(load_corpus().train, cfg.seq_len, seed=0)
    start = time.perf_counter()
    for _ in range(steps):
        x, y = sampler.sample(BATCH)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = model(x, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        loss.item()
    return steps * BATCH * cfg.seq_len / (time.perf_counter() - start)


def ours_tokens_per_s(cfg: ModelConfig, steps: int, bf16: bool) -> float:
    config = RunConfig(
        cfg,
        TrainConfig(
            tokens=steps * BATCH * cfg.seq_len, lr=1e-3, batch_size=BATCH,
            precision="bf16" if bf16 else "fp32", eval_tokens=cfg.seq_len, eval_every=10**9,
        ),
    )  # fmt: skip
    return train(config, device="cpu").tokens_per_s


def matmul_peak(dtype: torch.dtype, n: int = 2048, reps: int = 10) -> float:
    """Best achieved FLOP/s of a large square matmul: the machine's practical peak."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    best = math.inf
    for _ in range(reps):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    cfg = ModelConfig(d_model=D_MODEL, n_layers=N_LAYERS, n_heads=N_HEADS, seq_len=SEQ_LEN)
    flops_per_token = count(cfg).flops_per_token
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"CPU capability {torch.backends.cpu.get_cpu_capability()}")  # fmt: skip
    print(f"shape d={D_MODEL} L={N_LAYERS} heads={N_HEADS} ctx={SEQ_LEN} batch={BATCH}, "
          f"{flops_per_token / 1e6:.1f} MFLOP/token")  # fmt: skip
    results = {}
    for precision, bf16, dtype in (("fp32", False, torch.float32), ("bf16", True, torch.bfloat16)):
        ours_tokens_per_s(cfg, 3, bf16)  # warm-up both paths
        reference_tokens_per_s(cfg, 3, bf16)
        ours, ref = [], []
        for _ in range(args.repeats):
            ours.append(ours_tokens_per_s(cfg, args.steps, bf16))
            ref.append(reference_tokens_per_s(cfg, args.steps, bf16))
        ratios = [o / r for o, r in zip(ours, ref, strict=True)]
        peak = matmul_peak(dtype)
        results[precision] = statistics.median(ours)
        print(
            f"{precision}: ours {statistics.median(ours):,.0f} tok/s, reference "
            f"{statistics.median(ref):,.0f} tok/s, ratio ours/reference "
            f"{statistics.median(ratios):.2f} (min {min(ratios):.2f}, max {max(ratios):.2f}); "
            f"matmul peak {peak / 1e9:,.0f} GFLOP/s, achieved "
            f"{statistics.median(ours) * flops_per_token / peak:.1%} of it"
        )
    print(f"bf16 / fp32 (ours): {results['bf16'] / results['fp32']:.2f}x")


if __name__ == "__main__":
    main()
