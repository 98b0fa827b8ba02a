"""The architecture study (issue 13): scaling laws of llama, tnl, hgrn2 and cosformer2 from
our own runners, a prediction at larger compute, and the run that checks it.

    python benchmarks/architecture_study.py run --time-budget 2h   # LR scans, then IsoFLOP
    python benchmarks/architecture_study.py predict                # before the check runs
    python benchmarks/architecture_study.py validate --time-budget 1h
    python benchmarks/architecture_study.py analyse                # figures + numbers

Every step is idempotent and resumable across sessions. The run log (benchmarks/data/
experiments.duckdb) is not committed, so each step first restores the committed runs
(benchmarks/data/architecture_runs.parquet and architecture_curves.parquet) into it with
their original run ids and status, and exports again after every sweep: a fresh checkout
trains nothing twice. Files to commit after a session: those two Parquet files and
benchmarks/experiments/generated/ (the specs written from the LR law, and the predictions).

`run`: per architecture an LR scan (benchmarks/experiments/arch_lr_ARCH.toml, 3 sizes,
refined until bracketed), then the LR law LR*(N) = B N^-alpha per architecture (Study
lr-law, porian form, on N = params), then the IsoFLOP sweeps: arch_isoflop_ARCH.toml is
the template (sizes x budgets); one spec per (arch, size) is written to generated/ with
that size's LR from the law (rounded to 3 digits, so a refit on the same runs writes the
same LR and hence the same run ids) and run under the template's sweep name.
Then the LR check: at the template's largest size (beyond the scanned ones) and the LR scans'
horizon, the law's LR and half and twice it (generated/lrcheck_ARCH.toml), to show whether
the law's LR is near-optimal where the IsoFLOP runs use it untested.
`predict`: per architecture, the Chinchilla law on its IsoFLOP runs, the compute-optimal N
at VALIDATE_FACTOR x the largest budget, the ladder rung nearest to it, D = that compute /
the rung's exact FLOPs per token and LR from the law; the predicted loss with its 90%
prediction interval goes to the `predictions` table and to generated/predictions.json,
with one validation spec per architecture. It refuses to predict again once written.
`validate`: trains those runs and prints measured against predicted.
`analyse`: reads only the Parquet files: IsoFLOP exponents, Chinchilla laws, frontiers,
crossovers against llama, the throughput model and wall-clock answers; docs/arch_*.png.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

import duckdb
import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from cli.sweep import EXIT_RUNS_LEFT  # noqa: E402
from cli.sweep import duration as parse_duration  # noqa: E402
from fits import FitError, LogLinearLaw  # noqa: E402
from fits.throughput import ThroughputModel, backtest  # noqa: E402
from runners.sizes import ladder  # noqa: E402
from runners.sweeps.designs import Planner  # noqa: E402
from runners.sweeps.spec import load_spec  # noqa: E402
from scaling.errors import ScalingError  # noqa: E402
from scaling.study import Study  # noqa: E402
from scaling.sweeps.coordinator import plan_sweep  # noqa: E402
from store.db import connect  # noqa: E402
from store.sweeps import FINISHED  # noqa: E402

matplotlib.use("Agg")
DB = HERE / "data" / "experiments.duckdb"
RUNS = HERE / "data" / "architecture_runs.parquet"
CURVES = HERE / "data" / "architecture_curves.parquet"
SPECS = HERE / "experiments"
GENERATED = SPECS / "generated"
DOCS = HERE.parent / "docs"
ARCHS = ("llama", "tnl", "hgrn2", "cosformer2")
PREFIX = "arch-"  # every sweep of the study is named arch-...
VALIDATE_FACTOR = 3.0  # validation runs at this multiple of the largest IsoFLOP budget
LR_CHECK = (0.5, 1.0, 2.0)  # multiples of the law's LR tried at the largest IsoFLOP size
# Rungs run at the template's k smallest budgets only. 7xs (not in the template): byte-level
# models this small want so many tokens per parameter that the smallest budget's minimum
# lies below 6xs (llama: 2.30, 2.19 at 5xs, 6xs at 2e11). 6xs is past every minimum at 2e12
# and would take 3.4 epochs at the largest budget.
SMALL_BUDGETS_ONLY = {"7xs": 2, "6xs": 3}
EXTRA_RUNGS = ("7xs",)  # rungs below the template's
# Each budget's minimum from the parabola through its best size and 2 neighbours a side: the
# profiles run 1-1.5 decades past their minimum, where the loss flattens and a parabola
# through all sizes opens downward (hgrn2 and cosformer2 at 6.3e11).
ISOFLOP_NEIGHBORS = 2
WALLCLOCK_HOURS = (0.1, 2.0)  # within the study's longest runs (4-9 min), and the 2 h
SHEN = pd.DataFrame(  # Shen et al. 2024, loss envelope fits (issue 13)
    {
        "arch": ARCHS,
        "L(C) coefficient": [3.7087, 3.5391, 3.4788, 3.5877],
        "L(C) exponent": [-0.0798, -0.0768, -0.0753, -0.0756],
        "N_opt exponent": [0.712, 0.647, 0.643, 0.652],
        "D_opt exponent": [0.510, 0.468, 0.450, 0.453],
    }
)


# -- the run log and its committed copy --------------------------------------------------
def restore(db: Path, runs: Path = RUNS, curves: Path = CURVES) -> int:
    """Insert the committed runs (and curves) the log lacks, with their run ids and status.
    A run the log holds unfinished (a sweep killed while it trained, then trained elsewhere,
    e.g. in a parallel log) is replaced by the committed one, curve included. Returns the
    number of runs inserted."""
    if not runs.exists():
        return 0
    with connect(db) as con:
        stale = (
            "SELECT run_id FROM runs WHERE status NOT IN ('done', 'diverged', 'failed') "
            "AND run_id IN (SELECT run_id FROM read_parquet(?))"
        )
        con.execute(f"DELETE FROM curves WHERE run_id IN ({stale})", [str(runs)])
        con.execute(f"DELETE FROM sweep_runs WHERE run_id IN ({stale})", [str(runs)])
        con.execute(f"DELETE FROM runs WHERE run_id IN ({stale})", [str(runs)])
        before = _count(con)
        con.execute(
            "INSERT INTO runs BY NAME SELECT * FROM read_parquet(?) "
            "WHERE run_id NOT IN (SELECT run_id FROM runs)",
            [str(runs)],
        )
        if curves.exists():
            con.execute(
                "INSERT INTO curves BY NAME SELECT * FROM read_parquet(?) c "
                "WHERE NOT EXISTS (SELECT 1 FROM curves k "
                "WHERE k.run_id = c.run_id AND k.step = c.step)",
                [str(curves)],
            )
        con.execute(
            "INSERT INTO sweep_runs SELECT sweep, run_id FROM runs r WHERE sweep LIKE ? "
            "AND NOT EXISTS (SELECT 1 FROM sweep_runs s "
            "WHERE s.sweep = r.sweep AND s.run_id = r.run_id)",
            [PREFIX + "%"],
        )
        return _count(con) - before


def export(db: Path, runs: Path = RUNS, curves: Path = CURVES) -> int:
    """Write the study's finished runs (run-log columns, no config) and their curves."""
    study = (
        "SELECT * EXCLUDE (config) FROM runs WHERE status IN ('done', 'diverged', 'failed') "
        f"AND (sweep LIKE '{PREFIX}%' OR run_id IN "
        f"(SELECT run_id FROM sweep_runs WHERE sweep LIKE '{PREFIX}%'))"
    )
    with connect(db, read_only=True) as con:
        n = _count(con, f"({study})")
        if n == 0:
            return 0
        runs.parent.mkdir(parents=True, exist_ok=True)
        con.execute(f"COPY ({study} ORDER BY run_id) TO '{runs}' (FORMAT parquet)")
        con.execute(
            f"COPY (SELECT c.* FROM curves c JOIN ({study}) r USING (run_id) "
            f"ORDER BY run_id, step) TO '{curves}' (FORMAT parquet, COMPRESSION zstd)"
        )
    return n


