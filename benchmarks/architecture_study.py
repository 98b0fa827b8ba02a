"""The architecture study (issues 13 and 23): scaling laws of llama, tnl_spread, hgrn2 and
cosformer2 from our own runners, predictions beyond the largest budget committed before the
runs that check them, and those runs.

    python benchmarks/architecture_study.py plan                 # worker-hours per stage
    python benchmarks/architecture_study.py run --time-budget 2h # the stages below, in order
    python benchmarks/architecture_study.py predict              # then commit its file
    python benchmarks/architecture_study.py validate --time-budget 1h
    python benchmarks/architecture_study.py analyse              # figures + numbers

Every step is idempotent and resumable across sessions, and SIGTERM stops it cleanly (the
finished runs are exported). The run log (benchmarks/data/experiments.duckdb) is not
committed, so each step first restores the committed runs (benchmarks/data/
architecture_runs.parquet and architecture_curves.parquet) into it with their original run
ids and status, and exports again after every sweep: a fresh checkout trains nothing twice.
Files to commit after a session: those two Parquet files and benchmarks/experiments/
generated/ (the specs written from the LR law and the results, and the predictions).

`run`, stage by stage:
1. tnlcheck: arch_tnlcheck_*.toml, TNL at its committed 7xs config with one head, four
   heads and the per-channel decay (tnl_spread), two seeds, beside cosformer2.
2. lr: per architecture an LR scan (arch_lr_ARCH.toml, 3 sizes at 500k tokens, refined
   until bracketed), then the LR law LR*(N) = B N^-alpha (Study lr-law, porian form).
3. isoflop: arch_isoflop_ARCH.toml is the template (5 budgets over two decades); one spec
   per (arch, size) is written to generated/ at that size's budgets (RUNG_BUDGETS) with its
   LR from the law (3 digits, frozen once written) and run under the template's sweep name.
4. seeds: seed 1 of the runs at and next to each budget's best seed-0 size (same sweep).
5. lrmin: the best size of each budget at 0.5 and 2 x its LR (sweep arch-lrmin-ARCH): is
   the law's LR near-optimal at every IsoFLOP horizon?
`predict`: per architecture, Study's default law on the seed-averaged IsoFLOP runs, the
compute-optimal N at VALIDATE_FACTOR x the largest budget, the rung nearest it, D = that
compute / the rung's FLOPs per token and LR from the law; the predicted loss with its 90%
prediction interval goes to PREDICTIONS with the sha256 of the runs it was fitted on, and one
validation spec per architecture (seeds 1 and 2: no earlier run can answer it). Refuses to
predict again once written.
`validate`: refuses until PREDICTIONS is committed (and the fitted runs still hash to its
sha256), then trains the validation runs and prints measured against predicted.
`analyse`: reads only the Parquet files: the TNL check, seed noise, IsoFLOP exponents with
the sensitivity table, Chinchilla laws, frontiers, LR checks, validation; docs/arch_*.png.
`plan`: each stage's runs left and their worker-hours from the throughput model.
"""

from __future__ import annotations

import argparse
import json
import math
import signal
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from cli.sweep import duration as parse_duration  # noqa: E402
from fits import FitError, LogLinearLaw  # noqa: E402
from fits.throughput import ThroughputModel, backtest  # noqa: E402
from runners.sizes import ladder  # noqa: E402
from runners.sweeps.designs import Planner  # noqa: E402
from runners.sweeps.spec import load_spec, loads_spec  # noqa: E402
from scaling.errors import ScalingError  # noqa: E402
from scaling.experiments import architecture  # noqa: E402
from scaling.experiments.architecture import (  # noqa: E402
    ARCHS,
    ISOFLOP_NEIGHBORS,
    LR_AT_MIN,
    PREFIX,
    RUNG_BUDGETS,
    TNL_CHECK,
    Clock,
    budget_list,
    isoflop_runs,
    law_lr,
    lr_at_minima,
    lr_checks,
    lr_law,
    runs_sha256,
    seed_mean,
    seed_noise,
    sensitivity,
    spec_text,
    tnl_check,
)
from scaling.study import Study  # noqa: E402
from scaling.sweeps.book import plan_sweep  # noqa: E402
from store import archive  # noqa: E402
from store.db import connect  # noqa: E402
from store.sweeps import FINISHED  # noqa: E402

