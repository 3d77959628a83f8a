"""Figures from run folders: each registered metric (Dice, HD95, ...) per time frame (paper Fig. 9), per group (Fig. 11) and
convergence curves from the CSV logs (Fig. 8)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from tagseg.metric_registry import metric_specs  # noqa: E402
from tagseg.report.tables import breakdown  # noqa: E402


def plot_per_frame(metrics: pd.DataFrame, out: Path) -> Path | None:
    """Each metric's mean (with std bands) against the time frame, one line per run."""
    if "frame" not in metrics.columns:
        return None
    table = breakdown(metrics, "frame")
    specs = metric_specs()
    fig, axes = plt.subplots(1, len(specs), figsize=(5.5 * len(specs), 4), squeeze=False)
    axes = axes[0]
    for run, df in table.groupby("run"):
        run = run if run != "." else "run"
        x = df["frame"] + 1  # the paper counts frames from 1
        for ax, key in zip(axes, (m.name for m in specs)):
            ax.plot(x, df[f"{key}_mean"], marker="o", ms=3, label=run)
            ax.fill_between(
                x,
                df[f"{key}_mean"] - df[f"{key}_std"].fillna(0),
                df[f"{key}_mean"] + df[f"{key}_std"].fillna(0),
                alpha=0.15,
            )
    for ax, m in zip(axes, specs):
        ax.set(xlabel="time frame", ylabel=m.title, title=f"{m.title.split(' (')[0]} per frame")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def plot_per_group(metrics: pd.DataFrame, out: Path) -> Path | None:
    """Box plots of each metric per group (e.g. control vs DMD), per run."""
    if "group" not in metrics.columns:
        return None
    runs = list(dict.fromkeys(metrics["run"]))
    groups = sorted(metrics["group"].astype(str).unique())
    specs = metric_specs()
    fig, axes = plt.subplots(
        1, len(specs), figsize=(max(6, 2.5 * len(runs) * len(groups) / 2) * len(specs) / 2, 4), squeeze=False
    )
    for ax, key, label in zip(axes[0], (m.name for m in specs), (m.title for m in specs)):
        data, names = [], []
        for run in runs:
            for grp in groups:
                sel = metrics[(metrics["run"] == run) & (metrics["group"].astype(str) == grp)][key]
                if len(sel):
                    data.append(sel.to_numpy())
                    names.append(f"{grp}\n{run}" if len(runs) > 1 else grp)
        ax.boxplot(data, tick_labels=names)
        ax.set(ylabel=label, title=f"{label} per group")
        ax.tick_params(axis="x", labelsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def plot_convergence(root: Path, out: Path) -> Path | None:
    """Training/validation curves from every Lightning ``metrics.csv`` below ``root``."""
    logs = sorted(root.rglob("metrics.csv"))
    if not logs:
        return None
    keys = ("train/loss", "val/loss", *(f"val/{m.name}" for m in metric_specs()))
    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3.5))
    plotted = False
    for log in logs:
        df = pd.read_csv(log)
        if "epoch" not in df.columns:
            continue
        rel = log.parent.relative_to(root)
        # name a curve by its run (the folder above the logger's csv/version_N), not the logger folder
        label = str(rel.parent.parent) if rel.parts[-2:-1] == ("csv",) else str(rel)
        label = root.name if label == "." else label
        for ax, key in zip(axes, keys):
            if key in df.columns:
                s = df[["epoch", key]].dropna().groupby("epoch")[key].mean()
                ax.plot(s.index, s.values, label=label)
                plotted = True
    if not plotted:
        plt.close(fig)
        return None
    for ax, key in zip(axes, keys):
        ax.set(xlabel="epoch", title=key)
    next(ax for ax in axes if ax.lines).legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