def _count(con: duckdb.DuckDBPyConnection, table: str = "runs") -> int:
    return int(con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0])


class Clock:
    """What is left of --time-budget across the several sweeps of one step."""

    def __init__(self, budget_s: float | None) -> None:
        self.deadline = None if budget_s is None else time.monotonic() + budget_s

    def left(self) -> float | None:
        return None if self.deadline is None else max(0.0, self.deadline - time.monotonic())


def finished(spec: Path, db: Path) -> bool:
    """Whether the log holds every run the spec plans (refinements included)."""
    sweep = load_spec(spec)
    plan = plan_sweep(sweep.name, Planner(sweep), db)
    return bool(plan.runs["status"].isin(FINISHED).all())


def sweep(
    spec: Path, db: Path, clock: Clock, workers: int, runs: Path = RUNS, curves: Path = CURVES
) -> bool:
    """`scaling sweep run` the spec, then export; False when the time budget stopped it."""
    if finished(spec, db):  # skip the start-up of a sweep that has nothing to do
        return True
    left = clock.left()
    if left is not None and left < 1:
        return False
    command = [sys.executable, "-m", "cli", "sweep", "run", str(spec), "--db", str(db)]
    command += ["--workers", str(workers)]
    if left is not None:
        command += ["--time-budget", f"{left:.0f}s"]
    code = subprocess.run(command, cwd=HERE.parent).returncode
    export(db, runs, curves)
    if code not in (0, EXIT_RUNS_LEFT):
        sys.exit(f"sweep {spec.name} failed (exit {code})")
    return code == 0


