"""Speed of the Chinchilla approach-3 fit: fits.ChinchillaLaw against a plain scipy loop.

Same data (Epoch's 240 points), same objective (sum of Huber losses, delta 1e-3, on log loss),
same 4,500-point starting grid, keep the best. The reference is written here the way the
published code does it: scipy.optimize.minimize(method="L-BFGS-B") from every grid point,
with scipy's finite-difference gradient. A second reference gives scipy the analytic
gradient, to show how much of the gap is the gradient and how much the batching.

Prints both times (wall clock and CPU time of this process: on a shared machine the CPU time
is the steadier figure), their ratio, whether both reach the same optimum, and the time of a
1,000-resample bootstrap. First it times the whole `auto` fit on all 245 points (grid,
bootstrap, and the nested backtests that select the form and calibrate its intervals). Our
fit is timed before and after the references, and the fastest run counts, so that both sides
see similar machine load. The full reference takes several minutes; --reference-starts k runs
it on every (4500/k)-th start only and scales its time up (marked as an estimate). Usage:

    python benchmarks/fit_speed.py [--data PATH] [--n-bootstrap 1000] [--repeats 3] [--auto-only]
                                   [--without FORM ...]

--without FORM also times `auto` with that form left out of the candidates: what it costs.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from scipy.special import huber, logsumexp

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from machine import machine  # noqa: E402

from fits import LOSS_LAWS, ChinchillaLaw, starting_grid  # noqa: E402
from scaling import datasets  # noqa: E402
from scaling.fitters import Context, fit_loss_forms  # noqa: E402
from scaling.results import FittedLaw  # noqa: E402
from scaling.study import Study  # noqa: E402

DEFAULT_DATA = datasets.path("chinchilla-epoch")
NAMES = ("E", "A", "B", "alpha", "beta")
DELTA = 1e-3


def published_objective(
    theta: np.ndarray, log_n: np.ndarray, log_d: np.ndarray, log_loss: np.ndarray
) -> float:
    """The published objective; theta = (a, b, e, alpha, beta) with A = e^a, B = e^b, E = e^e."""
    a, b, e, alpha, beta = theta
    pred = logsumexp([a - alpha * log_n, b - beta * log_d, np.full_like(log_n, e)], axis=0)
    return float(np.sum(huber(DELTA, pred - log_loss)))


def published_gradient(
    theta: np.ndarray, log_n: np.ndarray, log_d: np.ndarray, log_loss: np.ndarray
) -> np.ndarray:
    """Analytic gradient of published_objective (softmax weights times the Huber slope)."""
    a, b, e, alpha, beta = theta
    u = np.stack([a - alpha * log_n, b - beta * log_d, np.full_like(log_n, e)])
    lse = logsumexp(u, axis=0)
    w = np.exp(u - lse) * np.clip(lse - log_loss, -DELTA, DELTA)
    return np.array(
        [w[0].sum(), w[1].sum(), w[2].sum(), -(w[0] * log_n).sum(), -(w[1] * log_d).sum()]
    )


def reference_fit(
    log_n, log_d, log_loss, use_gradient: bool, starts: np.ndarray
) -> tuple[float, np.ndarray]:
    """The published loop: L-BFGS-B (scipy defaults) from every grid point, keep the best."""
    best_f, best_x = np.inf, None
    jac = published_gradient if use_gradient else None
    for theta0 in starts:
        res = minimize(
            published_objective, theta0, args=(log_n, log_d, log_loss), jac=jac, method="L-BFGS-B"
        )
        if res.fun < best_f:
            best_f, best_x = res.fun, res.x
    return best_f, best_x


def as_params(theta: np.ndarray) -> np.ndarray:
    a, b, e, alpha, beta = theta
    return np.array([np.exp(e), np.exp(a), np.exp(b), alpha, beta])


def auto_without(runs: pd.DataFrame, left_out: str) -> FittedLaw:
    """`auto` as Study.fit runs it (scaling.fitters.fit_loss_forms with a Study's settings,
    every core), with one form left out of the candidates."""
    study = Study.from_frame(runs, n_jobs=-1)
    data = study.fits.runs_of("auto", None, None, None, "params")  # the runs Study.fit reads
    context = Context(study.settings, study.log, study.settings.n_bootstrap, force=False)
    forms = tuple(name for name in LOSS_LAWS if name != left_out)
    return fit_loss_forms("auto", data, {}, context, {}, forms)


def weights(fitted: FittedLaw) -> str:
    """The stacking weights of the forms that carry any."""
    table = fitted.forms[fitted.forms.weight > 0]
    return ", ".join(f"{f} {w:.3f}" for f, w in zip(table.form, table.weight, strict=True))


def timed(fn, repeats: int = 1):
    """(result of the last run, fastest wall time, fastest CPU time of this process)."""
    wall, cpu, out = np.inf, np.inf, None
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        wall = min(wall, time.perf_counter() - t0)
        cpu = min(cpu, time.process_time() - c0)
    return out, wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--data",
        type=Path,
        default=DEFAULT_DATA,
        help="CSV with columns N, D, loss (default: Epoch's Chinchilla points)",
    )
    parser.add_argument("--n-bootstrap", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3, help="timing repeats for our fit")
    parser.add_argument(
        "--reference-starts",
        type=int,
        default=4500,
        help="run the references on this many evenly spaced grid starts",
    )
    parser.add_argument(
        "--skip-jac-reference",
        action="store_true",
        help="skip the scipy reference with the analytic gradient",
    )
    parser.add_argument("--auto-only", action="store_true", help="time the auto fit only")
    parser.add_argument(
        "--without",
        action="append",
        default=[],
        metavar="FORM",
        choices=list(LOSS_LAWS),
        help="also time auto with this form left out (repeatable): what the form costs",
    )
    args = parser.parse_args()
    print(f"machine: {machine()}", flush=True)

    every = datasets.load("chinchilla-epoch")
    _, _, grid_cpu = timed(
        lambda: ChinchillaLaw(n_bootstrap=0).fit(every.N, every.D, every.loss), args.repeats
    )
    for jobs in (1, -1):
        fitted, wall, cpu = timed(
            lambda j=jobs: Study.from_frame(every, n_jobs=j).fit("auto"), args.repeats
        )
        print(
            f"auto fit, 245 points, 1,000 resamples, nested backtests, n_jobs={jobs}: "
            f"{wall:.2f} s wall, {cpu:.2f} s CPU of this process (weights {weights(fitted)})"
        )
    print(f"(the plain grid fit, no bootstrap, in this run: {grid_cpu:.2f} s CPU)")
    for name in args.without:
        fitted, wall, _ = timed(lambda n=name: auto_without(every, n), args.repeats)
        print(f"auto fit without {name}'s form, n_jobs=-1: {wall:.2f} s wall "
              f"(weights {weights(fitted)})")  # fmt: skip
    if args.auto_only:
        return

    data = pd.read_csv(args.data)
    data = data.sort_values("loss").iloc[: len(data) - 5]  # Epoch: drop the 5 highest losses
    N, D, loss = data["N"].to_numpy(), data["D"].to_numpy(), data["loss"].to_numpy()
    log_n, log_d, log_loss = np.log(N), np.log(D), np.log(loss)
    grid = starting_grid()
    step = max(1, len(grid) // args.reference_starts)
    ref_starts, scale = grid[::step], len(grid) / len(grid[::step])
    cores = os.cpu_count()
    print(f"data: {args.data} ({len(data)} points), {len(grid)} starts")

    def ours_fit(jobs):
        return ChinchillaLaw(n_bootstrap=0, n_jobs=jobs).fit(N, D, loss)

    ours, w1, c1 = timed(lambda: ours_fit(1), args.repeats)
    ours2, w2, _ = timed(lambda: ours_fit(-1), args.repeats)
    f_ours = published_objective(ours.theta_, log_n, log_d, log_loss)

    kinds = [("numeric gradient (published way)", False)]
    if not args.skip_jac_reference:
        kinds.append(("analytic gradient", True))
    refs = []
    for label, use_grad in kinds:
        print(f"reference: scipy L-BFGS-B, {label}, {len(ref_starts)} starts ...", flush=True)
        (f, x), wall, cpu = timed(
            lambda g=use_grad: reference_fit(log_n, log_d, log_loss, g, ref_starts)
        )
        refs.append((f"scipy L-BFGS-B loop, {label}", f, x, wall * scale, cpu * scale))

    print(f"load average now {os.getloadavg()[0]:.1f}")
    _, w1b, c1b = timed(lambda: ours_fit(1), args.repeats)  # again, under the same load
    _, w2b, _ = timed(lambda: ours_fit(-1), args.repeats)
    w1, c1, w2 = min(w1, w1b), min(c1, c1b), min(w2, w2b)

    est = "" if scale == 1 else f"  (times scaled up x{scale:.0f} from a subset: estimate)"
    print(
        f"\n{'fit':46s} {'wall (s)':>9s} {'CPU (s)':>9s} {'objective':>16s}  "
        + "  ".join(f"{n:>8s}" for n in NAMES)
        + est
    )
    rows = [
        ("ours, fits.ChinchillaLaw, 1 process", f_ours, ours.theta_, w1, c1),
        (
            f"ours, fits.ChinchillaLaw, {cores} processes",
            published_objective(ours2.theta_, log_n, log_d, log_loss),
            ours2.theta_,
            w2,
            np.nan,
        ),
        *refs,
    ]
    for name, f, theta, wall, cpu in rows:
        print(
            f"{name:46s} {wall:9.3f} {cpu:9.3f} {f:16.10e}  "
            + "  ".join(f"{v:8.4g}" for v in as_params(theta))
        )

    p_ours = np.array([ours.params_[k] for k in NAMES])
    for name, f, theta, wall, cpu in refs:
        rel_f = (f - f_ours) / f
        rel_p = np.abs(as_params(theta) / p_ours - 1).max()
        same = abs(rel_f) < 1e-6 and rel_p < 1e-3
        print(f"\nvs {name}:")
        print(
            f"  speed-up, 1 process: {wall / w1:7.1f}x wall, {cpu / c1:7.1f}x CPU;"
            f"  {cores} processes: {wall / w2:7.1f}x wall"
        )
        print(
            f"  objective: ours lower by {rel_f:.2e} (relative); largest parameter "
            f"difference {rel_p:.2e} (relative) -> same optimum: {'yes' if same else 'NO'}"
        )

    if args.n_bootstrap > 0:
        print(f"\nbootstrap: {args.n_bootstrap} resamples (times include the grid fit)")
        for jobs, fit_wall in ((1, w1), (-1, w2)):
            boot, wall, _ = timed(
                lambda j=jobs: ChinchillaLaw(
                    n_bootstrap=args.n_bootstrap, n_jobs=j, random_state=0
                ).fit(N, D, loss)
            )
            label = "1 process" if jobs == 1 else f"{cores} processes"
            print(
                f"  {label:12s}: {wall:6.2f} s wall  (bootstrap alone about "
                f"{wall - fit_wall:.2f} s)"
            )
        print(
            "  95% percentile intervals:",
            ", ".join(
                f"{n} [{lo:.4g}, {hi:.4g}]"
                for n, (lo, hi) in zip(
                    NAMES,
                    np.quantile(boot.bootstrap_params_, [0.025, 0.975], axis=0).T,
                    strict=True,
                )
            ),
        )


if __name__ == "__main__":
    main()
