"""Scaling laws from WSD branches (issue 22, item 4): can one constant-LR run per size, with
cooldowns branched off it, stand in for per-horizon cosine runs in the Chinchilla fit?

    python benchmarks/branch_study.py plan                 # runs and tokens of each design
    python benchmarks/branch_study.py run --workers 2      # resumable; SIGTERM stops cleanly
    python benchmarks/branch_study.py analyse              # the tables of docs/schedules.md
    python benchmarks/branch_study.py sized                # the Multi-Power Law across sizes

Two designs over the same grid, llama at five sizes (7xs..3xs, 10k-96k parameters, a decade)
and four horizons (HORIZONS steps of 16 x 128 tokens: 0.39M-3.1M tokens), each size at the
LR the architecture study's LR law gives it, seeds 0 and 1, warmup WARMUP steps everywhere:
- cosine: one run per (size, horizon), as the architecture study trains;
- wsd: one constant-LR run per size to the longest horizon, and a branch per horizon that
  leaves it COOLDOWN steps before that horizon and decays 1-sqrt to zero (runners.branches:
  a branch trains only its cooldown, from the stable run's checkpoint).
Both fit the Chinchilla law to their seed-mean final losses; each fit predicts held-out
cosine runs at xxs (211k parameters) and twice the longest horizon (two seeds), beyond both
designs' data. `analyse` reports the tokens (and FLOPs) each design trained, the paired
difference of the final losses against the seed noise, both fits' parameters and
allocation exponents, and both predictions against the held-out runs. Runs are committed as
benchmarks/data/branch_runs.parquet and branch_curves.parquet (restored into the
uncommitted log benchmarks/data/branch.duckdb on every start, so nothing trains twice).

`sized` fits the Multi-Power Law across the five sizes (fits.schedule.sized) to each design's
whole validation curves instead of their final losses, and predicts the held-out runs' curves.
"""

from __future__ import annotations

import sys
import tomllib
from collections.abc import Callable
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout, not an installed copy
from architecture_study import run_action, study_parser  # the study driver beside this one

from fits.errors import FitError
from fits.laws import training_compute
from fits.schedule.sized import SizedMultiPowerLaw
from runners.sizes import ladder
from scaling.curves import curves_frame
from scaling.errors import ScalingError
from scaling.experiments.architecture import Clock, sweep
from scaling.study import Study
from store import archive

HERE = Path(__file__).resolve().parent
DB = HERE / "data" / "branch.duckdb"
RUNS = HERE / "data" / "branch_runs.parquet"
CURVES = HERE / "data" / "branch_curves.parquet"
GENERATED = HERE / "experiments" / "generated"
PREFIX = "branch-"
SIZES = ("7xs", "6xs", "5xs", "4xs", "3xs")
HELD_OUT = "xxs"
HORIZONS = (192, 384, 768, 1536)  # steps; the held-out runs train 2 x the longest
COOLDOWN = 77  # steps: 20% of the second horizon (40%..5% of the others)
# Warmup steps, every run (a branch must share its stable run's warmup): 25% of the shortest
# horizon. A first pass with 16 stays in the Parquet (`analyse --warmup 16`): one run's
# seed SD was 0.106 there, seed 1 of the larger sizes stalling early, and a one-seed fit
# had loss rising with N.
WARMUP = 48
SEEDS = (0, 1)
SEQ_LEN, BATCH = 128, 16
TOKENS_PER_STEP = SEQ_LEN * BATCH


def law_lr(size: str) -> float:
    """The LR the architecture study's llama LR law gives the size (its IsoFLOP spec)."""
    spec = GENERATED / f"isoflop_llama_{size}.toml"
    return float(tomllib.loads(spec.read_text())["fixed"]["lr"])


def spec_text(name: str, size: str, fixed: dict, axes: dict, design: str = "") -> str:
    lines = [
        "# written by benchmarks/branch_study.py (issue 22, item 4)",
        f'name = "{PREFIX}{name}"',
        "[fixed]",
        'arch = "llama"',
        'precision = "fp32"',
        f"seq_len = {SEQ_LEN}",
        f"batch_size = {BATCH}",
        "eval_tokens = 32768",
        f"warmup = {WARMUP}",
        f"lr = {law_lr(size)}",
        *(f"{k} = {v!r}".replace("'", '"') for k, v in fixed.items()),
        "[axes]",
        f'size = ["{size}"]',
        *(f"{k} = {v!r}" for k, v in axes.items()),
    ]
    return "\n".join(lines) + "\n" + design


