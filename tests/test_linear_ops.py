"""The three forms of each linear recurrence agree: naive loop, chunk-wise, one-token steps."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from runners.accounting import scalar_decay_flops, vector_decay_flops
from runners.ops import (
    chunk_scalar_decay,
    chunk_vector_decay,
    lrpe,
    recurrent_scalar_decay,
    recurrent_vector_decay,
    step_scalar_decay,
    step_vector_decay,
)

TOL = 1e-10
B, H, DK, DV = 2, 3, 5, 4


def inputs(t: int, seed: int = 0, dk: int = DK) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)

    def rand(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g, dtype=torch.float64)

    return {
        "q": rand(B, H, t, dk),
        "k": rand(B, H, t, dk),
        "v": rand(B, H, t, DV),
        "state": rand(B, H, dk, DV),
        # decays from strong to none (cosFormer2's lam = 1 is the last head)
        "log_decay": torch.tensor([-1.5, -0.05, 0.0], dtype=torch.float64),
        # gates spread over (0, 1): log f down to -6
        "log_f": -6 * torch.rand(B, H, t, dk, generator=g, dtype=torch.float64),
    }


def stepped(step, q, k, v, decay, state):
    """Run a one-token step function over the sequence; decay is per head or per token."""
    outputs = []
    for i in range(q.shape[2]):
        d = decay if decay.dim() == 1 else decay[:, :, i]
        o, state = step(q[:, :, i], k[:, :, i], v[:, :, i], d, state)
        outputs.append(o)
    return torch.stack(outputs, dim=2), state


def close(a: torch.Tensor, b: torch.Tensor) -> bool:
    return (a - b).abs().max().item() < TOL * max(1.0, b.abs().max().item())


@pytest.mark.parametrize("t", [1, 7, 37, 70])
@pytest.mark.parametrize("chunk", [1, 3, 16, 64])
@pytest.mark.parametrize("with_state", [False, True])
def test_scalar_decay_forms_agree(t: int, chunk: int, with_state: bool) -> None:
    x = inputs(t)
    s0 = x["state"] if with_state else None
    ref_o, ref_s = recurrent_scalar_decay(x["q"], x["k"], x["v"], x["log_decay"], s0)
    o, s = chunk_scalar_decay(x["q"], x["k"], x["v"], x["log_decay"], chunk, s0)
    zeros = torch.zeros_like(x["state"])
    step_o, step_s = stepped(
        step_scalar_decay, x["q"], x["k"], x["v"], x["log_decay"], zeros if s0 is None else s0
    )
    assert close(o, ref_o) and close(s, ref_s)
    assert close(step_o, ref_o) and close(step_s, ref_s)


@pytest.mark.parametrize("t", [1, 7, 37, 70])
@pytest.mark.parametrize("chunk", [1, 4, 16, 64])
@pytest.mark.parametrize("with_state", [False, True])
def test_vector_decay_forms_agree(t: int, chunk: int, with_state: bool) -> None:
    x = inputs(t)
    s0 = x["state"] if with_state else None
    ref_o, ref_s = recurrent_vector_decay(x["q"], x["k"], x["v"], x["log_f"], s0)
    o, s = chunk_vector_decay(x["q"], x["k"], x["v"], x["log_f"], chunk, s0)
    zeros = torch.zeros_like(x["state"])
    step_o, step_s = stepped(
        step_vector_decay, x["q"], x["k"], x["v"], x["log_f"], zeros if s0 is None else s0
    )
    assert close(o, ref_o) and close(s, ref_s)
    assert close(step_o, ref_o) and close(step_s, ref_s)


@pytest.mark.parametrize("t, chunk", [(19, 8), (40, 16)])
def test_cosformer_features_chunk_agrees_with_steps_at_an_offset(t: int, chunk: int) -> None:
    """LRPE at absolute positions start.. + no decay: chunk form == step-by-step decoding."""
    x = inputs(t)
    theta = torch.rand(H, DK, dtype=torch.float64)
    start = 11
    q, k = lrpe(x["q"], theta, start), lrpe(x["k"], theta, start)
    no_decay = torch.zeros(H, dtype=torch.float64)
    o, s = chunk_scalar_decay(q, k, x["v"], no_decay, chunk, None)
    state = torch.zeros(B, H, 2 * DK, DV, dtype=torch.float64)
    outputs = []
    for i in range(t):
        qi = lrpe(x["q"][:, :, i : i + 1], theta, start + i)[:, :, 0]
        ki = lrpe(x["k"][:, :, i : i + 1], theta, start + i)[:, :, 0]
        oi, state = step_scalar_decay(qi, ki, x["v"][:, :, i], no_decay, state)
        outputs.append(oi)
    assert close(o, torch.stack(outputs, dim=2)) and close(s, state)


def test_lrpe_scores_depend_only_on_relative_position() -> None:
    x = inputs(12)
    theta = torch.rand(H, DK, dtype=torch.float64)
    scores = [lrpe(x["q"], theta, s) @ lrpe(x["k"], theta, s).transpose(-1, -2) for s in (0, 1000)]
    assert close(scores[0], scores[1])


def _grads(fn, tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    leaves = [t.clone().requires_grad_() for t in tensors]
    o, s = fn(*leaves)
    g = torch.Generator().manual_seed(1)
    weight_o = torch.randn(o.shape, generator=g, dtype=o.dtype)
    weight_s = torch.randn(s.shape, generator=g, dtype=s.dtype)
    ((o * weight_o).sum() + (s * weight_s).sum()).backward()
    return [leaf.grad for leaf in leaves]


@pytest.mark.parametrize("chunk", [4, 16])
def test_scalar_decay_gradients_match_the_recurrence(chunk: int) -> None:
    x = inputs(29)
    tensors = [x["q"], x["k"], x["v"], x["log_decay"], x["state"]]
    ref = _grads(recurrent_scalar_decay, tensors)
    got = _grads(lambda q, k, v, d, s: chunk_scalar_decay(q, k, v, d, chunk, s), tensors)
    for a, b in zip(got, ref, strict=True):
        assert close(a, b)


@pytest.mark.parametrize("chunk", [4, 16])
def test_vector_decay_gradients_match_the_recurrence(chunk: int) -> None:
    x = inputs(29)
    tensors = [x["q"], x["k"], x["v"], x["log_f"], x["state"]]
    ref = _grads(recurrent_vector_decay, tensors)
    got = _grads(lambda q, k, v, f, s: chunk_vector_decay(q, k, v, f, chunk, s), tensors)
    for a, b in zip(got, ref, strict=True):
        assert close(a, b)


def test_vector_decay_is_stable_for_gates_near_zero() -> None:
    """log f down to -100 per step in float32: exp(-b) would overflow; the chunk form does not.

    Accuracy is that of float32 cumulative sums of |b| up to 64 x 100: decay factors carry a
    relative error of about |b| x 6e-8 (here ~4e-4; ~1e-5 for ordinary gates).
    """
    x = inputs(64)
    q, k, v = (x[n].float() for n in ("q", "k", "v"))
    log_f = -100 * torch.rand(B, H, 64, DK, generator=torch.Generator().manual_seed(3))
    o, s = chunk_vector_decay(q, k, v, log_f, 64)
    ref_o, ref_s = recurrent_vector_decay(q, k, v, log_f)
    assert torch.isfinite(o).all() and torch.isfinite(s).all()
    torch.testing.assert_close(s, ref_s, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(o, ref_o, rtol=1e-3, atol=2e-3)


def test_vector_decay_rejects_chunks_that_are_not_powers_of_two() -> None:
    x = inputs(8)
    with pytest.raises(ValueError, match="power of two"):
        chunk_vector_decay(x["q"], x["k"], x["v"], x["log_f"], 12)


@pytest.mark.parametrize("t, chunk", [(64, 16), (128, 64), (48, 16)])
def test_flop_formulas_match_the_flop_counter(t: int, chunk: int) -> None:
    x = inputs(t, dk=DK)
    with FlopCounterMode(display=False) as counter:
        chunk_scalar_decay(x["q"], x["k"], x["v"], x["log_decay"], chunk)
    assert counter.get_total_flops() == B * H * scalar_decay_flops(t, chunk, DK, DV)
    with FlopCounterMode(display=False) as counter:
        chunk_vector_decay(x["q"], x["k"], x["v"], x["log_f"], chunk)
    assert counter.get_total_flops() == B * H * vector_decay_flops(t, chunk, DK, DV)
