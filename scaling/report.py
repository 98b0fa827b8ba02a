"""`scaling report`: PNG figures and one HTML page of the fits, drawn from the run log.

Each figure is built from a DataFrame that is written beside it as CSV, so what a figure
shows can be checked against the data (tests do exactly that) and reused elsewhere.
A figure whose law cannot be fitted is left out with the reason on the page.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from fits import IsoFLOPFit, LogLinearLaw, LROptima, chinchilla_loss
from fits.bootstrap import percentile_interval
from fits.laws import training_compute
from scaling.errors import ScalingError
from scaling.fitters import LR_GROUP
from scaling.results import FittedLaw
from scaling.study import Study

matplotlib.use("Agg")  # files only: no display needed
# What data too few or too odd for a figure raise (matplotlib raises ValueError for values a
# log axis or an error bar cannot show): the figure is listed as not drawn, with the reason.
DRAWING_ERRORS = (ScalingError, ValueError, ArithmeticError, np.linalg.LinAlgError)


@dataclass
class Figure:
    """One drawn figure: its PNG, the data behind it, and a caption."""

    name: str
    caption: str
    data: pd.DataFrame
    png: Path
    csv: Path


@dataclass
class Report:
    out: Path
    figures: dict[str, Figure] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    fits: list[FittedLaw] = field(default_factory=list)

    @property
    def index(self) -> Path:
        return self.out / "index.html"


def _save(report: Report, name: str, caption: str, data: pd.DataFrame, fig: plt.Figure) -> None:
    png, csv = report.out / f"{name}.png", report.out / f"{name}.csv"
    fig.tight_layout()
    fig.canvas.draw()  # place the ticks where the saved figure has them
    for ax in fig.axes:
        thin_tick_labels(ax)
    fig.savefig(png, dpi=110)
    plt.close(fig)
    data.to_csv(csv, index=False)
    report.figures[name] = Figure(name, caption, data, png, csv)


def thin_tick_labels(ax: plt.Axes) -> None:
    """Hide the tick labels that would overlap one already shown, majors first.

    Near a decade of a log axis matplotlib labels minor ticks too (2x10^11, 3x10^11, ...),
    and they collide; hiding all minor labels instead leaves a span inside one decade with
    no label at all."""
    renderer = ax.figure.canvas.get_renderer()  # type: ignore[attr-defined]
    for axis in (ax.xaxis, ax.yaxis):
        low, high = sorted(axis.get_view_interval())
        shown: list[Any] = []
        for tick in [*axis.get_major_ticks(), *axis.get_minor_ticks()]:
            label = tick.label1
            if not (label.get_visible() and label.get_text() and low <= tick.get_loc() <= high):
                continue
            box = label.get_window_extent(renderer)
            if any(box.overlaps(other) for other in shown):
                label.set_visible(False)
            else:
                shown.append(box)


def _drawable(data: pd.DataFrame, columns: list[str], what: str) -> pd.DataFrame:
    """The rows a log-scaled plot can show: every column finite and positive."""
    values = data[columns].apply(pd.to_numeric, errors="coerce")
    keep = (np.isfinite(values) & (values > 0)).all(axis=1)
    if not keep.any():
        raise ScalingError(f"no {what} with finite, positive {', '.join(columns)} to draw")
    return data[keep]


def _frontier_figure(report: Report, study: Study, runs: pd.DataFrame, source: str | None) -> None:
    known = pd.Series(training_compute(runs.params, runs.tokens), index=runs.index)
    runs = runs.assign(flops=runs.flops.fillna(known))  # C = 6ND if unknown
    runs = _drawable(runs, ["flops", "final_val_loss"], "runs")
    fig, ax = plt.subplots(figsize=(7, 4.5))
    rows = []
    named = runs.arch.notna().any()
    for arch, group in runs.groupby(runs.arch.fillna("")):
        # runs of no arch beside named ones get the frontier of their own runs, not of all
        where = "arch IS NULL" if named and not arch else None
        label = arch or ("no architecture" if where else "all")  # a skip's name; no legend's
        ax.scatter(group.flops, group.final_val_loss, s=14, alpha=0.6, label=f"{arch} runs".strip())
        rows.append(
            group.assign(kind="run")[["arch", "kind", "flops", "final_val_loss"]].rename(
                columns={"flops": "C", "final_val_loss": "loss"}
            )
        )
        try:
            fitted, model = study.loss_law("chinchilla", arch or None, source, where)
        except ScalingError as exc:
            report.skipped[f"frontier of {label}"] = str(exc)
            continue
        report.fits.append(fitted)
        grid = np.geomspace(group.flops.min() / 3, group.flops.max() * 30, 60)
        line = model.frontier(grid)
        lo, hi = percentile_interval(model.frontier_draws(grid), study.level)
        ax.plot(grid, line, label=f"{arch} compute-optimal frontier".strip())
        ax.fill_between(grid, lo, hi, alpha=0.2)
        rows.append(
            pd.DataFrame(
                {"arch": arch, "kind": "frontier", "C": grid, "loss": line, "lo": lo, "hi": hi}
            )
        )
    ax.set(
        xscale="log",
        xlabel="training compute C (FLOPs)",
        ylabel="final validation loss",
        title="Loss against compute, with the fitted frontier",
    )
    ax.legend(fontsize=7)
    _save(
        report,
        "frontier",
        f"Runs and each architecture's compute-optimal frontier "
        f"L(N_opt(C), D_opt(C)) with its {study.level:.0%} bootstrap band.",
        pd.concat(rows, ignore_index=True),
        fig,
    )


def _isoflop_figure(report: Report, study: Study, arch: str | None, source: str | None) -> None:
    fitted = study.fit("isoflop", arch, source)
    report.fits.append(fitted)
    model: IsoFLOPFit = fitted.model  # type: ignore[assignment]
    budgets = model.budgets_
    data = _drawable(study.law_runs("isoflop", arch, source), ["C", "N"], "runs")
    fig, ax = plt.subplots(figsize=(7, 4.5))
    labels = np.round(np.log10(data.C) / model.log10_resolution)
    colors = plt.get_cmap("viridis")
    span = (np.log10(data.C.min()), np.log10(data.C.max()) + 1e-9)
    rows = []
    for label, group in data.groupby(labels):
        group = group.sort_values("N")
        shade = (np.log10(group.C.median()) - span[0]) / (span[1] - span[0])
        ax.plot(group.N, group.loss, "o-", ms=3, color=colors(shade))
        rows.append(group.assign(budget=float(label))[["budget", "C", "N", "loss"]])
    scale = plt.cm.ScalarMappable(cmap=colors, norm=plt.Normalize(*span))
    fig.colorbar(scale, ax=ax, label="log10 compute C")
    used = budgets[budgets.used]
    ax.scatter(used.N_opt, used.loss_opt, marker="*", s=120, c="k", zorder=5, label="fitted minima")
    ax.set(
        xscale="log",
        xlabel="parameters N",
        ylabel="final loss",
        title="IsoFLOP curves and their minima",
    )
    ax.legend(fontsize=7)
    minima = used[["C", "N_opt", "loss_opt"]].assign(budget=np.nan, N=np.nan, loss=np.nan)
    _save(
        report,
        "isoflop",
        "Loss against model size at fixed compute; stars are the "
        "parabola minima that feed N_opt = G C^a.",
        pd.concat([*rows, minima]),
        fig,
    )


def _lr_figure(report: Report, study: Study, arch: str | None, source: str | None) -> None:
    fitted = study.fit("lr", arch, source)
    report.fits.append(fitted)
    optima = _lr_table(fitted)
    data = study.law_runs("lr", arch, source)
    data = _drawable(data[data.status == "done"], ["lr"], "finished runs")
    keys = list(LR_GROUP)
    vertices = optima.set_index(keys).lr_opt.to_dict()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for key, group in data.groupby(keys):
        group = group.groupby("lr", as_index=False).loss.mean()
        (line,) = ax.plot(
            group.lr,
            group.loss,
            "o-",
            ms=3,
            label=f"{key[0]} {key[1]} N={key[2]:.3g} D={key[3]:.3g}",
        )
        best = vertices.get(key, np.nan)
        if np.isfinite(best) and group.lr.nunique() >= 3:  # a parabola needs three LRs
            ax.axvline(best, color=line.get_color(), ls=":", lw=1)
    ax.set(
        xscale="log",
        xlabel="peak learning rate",
        ylabel="final loss",
        title="Loss against LR per (size, tokens); dotted: fitted optimum",
    )
    if len(vertices) <= 12:  # beyond that the legend hides the plot; the CSV names the groups
        ax.legend(fontsize=6)
    _save(
        report,
        "lr",
        "Loss against learning rate per group, with the vertex of the parabola in log LR.",
        data[[*LR_GROUP, "lr", "loss"]],
        fig,
    )


def _lr_law_figure(report: Report, study: Study, arch: str | None, source: str | None) -> None:
    optima = _lr_table(study.fit("lr", arch, source))
    law = study.fit("lr-law", arch, source)
    report.fits.append(law)
    model: LogLinearLaw = law.model  # type: ignore[assignment]
    usable = _drawable(optima[optima.bracketed.astype(bool)], ["N", "D", "lr_opt"], "LR optima")
    fig, axes = plt.subplots(1, 2, figsize=(9, 4))
    for ax, var in zip(axes, ("N", "D"), strict=True):
        ax.scatter(usable[var], usable.lr_opt, s=18)
        grid = np.geomspace(usable[var].min() / 2, usable[var].max() * 2, 40)
        others = {v: np.full_like(grid, usable[v].median()) for v in ("N", "D") if v != var}
        pred = model.predict({var: grid, **others})
        ax.plot(grid, pred, label="fitted law (other variable at its median)")
        ax.set(xscale="log", yscale="log", xlabel=var, ylabel="optimal LR")
        ax.legend(fontsize=7)
    fig.suptitle(model.law_formula)
    _save(
        report,
        "lr_law",
        "Fitted optimal LR against N and against D with the law.",
        usable[[*LR_GROUP, "lr_opt"]],
        fig,
    )


def _residual_figure(report: Report, study: Study, arch: str | None, source: str | None) -> None:
    fitted = study.fit("chinchilla", arch, source)
    data = study.law_runs("chinchilla", arch, source)
    predicted = chinchilla_loss(
        np.array([fitted.model.params_[k] for k in ("E", "A", "B", "alpha", "beta")]),
        data.N,
        data.D,
    ).ravel()
    resid = pd.DataFrame(
        {
            "C": data.C,
            "N": data.N,
            "D": data.D,
            "loss": data.loss,
            "predicted": predicted,
            "log_residual": np.log(data.loss / predicted),
        }
    )
    shown = _drawable(resid, ["C"], "runs")
    if not np.isfinite(shown.log_residual).any():
        raise ScalingError("the fitted law gives no finite residual to draw")
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.scatter(shown.C, shown.log_residual, s=12)
    ax.axhline(0, color="k", lw=0.8)
    ax.set(
        xscale="log",
        xlabel="compute C",
        ylabel="log(actual / fitted)",
        title="Residuals of the Chinchilla fit",
    )
    _save(report, "residuals", "Log residuals of the Chinchilla fit against compute.", resid, fig)


def _backtest_figure(report: Report, study: Study, arch: str | None, source: str | None) -> None:
    result = study.backtest("chinchilla", arch, source=source)
    frame = result.frame
    shown = frame[np.isfinite(frame[["actual", "predicted", "lo", "hi"]]).all(axis=1)]
    if shown.empty:
        raise ScalingError("the backtest has no finite prediction to draw")
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.errorbar(
        shown.actual,
        shown.predicted,
        # an interval need not contain the point estimate (bootstrap percentiles)
        yerr=[
            np.maximum(shown.predicted - shown.lo, 0),
            np.maximum(shown.hi - shown.predicted, 0),
        ],
        fmt="o",
        ms=3,
        alpha=0.7,
    )
    edge = [min(shown.actual.min(), shown.lo.min()), max(shown.actual.max(), shown.hi.max())]
    ax.plot(edge, edge, "k--", lw=0.8)
    ax.set(xlabel="actual loss", ylabel="predicted loss", title=str(result).split(":")[0])
    _save(report, "backtest", str(result), frame, fig)


def write_report(
    study: Study, out: Path, arch: str | None = None, source: str | None = None
) -> Report:
    """Draw every figure the data allow and write out/index.html linking them.

    A folder that cannot be written (a full or read-only disk, a file in the way) is one
    ScalingError naming it."""
    try:
        return _draw_all(study, out, arch, source)
    except OSError as exc:
        raise ScalingError(f"cannot write the report in {out}: {exc.strerror or exc}") from exc


def _draw_all(study: Study, out: Path, arch: str | None, source: str | None) -> Report:
    out.mkdir(parents=True, exist_ok=True)
    report = Report(out)
    runs = study.runs(arch=arch, source=source)
    if runs.empty:
        chosen = ", ".join(f"{k}={v}" for k, v in (("arch", arch), ("source", source)) if v)
        raise ScalingError("no finished runs to report on" + (f" ({chosen})" if chosen else ""))
    steps: list[tuple[str, Callable[[], None]]] = [
        ("frontier", lambda: _frontier_figure(report, study, runs, source)),
        ("isoflop", lambda: _isoflop_figure(report, study, arch, source)),
        ("lr", lambda: _lr_figure(report, study, arch, source)),
        ("lr_law", lambda: _lr_law_figure(report, study, arch, source)),
        ("residuals", lambda: _residual_figure(report, study, arch, source)),
        ("backtest", lambda: _backtest_figure(report, study, arch, source)),
    ]
    for name, draw in steps:
        try:
            draw()
        except DRAWING_ERRORS as exc:
            report.skipped[name] = str(exc) or type(exc).__name__
        finally:
            plt.close("all")  # a figure that failed half-way is not left open
    _write_html(report)
    return report


def _write_html(report: Report) -> None:
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>scaling report</title>",
        "<style>body{font-family:sans-serif;max-width:1000px;margin:auto}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px}"
        "pre{background:#f6f6f6;padding:6px}</style></head><body>",
        "<h1>scaling report</h1>",
    ]
    for figure in report.figures.values():
        parts.append(
            f"<h2>{html.escape(figure.name)}</h2><p>{html.escape(figure.caption)}</p>"
            f"<img src='{figure.png.name}' style='max-width:100%'>"
            f"<p><a href='{figure.csv.name}'>data ({figure.csv.name})</a></p>"
        )
    parts.append("<h2>Fitted laws</h2>")
    seen = set()
    for fitted in report.fits:
        if fitted.fit_id in seen:
            continue
        seen.add(fitted.fit_id)
        model = fitted.model
        rows = "".join(
            f"<tr><td>{html.escape(k)}</td><td>{v:.6g}</td>"
            f"<td>{model.intervals_.get(k, (float('nan'),) * 2)[0]:.6g}</td>"
            f"<td>{model.intervals_.get(k, (float('nan'),) * 2)[1]:.6g}</td></tr>"
            for k, v in model.params_.items()
        )
        arch = fitted.selection.get("arch") or "all"
        summary = "\n".join([model.summary(), *fitted.extrapolation_lines()])
        parts.append(
            f"<h3>{html.escape(fitted.law)} ({html.escape(str(arch))}, "
            f"{fitted.selection['n_runs']} runs, {fitted.fit_id})</h3>"
            f"<table><tr><th>param</th><th>estimate</th><th>lo</th><th>hi</th></tr>"
            f"{rows}</table><pre>{html.escape(summary)}</pre>"
        )
    if report.skipped:
        parts.append("<h2>Not drawn</h2><ul>")
        parts += [f"<li>{html.escape(k)}: {html.escape(v)}</li>" for k, v in report.skipped.items()]
        parts.append("</ul>")
    parts.append("</body></html>")
    report.index.write_text("\n".join(parts))


def _lr_table(fitted: FittedLaw) -> pd.DataFrame:
    """The per-group LR optima of an `lr` fit."""
    model: LROptima = fitted.model  # type: ignore[assignment]
    return model.table_
