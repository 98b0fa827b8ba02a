"""fits.bends: runs whose loss falls faster in log D at more tokens, beyond their replicates'
noise, are named; noise alone is not."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fits.bends import ALPHA, bend_caution, replicate_sd, token_bends

TOKENS = 1e5 * 10 ** (np.arange(5) / 2)  # five token counts half a decade apart


def grid(loss_of, seeds: int, sd: float, rng: np.random.Generator) -> pd.DataFrame:
    """Every size of 1e4..1e6 at every count of TOKENS, `seeds` runs each, Gaussian noise."""
    rows = [{"N": n, "D": d, "loss": loss_of(n, d) + rng.normal(0, sd)}
            for n in (1e4, 1e5, 1e6) for d in TOKENS for _ in range(seeds)]  # fmt: skip
    return pd.DataFrame(rows)


def chinchilla(n: float, d: float) -> float:
    return 1.7 + 20 * n**-0.34 + 60 * d**-0.28


def test_rise_in_sds_by_hand() -> None:
    """Drops per decade 0.4 then 1.0: a rise of 0.6, whose SD is sqrt(1 + 4 + 1) * 0.03 / 0.5
    (three losses weighted 1/h, -2/h, 1/h, h = half a decade); with two runs at each point
    the SD falls by sqrt 2. A power law plus offset never rises."""
    bent = pd.DataFrame({"N": 10.0, "D": TOKENS[:3], "loss": [3.0, 2.8, 2.3]})
    power = pd.DataFrame({"N": 20.0, "D": TOKENS, "loss": 1.5 + 40 * TOKENS**-0.3})
    runs = pd.concat([bent, power], ignore_index=True)
    found = token_bends(runs, 0.03).set_index("N")
    assert found.max_rise_sd[10.0] == pytest.approx(0.6 / (np.sqrt(6) * 0.03 / 0.5))
    assert found.max_rise_sd[20.0] < 0 and found.rises.to_dict() == {10.0: 1, 20.0: 3}
    twice = token_bends(pd.concat([runs, bent], ignore_index=True), 0.03).set_index("N")
    assert twice.max_rise_sd[10.0] == pytest.approx(found.max_rise_sd[10.0] * np.sqrt(2))


def test_replicate_sd_pools_groups_and_skips_listed_twice() -> None:
    """Pairs (1.0, 1.2) and (2.0, 2.4) and a triple (3.0, 3.1, 3.2): squares 0.02 + 0.08 +
    0.02 over 1 + 1 + 2 degrees of freedom; a row repeated with its loss is not a replicate."""
    runs = pd.DataFrame({"N": [1, 1, 2, 2, 3, 3, 3, 3], "D": 1.0,
                         "loss": [1.0, 1.2, 2.0, 2.4, 3.0, 3.1, 3.2, 3.2]})  # fmt: skip
    sd, dof = replicate_sd(runs)  # type: ignore[misc]
    assert dof == 4 and sd == pytest.approx(np.sqrt(0.12 / 4))
    assert replicate_sd(runs.iloc[:4]) is None  # two degrees of freedom: noise not measured
    assert replicate_sd(runs.assign(loss=runs.N)) is None  # no spread


def test_noise_alone_is_seldom_flagged() -> None:
    """A Chinchilla law with two seeds per run and noise of 0.03: the check's false-alarm rate
    is at most ALPHA, so of 40 data sets at most a few are flagged (Binomial(40, 0.01): more
    than 3 has odds under 0.1%)."""
    rng = np.random.default_rng(0)
    flagged = sum(bend_caution(grid(chinchilla, 2, 0.03, rng)) is not None for _ in range(40))
    assert ALPHA == 0.01 and flagged <= 3


def test_a_bend_beyond_the_noise_is_named() -> None:
    """The largest size falls slowly at its fewest tokens and then faster (a plateau, then the
    law), as our byte-level runs do: named, the others not; without replicates nothing is
    checked."""

    def plateau(n: float, d: float) -> float:
        return min(chinchilla(n, d), 3.3) if n == 1e6 else chinchilla(n, d)

    runs = grid(plateau, 2, 0.01, np.random.default_rng(1))
    caution = bend_caution(runs)
    assert caution is not None and "N = 1e+06" in caution and "N = 1e+05" not in caution
    assert bend_caution(runs.drop_duplicates(subset=["N", "D"])) is None
