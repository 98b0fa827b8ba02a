"""Adaptive sweep design against a grid and random picks, replayed on Epoch's Chinchilla runs.

No training: Epoch's 245 Chinchilla points are the runs one could do, each costing 6ND. The
top 10% of compute is held out as the target: the mean loss of those runs. Every strategy
starts from the cheapest 20% of the rest and spends the same compute from the remaining pool:

- adaptive: scaling.sweeps.adaptive.plan_round, rounds of ROUND_SIZE picks, refitted after
  each round;
- grid: the pool in order of compute, cheapest first, as a person extends a ladder;
- random: the pool in a random order (40 seeds), each run taken while it fits the budget.

At each checkpoint (fractions of the grid's total compute) it prints the target's calibrated
interval width (design criterion: delta method + kappa d, from a refit on the runs bought),
the |relative error| of the predicted mean target loss, and the coverage of the held-out
runs by the criterion's interval for each alone. Random orders also give the spread of the
width one design of that cost can land on, and whether the narrowest of them still cover
(a planner that chased a narrow width would pick designs like them). At the end, the Study's own
calibrated interval (bootstrap, 200 draws) for adaptive at half the compute and for the grid
at its end, as a check that the criterion's widths are the widths users see.

Refits are warm-started from the local optima of full-grid fits on the start runs and on the
whole pool (a basin, not the data: each refit's optimum is its own runs'), so every strategy
is fitted the same way. Run time: a few minutes on 2 cores.

    python benchmarks/adaptive_design.py [--round-size 4] [--seeds 40]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout, not an installed copy

from scaling import Study, datasets
from scaling.sweeps.adaptive import LawState, expected_width, fit_law, plan_round
from scaling.sweeps.rounds import Target

LEVEL = 0.90
FRACTIONS = (1 / 64, 1 / 32, 1 / 16, 1 / 8, 1 / 4, 1 / 2, 1.0)
RANDOM_AT = (1 / 16, 1 / 4, 1 / 2)  # random seeds are refitted here only (run time)


def split() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Target (top 10% of compute), start (cheapest 20% of the rest) and the pool left."""
    runs = datasets.load("chinchilla-epoch")
    runs = runs.assign(cost=6.0 * runs.N * runs.D).sort_values("cost", kind="stable")
    runs = runs.reset_index(drop=True)
    n_target = round(0.1 * len(runs))
    target, rest = runs.iloc[-n_target:], runs.iloc[:-n_target]
    n_start = round(0.2 * len(rest))
    return target, rest.iloc[:n_start], rest.iloc[n_start:]


def score(state: LawState, runs: pd.DataFrame, target: pd.DataFrame, goal: Target) -> dict:
    """Width by the design criterion, |relative error| of the target runs' mean loss, and the
    share of target runs inside the criterion's interval for each one alone."""
    pred = float(np.mean(state.model.predict_frame(target)))
    actual = float(target.loss.mean())
    width = expected_width(runs, goal, state, LEVEL)
    return {"width": width, "error": abs(pred - actual) / actual, "n": len(runs),
            "coverage": coverage(state, runs, target)}  # fmt: skip


def coverage(state: LawState, runs: pd.DataFrame, target: pd.DataFrame) -> float:
    """Share of the target runs whose loss lies in the criterion's interval for that run."""
    hits = []
    for n, d, loss in zip(target.N, target.D, target.loss, strict=True):
        half = math.asinh(expected_width(runs, Target("loss", (n,), (d,)), state, LEVEL) / 2)
        pred = float(state.model.predict_frame(pd.DataFrame({"N": [n], "D": [d]}))[0])
        hits.append(abs(math.log(loss / pred)) <= half)
    return float(np.mean(hits))