# -- run: LR scans, LR law, IsoFLOP ------------------------------------------------------
def lr_law(db: Path, arch: str) -> Any:
    """LR*(N) = a N^alpha from the bracketed optima of the arch's LR scans, or from the
    near-optimal runs (within 0.25% of their size's best) when fewer than 3 are bracketed."""
    where, study = f"sweep = '{PREFIX}lr-{arch}'", Study(db)
    try:
        return study.fit("lr-law", arch, where=where, form="porian").model
    except ScalingError as exc:
        print(f"{arch}: {exc}; fitting the LR law on near-optimal runs instead")
        return study.fit("lr-law", arch, where=where, form="porian", method="near-optimal").model


def law_lr(law: Any, n: float) -> float:
    """The law's LR at N, to 3 significant digits: a refit on the same runs gives the same
    LR, hence the same run ids, even if the rows come back in another order."""
    return float(f"{float(law.predict({'N': [n]})[0]):.3g}")


def isoflop_specs(db: Path, arch: str) -> list[Path]:
    """One spec per size of the template (and EXTRA_RUNGS), at the LR law's LR for that size.
    The LR is chosen once, when the spec is first written; the budgets follow the template,
    so a budget added to it later extends every size's spec with the same LR and run ids."""
    template = tomllib.loads((SPECS / f"arch_isoflop_{arch}.toml").read_text())
    law = None
    specs = []
    for size in [*EXTRA_RUNGS, *template["axes"]["size"]]:
        path = GENERATED / f"isoflop_{arch}_{size}.toml"
        n = float(ladder(arch).set_index("name").loc[size, "params"])
        if path.exists():
            lr = float(tomllib.loads(path.read_text())["fixed"]["lr"])
        else:
            law = law or lr_law(db, arch)
            lr = law_lr(law, n)
        budgets = budget_list(template)[: SMALL_BUDGETS_ONLY.get(size)]
        why = f"lr = {lr} from the LR law, LR*(N = {n:.0f})"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(_spec_text(template, {"size": [size]}, lr, why, budgets))
        specs.append(path)
    return specs


