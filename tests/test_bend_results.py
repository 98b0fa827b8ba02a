"""The committed steps-or-tokens runs (benchmarks/bend_batch.py), recomputed from their Parquet.

Real training runs: llama xxs at four token counts with 16 and 64 sequences per step, seeds 0
and 1. These tests recompute what docs/laws.md and the notebook state about them, by hand and
independently of the driver's code.
"""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd
import pytest

from tests.conftest import REPO

pytestmark = [pytest.mark.golden, pytest.mark.slow]
TOKENS = [120448, 381184, 1205632, 3812736]


@pytest.fixture(scope="module")
def losses() -> pd.DataFrame:
    """Final validation loss by tokens (rows) and (batch size, seed) (columns)."""
    path = REPO / "benchmarks" / "data" / "bend_runs.parquet"
    runs = duckdb.sql("SELECT * FROM read_parquet(?)", params=[str(path)]).df()
    assert (runs.status == "done").all() and len(runs) == 16 and set(runs.params) == {211520}
    return runs.pivot_table(index="tokens", columns=["batch_size", "seed"], values="final_val_loss")


def test_the_drops_per_decade_and_their_noise_are_as_documented(losses: pd.DataFrame) -> None:
    assert list(losses.index) == TOKENS
    seed_sd = np.sqrt(np.mean([(losses[b, 0] - losses[b, 1]) ** 2 / 2 for b in (16, 64)]))
    assert seed_sd == pytest.approx(0.0594, abs=5e-4)
    decades = np.diff(np.log10(TOKENS))
    drop = {b: -np.diff(losses[b].mean(axis=1).to_numpy()) / decades for b in (16, 64)}
    np.testing.assert_allclose(drop[16], [0.877, 1.268, 0.647], atol=1e-3)
    np.testing.assert_allclose(drop[64], [1.709, 0.853, 1.553], atol=1e-3)
    # SD of (last drop - the one before): four seed means of two runs each, three of them used
    rise_sd = (
        seed_sd
        / np.sqrt(2)
        * np.sqrt(
            1 / decades[2] ** 2 + 1 / decades[1] ** 2 + (1 / decades[2] + 1 / decades[1]) ** 2
        )
    )
    rise = {b: (drop[b][2] - drop[b][1]) / rise_sd for b in (16, 64)}
    assert rise[16] == pytest.approx(-3.0, abs=0.05) and rise[64] == pytest.approx(3.4, abs=0.05)
    # the pre-registered rule: steps need the steepest drop at 64 to be the last interval's,
    # tokens the middle one's; it is the first (15 to 47 steps), so the answer is unresolved
    assert int(np.argmax(drop[16])) == 1 and int(np.argmax(drop[64])) == 0


def test_a_quarter_of_the_steps_costs_loss_at_every_token_count(losses: pd.DataFrame) -> None:
    gap = losses[64].mean(axis=1) - losses[16].mean(axis=1)
    assert (gap > 0.18).all()
    np.testing.assert_allclose(gap.to_numpy(), [0.846, 0.431, 0.638, 0.185], atol=2e-3)
