"""Hyperparameter-transfer experiments: LR across width (SP vs muP), LR across token horizon,
and muP loss prediction across width. Results are sweeps in a DuckDB run log like any other.

    python benchmarks/transfer_experiments.py run       # train the sweeps (resumable)
    python benchmarks/transfer_experiments.py analyse   # figures + numbers from the Parquet

`run` trains the sweeps in benchmarks/experiments/ (width, horizon, horizon_long,
horizon_warmup), then a muP width ladder at the LR that was best at the base width, and exports
every run to benchmarks/data/transfer_runs.parquet (committed, so `analyse`, the report and
tests need no retraining). `analyse` prints the fitted optima, the horizon law and the muP
prediction, and draws docs/transfer_*.png.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import duckdb
import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout, not an installed copy

from fits import PowerLaw, bjorck_lr, optimal_lr

matplotlib.use("Agg")
HERE = Path(__file__).resolve().parent
DB = HERE / "data" / "experiments.duckdb"
PARQUET = HERE / "data" / "transfer_runs.parquet"
DOCS = HERE.parent / "docs"
SPECS = HERE / "experiments"
LADDER_WIDTHS = (32, 48, 64, 96, 128, 192, 256, 384)
HEAD_DIM = 16


def sweep(spec: Path, db: Path) -> None:
    command = [
        sys.executable,
        "-m",
        "cli",
        "sweep",
        "run",
        str(spec),
        "--db",
        str(db),
        "--workers",
        "2",
    ]
    subprocess.run(command, check=True, cwd=HERE.parent)


def scans(runs: pd.DataFrame) -> pd.DataFrame:
    """Per (parametrization, width, tokens) LR scan: the parabola optimum of fits.optimal_lr."""
    frame = runs.assign(loss=runs.final_val_loss)
    return optimal_lr(frame, ("parametrization", "d_model", "tokens", "batch_size"))


def width_runs(runs: pd.DataFrame) -> pd.DataFrame:
    return runs[
        (runs.tokens == 499_968) & runs.d_model.isin([32, 64, 128, 256]) & (runs.n_layers == 2)
    ]


def ladder_spec(lr: float) -> Path:
    sizes = ",\n  ".join(
        f"{{ d_model = {w}, n_layers = 2, n_heads = {w // HEAD_DIM} }}" for w in LADDER_WIDTHS
    )
    text = f"""# muP width ladder at fixed hyperparameters (Mu-scaling): written by