matplotlib.use("Agg")
DB = HERE / "data" / "experiments.duckdb"
RUNS = HERE / "data" / "architecture_runs.parquet"
CURVES = HERE / "data" / "architecture_curves.parquet"
SPECS = HERE / "experiments"
GENERATED = SPECS / "generated"
DOCS = HERE.parent / "docs"
VALIDATE_FACTOR = 3.0  # validation runs at this multiple of the largest IsoFLOP budget
VALIDATE_SEEDS = (1, 2)  # not 0: the first study's validation runs (seed 0) may coincide
PREDICTIONS = GENERATED / "predictions_seeded.json"
SEEDS_NEAR_MIN = (1,)  # seeds added at each budget's best size and its neighbours
UNIFORM_LOSS = math.log(256)  # a byte-level model's uniform guess: no interval ends above it
WALLCLOCK_HOURS = (0.1, 2.0)  # within the study's longest runs (4-9 min), and the 2 h


def restore(db: Path, runs: Path = RUNS, curves: Path = CURVES) -> int:
    """The committed runs into the log (store.archive.restore for the study's sweeps)."""
    return archive.restore(db, PREFIX, runs, curves)


def sweep(spec: Path, db: Path, clock: Clock, workers: int) -> bool:
    """One sweep of the study, its runs exported to the committed Parquet files."""
    return architecture.sweep(spec, db, clock, workers, RUNS, CURVES)


def isoflop_specs(db: Path, arch: str) -> list[Path]:
    return architecture.isoflop_specs(db, arch, SPECS, GENERATED)


SHEN = pd.DataFrame(  # Shen et al. 2024, loss envelope fits (issue 13)
    {
        "arch": ("llama", "tnl", "hgrn2", "cosformer2"),
        "L(C) coefficient": [3.7087, 3.5391, 3.4788, 3.5877],
        "L(C) exponent": [-0.0798, -0.0768, -0.0753, -0.0756],
        "N_opt exponent": [0.712, 0.647, 0.643, 0.652],
        "D_opt exponent": [0.510, 0.468, 0.450, 0.453],
    }
)


# -- run: LR scans, LR law, IsoFLOP ------------------------------------------------------
def log_runs(db: Path) -> pd.DataFrame:
    """The study's finished runs in the log (read-only)."""
    if not db.exists():
        return pd.DataFrame(columns=["sweep", "arch", "status"])
    with connect(db, read_only=True) as con:
        query = f"SELECT * EXCLUDE (config) FROM runs WHERE sweep LIKE '{PREFIX}%'"
        return con.execute(query).df()


def near_minimum(runs: pd.DataFrame, arch: str) -> dict[float, tuple[str, list[str]]]:
    """Per budget: the best seed-0 size, and it with its neighbours in size (rung names).
    Runs at a shape the ladder no longer has (a rung moved since) are not candidates."""
    sizes = {int(r.params): name for name, r in ladder(arch).set_index("name").iterrows()}
    picked = {}
    grids = isoflop_runs(runs, arch, SPECS).query("seed == 0")
    for budget, group in grids[grids.params.isin(list(sizes))].groupby("budget"):
        group = group.sort_values("params").reset_index(drop=True)
        best = int(group.final_val_loss.idxmin())
        near = group.params.iloc[max(0, best - 1) : best + 2]
        picked[float(budget)] = (sizes[int(group.params[best])], [sizes[int(n)] for n in near])
    return picked


