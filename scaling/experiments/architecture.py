"""The architecture study (issues 13 and 23): its sweeps, the specs it writes, its analyses.

benchmarks/architecture_study.py drives it (run, predict, validate, analyse, plan) and
tests/test_architecture_study.py and tests/test_architecture_results.py check it; both call
this module. Folders are arguments: the templates (`specs`, benchmarks/experiments) and the
specs written from them (`generated`) live beside the driver, not in the package.
"""

from __future__ import annotations

import hashlib
import json
import math
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fits import FitError, IsoFLOPFit
from fits.offset import offset_limits
from runners.sizes import ladder
from runners.sweeps.designs import Planner, initial_configs
from runners.sweeps.spec import load_spec
from scaling.errors import ScalingError
from scaling.runlog import law_frame
from scaling.study import Study
from scaling.sweeps import EXIT_RUNS_LEFT
from scaling.sweeps.book import plan_sweep
from store import archive
from store.sweeps import FINISHED

ROOT = Path(__file__).resolve().parents[2]  # where `python -m cli` runs this checkout's code
# tnl_spread is the study's TNL: TNL's per-head ALiBi decay gave the one-head rungs only
# the slowest rate (issue 23). The first study's tnl runs (arch "tnl") stay in the Parquet,
# out of the fits, for the TNL check.
ARCHS = ("llama", "tnl_spread", "hgrn2", "cosformer2")
PREFIX = "arch-"  # every sweep of the study is named arch-...
FIRST_ARCHS = ("llama", "tnl", "hgrn2", "cosformer2")  # the first study's (issue 13)
TNL_CHECK = ("tnl", "tnl_spread", "cosformer2")  # arch_tnlcheck_ARCH.toml
LR_CHECK = (0.5, 1.0, 2.0)  # multiples of the law's LR tried at the largest IsoFLOP size
LR_AT_MIN = (0.5, 2.0)  # multiples of the law's LR tried at each budget's best size
# Which of the template's budgets (indices into 2e10, 6.3e10, 2e11, 6.3e11, 2e12) each rung
# runs at: a window around where the minima lie (the first study: 7xs best at 2e11, 5xs-4xs
# at 2e12), two rungs past them on each side, and no run shorter than ~40 steps.
RUNG_BUDGETS = {
    "10xs": (0, 2), "9xs": (0, 2), "8xs": (0, 3), "7xs": (0, 4), "6xs": (0, 4), "5xs": (0, 4),
    "4xs": (1, 4), "3xs": (2, 4), "xxs": (2, 4), "xs": (2, 4),
}  # fmt: skip
# Each budget's minimum from the parabola through its best size and 2 neighbours a side: the
# profiles run 1-1.5 decades past their minimum, where the loss flattens and a parabola
# through all sizes opens downward (hgrn2 and cosformer2 at 6.3e11).
ISOFLOP_NEIGHBORS = 2


# -- sweeps ------------------------------------------------------------------------------
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
    spec: Path, db: Path, clock: Clock, workers: int, runs: Path, curves: Path,
    prefix: str = PREFIX,
) -> bool:  # fmt: skip
    """`scaling sweep run` the spec, then export the study's runs (its sweeps are named
    `prefix`...) to `runs` and `curves`; False when the time budget stopped it."""
    if finished(spec, db):  # skip the start-up of a sweep that has nothing to do
        return True
    left = clock.left()
    if left is not None and left < 1:
        return False
    command = [sys.executable, "-m", "cli", "sweep", "run", str(spec), "--db", str(db)]
    command += ["--workers", str(workers), "--threads", "1"]  # tiny models: one is as fast
    if left is not None:
        command += ["--time-budget", f"{left:.0f}s"]
    process = subprocess.Popen(command, cwd=ROOT)
    try:
        code = process.wait()
    except KeyboardInterrupt:  # SIGTERM (the driver's main) or Ctrl-C: the sweep commits
        process.terminate()
        process.wait()
        archive.export(db, prefix, runs, curves)
        sys.exit("stopped: the finished runs are exported; run again to go on")
    archive.export(db, prefix, runs, curves)
    if code not in (0, EXIT_RUNS_LEFT):
        sys.exit(f"sweep {spec.name} failed (exit {code})")
    return code == 0


# -- specs written from the LR law --------------------------------------------------------
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


def isoflop_specs(db: Path, arch: str, specs: Path, generated: Path) -> list[Path]:
    """One spec per size of the template, at the LR law's LR for that size and the budgets
    RUNG_BUDGETS gives it. The LR is chosen once, when the spec is first written; the budgets
    follow the template, so a budget added later extends the spec with the same LR."""
    template = tomllib.loads((specs / f"arch_isoflop_{arch}.toml").read_text())
    law = None
    written = []
    for size in template["axes"]["size"]:
        path = generated / f"isoflop_{arch}_{size}.toml"
        n = float(ladder(arch).set_index("name").loc[size, "params"])
        if path.exists():
            lr = float(tomllib.loads(path.read_text())["fixed"]["lr"])
        else:
            law = law or lr_law(db, arch)
            lr = law_lr(law, n)
        first, last = RUNG_BUDGETS[size]
        budgets = budget_list(template)[first : last + 1]
        why = f"lr = {lr} from the LR law, LR*(N = {n:.0f})"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(spec_text(template, {"size": [size]}, lr, why, budgets))
        written.append(path)
    return written