def checkpoints(order: list[int], pool: pd.DataFrame, total: float) -> dict[float, list[int]]:
    """For each fraction of the budget, the runs of `order` bought while they fit in it."""
    out = {}
    for f in FRACTIONS:
        spent, chosen = 0.0, []
        for i in order:
            if spent + pool.cost.iloc[i] <= f * total * (1 + 1e-9):
                chosen.append(i)
                spent += pool.cost.iloc[i]
        out[f] = chosen
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--round-size", type=int, default=4)
    parser.add_argument("--seeds", type=int, default=40)
    args = parser.parse_args()
    started = time.monotonic()
    target, start, pool = split()
    pool = pool.reset_index(drop=True)
    total = float(pool.cost.sum())
    goal = Target("loss", tuple(target.N), tuple(target.D))
    anchors = [
        fit_law(start, "chinchilla", LEVEL).model,
        fit_law(pd.concat([start, pool]), "chinchilla", LEVEL).model,
    ]

    def evaluate(chosen: list[int]) -> dict:
        runs = pd.concat([start, pool.iloc[chosen]])
        return score(fit_law(runs, "chinchilla", LEVEL, anchors), runs, target, goal)

    print(
        f"pool: {len(pool)} runs ({total:.3g} FLOPs), start: the cheapest {len(start)} "
        f"({start.cost.sum():.3g} FLOPs), target: the {len(target)} largest-compute runs "
        f"(C {target.cost.min():.2g}..{target.cost.max():.2g}, held out)"
    )

    # adaptive: rounds until the whole budget is spent or nothing narrows the width
    picked: list[int] = []
    spent, trace = 0.0, []
    while True:
        runs = pd.concat([start, pool.iloc[picked]])
        state = fit_law(runs, "chinchilla", LEVEL, anchors)
        trace.append({"spent": spent / total, "picked": list(picked),
                      **score(state, runs, target, goal)})  # fmt: skip
        left = pool.drop(index=picked)
        plan = plan_round(runs, left, goal, state, args.round_size, total - spent, LEVEL)
        if plan.picks.empty:
            break
        picked += [int(left.index[i]) for i in plan.picks["index"]]
        spent += float(plan.picks.cost.sum())
    grid = checkpoints(list(range(len(pool))), pool, total)
    grid_at = {f: evaluate(grid[f]) for f in FRACTIONS}
    final_width = grid_at[1.0]["width"]
    orders = [list(np.random.default_rng(s).permutation(len(pool))) for s in range(args.seeds)]
    random_at = {f: [evaluate(checkpoints(o, pool, total)[f]) for o in orders] for f in RANDOM_AT}
    random_at[1.0] = [grid_at[1.0]]  # every order buys the whole pool
    rows = []
    for f in FRACTIONS:
        a = [t for t in trace if t["spent"] <= f * (1 + 1e-9)][-1]  # the last round within f
        g, rand = grid_at[f], random_at.get(f, [])
        widths = np.array([r["width"] for r in rand])
        rows.append(
            {
                "compute": f,
                "adaptive_width": a["width"],
                "adaptive_err": a["error"],
                "adaptive_cov": a["coverage"],
                "adaptive_n": a["n"],
                "grid_width": g["width"],
                "grid_err": g["error"],
                "grid_cov": g["coverage"],
                "random_width": np.median(widths) if rand else np.nan,
                "random_p10": np.quantile(widths, 0.1) if rand else np.nan,
                "random_reach": np.mean(widths <= final_width) if rand else np.nan,
                "random_err": np.median([r["error"] for r in rand]) if rand else np.nan,
                "random_cov": np.mean([r["coverage"] for r in rand]) if rand else np.nan,
            }
        )
    table = pd.DataFrame(rows)
    shown = table.copy()
    for c in shown.columns:
        if c.endswith(("width", "err", "cov", "p10", "reach")):
            shown[c] = ["-" if np.isnan(v) else f"{v:.2%}" for v in shown[c]]
    shown["compute"] = [f"{v:.3g}" for v in shown["compute"]]
    print("\ninterval width (90%, relative), |error| of the target and coverage of its runs, by")
    print("compute spent (compute: fraction of the grid's total; random: median of the seeds,")
    print("p10 its 10th percentile, reach the share at or below the grid's final width; cov:")
    print("share of the held-out runs inside the criterion's interval for each alone, random's")
    print("the mean over seeds)")
    print(shown.to_string(index=False))
    print("\nadaptive rounds (compute spent before the round, runs bought, width, error):")
    for t in trace:
        print(f"  {t['spent']:8.4f}  {t['n']:4d}  {t['width']:.2%}  {t['error']:.2%}")
    print("\nrandom orders by their width at each checkpoint: is a narrow width an honest one?")
    for f in RANDOM_AT:
        rand = sorted(random_at[f], key=lambda r: r["width"])
        quarter = max(1, len(rand) // 4)
        narrow, rest = rand[:quarter], rand[quarter:]
        print(
            f"  at {f:.3g}: narrowest quarter ({len(narrow)} orders) width "
            f"{np.median([r['width'] for r in narrow]):.2%}, coverage "
            f"{np.mean([r['coverage'] for r in narrow]):.1%}; the rest width "
            f"{np.median([r['width'] for r in rest]):.2%}, coverage "
            f"{np.mean([r['coverage'] for r in rest]):.1%}"
        )

    print("\nthe grid's width at each checkpoint, and when adaptive first reaches it (a subset of")
    print("the pool beats the whole pool only by how its kappa, noise and scatter happen to be")
    print("measured: its information and box are at most the pool's)")
    for f in FRACTIONS:
        g = grid_at[f]
        reach = [t for t in trace if t["width"] <= g["width"]]
        print(
            f"  grid at {f:.3g}: width {g['width']:.2%}, error {g['error']:.2%}; adaptive "
            + (
                f"after {reach[0]['spent']:.3f} of the compute, {reach[0]['n']} runs, "
                f"error {reach[0]['error']:.2%}"
                if reach
                else "does not reach it"
            )
        )
    half_picks = [t for t in trace if t["spent"] <= 0.5][-1]["picked"]
    check = [("adaptive at 1/2", half_picks), ("grid at 1", grid[1.0])]
    print("single target runs, median over them: the criterion's width against the Study's")
    print("calibrated interval (200 bootstrap draws), and the Study's coverage:")
    for name, chosen in check:
        runs = pd.concat([start, pool.iloc[chosen]])
        state = fit_law(runs, "chinchilla", LEVEL, anchors)
        points = list(zip(target.N, target.D, strict=True))
        criterion = [expected_width(runs, Target("loss", (n,), (d,)), state) for n, d in points]
        study = Study.from_frame(runs[["N", "D", "loss"]], level=LEVEL, n_bootstrap=200)
        preds = [study.predict_loss(n, d, law="chinchilla") for n, d in points]
        w = np.median([(p.hi - p.lo) / p.value for p in preds])
        covered = np.mean([p.lo <= y <= p.hi for p, y in zip(preds, target.loss, strict=True)])
        print(
            f"  {name}: criterion {np.median(criterion):.2%}, Study {w:.2%}, coverage {covered:.0%}"
        )
    print(f"({time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main()