def seed_specs(db: Path, arch: str) -> list[Path]:
    """Seed(s) SEEDS_NEAR_MIN of the runs at and next to each budget's best seed-0 size, at
    that size's frozen LR, under the IsoFLOP sweep's name."""
    template = tomllib.loads((SPECS / f"arch_isoflop_{arch}.toml").read_text())
    by_size: dict[str, list[float]] = {}
    for budget, (_, sizes) in near_minimum(log_runs(db), arch).items():
        for size in sizes:
            by_size.setdefault(size, []).append(budget)
    specs = []
    for size, budgets in by_size.items():
        frozen = tomllib.loads((GENERATED / f"isoflop_{arch}_{size}.toml").read_text())
        lr = float(frozen["fixed"]["lr"])
        path = GENERATED / f"seeds_{arch}_{size}.toml"
        axes = {"size": [size], "seed": list(SEEDS_NEAR_MIN)}
        why = f"seeds {SEEDS_NEAR_MIN} at or next to the best size of these budgets, lr = {lr}"
        path.write_text(spec_text(template, axes, lr, why, sorted(budgets)))
        specs.append(path)
    return specs


def lr_min_specs(db: Path, arch: str) -> list[Path]:
    """The best seed-0 size of each budget at LR_AT_MIN x its LR (sweep arch-lrmin-ARCH)."""
    template = tomllib.loads((SPECS / f"arch_isoflop_{arch}.toml").read_text())
    by_size: dict[str, list[float]] = {}
    for budget, (best, _) in near_minimum(log_runs(db), arch).items():
        by_size.setdefault(best, []).append(budget)
    specs = []
    for size, budgets in by_size.items():
        frozen = tomllib.loads((GENERATED / f"isoflop_{arch}_{size}.toml").read_text())
        lr = float(frozen["fixed"]["lr"])
        lrs = [float(f"{lr * f:.3g}") for f in LR_AT_MIN]
        path = GENERATED / f"lrmin_{arch}_{size}.toml"
        named = {**template, "name": f"{PREFIX}lrmin-{arch}"}
        why = f"the law's lr {lr} x {LR_AT_MIN} at the budgets where {size} is best"
        path.write_text(spec_text(named, {"size": [size], "lr": lrs}, None, why, sorted(budgets)))
        specs.append(path)
    return specs


def run(db: Path, budget_s: float | None, workers: int) -> None:
    print(f"restored {restore(db)} runs from {RUNS.name}")
    clock = Clock(budget_s)
    stages = [
        ("tnlcheck", lambda: [SPECS / f"arch_tnlcheck_{a}.toml" for a in TNL_CHECK]),
        ("lr", lambda: [SPECS / f"arch_lr_{a}.toml" for a in ARCHS]),
        ("isoflop", lambda: [p for a in ARCHS for p in isoflop_specs(db, a)]),
        ("seeds", lambda: [p for a in ARCHS for p in seed_specs(db, a)]),
        ("lrmin", lambda: [p for a in ARCHS for p in lr_min_specs(db, a)]),
    ]
    for name, specs in stages:
        for spec in specs():
            if not sweep(spec, db, clock, workers):
                return print(f"stage {name}: time budget spent or stopped: run again to go on")
        print(f"stage {name} done")
    print("all stages done: next `predict`, commit its file, then `validate`")


