"""A sweep's table and figure from its ``summary.csv``: the paper's Table 3 (strategy x architecture)
and Table 4 (one swept value per row) layouts, and bars with error bars (mean +/- std over the test images)."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from tagseg.io.run_dir import sweep_columns  # noqa: E402
from tagseg.metric_registry import metric_specs  # noqa: E402


def swept_columns(df: pd.DataFrame) -> list[str]:
    """The swept-key columns of a ``summary.csv`` (every column that is not a fixed one), in file order."""
    fixed = set(sweep_columns())
    return [c for c in df.columns if c not in fixed]


def _cell(mean: float, std: float) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "-"
    return f"{mean:.3f} +/- {0.0 if pd.isna(std) else std:.3f}"


def _metric_cells(r: pd.Series | dict | None) -> list[str]:
    """``mean +/- std`` of each registered metric of one summary row (``-`` when absent)."""
    if r is None:
        return ["-" for _ in metric_specs()]
    return [_cell(r.get(f"test_{m.name}_mean"), r.get(f"test_{m.name}_std")) for m in metric_specs()]


def sweep_markdown(df: pd.DataFrame) -> str:
    """Markdown: with two or more swept keys, the last one per row and the others per column (Table 3:
    strategies x architectures); with one, one row per value (Table 4: gamma); a cell per registered
    metric (Dice, HD95 (mm), ...)."""
    titles = [m.title for m in metric_specs()]
    keys = swept_columns(df)
    ok = df[df["status"] == "ok"] if "status" in df.columns else df
    if len(keys) >= 2:
        row_key, col_keys = keys[-1], keys[:-1]
        cols = (
            ok[col_keys].astype(str).apply(lambda r: ",".join(f"{k}={v}" for k, v in zip(col_keys, r)), axis=1)
            if len(ok)
            else pd.Series(dtype=str)
        )
        col_names = list(dict.fromkeys(cols))
        lines = [
            f"| {row_key} | " + " | ".join(f"{c} {t}" for c in col_names for t in titles) + " |",
            "|---|" + "---|" * len(titles) * len(col_names),
        ]
        for value in dict.fromkeys(ok[row_key].astype(str)):
            cells = []
            for name in col_names:
                hit = ok[(ok[row_key].astype(str) == value) & (cols == name)]
                cells += _metric_cells(hit.iloc[0] if len(hit) else None)
            lines.append(f"| {value} | " + " | ".join(cells) + " |")
    else:
        key = keys[0] if keys else "job"
        lines = [
            f"| {key} | " + " | ".join(titles) + " | best val Dice | epochs |",
            "|---|" + "---|" * (len(titles) + 2),
        ]
        for r in ok.to_dict("records"):
            best = r.get("val_dice_best")
            lines.append(
                f"| {r.get(key)} | " + " | ".join(_metric_cells(r)) + " | "
                f"{'-' if best is None or pd.isna(best) else f'{best:.3f}'} | {r.get('epochs', '-')} |"
            )
    failed = df[df["status"] != "ok"] if "status" in df.columns else df.iloc[0:0]
    lines += [f"\nfailed: job {r['job']} ({r.get('overrides')}): {r.get('error')}" for r in failed.to_dict("records")]
    return "\n".join(lines) + "\n"


def plot_sweep(df: pd.DataFrame, out: str | Path) -> Path | None:
    """Bars of each registered test metric (mean, error bar = std over the test images) per cell, grouped by the
    last swept key and coloured by the others (Table 3's layout); ``None`` when no cell succeeded."""
    primary = f"test_{metric_specs()[0].name}_mean"
    ok = df[(df["status"] == "ok") & df[primary].notna()] if "status" in df.columns else df
    if ok.empty:
        return None
    keys = swept_columns(ok)
    x_key = keys[-1] if keys else "job"
    hue = (
        ok[keys[:-1]].astype(str).agg(",".join, axis=1) if len(keys) >= 2 else pd.Series([""] * len(ok), index=ok.index)
    )
    xs = list(dict.fromkeys(ok[x_key].astype(str)))
    hues = list(dict.fromkeys(hue))
    width = 0.8 / max(len(hues), 1)
    specs = [m for m in metric_specs() if f"test_{m.name}_mean" in ok.columns]  # an older table may lack one
    fig, axes = plt.subplots(
        1, len(specs), figsize=(max(6.0, 1.2 * len(xs) * max(len(hues), 1) + 3) * len(specs) / 2, 4), squeeze=False
    )
    axes = axes[0]
    for ax, metric, label in zip(axes, (f"test_{m.name}" for m in specs), (m.title for m in specs)):
        for j, h in enumerate(hues):
            sel = ok[hue == h]
            pos, means, stds = [], [], []
            for i, x in enumerate(xs):
                hit = sel[sel[x_key].astype(str) == x]
                if len(hit):
                    pos.append(i + (j - (len(hues) - 1) / 2) * width)
                    means.append(float(hit.iloc[0][f"{metric}_mean"]))
                    stds.append(float(np.nan_to_num(hit.iloc[0][f"{metric}_std"])))
            ax.bar(pos, means, width=width, yerr=stds, capsize=3, label=h or None)
        ax.set_xticks(range(len(xs)), xs, rotation=30 if len(xs) > 4 else 0)
        ax.set(xlabel=x_key, ylabel=label, title=f"test {label}")
    if len(hues) > 1:
        axes[0].legend(fontsize=8, title=",".join(keys[:-1]))
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def write_sweep_report(summary_csv: str | Path, out_dir: str | Path) -> dict[str, Path]:
    """``sweep_table.md`` and ``sweep.png`` of a sweep's ``summary.csv`` into ``out_dir``."""
    df = pd.read_csv(summary_csv)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"sweep_md": out_dir / "sweep_table.md"}
    paths["sweep_md"].write_text(sweep_markdown(df))
    figure = plot_sweep(df, out_dir / "sweep.png")
    if figure is not None:
        paths["sweep_png"] = figure
    return paths


__all__ = ["plot_sweep", "swept_columns", "sweep_markdown", "write_sweep_report"]