def specs() -> list[Path]:
    """Every spec of the study, written to GENERATED: cosine and wsd per size, held out."""
    written = []
    seeds = list(SEEDS)
    for size in SIZES:
        grid = {"tokens": [h * TOKENS_PER_STEP for h in HORIZONS], "seed": seeds}
        cosine = spec_text("cosine", size, {"schedule": "cosine"}, grid)
        at = [h - COOLDOWN for h in HORIZONS]
        design = (
            '[design]\nkind = "grid"\n'
            f'branches = {{ at = {at}, cooldown_steps = {COOLDOWN}, shape = "1-sqrt", '
            "floor = 0.0 }\n"
        )
        stable = {"schedule": "constant", "tokens": max(HORIZONS) * TOKENS_PER_STEP}
        wsd = spec_text("wsd", size, stable, {"seed": seeds}, design)
        for name, text in (("cosine", cosine), ("wsd", wsd)):
            path = GENERATED / f"branch_{name}_{size}.toml"
            path.write_text(text)
            written.append(path)
    held = {"schedule": "cosine", "tokens": 2 * max(HORIZONS) * TOKENS_PER_STEP}
    path = GENERATED / f"branch_heldout_{HELD_OUT}.toml"
    path.write_text(spec_text("heldout", HELD_OUT, held, {"seed": seeds}))
    return [*written, path]


def run(budget_s: float | None, workers: int) -> None:
    restored = archive.restore(DB, PREFIX, RUNS, CURVES)
    print(f"restored {restored} runs from {RUNS.name}")
    clock = Clock(budget_s)
    for spec in specs():
        if not sweep(spec, DB, clock, workers, RUNS, CURVES, prefix=PREFIX):
            return print("time budget spent or stopped: run again to go on")
    print("all runs done: next `analyse`")


# -- analyse -----------------------------------------------------------------------------
def read_runs(warmup: int = WARMUP) -> pd.DataFrame:
    """The finished runs trained with `warmup` steps of warmup."""
    if not RUNS.exists():
        sys.exit(f"no runs yet at {RUNS}: `python {Path(__file__).name} run` first")
    runs = duckdb.connect().execute("SELECT * FROM read_parquet(?)", [str(RUNS)]).df()
    return runs[(runs.status == "done") & (runs.warmup == warmup)]