# -- predict, commit, verify -------------------------------------------------------------
def predict(db: Path) -> None:
    restore(db)
    if PREDICTIONS.exists():
        print(f"predictions already made before validation ({PREDICTIONS}):")
        return print(PREDICTIONS.read_text())
    runs = log_runs(db)
    predictions = {}
    for arch in ARCHS:
        fitted = isoflop_runs(runs, arch, SPECS)
        if fitted.budget.nunique() < 5:
            sys.exit(f"{arch}: IsoFLOP runs at {fitted.budget.nunique()} budgets: finish `run`")
        study = Study.from_frame(seed_mean(fitted), n_bootstrap=200)
        budget = VALIDATE_FACTOR * float(fitted.budget.max())
        optimal = study.compute_optimal(budget, arch)
        if not math.isfinite(optimal.N.value):
            sys.exit(f"{arch}: the Chinchilla fit gives no finite N_opt at {budget:.3g} FLOPs")
        rungs = ladder(arch, int(fitted.seq_len.iloc[0])).set_index("name")
        size = str((np.log(rungs.params) - math.log(optimal.N.value)).abs().idxmin())
        n, per_token = float(rungs.loc[size, "params"]), float(rungs.loc[size, "flops_per_token"])
        tokens = round(budget / per_token)
        loss = study.predict_loss(n, tokens, arch)
        lr = law_lr(lr_law(db, arch), n)
        template = tomllib.loads((SPECS / f"arch_isoflop_{arch}.toml").read_text())
        template = {"name": f"{PREFIX}verify", "fixed": {**template["fixed"], "tokens": tokens}}
        why = f"lr = {lr} from the LR law, C = {budget:.3g}"
        axes = {"size": [size], "seed": list(VALIDATE_SEEDS)}
        (GENERATED / f"verify_{arch}.toml").write_text(spec_text(template, axes, lr, why))
        predictions[arch] = {
            "C": budget, "N_opt": optimal.N.value, "size": size, "N": n, "D": tokens,
            "lr": lr, "loss": loss.value, "lo": loss.lo, "hi": loss.hi, "level": loss.level,
            "fitted_runs": len(fitted), "fitted_sha256": runs_sha256(fitted),
        }  # fmt: skip
        print(f"{arch}: C = {budget:.3g}, N_opt {optimal.N.value:.3g} -> {size} ({n:.3g}), "
              f"D = {tokens:.3g}, lr {lr}: {loss}")  # fmt: skip
    PREDICTIONS.write_text(json.dumps(predictions, indent=1) + "\n")
    print(f"commit {PREDICTIONS.relative_to(HERE.parent)} (and generated/verify_*.toml) "
          "before `validate`: it refuses to train until they are committed")  # fmt: skip


def committed(path: Path) -> bool:
    """Whether git holds `path` in HEAD, unmodified in the working tree."""
    root, name = HERE.parent, str(path.relative_to(HERE.parent))
    tracked = subprocess.run(["git", "cat-file", "-e", f"HEAD:{name}"], cwd=root).returncode
    clean = subprocess.run(["git", "diff", "--quiet", "HEAD", "--", name], cwd=root).returncode
    return tracked == 0 and clean == 0


def validate(db: Path, budget_s: float | None, workers: int) -> None:
    restore(db)
    if not PREDICTIONS.exists():
        sys.exit("no predictions yet: run `predict` first (before the validation runs)")
    if not committed(PREDICTIONS):
        sys.exit(f"commit {PREDICTIONS.name} first: the predictions must be on record before "
                 "any validation run starts")  # fmt: skip
    predictions = json.loads(PREDICTIONS.read_text())
    runs = log_runs(db)
    for arch, p in predictions.items():
        if runs_sha256(isoflop_runs(runs, arch, SPECS)) != p["fitted_sha256"]:
            sys.exit(f"{arch}: the IsoFLOP runs changed since the predictions were made "
                     "(their sha256 differs): predictions and runs no longer match")  # fmt: skip
    clock = Clock(budget_s)
    for arch in predictions:
        if not sweep(GENERATED / f"verify_{arch}.toml", db, clock, workers):
            return print("time budget spent: run again to go on")
    report_validation(read_runs(RUNS), predictions, f"{PREFIX}verify")