# benchmarks/transfer_experiments.py with the LR that was best at the base width.
name = "mup-widths"
[fixed]
arch = "llama"
parametrization = "mup"
mup_base_width = 32
seq_len = 128
batch_size = 16
tokens = 500_000
eval_tokens = 32_768
lr = {lr!r}
[axes]
size = [
  {sizes},
]
"""
    path = SPECS / "mup_widths.toml"
    path.write_text(text)
    return path


def run(db: Path) -> None:
    for name in ("width.toml", "horizon.toml", "horizon_long.toml", "horizon_warmup.toml"):
        sweep(SPECS / name, db)
    runs = duckdb.connect(str(db), read_only=True).execute("SELECT * FROM runs").df()
    base = width_runs(runs)
    base = base[(base.parametrization == "mup") & (base.d_model == 32) & (base.status == "done")]
    best_lr = float(base.loc[base.final_val_loss.idxmin(), "lr"])  # a scanned LR: runs reused
    sweep(ladder_spec(best_lr), db)
    con = duckdb.connect(str(db), read_only=True)
    con.execute(
        f"COPY (SELECT * EXCLUDE (config) FROM runs ORDER BY run_id) TO '{PARQUET}' "
        "(FORMAT parquet)"
    )
    print(f"wrote {PARQUET}")


def analyse_width(runs: pd.DataFrame) -> pd.DataFrame:
    """Optimal LR per width under SP and muP, and the loss curves against LR."""
    data = width_runs(runs)
    optima = scans(data)
    table = optima.pivot(index="d_model", columns="parametrization", values="lr_opt")
    print("LR transfer across width (500k tokens, 2 layers, head dim 16; muP base width 32)")
    print(
        optima[["parametrization", "d_model", "lr_opt", "loss_opt", "bracketed"]].to_string(
            index=False
        )
    )
    for p in ("sp", "mup"):
        spread = table[p].max() / table[p].min()
        print(
            f"  {p}: optimum from {table[p].iloc[0]:.3g} (width 32) to {table[p].iloc[-1]:.3g} "
            f"(width 256); max/min across widths {spread:.2f}x"
        )
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, p in zip(axes, ("sp", "mup"), strict=True):
        for width, group in data[data.parametrization == p].groupby("d_model"):
            group = group.sort_values("lr")
            finite = group[group.status == "done"]
            (line,) = ax.plot(finite.lr, finite.final_val_loss, "o-", ms=3, label=f"d={width}")
            ax.axvline(table.loc[width, p], color=line.get_color(), ls=":", lw=1)
        ax.set(xscale="log", xlabel="peak LR", title=f"{p.upper()}: loss against LR by width")
        ax.legend(fontsize=7)
    axes[0].set_ylabel("final validation loss")
    fig.tight_layout()
    fig.savefig(DOCS / "transfer_width.png", dpi=100)
    return optima


def analyse_horizon(runs: pd.DataFrame) -> None:
    """LR*(D) = B D^-beta per size (Bjorck et al.); d=64 goes on to 4M tokens."""
    data = runs[
        (runs.parametrization == "sp")
        & runs.d_model.isin([64, 128])
        & (runs.n_layers == 2)
        & runs.tokens.isin([124_928, 249_984, 499_968, 999_936, 2_000_000, 4_000_000])
    ]
    fixed_warmup = data.sweep == "transfer-horizon-warmup"
    data, fixed_warmup = data[~fixed_warmup], data[fixed_warmup]
    optima = scans(data)
    print("\nLR across token horizon (SP, 2 layers): optimum per horizon")
    print(optima[["d_model", "tokens", "lr_opt", "loss_opt", "bracketed"]].to_string(index=False))
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for width, group in optima[optima.bracketed].groupby("d_model"):
        law = bjorck_lr().fit({"D": group.tokens}, group.lr_opt)
        lo, hi = law.intervals_["beta"]
        print(
            f"  d={width}: LR* = {law.params_['B']:.3g} D^-{law.params_['beta']:.3f}, "
            f"beta 90% interval [{lo:.3f}, {hi:.3f}] on {len(group)} horizons"
        )
        grid = np.geomspace(group.tokens.min() / 1.5, group.tokens.max() * 1.5, 30)
        (line,) = ax.plot(group.tokens, group.lr_opt, "o", label=f"d={width} optima")
        ax.plot(
            grid,
            law.predict({"D": grid}),
            color=line.get_color(),
            label=f"beta = {law.params_['beta']:.2f} [{lo:.2f}, {hi:.2f}]",
        )
    control = scans(fixed_warmup) if not fixed_warmup.empty else pd.DataFrame()
    for same in control.itertuples():  # the d=64, 4M-token scan with a fixed warmup
        print(
            f"  d={same.d_model} at {same.tokens:.3g} tokens with 12 warmup steps instead of 5%: "
            f"LR* {same.lr_opt:.3g} (loss {same.loss_opt:.4f}, bracketed {same.bracketed})"
        )
        ax.plot(same.tokens, same.lr_opt, "kx", label=f"d={same.d_model}, 12 warmup steps")
    _save(
        fig,
        ax,
        "transfer_horizon.png",
        yscale="log",
        xlabel="training tokens D",
        ylabel="optimal LR",
        title="LR*(D) = B D^-beta",
    )


def analyse_ladder(runs: pd.DataFrame) -> None:
    """Mu-scaling's L = a x^b + c (x = params in millions) on the smaller widths, with c = 0:
    with c free our 7 widths give a = -1.77, b = 0.039, a law that falls without bound, which
    fits refuse (A > 0, alpha > 0)."""
    data = runs[(runs.sweep == "mup-widths") | (runs.run_id.isin(_ladder_ids(runs)))]
    data = data.drop_duplicates("run_id").sort_values("d_model")
    if data.empty:
        print("\nno muP width ladder in the data yet")
        return
    x, y = data.params.to_numpy() / 1e6, data.final_val_loss.to_numpy()
    law = PowerLaw(E=0, n_bootstrap=1000).fit(x[:-1], y[:-1])
    held_out = law.predict_interval(x[-1:])
    predicted, lo, hi = (float(v[0]) for v in (held_out.estimate, held_out.lo, held_out.hi))
    error = (predicted - y[-1]) / y[-1]
    p = law.params_
    print(
        f"\nmuP loss prediction across width (lr {data.lr.iloc[0]:.3g}): fit on widths "
        f"{list(data.d_model[:-1])}: L = E + A x^-alpha, E = {p['E']:.4g}, A = {p['A']:.4g}, "
        f"alpha = {p['alpha']:.4g} (x = params in millions)"
    )
    print(
        f"  width {data.d_model.iloc[-1]} ({x[-1]:.2f}M params): predicted {predicted:.4f}, "
        f"90% interval [{lo:.4f}, {hi:.4f}], actual {y[-1]:.4f}, relative error {error:+.2%}"
    )
    fig, ax = plt.subplots(figsize=(5.5, 4))
    grid = np.geomspace(x.min() / 1.2, x.max() * 1.2, 40)
    ax.plot(x[:-1], y[:-1], "o", label="fitted widths")
    ax.plot(x[-1:], y[-1:], "s", label=f"held out (error {error:+.2%})")
    ax.plot(grid, law.predict(grid), label="L = a x^b + c")
    _save(
        fig,
        ax,
        "transfer_mup_widths.png",
        xlabel="parameters (millions)",
        ylabel="final validation loss",
        title="muP, fixed hyperparameters: loss against width",
    )


def _save(fig: plt.Figure, ax: plt.Axes, name: str, **axis: str) -> None:
    """Label a log-x figure, add its legend and write it to docs/."""
    ax.set(xscale="log", **axis)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(DOCS / name, dpi=100)


def _ladder_ids(runs: pd.DataFrame) -> list[str]:
    """Ladder runs trained earlier by the width sweep (same config, so the same run)."""
    ladder = runs[runs.sweep == "mup-widths"]
    if ladder.empty:
        return []
    same = (runs.parametrization == "mup") & (runs.lr == ladder.lr.iloc[0])
    same &= (runs.tokens == 499_968) & (runs.n_layers == 2)
    return list(runs[same & runs.d_model.isin(LADDER_WIDTHS)].run_id)


def analyse(parquet: Path) -> None:
    if not parquet.exists():
        sys.exit(f"no results at {parquet}: run `python {Path(__file__).name} run` first")
    runs = duckdb.sql("SELECT * FROM read_parquet(?)", params=[str(parquet)]).df()
    DOCS.mkdir(exist_ok=True)
    analyse_width(runs)
    analyse_horizon(runs)
    analyse_ladder(runs)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("what", choices=("run", "analyse"))
    parser.add_argument("--db", type=Path, default=DB)
    parser.add_argument("--parquet", type=Path, default=PARQUET)
    args = parser.parse_args()
    if args.what == "run":
        run(args.db)
    analyse(args.parquet)


if __name__ == "__main__":
    main()
