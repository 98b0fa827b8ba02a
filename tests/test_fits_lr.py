"""Optimal learning rate per group: parabola vertex, bracketing flags, diverged runs."""

import numpy as np
import pandas as pd
import pytest

from fits import optimal_lr

LRS = np.geomspace(1e-4, 1e-1, 10)
KEYS = ["arch", "N", "D", "batch_size"]


def quadratic(lr, opt, curv=0.05, floor=2.0):
    return floor + curv * (np.log(lr) - np.log(opt)) ** 2


def sweep(losses, lrs=LRS, **extra):
    return pd.DataFrame(
        {"arch": "llama", "N": 1e7, "D": 2e8, "batch_size": 32, "lr": lrs, "loss": losses, **extra}
    )


def test_vertex_of_an_exact_quadratic_is_recovered():
    rows = [sweep(quadratic(LRS, opt), N=N) for N, opt in ((1e7, 3e-3), (2e7, 1.3e-3))]
    out = optimal_lr(pd.concat(rows))
    assert list(out.columns) == [
        *KEYS,
        "lr_opt",
        "loss_opt",
        "n_points",
        "n_fit",
        "n_diverged",
        "bracketed",
        "note",
    ]
    np.testing.assert_allclose(out.lr_opt, [3e-3, 1.3e-3], rtol=1e-9)
    np.testing.assert_allclose(out.loss_opt, 2.0, rtol=1e-12)
    assert out.bracketed.all() and (out.note == "").all()
    assert (out.n_points == 10).all() and (out.n_fit == 3).all()


def test_noisy_quadratic_vertex_is_close():
    rng = np.random.default_rng(0)
    lrs = np.geomspace(1e-4, 1e-1, 25)
    loss = quadratic(lrs, 2e-3, curv=0.02) + 1e-4 * rng.standard_normal(lrs.size)
    out = optimal_lr(sweep(loss, lrs), n_neighbors=3)
    assert out.lr_opt[0] == pytest.approx(2e-3, rel=0.1)
    assert out.n_fit[0] == 7


def test_best_at_an_edge_is_not_bracketed():
    low = optimal_lr(sweep(quadratic(LRS, 1e-5)))  # optimum below every sampled LR
    assert not low.bracketed[0]
    assert "lowest sampled" in low.note[0]
    high = optimal_lr(sweep(quadratic(LRS, 1.0)))
    assert not high.bracketed[0]
    assert "highest sampled" in high.note[0]
    # The parabola through the edge points puts its vertex beyond the data: fall back.
    assert "vertex outside" in high.note[0]
    assert high.lr_opt[0] == pytest.approx(LRS[-1])


def test_parabola_opening_downward_is_flagged():
    out = optimal_lr(sweep([1.0, 1.5, 1.6, 1.65, 1.7, 1.72, 1.73, 1.74, 1.75, 1.76]))
    assert not out.bracketed[0]
    assert "opens downward" in out.note[0]
    assert out.lr_opt[0] == LRS[0] and out.loss_opt[0] == 1.0


def test_diverged_neighbour_above_brackets_the_best():
    loss = quadratic(LRS, 3e-3)
    loss[LRS > 4e-3] = np.nan  # every LR above the optimum diverged
    out = optimal_lr(sweep(loss))
    assert out.bracketed[0], out.note[0]
    assert out.n_diverged[0] == 5 and out.n_points[0] == 5
    assert out.n_fit[0] == 3  # the best and two finite neighbours below it
    assert out.lr_opt[0] == pytest.approx(3e-3, rel=1e-9)  # exact quadratic, vertex above best


def test_status_column_marks_divergence_and_inf_counts_too():
    loss = quadratic(LRS, 3e-3)
    status = np.where(LRS > 4e-3, "diverged", "done")
    out = optimal_lr(sweep(loss, status=status))  # finite losses, but flagged diverged
    assert out.n_diverged[0] == 5
    loss_inf = loss.copy()
    loss_inf[LRS > 4e-3] = np.inf
    out_inf = optimal_lr(sweep(loss_inf))
    assert out_inf.n_diverged[0] == 5
    assert out.lr_opt[0] == pytest.approx(out_inf.lr_opt[0])
    # Without the diverged runs the best LR would sit at the top edge, unbracketed.
    alone = optimal_lr(sweep(loss[LRS <= 4e-3], LRS[LRS <= 4e-3]))
    assert not alone.bracketed[0]


def test_too_few_finite_points():
    loss = np.full(LRS.size, np.nan)
    loss[[3, 4]] = [2.1, 2.0]
    out = optimal_lr(sweep(loss))
    assert not out.bracketed[0]
    assert "too few finite points (2 < 3)" in out.note[0]
    assert out.lr_opt[0] == LRS[4]
    none = optimal_lr(sweep(np.full(LRS.size, np.nan)))
    assert np.isnan(none.lr_opt[0]) and "all runs diverged" in none.note[0]


def test_seeds_at_one_lr_are_averaged():
    loss = quadratic(LRS, 3e-3)
    twice = pd.concat([sweep(loss + 0.01), sweep(loss - 0.01)])
    out = optimal_lr(twice)
    assert out.lr_opt[0] == pytest.approx(3e-3, rel=1e-9)
    assert out.n_points[0] == 10


def test_custom_group_keys_and_column_names():
    df = pd.DataFrame({"width": 256, "eta": LRS, "val": quadratic(LRS, 5e-3)})
    out = optimal_lr(df, ["width"], lr="eta", loss="val", status=None)
    assert out.width[0] == 256 and out.lr_opt[0] == pytest.approx(5e-3, rel=1e-9)
    with pytest.raises(ValueError, match="missing column"):
        optimal_lr(df)  # default keys arch, N, D, batch_size are not there


def test_lrs_equal_but_for_rounding_are_one_lr():
    lrs = np.array([1e-3, 2e-3, 4e-3, 8e-3, 3 * 0.1 / 3 * 0.08, 1.6e-2])  # 8.000000000000002e-3
    assert lrs[4] != lrs[3]
    out = optimal_lr(sweep(quadratic(lrs, 4e-3), lrs))
    assert out.n_points[0] == 5 and out.n_fit[0] == 3
    assert out.bracketed[0] and out.lr_opt[0] == pytest.approx(4e-3, rel=1e-9)