def report_validation(
    runs: pd.DataFrame, predictions: dict, sweep_name: str = f"{PREFIX}validate"
) -> pd.DataFrame:
    """Predicted (90% prediction interval, its upper end clipped at ln 256, the uniform
    guess) against the measured runs: each seed, their mean and whether it lies inside."""
    done = runs[(runs.sweep == sweep_name) & (runs.status == "done")]
    rows = []
    for arch, p in predictions.items():
        match = done[(done.arch == arch) & (done.params == p["N"]) & (done.tokens <= p["D"])]
        if match.empty:
            continue
        measured = float(match.final_val_loss.mean())
        rows.append({**{k: p[k] for k in ("C", "size", "N", "D", "loss", "lo")},
                     "hi": min(p["hi"], UNIFORM_LOSS), "arch": arch,
                     "seeds": ", ".join(f"{v:.3f}" for v in match.final_val_loss),
                     "measured": measured, "rel_error": p["loss"] / measured - 1,
                     "held": p["lo"] <= measured <= p["hi"]})  # fmt: skip
    table = pd.DataFrame(rows)
    print(f"\nvalidation runs ({sweep_name}): predicted (90% prediction interval) against measured")
    print(table.to_string(index=False) if rows else "  none trained yet")
    if rows:
        fig, ax = plt.subplots(figsize=(5, 4))
        error = [table.loss - table.lo, table.hi - table.loss]
        ax.errorbar(table.arch, table.loss, yerr=error, fmt="o", capsize=4, label="predicted")
        ax.plot(table.arch, table.measured, "kx", ms=8, label="measured (seed mean)")
        title = f"validation runs at {table.C.max():.2g} FLOPs"
        ax.set(ylabel="final validation loss", title=title)
        ax.legend(fontsize=7)
        fig.tight_layout()
        name = "validation" if sweep_name == f"{PREFIX}validate" else "verify"
        fig.savefig(DOCS / f"arch_{name}.png", dpi=100)
    return table


# -- analyse -----------------------------------------------------------------------------
def read_runs(path: Path) -> pd.DataFrame:
    return duckdb.connect().execute("SELECT * FROM read_parquet(?)", [str(path)]).df()


def analyse(runs_path: Path) -> None:
    if not runs_path.exists():
        sys.exit(f"no results at {runs_path}: run `python {Path(__file__).name} run` first")
    runs = read_runs(runs_path)
    DOCS.mkdir(exist_ok=True)
    table = tnl_check(runs, SPECS)
    print("\nTNL check (d 20, 1 layer; tnl and tnl_spread at 7.4M tokens, LR 0.0691;")
    print("cosformer2 at the same 6.3e11 FLOPs, its LR 0.0196): final validation loss per seed")
    print(table.to_string(index=False) if len(table) else "  not run yet")
    noise = seed_noise(runs)
    print("\nseed noise (configurations trained with >= 2 seeds): pooled SD of the final loss")
    print(noise.reset_index().to_string(index=False) if len(noise) else "  none yet")
    grids = {a: seed_mean(isoflop_runs(runs, a, SPECS)) for a in ARCHS}
    iso = pd.concat([g for g in grids.values() if not g.empty])
    study = Study.from_frame(iso, n_bootstrap=200)
    laws, rows = {}, []
    fig, axes = plt.subplots(1, len(ARCHS), figsize=(4 * len(ARCHS), 3.6), sharey=True)
    for ax, arch in zip(axes, ARCHS, strict=True):
        data = grids[arch]
        for budget, group in data.groupby("budget"):
            group = group.sort_values("params")
            ax.plot(group.params, group.final_val_loss, "o-", ms=3, label=f"C={budget:.2g}")
        ax.set(xscale="log", xlabel="parameters N", title=arch)
        ax.legend(fontsize=6)
        row: dict[str, Any] = {"arch": arch, "runs": len(data)}
        for law, options in (("isoflop", {"n_neighbors": ISOFLOP_NEIGHBORS}), ("chinchilla", {})):
            try:
                row[law] = study.fit(law, arch, **options).model
            except ScalingError as exc:
                print(f"{arch}: {exc}")
        if "isoflop" in row:
            columns = ["C", "n_points", "N_opt", "D_opt", "loss_opt", "used", "note"]
            print(f"{arch} IsoFLOP budgets:\n{row['isoflop'].budgets_[columns].to_string()}")
        if "chinchilla" in row:
            laws[arch] = row["chinchilla"]
        fitted = _law_row(row.pop("isoflop", None), row.pop("chinchilla", None))
        rows.append({**row, **fitted})
    axes[0].set_ylabel("final validation loss (seed mean)")
    fig.tight_layout()
    fig.savefig(DOCS / "arch_isoflop.png", dpi=100)
    print("\nours (byte-level, CPU scale) beside Shen et al. 2024")
    print(pd.DataFrame(rows).to_string(index=False))
    print("Shen et al. 2024, published (70M-7B parameters, tokenized text; issue 13 recorded):")
    print(SHEN.to_string(index=False))
    print("\nsensitivity of N_opt's exponent (90% intervals; seed-mean runs at the study budgets)")
    print(sensitivity(grids).to_string(index=False))
    if laws:
        frontiers(laws, iso.flops.min(), VALIDATE_FACTOR * iso.flops.max())
    for arch in (a for a in ARCHS if a != "llama" and a in laws and "llama" in laws):
        lo, hi = iso.flops.min() / 10, iso.flops.max() * 1e4
        print(study.crossover(arch, "llama", (lo, hi)))
    title = "LR check at the largest IsoFLOP size (the scans' horizon): the law's LR, x0.5, x2"
    _show(title, lr_checks(runs))
    title = "LR at each budget's best size (IsoFLOP horizons): the law's LR, x0.5, x2"
    _show(title, lr_at_minima(runs))
    first = GENERATED / "predictions.json"  # the first study's (issue 13), seed 0
    report_validation(runs, json.loads(first.read_text()), f"{PREFIX}validate")
    if PREDICTIONS.exists():
        report_validation(runs, json.loads(PREDICTIONS.read_text()), f"{PREFIX}verify")
    wallclock(runs)