def design_points(runs: pd.DataFrame) -> pd.DataFrame:
    """Final losses per (design, size, horizon, seed): cosine runs, and the wsd branches
    (the stable runs themselves are no point of the grid)."""
    cosine = runs[runs.sweep == f"{PREFIX}cosine"].assign(design="cosine")
    wsd = runs[(runs.sweep == f"{PREFIX}wsd") & runs.parent_run_id.notna()].assign(design="wsd")
    points = pd.concat([cosine, wsd])
    return points.assign(horizon=points.tokens // TOKENS_PER_STEP)


def trained_tokens(runs: pd.DataFrame) -> pd.DataFrame:
    """Tokens and FLOPs (6 N per token) each design trained: a branch trains only its
    cooldown, the rest it shares with its stable run."""
    rows = []
    for design in ("cosine", "wsd"):
        part = runs[runs.sweep == f"{PREFIX}{design}"]
        branch = part.parent_run_id.notna()
        tokens = np.where(branch, COOLDOWN * TOKENS_PER_STEP, part.tokens)
        rows.append({"design": design, "runs": len(part), "tokens": float(tokens.sum()),
                     "flops": float(training_compute(part.params, tokens).sum())})  # fmt: skip
    table = pd.DataFrame(rows).set_index("design")
    table["flops vs cosine"] = table.flops / table.flops["cosine"]
    return table


def paired(points: pd.DataFrame) -> pd.DataFrame:
    """wsd branch minus cosine run at the same size, horizon and seed, per horizon: mean,
    SD and the standard error of the mean over the (size, seed) pairs."""
    keys = ["params", "horizon", "seed"]
    wide = points.pivot_table(index=keys, columns="design", values="final_val_loss")
    gap = (wide.wsd - wide.cosine).groupby(level="horizon")
    table = gap.agg(["mean", "std", "count"])
    table["se"] = table["std"] / np.sqrt(table["count"])
    return table


def seed_sd(points: pd.DataFrame) -> float:
    """One run's seed SD from the seed pairs of both designs (pooled within-pair variance)."""
    wide = points.pivot_table(
        index=["design", "params", "horizon"], columns="seed", values="final_val_loss"
    )
    return float(np.sqrt(((wide[0] - wide[1]) ** 2).mean() / 2))


def fits(points: pd.DataFrame, held: pd.DataFrame) -> pd.DataFrame:
    """The Chinchilla law per design, on each seed alone and on the seed means, and its
    prediction for the held-out runs (their seed mean)."""
    target = held.groupby(["params", "tokens"]).final_val_loss.mean()
    (n, d), measured = target.index[0], float(target.iloc[0])
    rows = []
    groups = list(points.groupby(["design", "seed"]))
    groups += [((design, "mean"), part) for design, part in points.groupby("design")]
    for (design, seed), part in groups:
        mean = part.groupby(["params", "tokens"], as_index=False).final_val_loss.mean()
        ids = [f"{design}{seed}{i}" for i in range(len(mean))]
        frame = mean.assign(arch="llama", vocab_size=256, run_id=ids)  # bytes: ln 256 caps
        study = Study.from_frame(frame, n_bootstrap=200)
        try:
            law = study.fit("chinchilla", "llama").model
        except ScalingError as exc:
            rows.append({"design": design, "seed": seed, "points": len(mean), "E": str(exc)})
            continue
        p, a = law.params_, law.derived_["a"]
        a_lo, a_hi = law.derived_intervals_.get("a", (np.nan, np.nan))
        loss = study.predict_loss(n, d, "llama", law="chinchilla")
        rows.append({"design": design, "seed": seed, "points": len(mean),
                     "E": p["E"], "A": p["A"], "B": p["B"], "alpha": p["alpha"],
                     "beta": p["beta"], "a": f"{a:.3f} [{a_lo:.3f}, {a_hi:.3f}]",
                     "predicted": f"{loss.value:.3f} [{loss.lo:.3f}, {loss.hi:.3f}]",
                     "error": loss.value / measured - 1,
                     "held": loss.lo <= measured <= loss.hi})  # fmt: skip
    return pd.DataFrame(rows).set_index(["design", "seed"])


def analyse(warmup: int) -> None:
    runs = read_runs(warmup)
    points = design_points(runs)
    held = runs[runs.sweep == f"{PREFIX}heldout"]
    pd.set_option("display.width", 160)
    print("compute each design trained (a branch: only its cooldown):")
    print(trained_tokens(runs).to_string(float_format="{:.3g}".format))
    print("\nfinal loss, wsd branch minus cosine, same size, horizon and seed (per horizon):")
    print(paired(points).to_string(float_format="{:.4f}".format))
    print(f"one run's seed SD (seed pairs of both designs): {seed_sd(points):.4f}")
    if held.empty:
        return print("\nheld-out runs not trained yet")
    tokens = 2 * max(HORIZONS) * TOKENS_PER_STEP
    measured = ", ".join(f"{v:.3f}" for v in held.sort_values("seed").final_val_loss)
    print(f"\nChinchilla fits; their prediction for {HELD_OUT} at {tokens:,} tokens, against "
          f"the mean of its runs ({measured}):")  # fmt: skip
    print(fits(points, held).to_string(float_format="{:.4g}".format))


# -- sized: the Multi-Power Law across sizes on whole curves --------------------------------
def sized_frame(runs: pd.DataFrame, curves: pd.DataFrame) -> pd.DataFrame:
    """The runs' validation curves as the schedule laws' frame (run, step, lr, loss) with each
    run's N (total parameters, as the Chinchilla fits use); a branch's loss NaN before it
    leaves its stable run, whose own curve already holds those points."""
    frame = curves_frame(runs, curves[curves.run_id.isin(runs.run_id)], loss="val_loss")
    info = runs.set_index("run_id")
    frame["N"] = frame.run.map(info.params).astype(float)
    left_at = frame.run.map(info.branch_step).astype(float)
    frame.loc[left_at.notna() & (frame.step < left_at), "loss"] = np.nan
    return frame


def curve_errors(law: SizedMultiPowerLaw, frame: pd.DataFrame) -> pd.DataFrame:
    """Per run: the predicted and measured final loss, the mean relative error of the curve
    over its measured points after the warmup, and where the law has its band (sizes left
    out) the band's final ends and the share of those points inside it."""
    rows = []
    for run, part in frame.groupby("run"):
        part = part.sort_values("step")
        lrs, loss, N = part.lr.to_numpy(), part.loss.to_numpy(), float(part.N.iloc[0])
        predicted = law.predict(lrs, N)
        seen = np.isfinite(loss) & (part.step.to_numpy() > np.argmax(lrs))
        error = np.mean(np.abs(predicted[seen] / loss[seen] - 1))
        lo, hi, inside = np.full(len(lrs), np.nan), np.full(len(lrs), np.nan), np.nan
        if len(law.holdout_errors_):
            lo, hi = law.predict_interval(lrs, N)
            inside = np.mean((lo[seen] <= loss[seen]) & (loss[seen] <= hi[seen]))
        rows.append({"run": run, "N": N, "predicted": predicted[-1], "measured": loss[-1],
                     "curve": error, "lo": lo[-1], "hi": hi[-1], "inside": inside})  # fmt: skip
    return pd.DataFrame(rows)


def sized(warmup: int) -> None:
    runs = read_runs(warmup)
    curves = duckdb.connect().execute("SELECT * FROM read_parquet(?)", [str(CURVES)]).df()
    held = sized_frame(runs[runs.sweep == f"{PREFIX}heldout"], curves)
    designs = {d: runs[runs.sweep == f"{PREFIX}{d}"] for d in ("cosine", "wsd")}
    target = held.groupby("run").loss.last().mean()
    steps = 2 * max(HORIZONS)
    print(f"Multi-Power Law across sizes, fitted on each design's validation curves; held "
          f"out: {HELD_OUT} cosine at {steps} steps, measured {target:.3f} (mean)")  # fmt: skip
    rows, loso = [], []
    for design, part in designs.items():
        for seed in ("both", *SEEDS):
            chosen = part if seed == "both" else part[part.seed == seed]
            frame = sized_frame(chosen, curves)
            law = SizedMultiPowerLaw(calibrate=seed == "both").fit(frame)
            if seed == "both":
                print(f"\n{design}:\n{law.summary()}")
            try:
                scored = curve_errors(law, held)
            except FitError as exc:  # a curve that reaches loss <= 0: say so, score nothing
                print(f"\n{design}, seed {seed}: {exc}")
                scored = pd.DataFrame({k: [np.nan] for k in ("predicted", "curve", "lo", "hi",
                                                              "inside")})  # fmt: skip
            rms = np.sqrt(law.objective_ / law.n_points_)
            rows.append({"design": design, "seeds": seed, "points": law.n_points_,
                         "fit rms": rms, "predicted": scored.predicted.mean(),
                         "error": scored.predicted.mean() / target - 1,
                         "curve error": scored.curve.mean(),
                         "90% band, final": f"[{scored.lo.mean():.3f}, {scored.hi.mean():.3f}]",
                         "band holds": scored.inside.mean(),
                         "at a bound": ", ".join(law.pinned_)})  # fmt: skip
        frame = sized_frame(part, curves)
        cosine = sized_frame(designs["cosine"], curves)
        for N in sorted(frame.N.unique()):
            law = SizedMultiPowerLaw(calibrate=False).fit(frame[frame.N != N])
            scored = curve_errors(law, cosine[cosine.N == N])
            final = (scored.predicted / scored.measured - 1).abs().mean()
            loso.append({"design": design, "left out N": int(N), "final |error|": final,
                         "curve error": scored.curve.mean()})  # fmt: skip
    print("\nprediction of the held-out runs (mean of their two seeds):")
    print(pd.DataFrame(rows).set_index(["design", "seeds"]).to_string(float_format="{:.4f}".format))
    print("\nfitted without one size, scored on that size's eight cosine runs:")
    table = pd.DataFrame(loso).set_index(["design", "left out N"])
    print(table.to_string(float_format="{:.4f}".format))
    print(table.groupby(level="design").mean().to_string(float_format="{:.4f}".format))


def plan() -> None:
    rungs = ladder("llama", SEQ_LEN).set_index("name")
    cooldowns = len(HORIZONS) * COOLDOWN  # one branch per horizon
    for design, steps in (("cosine", sum(HORIZONS)), ("wsd", max(HORIZONS) + cooldowns)):
        n = rungs.loc[list(SIZES), "params"]
        tokens = steps * TOKENS_PER_STEP * len(SEEDS)
        print(f"{design}: {tokens * len(SIZES) / 1e6:.1f}M tokens, "
              f"{training_compute(n.sum(), tokens):.3g} FLOPs")  # fmt: skip
    held = 2 * max(HORIZONS) * TOKENS_PER_STEP * len(SEEDS)
    print(f"held out: {HELD_OUT}, {held / 1e6:.1f}M tokens")


def main() -> None:
    parser = study_parser(__doc__, ("plan", "run", "analyse", "sized"))
    parser.add_argument("--warmup", type=int, default=WARMUP, help="analyse: runs with it")
    args = parser.parse_args()
    actions: dict[str, Callable[[], object]] = {
        "plan": plan,
        "run": lambda: run(args.time_budget, args.workers),
        "analyse": lambda: analyse(args.warmup),
        "sized": lambda: sized(args.warmup),
    }
    run_action(actions[args.what])


if __name__ == "__main__":
    main()