def budget_list(template: dict) -> list[float]:
    """The template's IsoFLOP budgets, a logspace written out (4 significant digits)."""
    budgets = template["design"]["budgets"]
    if isinstance(budgets, dict):
        lo, hi, n = budgets["logspace"]
        budgets = [float(f"{v:.4g}") for v in np.geomspace(lo, hi, n)]
    return sorted(budgets)


def spec_text(
    template: dict, axes: dict, lr: float | None, why: str, budgets: list[float] | None = None
) -> str:
    """A spec: the template's fixed settings (with `lr`) but those the axes vary, these axes
    and budgets, and why."""
    fixed = {**template["fixed"], **({} if lr is None else {"lr": lr})}
    fixed = {k: v for k, v in fixed.items() if k not in axes}
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


# -- analyses of the runs ----------------------------------------------------------------
def tnl_check(runs: pd.DataFrame, specs: Path) -> pd.DataFrame:
    """The arch_tnlcheck_*.toml runs: per (arch, heads) each seed's loss, their mean and
    the gap of the mean to cosformer2's."""
    sha = runs.corpus_sha256.dropna().iloc[0]
    ids = {c.run_id(sha) for a in TNL_CHECK
           for c in initial_configs(load_spec(specs / f"arch_tnlcheck_{a}.toml"))}  # fmt: skip
    check = runs[runs.run_id.isin(ids) & (runs.status == "done")]
    table = (
        check.sort_values("seed")
        .groupby(["arch", "n_heads"])
        .agg(
            lr=("lr", "first"),
            tokens=("tokens", "first"),
            seeds=("seed", "size"),
            losses=("final_val_loss", lambda v: ", ".join(f"{x:.3f}" for x in v)),
            mean=("final_val_loss", "mean"),
            spread=("final_val_loss", lambda v: v.max() - v.min()),
        )
        .reset_index()
    )
    reference = table[table.arch == "cosformer2"]["mean"]
    if not reference.empty:
        table["gap to cosformer2"] = table["mean"] - float(reference.iloc[0])
    return table


# -- the runs a fit uses -------------------------------------------------------------------
def isoflop_runs(runs: pd.DataFrame, arch: str, specs: Path) -> pd.DataFrame:
    """The arch's finished IsoFLOP runs at its template's budgets (all seeds), each labelled
    with its budget: what predictions and the analyses fit. The first study's 6.3e12 runs
    fall outside."""
    template = tomllib.loads((specs / f"arch_isoflop_{arch}.toml").read_text())
    budgets = np.array(budget_list(template))
    iso = runs[(runs.sweep == f"{PREFIX}isoflop-{arch}") & (runs.status == "done")]
    nearest = np.abs(np.log(iso.flops.to_numpy(float))[:, None] - np.log(budgets)).argmin(1)
    iso = iso.assign(budget=budgets[nearest])
    return iso[np.abs(np.log(iso.flops / iso.budget)) < 0.05]