def _show(title: str, table: pd.DataFrame) -> pd.DataFrame:
    print(f"\n{title}")
    print(table.to_string(index=False) if len(table) else "  not run yet")
    return table


def _law_row(isoflop: Any, chinchilla: Any) -> dict[str, str]:
    """The exponents with their 90% intervals and the Chinchilla parameters, as text."""
    row = {}
    if isoflop is not None:
        (a_lo, a_hi), (b_lo, b_hi) = isoflop.intervals_["a"], isoflop.derived_intervals_["b"]
        a, b = isoflop.params_["a"], isoflop.derived_["b"]
        row["N_opt exponent"] = f"{a:.3f} [{a_lo:.3f}, {a_hi:.3f}]"
        row["D_opt exponent"] = f"{b:.3f} [{b_lo:.3f}, {b_hi:.3f}]"
        envelope = loss_envelope(isoflop)
        (lo, hi), k = envelope.intervals_["k_C"], envelope.params_["k_C"]
        row["L(C) minima"] = f"{envelope.params_['c']:.3g} C^{k:.4f} [{lo:.4f}, {hi:.4f}]"
    if chinchilla is not None:
        for name in ("a", "b"):  # approach 3: N_opt, D_opt exponents of the law's allocation
            lo, hi = chinchilla.derived_intervals_.get(name, (math.nan, math.nan))
            row[f"Chinchilla {name}"] = f"{chinchilla.derived_[name]:.3f} [{lo:.3f}, {hi:.3f}]"
        p = chinchilla.params_
        row["Chinchilla"] = (
            f"E={p['E']:.3g} A={p['A']:.3g} B={p['B']:.3g} "
            f"alpha={p['alpha']:.3f} beta={p['beta']:.3f}"
        )
    return row


def loss_envelope(isoflop: Any) -> LogLinearLaw:
    """L(C) = c C^k through the used budgets' parabola minima, as Shen et al. fit their
    envelope: OLS in log space, with a t interval on k."""
    used = isoflop.budgets_[isoflop.budgets_.used]
    return LogLinearLaw(variables=("C",), target="loss").fit({"C": used.C}, used.loss_opt)


