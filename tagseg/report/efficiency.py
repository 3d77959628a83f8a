"""The data-efficiency report of a sweep (``experiment=data_efficiency``): CSV, Markdown and PNG.

Written by ``tagseg report path=<sweep dir>`` when the sweep's cells limit the labelled subjects
(``datamodule.n_train_subjects``); the statistics are :mod:`tagseg.report.stats`'s.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from tagseg.errors import ConfigError  # noqa: E402
from tagseg.report.claims import MIN_SEEDS, claims, claims_markdown, drop_mirrors  # noqa: E402
from tagseg.report.stats import (  # noqa: E402
    IN_DISTRIBUTION,
    REFERENCE,
    convergence,
    convergence_summary,
    find_cells,
    interval_caption,
    learning_curve,
    load_cells,
    paired_differences,
    subject_means,
)

STRATEGY_ORDER = ("scratch", "cine", "physics", "physics_dynamic", "cyclegan", "three_stage")


def _strategies(table: pd.DataFrame) -> list[str]:
    found = list(dict.fromkeys(table["strategy"]))
    return sorted(
        found,
        key=lambda s: (
            STRATEGY_ORDER.index(s.split("+")[0]) if s.split("+")[0] in STRATEGY_ORDER else len(STRATEGY_ORDER),
            s,
        ),
    )


def _interval(mean: float, lo: float, hi: float, signed: bool = False) -> str:
    fmt = "{:+.3f}" if signed else "{:.3f}"
    if pd.isna(lo) or pd.isna(hi):  # one seed and one subject: nothing to resample
        return f"{fmt.format(mean)} [no interval]"
    return f"{fmt.format(mean)} [{fmt.format(lo)}, {fmt.format(hi)}]"


def curve_markdown(curve: pd.DataFrame, metric: str = "dice") -> str:
    """Rows strategy x n, one column per test set: ``mean [low, high]``."""
    sets = list(dict.fromkeys(curve["test_set"]))
    lines = ["| strategy | n | " + " | ".join(sets) + " |", "|---|---|" + "---|" * len(sets)]
    for strategy in _strategies(curve):
        for n in sorted(curve.loc[curve["strategy"] == strategy, "n"].unique()):
            cells = []
            for s in sets:
                r = curve[(curve["strategy"] == strategy) & (curve["n"] == n) & (curve["test_set"] == s)]
                cells.append(
                    _interval(*r[[f"{metric}_mean", f"{metric}_lo", f"{metric}_hi"]].iloc[0]) if len(r) else "-"
                )
            lines.append(f"| {strategy} | {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def paired_markdown(diff: pd.DataFrame, metric: str = "dice", reference: str = REFERENCE) -> str:
    """Strategy minus ``reference``: ``diff [low, high]`` per test set; ``*`` marks intervals excluding 0."""
    if diff.empty:
        return f"(no strategy paired with {reference})\n"
    sets = list(dict.fromkeys(diff["test_set"]))
    lines = ["| strategy | n | " + " | ".join(sets) + " |", "|---|---|" + "---|" * len(sets)]
    for strategy in _strategies(diff):
        for n in sorted(diff.loc[diff["strategy"] == strategy, "n"].unique()):
            cells = []
            for s in sets:
                r = diff[(diff["strategy"] == strategy) & (diff["n"] == n) & (diff["test_set"] == s)]
                if not len(r):
                    cells.append("-")
                    continue
                mean, lo, hi = r[[f"d_{metric}", f"d_{metric}_lo", f"d_{metric}_hi"]].iloc[0]
                cells.append(_interval(mean, lo, hi, signed=True) + (" *" if lo > 0 or hi < 0 else ""))
            lines.append(f"| {strategy} | {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_learning_curves(curve: pd.DataFrame, out: Path, metric: str = "dice") -> Path:
    """One panel per test set: ``metric`` against n, one line and 95 % band per strategy."""
    sets = list(dict.fromkeys(curve["test_set"]))
    cols = min(3, len(sets))
    rows = (len(sets) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.4 * rows), squeeze=False, sharey=True)
    for ax, test_set in zip(axes.flat, sets):
        sel = curve[curve["test_set"] == test_set]
        for strategy in _strategies(sel):
            d = sel[sel["strategy"] == strategy].sort_values("n")
            ax.plot(d["n"], d[f"{metric}_mean"], marker="o", ms=3, label=strategy)
            ax.fill_between(d["n"], d[f"{metric}_lo"], d[f"{metric}_hi"], alpha=0.15)
        ax.set_xscale("log", base=2)
        ns = sorted(sel["n"].unique())
        ax.set_xticks(ns, [str(n) for n in ns])
        title = "tagged test split" if test_set == IN_DISTRIBUTION else f"shift: {test_set}"
        ax.set(title=title, xlabel="labelled tagged subjects n", ylabel="Dice" if metric == "dice" else "HD95 (mm)")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(sets) :]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    title = (
        f"{'Dice' if metric == 'dice' else 'HD95'} vs labelled subjects, mean over seeds and subjects; "
        f"band: {interval_caption(curve)}"
    )
    fig.suptitle(textwrap.fill(title, width=int(fig.get_figwidth() * 14)), fontsize=9)  # ~14 characters per inch
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def plot_validation_curves(curves: pd.DataFrame, out: Path) -> Path | None:
    """One panel per n: validation Dice against epoch, mean over seeds per strategy (min-max band)."""
    if curves.empty:
        return None
    ns = sorted(curves["n"].unique())
    fig, axes = plt.subplots(1, len(ns), figsize=(3.8 * len(ns), 3.3), squeeze=False, sharey=True)
    for ax, n in zip(axes[0], ns):
        sel = curves[curves["n"] == n]
        for strategy in _strategies(sel):
            g = sel[sel["strategy"] == strategy].groupby("epoch")["val_dice"]
            mean, lo, hi = g.mean(), g.min(), g.max()
            ax.plot(mean.index, mean.values, label=strategy)
            ax.fill_between(mean.index, lo.values, hi.values, alpha=0.15)
        ax.set(title=f"n = {n}", xlabel="fine-tuning epoch", ylabel="validation Dice")
        ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def write_data_efficiency(
    root: str | Path,
    out_dir: str | Path,
    n_boot: int = 2000,
    references: Sequence[str] = (REFERENCE,),
    limits: Mapping[str, float] | None = None,
    min_seeds: int = MIN_SEEDS,
) -> dict[str, Path]:
    """Write the learning curves, paired differences, claims and convergence of the sweep ``root``.

    Files (under ``out_dir``): ``learning_curve.csv/.md/.png`` (+ ``learning_curve_hd95.png``),
    ``paired_vs_<reference>.csv/.md`` per reference, ``claims.csv/.md`` (every paired difference
    as a verdict, :mod:`tagseg.report.claims`), ``convergence.csv`` (per cell),
    ``convergence_summary.csv/.md``, ``validation_curves.png``. Every table with an interval names
    what it resampled (:func:`~tagseg.report.stats.interval_caption`).

    Args:
        references: strategies every other one is paired against (``scratch``; e.g. ``physics`` to
            compare ``physics_dynamic`` with static tags).
        limits: per metric, the smallest difference a claim must resolve (``dice: 0.01``).
        min_seeds: claims on fewer seeds always ask for more.

    Returns:
        The files written, by kind; empty when ``root`` holds no data-efficiency cells.

    Raises:
        ConfigError: a reference other than ``scratch`` that no cell of the sweep ran.
    """
    cells = find_cells(root)
    if not cells:
        return {}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    subjects = subject_means(load_cells(cells))
    curve = learning_curve(subjects, n_boot)
    strategies = sorted(set(subjects["strategy"]))
    for reference in references:
        if reference != REFERENCE and reference not in strategies:
            raise ConfigError(f"references: {reference!r} is not a strategy of {root}; expected some of {strategies}")
    per_cell, curves = convergence(cells)
    conv = convergence_summary(per_cell)
    paths = {
        "learning_curve_csv": out / "learning_curve.csv",
        "learning_curve_md": out / "learning_curve.md",
        "convergence_csv": out / "convergence.csv",
        "convergence_summary_csv": out / "convergence_summary.csv",
        "convergence_md": out / "convergence_summary.md",
    }
    curve.to_csv(paths["learning_curve_csv"], index=False)
    caption = interval_caption(curve)
    paths["learning_curve_md"].write_text(
        f"Dice, mean over seeds and test subjects [{caption}]\n\n"
        + curve_markdown(curve, "dice")
        + f"\nHD95 (mm) [{caption}]\n\n"
        + curve_markdown(curve, "hd95_mm")
    )
    claim_tables = []
    for reference in dict.fromkeys(references):
        diff = paired_differences(subjects, reference, n_boot)
        key = "paired" if reference == REFERENCE else f"paired_{reference}"
        paths[f"{key}_csv"], paths[f"{key}_md"] = out / f"paired_vs_{reference}.csv", out / f"paired_vs_{reference}.md"
        diff.to_csv(paths[f"{key}_csv"], index=False)
        caption = interval_caption(diff)
        paths[f"{key}_md"].write_text(
            f"Dice difference to {reference} (paired by test subject and seed) [{caption}]; * excludes 0\n\n"
            + paired_markdown(diff, "dice", reference)
            + f"\nHD95 (mm) difference to {reference} [{caption}]\n\n"
            + paired_markdown(diff, "hd95_mm", reference)
        )
        claim_tables.append(claims(diff, reference, limits, min_seeds))
    table = drop_mirrors(pd.concat(claim_tables, ignore_index=True))
    paths["claims_csv"], paths["claims_md"] = out / "claims.csv", out / "claims.md"
    table.to_csv(paths["claims_csv"], index=False)
    paths["claims_md"].write_text(
        f"Claims (Dice): held / not shown / contradicted by the paired interval; more seeds while fewer than "
        f"{min_seeds} or the half-width exceeds max(|difference|, limit) (docs/experiments.md)\n\n"
        + claims_markdown(table, "dice")
        + "\nClaims (HD95, mm)\n\n"
        + claims_markdown(table, "hd95_mm")
    )
    per_cell.to_csv(paths["convergence_csv"], index=False)
    conv.to_csv(paths["convergence_summary_csv"], index=False)
    lines = [
        "| strategy | n | seeds | epochs to 95 % of final val Dice: mean (min-max) | final val Dice |",
        "|---|---|---|---|---|",
    ]
    for r in conv.itertuples():
        lines.append(
            f"| {r.strategy} | {r.n} | {r.seeds} | {r.epochs_to_95_mean:.1f} ({r.epochs_to_95_min}-{r.epochs_to_95_max}) "
            f"| {r.final_val_dice_mean:.3f} |"
        )
    paths["convergence_md"].write_text("\n".join(lines) + "\n")
    paths["learning_curve_png"] = plot_learning_curves(curve, out / "learning_curve.png", "dice")
    paths["learning_curve_hd95_png"] = plot_learning_curves(curve, out / "learning_curve_hd95.png", "hd95_mm")
    figure = plot_validation_curves(curves, out / "validation_curves.png")
    if figure is not None:
        paths["validation_curves_png"] = figure
    return paths


__all__ = [
    "curve_markdown",
    "paired_markdown",
    "plot_learning_curves",
    "plot_validation_curves",
    "write_data_efficiency",
]