def seed_mean(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per configuration but the seed, with the mean final loss over its seeds and
    their number (`seeds`)."""
    keys = ["arch", "params", "tokens", "lr"]
    mean = runs.groupby(keys).final_val_loss.transform("mean")
    return runs.assign(final_val_loss=mean, seeds=runs.groupby(keys).seed.transform("size"))[
        runs.seed == runs.groupby(keys).seed.transform("min")
    ]


def runs_sha256(runs: pd.DataFrame) -> str:
    """A hash of the runs a prediction was fitted on: run ids and final losses, sorted."""
    rows = sorted(f"{r.run_id}:{r.final_val_loss!r}" for r in runs.itertuples())
    return hashlib.sha256("\n".join(rows).encode()).hexdigest()


def seed_noise(runs: pd.DataFrame) -> pd.DataFrame:
    """Run-to-run noise from every configuration trained with two or more seeds: the seed
    standard deviation per architecture (pooled within-configuration variance)."""
    done = runs[runs.status == "done"]
    keys = ["arch", "d_model", "n_layers", "n_heads", "tokens", "lr"]
    groups = done.groupby(keys).final_val_loss
    stats = pd.DataFrame({"n": groups.size(), "var": groups.var(), "range": groups.agg(np.ptp)})
    stats = stats[stats.n >= 2].reset_index()
    return stats.groupby("arch").agg(
        configs=("n", "size"), runs=("n", "sum"),
        seed_sd=("var", lambda v: float(np.sqrt(v.mean()))),
        max_range=("range", "max"),
    )  # fmt: skip


def pooled_seed_sd(runs: pd.DataFrame) -> float:
    """One run-to-run SD over every architecture's seeded configurations (seed_noise pooled)."""
    noise = seed_noise(runs)
    return float(np.sqrt((noise.seed_sd**2 * noise.configs).sum() / noise.configs.sum()))


def sensitivity(grids: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """N_opt's exponent a per architecture under each analysis choice: the estimator (IsoFLOP
    parabolas, approach 2, through each budget's best rung and ISOFLOP_NEIGHBORS either
    side or through every rung; or the Chinchilla law's allocation, approach 3), N with or
    without embeddings, with or without the two smallest rungs the grid holds, and E free or
    held at either end of its 90% profile-likelihood interval (fits.offset)."""
    rows = []
    for arch, data in grids.items():
        for n_column in ("params", "params_nonembed"):
            for small in (True, False):
                smallest = np.sort(data.params.unique())[:2]
                part = data if small else data[~data.params.isin(smallest)]
                part = part.assign(params=part[n_column])
                rows.append({"arch": arch, "N": n_column,
                             "smallest rungs": "with" if small else "without",
                             "isoflop a": _isoflop_a(part, ISOFLOP_NEIGHBORS),
                             "isoflop a (all rungs)": _isoflop_a(part, None),
                             **_chinchilla_a(part, arch)})  # fmt: skip
    return pd.DataFrame(rows)


def _isoflop_a(runs: pd.DataFrame, neighbors: int | None) -> str:
    try:
        fit = IsoFLOPFit(n_neighbors=neighbors).fit(runs.params, runs.final_val_loss, C=runs.flops)
    except (ScalingError, FitError) as exc:
        return f"- ({str(exc)[:40]})"
    return _interval(fit.params_["a"], *fit.intervals_["a"])


def _chinchilla_a(runs: pd.DataFrame, arch: str) -> dict[str, str]:
    """Approach 3's exponent with E free (bootstrap interval), and with E held at the low and
    the high end of its profile-likelihood interval (least squares on log loss)."""
    try:
        fit: Any = Study.from_frame(runs, n_bootstrap=100).fit("chinchilla", arch).model
    except (ScalingError, FitError) as exc:
        failed = f"- ({str(exc)[:40]})"
        return {"chinchilla a": failed, "a at E low": failed, "a at E high": failed}
    free = _interval(fit.derived_["a"], *fit.derived_intervals_.get("a", (math.nan,) * 2))
    ends = offset_limits(fit, law_frame(runs), fit.level_)
    held = [f"{fit.derived_of(row[None, :])['a'][0]:.3f} (E {e:.3g})" for e, row in ends]
    return {"chinchilla a": free, "a at E low": held[0], "a at E high": held[1]}


def _interval(value: float, lo: float, hi: float) -> str:
    return f"{value:.3f} [{lo:.3f}, {hi:.3f}]"


def lr_checks(runs: pd.DataFrame) -> pd.DataFrame:
    """The first study's check, per architecture: the law's LR at xs (500k tokens) against
    half and twice it, and the loss penalty of the law's LR over the best of the three."""
    rows = []
    for arch in FIRST_ARCHS:
        scan = runs[(runs.sweep == f"{PREFIX}lrcheck-{arch}") & (runs.status == "done")]
        if len(scan) < len(LR_CHECK):
            continue
        scan = scan.sort_values("lr")
        law = scan.lr.iloc[len(scan) // 2]  # the middle of x 0.5, 1, 2
        loss = dict(zip(scan.lr, scan.final_val_loss, strict=True))
        rows.append({"arch": arch, "N": int(scan.params.iloc[0]), "law lr": law,
                     **{f"loss at x{f:g}": loss[lr] for f, lr in zip(LR_CHECK, scan.lr,
                                                                      strict=True)},
                     **best_and_penalty(loss, law)})  # fmt: skip
    return pd.DataFrame(rows)


def lr_at_minima(runs: pd.DataFrame) -> pd.DataFrame:
    """Per architecture and budget: the best size's loss at the law's LR (its IsoFLOP run,
    seed 0) and at LR_AT_MIN times it; the penalty of the law's LR over the best of them."""
    at_min = runs[runs.sweep.str.startswith(f"{PREFIX}lrmin-") & (runs.status == "done")]
    rows = []
    for (arch, params, tokens), scan in at_min.groupby(["arch", "params", "tokens"]):
        law = runs[(runs.sweep == f"{PREFIX}isoflop-{arch}") & (runs.params == params)
                   & (runs.tokens == tokens) & (runs.seed == 0)]  # fmt: skip
        if law.empty or len(scan) < len(LR_AT_MIN):
            continue
        loss = {float(law.lr.iloc[0]): float(law.final_val_loss.iloc[0])}
        loss |= dict(zip(scan.lr.astype(float), scan.final_val_loss.astype(float), strict=True))
        lr = float(law.lr.iloc[0])
        rows.append({"arch": arch, "C": float(law.flops.iloc[0]), "N": int(params),
                     "law lr": lr, **{f"x{k / lr:.2g}": v for k, v in sorted(loss.items())},
                     **best_and_penalty(loss, lr)})  # fmt: skip
    return pd.DataFrame(rows)


def best_and_penalty(loss: dict[float, float], law: float) -> dict[str, str]:
    """The best LR as a multiple of the law's, and the law's LR's loss penalty over it."""
    best = min(loss, key=loss.__getitem__)
    return {"best": f"x{best / law:.2g}", "penalty": f"{loss[law] / loss[best] - 1:.2%}"}