def frontiers(laws: dict, c_lo: float, c_hi: float) -> None:
    """Compute-optimal loss L(C) per architecture with its 90% band (Chinchilla draws)."""
    grid = np.geomspace(c_lo, c_hi, 60)
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for arch, law in laws.items():
        point = law.frontier(grid)
        band = law.frontier_draws(grid)
        lo, hi = np.nanpercentile(band, [5, 95], axis=0)
        (line,) = ax.plot(grid, point, label=arch)
        ax.fill_between(grid, lo, hi, color=line.get_color(), alpha=0.2)
        slope = np.polyfit(np.log(grid), np.log(point), 1)[0]
        print(f"{arch}: L(C) local exponent {slope:.4f} over {c_lo:.2g}..{c_hi:.2g} FLOPs")
    ax.set(xscale="log", xlabel="training FLOPs C (6ND)", ylabel="compute-optimal loss")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(DOCS / "arch_frontier.png", dpi=100)


def wallclock(runs: pd.DataFrame) -> None:
    """Throughput model (backtest on the largest shapes) and the best model within 0.1 and 2 h:
    `Study.optimal_within` with each arch's auto law on its IsoFLOP runs, as the CLI answers."""
    measured = runs[(runs.status == "done") & (runs.tokens_per_s > 0)]
    if measured.empty:
        return
    print("\n" + ThroughputModel().fit(measured).summary())
    try:
        held = backtest(measured)
        error = held.rel_error.abs()
        print(
            f"backtest (largest 25% of shapes held out): median |relative error| "
            f"{error.median():.1%}, max {error.max():.1%}"
        )
    except FitError as exc:  # too few shapes so far
        print(f"throughput backtest: {exc}")
    study = Study.from_frame(measured, n_bootstrap=200)
    for hours in WALLCLOCK_HOURS:
        try:
            answer = study.optimal_within(hours, where=f"sweep LIKE '{PREFIX}isoflop-%'")
        except ScalingError as exc:
            return print(f"wall-clock answer: {exc}")
        print(f"\nwithin {hours:g} h on this machine:\n{answer}")


# -- plan --------------------------------------------------------------------------------
def plan(runs_path: Path = RUNS) -> pd.DataFrame:
    """Runs left per stage and their worker-hours from the throughput model fitted on the
    committed runs (tnl_spread, until it has runs of its own, at hgrn2's cost: the same
    vector-decay kernel). Seeds, LR-at-minimum and validation runs depend on results not yet
    in: until their specs are written they are costed as SEEDS_NEAR_MIN x 3 and
    len(LR_AT_MIN) mean grid runs of each budget and 2 seeds at VALIDATE_FACTOR x the largest
    budget's mean run."""
    with tempfile.TemporaryDirectory() as tmp:  # the committed runs, not the busy live log
        db = Path(tmp) / "plan.duckdb"
        restore(db, runs_path, Path(tmp) / "no-curves.parquet")
        measured = read_runs(runs_path).query("status == 'done' and tokens_per_s > 0")
        model = ThroughputModel().fit(measured)
        stand_in = {"tnl_spread": "hgrn2"} if "tnl_spread" not in model.coef_ else {}
        rows, grids = [], []
        for stage, arch, spec in planned_specs():
            planned = plan_sweep(spec.name, Planner(spec), db).runs
            shapes = planned.assign(flops_per_token=planned.flops / planned.tokens,
                                    arch=planned.arch.replace(stand_in))  # fmt: skip
            planned["hours"] = planned.tokens * model.seconds_per_token(shapes) / 3600
            left = planned[~planned.status.isin(FINISHED)]
            rows.append({"stage": stage, "arch": arch, "runs": len(left),
                         "hours": float(left.hours.sum())})  # fmt: skip
            if stage == "isoflop":
                grids.append(planned.assign(budget=np.round(np.log10(planned.flops), 1)))
    # the runs whose specs are not written yet, at the mean cost of their budget's grid run
    written = {(row["stage"], row["arch"]) for row in rows}
    mean_run = pd.concat(grids).groupby(["arch", "budget"]).hours.mean()
    seeds, at_min = 3 * len(SEEDS_NEAR_MIN), len(LR_AT_MIN)
    for (arch, _), hours in mean_run.items():
        if ("seeds", arch) not in written:
            rows.append({"stage": "seeds", "arch": arch, "runs": seeds, "hours": seeds * hours})
        if ("lrmin", arch) not in written:
            rows.append({"stage": "lrmin", "arch": arch, "runs": at_min,
                         "hours": at_min * hours})  # fmt: skip
    largest = mean_run.groupby(level="arch").last()
    for arch, hours in largest.items():
        k = len(VALIDATE_SEEDS)
        if ("verify", arch) not in written:
            rows.append({"stage": "verify", "arch": arch, "runs": k,
                         "hours": k * VALIDATE_FACTOR * hours})  # fmt: skip
    table = pd.DataFrame(rows)
    per_stage = table.groupby("stage", sort=False)[["runs", "hours"]].sum()
    print(model.summary())
    print("\nruns left per stage and worker-hours (one worker, one thread, unloaded machine):")
    print(per_stage.round(2).to_string())
    print(f"total: {per_stage.runs.sum()} runs, {per_stage.hours.sum():.2f} worker-hours")
    return per_stage