def budget_list(template: dict) -> list[float]:
    """The template's IsoFLOP budgets, a logspace written out (4 significant digits)."""
    budgets = template["design"]["budgets"]
    if isinstance(budgets, dict):
        lo, hi, n = budgets["logspace"]
        budgets = [float(f"{v:.4g}") for v in np.geomspace(lo, hi, n)]
    return sorted(budgets)


def lr_check_spec(db: Path, arch: str) -> Path:
    """The law's LR x 0.5, 1, 2 at the largest IsoFLOP size and the scans' horizon."""
    path = GENERATED / f"lrcheck_{arch}.toml"
    if path.exists():
        return path
    size = tomllib.loads((SPECS / f"arch_isoflop_{arch}.toml").read_text())["axes"]["size"][-1]
    scans = tomllib.loads((SPECS / f"arch_lr_{arch}.toml").read_text())
    n = float(ladder(arch).set_index("name").loc[size, "params"])
    lr = law_lr(lr_law(db, arch), n)
    template = {"name": f"{PREFIX}lrcheck-{arch}", "fixed": scans["fixed"]}
    axes = {"size": [size], "lr": [float(f"{lr * f:.3g}") for f in LR_CHECK]}
    why = f"the LR law's LR*(N = {n:.0f}) = {lr} times {LR_CHECK}"
    path.write_text(_spec_text(template, axes, None, why))
    return path


def _spec_text(
    template: dict, axes: dict, lr: float | None, why: str, budgets: list[float] | None = None
) -> str:
    fixed = {**template["fixed"], **({} if lr is None else {"lr": lr})}
    lines = [
        f"# written by benchmarks/architecture_study.py: {why}",
        f'name = "{template["name"]}"',
        "[fixed]",
        *(f"{k} = {json.dumps(v)}" for k, v in fixed.items()),
        "[axes]",
        *(f"{k} = {json.dumps(v)}" for k, v in axes.items()),
    ]
    design = template.get("design")
    if design:
        budgets = budgets or budget_list(template)
        lines += ["[design]", f'kind = "{design["kind"]}"', f"budgets = {json.dumps(budgets)}"]
    return "\n".join(lines) + "\n"


def run(db: Path, budget_s: float | None, workers: int) -> None:
    print(f"restored {restore(db)} runs from {RUNS.name}")
    clock = Clock(budget_s)
    for arch in ARCHS:
        if not sweep(SPECS / f"arch_lr_{arch}.toml", db, clock, workers):
            return print("time budget spent: run again to go on")
    for arch in ARCHS:
        for spec in isoflop_specs(db, arch):
            if not sweep(spec, db, clock, workers):
                return print("time budget spent: run again to go on")
    for arch in ARCHS:
        if not sweep(lr_check_spec(db, arch), db, clock, workers):
            return print("time budget spent: run again to go on")
    print("LR scans, IsoFLOP sweeps and LR checks done: next `predict`, then `validate`")


