"""The QC part of ``tagseg report``: predicted against true Dice, AUROC and calibration per test set.

Reads every ``qc.csv`` that ``tagseg evaluate`` wrote under a run folder (the split's, and one per
shifted set under ``shift/<name>/``) and writes, under the report folder:

* ``qc.csv`` / ``qc.md``: per test set (and all shifted sets pooled) AUROC for Dice <
  :data:`~tagseg.qc.evaluation.FAILED_BELOW`, Spearman, MAE and failed images caught at 5 % false
  flags, each with a subject-bootstrap 95 % interval;
* ``qc_scatter.png``: predicted against true Dice, one colour per test set, the 0.80 lines drawn;
* ``qc_calibration.png``: mean true Dice per bin of predicted Dice.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tagseg.qc.evaluation import FAILED_BELOW, calibration, qc_table_row

QC_TABLE = "qc.csv"
POOLED = "all shifts"


def find_qc_tables(root: str | Path) -> dict[str, Path]:
    """test set name -> its ``qc.csv`` under a run folder (the split's first, then ``shift/<name>/``)."""
    root = Path(root)
    found: dict[str, Path] = {}
    if (root / QC_TABLE).is_file():
        found["test"] = root / QC_TABLE
    for path in sorted(root.glob(f"shift/*/{QC_TABLE}")):
        found[path.parent.name] = path
    return found


def load_qc(root: str | Path) -> pd.DataFrame:
    """Every image row of every ``qc.csv`` under ``root`` with its ``test_set``; empty when there is none."""
    frames = []
    for name, path in find_qc_tables(root).items():
        df = pd.read_csv(path)
        df["test_set"] = name
        frames.append(df)
    if not frames:
        return pd.DataFrame()
    df = pd.concat(frames, ignore_index=True)
    df["predicted_dice"] = pd.to_numeric(df["predicted_dice"], errors="coerce")
    return df[np.isfinite(df["predicted_dice"])]


def qc_summary_table(images: pd.DataFrame, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """One row per test set, then the shifted sets pooled (subjects named per set, so they stay distinct)."""
    rows: list[dict[str, Any]] = []
    groups = [(name, g) for name, g in images.groupby("test_set", sort=False)]
    shifted = images[images["test_set"] != "test"]
    if len(groups) > 2 and len(shifted):
        groups.append((POOLED, shifted))
    for name, g in groups:
        subjects = (g["test_set"].astype(str) + "/" + g["subject"].astype(str)).to_numpy()
        row = qc_table_row(g["predicted_dice"].to_numpy(), g["dice"].to_numpy(), subjects, n_boot=n_boot, seed=seed)
        rows.append({"test_set": name, **row})
    return pd.DataFrame(rows)


def _fmt(row: pd.Series, name: str, digits: int = 2) -> str:
    v, lo, hi = row[name], row[f"{name}_lo"], row[f"{name}_hi"]
    if not np.isfinite(v):
        return "n/a"
    return f"{v:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def markdown(table: pd.DataFrame) -> str:
    """The table as Markdown: value [95 % subject-bootstrap interval]."""
    lines = [
        "| test set | images | failed (Dice < 0.80) | true Dice | predicted Dice | AUROC | Spearman | MAE | caught at 5 % false flags |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for _, r in table.iterrows():
        lines.append(
            f"| {r['test_set']} | {r['n_images']} | {r['n_failed']} | {r['dice_mean']:.3f} | {r['predicted_dice_mean']:.3f} "
            f"| {_fmt(r, 'auroc')} | {_fmt(r, 'spearman')} | {_fmt(r, 'mae', 3)} | {_fmt(r, 'caught_at_5pct')} |"
        )
    return "\n".join(lines) + "\n"


def plot_qc(images: pd.DataFrame, scatter: Path, calibration_png: Path) -> list[Path]:
    """The scatter of predicted against true Dice and the calibration curve."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.2, 4.8))
    for name, g in images.groupby("test_set", sort=False):
        ax.scatter(g["dice"], g["predicted_dice"], s=6, alpha=0.6, label=str(name))
    ax.plot([0, 1], [0, 1], color="grey", linewidth=0.8)
    ax.axvline(FAILED_BELOW, color="red", linewidth=0.6, linestyle="--")
    ax.axhline(FAILED_BELOW, color="red", linewidth=0.6, linestyle="--")
    ax.set(xlabel="true Dice", ylabel="predicted Dice", xlim=(0, 1), ylim=(0, 1), title="QC: predicted vs true Dice")
    ax.legend(fontsize=7, markerscale=2)
    fig.tight_layout()
    fig.savefig(scatter, dpi=120)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(4.4, 4.2))
    for name, g in images.groupby("test_set", sort=False):
        bins = calibration(g["predicted_dice"].to_numpy(), g["dice"].to_numpy())
        ax.plot([b["predicted"] for b in bins], [b["true"] for b in bins], "o-", markersize=3, label=str(name))
    ax.plot([0, 1], [0, 1], color="grey", linewidth=0.8)
    ax.set(xlabel="mean predicted Dice (bin)", ylabel="mean true Dice", xlim=(0, 1), ylim=(0, 1), title="calibration")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(calibration_png, dpi=120)
    plt.close(fig)
    return [scatter, calibration_png]


def write_qc_report(root: str | Path, out: str | Path, n_boot: int = 1000) -> dict[str, Path]:
    """Write the QC table and figures of the run at ``root`` under ``out``; {} when it has no ``qc.csv``."""
    images = load_qc(root)
    if images.empty:
        return {}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    table = qc_summary_table(images, n_boot=n_boot)
    table.to_csv(out / "qc.csv", index=False)
    (out / "qc.md").write_text(markdown(table))
    scatter, calib = plot_qc(images, out / "qc_scatter.png", out / "qc_calibration.png")
    return {"qc_csv": out / "qc.csv", "qc_md": out / "qc.md", "qc_scatter_png": scatter, "qc_calibration_png": calib}


__all__ = ["find_qc_tables", "load_qc", "markdown", "plot_qc", "qc_summary_table", "write_qc_report"]
