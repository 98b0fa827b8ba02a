"""Does fitting on intermediate checkpoints sharpen the loss law on our runs? (Choshen et al. 2025)

Choshen et al. report the extrapolation error of a law falling when it is fitted on each run's
intermediate checkpoints (dropping the first ~10% of training) and not only on final losses.
Here, per architecture of the committed study (benchmarks/data, IsoFLOP runs), the runs with
the top 25% of compute are held out; the default procedure (`fits.auto.fit_auto`) is fitted
on the others twice: on their final validation losses, and on those plus every logged
validation checkpoint past 10% of the run's tokens as a point (N, tokens so far, loss). Both
predict the held-out runs' final loss. Printed: median |error|, mean signed error (positive:
over-predicted), coverage and median width of the 90% intervals for each; then, per
architecture, the model sizes whose loss falls faster per decade of tokens at more tokens by
more than two seed-noise SDs of that difference: no registered form can bend that way (each
form's loss falls ever slower in log D at fixed N on fresh tokens), where each of them falls
fastest, and how fast the smallest and the largest size fall near 1M tokens. `--n-column
params_nonembed` fits N without embeddings (Kaplan et al. 2020); the held-out runs stay those
of the top total compute. `--quadrature` also prints the candidate *own interval and
widening in quadrature* (docs/laws.md, benchmarks/extrapolation.py), `--largest-calibration`
the candidate *Calibration on the largest cuts* (docs/laws-notebook.md). Usage:

    python benchmarks/checkpoints.py [--bootstrap 200] [--n-column params_nonembed] [--quadrature]
        [--largest-calibration]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from extrapolation import (  # noqa: E402
    forms_of,
    largest_calibration_columns,
    quadrature_columns,
)
from machine import machine  # noqa: E402

from fits.auto import fit_auto  # noqa: E402
from fits.bends import token_bends  # noqa: E402
from scaling.experiments.architecture import pooled_seed_sd  # noqa: E402

LEVEL, HELD_OUT, SKIP = 0.90, 0.25, 0.10


def read(name: str) -> pd.DataFrame:
    return duckdb.connect().execute(f"SELECT * FROM read_parquet('{HERE / 'data' / name}')").df()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bootstrap", type=int, default=200)
    parser.add_argument("--n-column", choices=["params", "params_nonembed"], default="params")
    parser.add_argument("--quadrature", action="store_true", help="the candidate's intervals too")
    parser.add_argument(
        "--largest-calibration", action="store_true", help="that candidate's intervals too"
    )
    args = parser.parse_args()
    print(f"machine: {machine()}", flush=True)
    runs = read("architecture_runs.parquet")
    runs = runs[runs.sweep.str.startswith("arch-isoflop-") & (runs.status == "done")]
    curves = read("architecture_curves.parquet").dropna(subset=["val_loss"])
    forms = forms_of()
    rows = []
    for arch, data in runs.groupby("arch"):
        data = data.assign(
            N=data[args.n_column].astype(float),
            D=data.tokens.astype(float),
            loss=data.final_val_loss,
            C=6.0 * data.params * data.tokens,
        )
        order = np.argsort(data.C.to_numpy(), kind="stable")
        n_test = round(HELD_OUT * len(data))
        train, test = data.iloc[order[:-n_test]], data.iloc[order[-n_test:]]
        points = curves.merge(train[["run_id", "N", "D"]], on="run_id")
        points = points[(points.tokens >= SKIP * points.D) & (points.tokens < points.D)]
        checkpoints = points.assign(D=points.tokens.astype(float), loss=points.val_loss)
        final = train[["N", "D", "loss"]]
        variants = {
            "final losses": final,
            "+ checkpoints": pd.concat([final, checkpoints[["N", "D", "loss"]]]),
        }
        for variant, frame in variants.items():
            fitted = fit_auto(frame.reset_index(drop=True), forms, LEVEL, args.bootstrap,
                              vocab=256)  # fmt: skip
            point, lo, hi = fitted.interval(test, LEVEL)
            actual = test.loss.to_numpy()
            signed = (point - actual) / actual
            error = np.abs(signed)
            weights = ", ".join(f"{r.form} {r.weight:.2f}" for r in fitted.forms.itertuples()
                                if r.weight > 0)  # fmt: skip
            candidates = quadrature_columns(fitted, test) if args.quadrature else {}
            if args.largest_calibration:
                candidates.update(largest_calibration_columns(fitted, test))
            rows.append({
                "arch": arch, "fitted on": variant, "points": len(frame),
                "median err": f"{np.median(error):.2%}", "max err": f"{error.max():.2%}",
                "mean signed err": f"{signed.mean():+.2%}",
                "coverage": f"{((lo <= actual) & (actual <= hi)).mean():.0%}",
                "median width": f"{np.median((hi - lo) / point):.2%}", **candidates,
                "weights": weights,
            })  # fmt: skip
            print(rows[-1], flush=True)
    print(f"\n{HELD_OUT:.0%} of each arch's IsoFLOP runs held out by compute; 90% intervals")
    print(pd.DataFrame(rows).to_string(index=False))
    seed_sd = pooled_seed_sd(read("architecture_runs.parquet"))  # every seeded configuration
    print(f"\nsizes whose loss falls faster per decade of tokens at more tokens by > 2 SDs "
          f"(seed SD {seed_sd:.3f})")  # fmt: skip
    for arch, data in runs.groupby("arch"):
        frame = data.assign(N=data.params, D=data.tokens, loss=data.final_val_loss)
        sizes = token_bends(frame[["N", "D", "loss"]], seed_sd)
        bent = sizes[sizes.max_rise_sd > 2]
        listed = ", ".join(f"{r.N:,.0f} ({r.max_rise_sd:.1f} SD)" for r in bent.itertuples())
        print(f"{arch}: {len(bent)} of {len(sizes)} sizes{': ' + listed if listed else ''}")
        for n in bent.N:
            print(f"  {n:,.0f}: {steepest_decade(data[data.params == n])}")
        print(
            f"  drop per decade near 1M tokens, smallest and largest size tested: "
            f"{drop_near(data, sizes.N.min()):.2f}, {drop_near(data, sizes.N.max()):.2f}"
        )


def per_token_count(runs: pd.DataFrame) -> pd.DataFrame:
    """One size's seed-mean final loss per token count, with its steps, LR and warmup."""
    steps = runs.tokens / (runs.batch_size * runs.seq_len)
    return (runs.assign(steps=steps).groupby("tokens")
            .agg(loss=("final_val_loss", "mean"), steps=("steps", "first"),
                 lr=("lr", "first"), warmup=("warmup", "first")).reset_index())  # fmt: skip