# -- predict and validate ----------------------------------------------------------------
def predict(db: Path) -> None:
    restore(db)
    out = GENERATED / "predictions.json"
    if out.exists():
        print(f"predictions already made before validation ({out}):")
        return print(json.dumps(json.loads(out.read_text()), indent=1))
    study = Study(db)
    predictions = {}
    for arch in ARCHS:
        where = f"sweep = '{PREFIX}isoflop-{arch}'"
        runs = study.runs(arch=arch, where=where)
        if runs.empty:
            sys.exit(f"no IsoFLOP runs of {arch} yet: finish `run` first")
        budget = VALIDATE_FACTOR * runs.flops.max()
        optimal = study.compute_optimal(budget, arch, where=where)
        if not math.isfinite(optimal.N.value):
            sys.exit(f"{arch}: the Chinchilla fit gives no finite N_opt at {budget:.3g} FLOPs")
        rungs = ladder(arch, int(runs.seq_len.iloc[0])).set_index("name")
        size = str((np.log(rungs.params) - math.log(optimal.N.value)).abs().idxmin())
        n, per_token = float(rungs.loc[size, "params"]), float(rungs.loc[size, "flops_per_token"])
        tokens = round(budget / per_token)
        loss = study.predict_loss(n, tokens, arch, where=where)
        lr = law_lr(lr_law(db, arch), n)
        template = tomllib.loads((SPECS / f"arch_isoflop_{arch}.toml").read_text())
        template = {"name": f"{PREFIX}validate", "fixed": {**template["fixed"], "tokens": tokens}}
        spec = GENERATED / f"validate_{arch}.toml"
        why = f"lr = {lr} from the LR law, C = {budget:.3g}"
        spec.write_text(_spec_text(template, {"size": [size]}, lr, why))
        predictions[arch] = {
            "C": budget, "N_opt": optimal.N.value, "size": size, "N": n, "D": tokens,
            "lr": lr, "loss": loss.value, "lo": loss.lo, "hi": loss.hi, "level": loss.level,
        }  # fmt: skip
        print(f"{arch}: C = {budget:.3g}, N_opt {optimal.N.value:.3g} -> {size} ({n:.3g}), "
              f"D = {tokens:.3g}, lr {lr}: {loss}")  # fmt: skip
    out.write_text(json.dumps(predictions, indent=1) + "\n")


def validate(db: Path, budget_s: float | None, workers: int) -> None:
    restore(db)
    path = GENERATED / "predictions.json"
    if not path.exists():
        sys.exit("no predictions yet: run `predict` first (before the validation runs)")
    clock = Clock(budget_s)
    for arch in ARCHS:
        if not sweep(GENERATED / f"validate_{arch}.toml", db, clock, workers):
            return print("time budget spent: run again to go on")
    report_validation(read_runs(RUNS), json.loads(path.read_text()))


def report_validation(runs: pd.DataFrame, predictions: dict) -> pd.DataFrame:
    done = runs[(runs.sweep == f"{PREFIX}validate") & (runs.status == "done")]
    rows = []
    for arch, p in predictions.items():
        match = done[(done.arch == arch) & (done.params == p["N"]) & (done.tokens <= p["D"])]
        if match.empty:
            continue
        measured = float(match.final_val_loss.iloc[0])
        rows.append({**{k: p[k] for k in ("C", "size", "N", "D", "loss", "lo", "hi")},
                     "arch": arch, "measured": measured,
                     "rel_error": p["loss"] / measured - 1,
                     "held": p["lo"] <= measured <= p["hi"]})  # fmt: skip
    table = pd.DataFrame(rows)
    print("\nvalidation runs: predicted (90% prediction interval) against measured")
    print(table.to_string(index=False) if rows else "  none trained yet")
    if rows:
        fig, ax = plt.subplots(figsize=(5, 4))
        error = [table.loss - table.lo, table.hi - table.loss]
        ax.errorbar(table.arch, table.loss, yerr=error, fmt="o", capsize=4, label="predicted")
        ax.plot(table.arch, table.measured, "kx", ms=8, label="measured")
        title = f"validation runs at {table.C.max():.2g} FLOPs"
        ax.set(ylabel="final validation loss", title=title)
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(DOCS / "arch_validation.png", dpi=100)
    return table


# -- analyse -----------------------------------------------------------------------------
def read_runs(path: Path) -> pd.DataFrame:
    return duckdb.connect().execute("SELECT * FROM read_parquet(?)", [str(path)]).df()