def planned_specs() -> list[tuple[str, str, Any]]:
    """(stage, arch, spec) of every grid the driver runs, the IsoFLOP grids at a placeholder
    LR where the law has not set theirs yet (the cost does not depend on it), and the seeds,
    LR-at-minimum and validation specs written so far."""
    specs = [("tnlcheck", a, load_spec(SPECS / f"arch_tnlcheck_{a}.toml")) for a in TNL_CHECK]
    specs += [("lr", a, load_spec(SPECS / f"arch_lr_{a}.toml")) for a in ARCHS]
    for arch in ARCHS:
        template = tomllib.loads((SPECS / f"arch_isoflop_{arch}.toml").read_text())
        for size in template["axes"]["size"]:
            first, last = RUNG_BUDGETS[size]
            budgets = budget_list(template)[first : last + 1]
            frozen = GENERATED / f"isoflop_{arch}_{size}.toml"
            lr = (
                float(tomllib.loads(frozen.read_text())["fixed"]["lr"]) if frozen.exists() else None
            )
            text = spec_text(template, {"size": [size]}, lr, "plan", budgets)
            specs.append(("isoflop", arch, loads_spec(text)))
        for stage, pattern in (("seeds", f"seeds_{arch}_*"), ("lrmin", f"lrmin_{arch}_*"),
                               ("verify", f"verify_{arch}")):  # fmt: skip
            written = sorted(GENERATED.glob(f"{pattern}.toml"))
            specs += [(stage, arch, load_spec(path)) for path in written]
    return specs


def duration(text: str) -> float:
    try:
        return parse_duration(text)
    except Exception as exc:  # typer's BadParameter: one line from argparse instead
        raise argparse.ArgumentTypeError(str(exc)) from None


def study_parser(doc: str | None, actions: tuple[str, ...]) -> argparse.ArgumentParser:
    """A study driver's command line: the action, --time-budget and --workers."""
    parser = argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("what", choices=actions)
    parser.add_argument("--time-budget", type=duration, default=None, help="e.g. 2h, 90m, 600")
    parser.add_argument("--workers", type=int, default=2)
    return parser


def run_action(action: Callable[[], object]) -> None:
    """A driver's action, stopped by SIGTERM as by Ctrl-C (its sweep commits what finished);
    a ScalingError is one line."""
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        action()
    except ScalingError as exc:
        sys.exit(f"error: {exc}")


def main() -> None:
    parser = study_parser(__doc__, ("plan", "run", "predict", "validate", "analyse"))
    parser.add_argument("--db", type=Path, default=DB)
    args = parser.parse_args()
    actions: dict[str, Callable[[], object]] = {
        "plan": plan,
        "run": lambda: run(args.db, args.time_budget, args.workers),
        "predict": lambda: predict(args.db),
        "validate": lambda: validate(args.db, args.time_budget, args.workers),
        "analyse": lambda: analyse(RUNS),
    }
    run_action(actions[args.what])


if __name__ == "__main__":
    main()