def drops_per_decade(means: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(midpoint in log10 tokens, loss drop per decade) between neighbouring token counts."""
    log_d = np.log10(means.tokens.to_numpy(dtype=float))
    return (log_d[1:] + log_d[:-1]) / 2, -np.diff(means.loss.to_numpy()) / np.diff(log_d)


def steepest_decade(runs: pd.DataFrame) -> str:
    """Where one size's loss falls fastest in log tokens: tokens, steps, warmup share, LR x steps
    (is the bend a warmup or learning-rate artifact, or does it sit at fixed tokens?)."""
    means = per_token_count(runs)
    mid, drop = drops_per_decade(means)
    i = int(drop.argmax())
    steps = 10 ** mid[i] / float(means.tokens.iloc[0] / means.steps.iloc[0])
    warmup = means.warmup.iloc[i : i + 2] / means.steps.iloc[i : i + 2]
    lr_steps = means.lr.iloc[0] * steps
    return (f"steepest ({drop[i]:.2f} nats/decade) at {10 ** mid[i]:,.0f} tokens = {steps:,.0f} "
            f"steps, warmup {warmup.max():.0%} of them, LR x steps {lr_steps:.2f}")  # fmt: skip


def drop_near(runs: pd.DataFrame, n: int, tokens: float = 1e6) -> float:
    """One size's loss drop per decade of tokens between the two counts around `tokens`."""
    mid, drop = drops_per_decade(per_token_count(runs[runs.params == n]))
    return float(drop[np.abs(mid - np.log10(tokens)).argmin()])


if __name__ == "__main__":
    main()