def analyse(runs_path: Path) -> None:
    if not runs_path.exists():
        sys.exit(f"no results at {runs_path}: run `python {Path(__file__).name} run` first")
    runs = read_runs(runs_path)
    DOCS.mkdir(exist_ok=True)
    iso = runs[runs.sweep.str.startswith(f"{PREFIX}isoflop-") & (runs.status == "done")]
    study = Study.from_frame(iso, n_bootstrap=200)
    laws, rows = {}, []
    fig, axes = plt.subplots(1, len(ARCHS), figsize=(4 * len(ARCHS), 3.6), sharey=True)
    for ax, arch in zip(axes, ARCHS, strict=True):
        data = iso[iso.arch == arch]
        for _, group in data.groupby(np.round(np.log10(data.flops) / 0.05)):  # as IsoFLOPFit
            group = group.sort_values("params")
            label = f"C={group.flops.median():.2g}"
            ax.plot(group.params, group.final_val_loss, "o-", ms=3, label=label)
        ax.set(xscale="log", xlabel="parameters N", title=arch)
        ax.legend(fontsize=6)
        row: dict[str, Any] = {"arch": arch, "runs": len(data)}
        for law, options in (("isoflop", {"neighbors": ISOFLOP_NEIGHBORS}), ("chinchilla", {})):
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
    axes[0].set_ylabel("final validation loss")
    fig.tight_layout()
    fig.savefig(DOCS / "arch_isoflop.png", dpi=100)
    print("\nours (byte-level, CPU scale) beside Shen et al. 2024")
    print(pd.DataFrame(rows).to_string(index=False))
    print(SHEN.to_string(index=False))
    if laws:
        frontiers(laws, iso.flops.min(), VALIDATE_FACTOR * iso.flops.max())
    for arch in (a for a in ARCHS if a != "llama" and a in laws and "llama" in laws):
        lo, hi = iso.flops.min() / 10, iso.flops.max() * 1e4
        print(study.crossover(arch, "llama", (lo, hi)))
    lr_checks(runs)
    predictions = GENERATED / "predictions.json"
    if predictions.exists():
        report_validation(runs, json.loads(predictions.read_text()))
    wallclock(runs)


def lr_checks(runs: pd.DataFrame) -> pd.DataFrame:
    """Per architecture: the law's LR at the largest IsoFLOP size against half and twice it,
    and the loss penalty of the law's LR over the best of the three."""
    rows = []
    for arch in ARCHS:
        scan = runs[(runs.sweep == f"{PREFIX}lrcheck-{arch}") & (runs.status == "done")]
        if len(scan) < len(LR_CHECK):
            continue
        scan = scan.sort_values("lr")
        law = scan.lr.iloc[len(scan) // 2]  # the middle of x 0.5, 1, 2
        loss = dict(zip(scan.lr, scan.final_val_loss, strict=True))
        best = min(loss, key=loss.__getitem__)
        rows.append({"arch": arch, "N": int(scan.params.iloc[0]), "law lr": law,
                     **{f"loss at x{f:g}": loss[lr] for f, lr in zip(LR_CHECK, scan.lr,
                                                                      strict=True)},
                     "best": f"x{best / law:.2g}",
                     "penalty": f"{loss[law] / loss[best] - 1:.2%}"})  # fmt: skip
    table = pd.DataFrame(rows)
    print("\nLR check at the largest IsoFLOP size (the scans' horizon): the law's LR, x0.5, x2")
    print(table.to_string(index=False) if rows else "  not run yet")
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


def duration(text: str) -> float:
    try:
        return parse_duration(text)
    except Exception as exc:  # typer's BadParameter: one line from argparse instead
        raise argparse.ArgumentTypeError(str(exc)) from None


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("what", choices=("run", "predict", "validate", "analyse"))
    parser.add_argument("--db", type=Path, default=DB)
    parser.add_argument("--time-budget", type=duration, default=None, help="e.g. 2h, 90m")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    try:
        if args.what == "run":
            run(args.db, args.time_budget, args.workers)
        elif args.what == "predict":
            predict(args.db)
        elif args.what == "validate":
            validate(args.db, args.time_budget, args.workers)
        else:
            analyse(RUNS)
    except ScalingError as exc:
        sys.exit(f"error: {exc}")


if __name__ == "__main__":
    main()
