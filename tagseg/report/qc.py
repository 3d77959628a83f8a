"""The QC part of ``tagseg report``: predicted against true Dice, AUROC and calibration per test set.

Reads every ``qc.csv`` that ``tagseg evaluate`` wrote under a run folder (the split's, and one per
shifted set under ``shift/<name>/``) and writes, under the report folder:

* ``qc.csv`` / ``qc.md``: per test set (and all shifted sets pooled) AUROC for Dice <
  :data:`~tagseg.qc.evaluation.FAILED_BELOW`, Spearman, MAE and failed images caught at 5 % false
  flags, each with a subject-bootstrap 95 % interval;
* ``qc_scatter.png``: predicted against true Dice, one colour per test set, the 0.80 lines drawn;
* ``qc_calibration.png``: mean true Dice per bin of predicted Dice;
* ``qc_leave_one_out.csv`` / ``.md`` (when the checkpoint's ``qc_fit.csv`` is found, through
  ``summary.json``): each fitting set scored by a model refitted without it, so a shift type the
  model never saw (:func:`leave_one_set_out`).
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


def leave_one_set_out(fit: pd.DataFrame, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Each set of a ``qc_fit.csv`` scored by a QC model fitted on the other sets (both variants:
    ``tta`` none and flip), with subject-bootstrap intervals: how QC does on a kind of shift it never saw."""
    from tagseg.qc.model import fit_qc_model

    rows: list[dict[str, Any]] = []
    plain, flip = fit[fit["tta"] == "none"], fit[fit["tta"] == "flip"]
    if plain["test_set"].nunique() < 2:  # nothing to leave out
        return pd.DataFrame(rows)
    for name in plain["test_set"].unique():
        train, test = plain[plain["test_set"] != name], plain[plain["test_set"] == name]
        train_v, test_v = flip[flip["test_set"] != name], flip[flip["test_set"] == name]
        model = fit_qc_model(
            train.to_dict("records"),
            train["dice"].to_numpy(),
            view_rows=train_v.to_dict("records"),
            view_dice=train_v["dice"].to_numpy(),
        )
        for tta, g in (("none", test), ("flip", test_v)):
            if g.empty:
                continue
            predicted = model.predict(g.to_dict("records"))
            row = qc_table_row(predicted, g["dice"].to_numpy(), g["subject"].astype(str).to_numpy(), n_boot, seed)
            rows.append({"test_set": f"{name} (tta {tta})", **row})
    return pd.DataFrame(rows)


def fit_table_of(root: Path) -> Path | None:
    """The ``qc_fit.csv`` of the checkpoint an evaluation (``summary.json``) tested, if it exists."""
    import json

    from tagseg.qc.model import qc_model_path

    summary = root / "summary.json"
    if not summary.is_file():
        return None
    ckpt = json.loads(summary.read_text()).get("checkpoint")
    path = qc_model_path(ckpt).with_name("qc_fit.csv") if ckpt else None
    return path if path is not None and path.is_file() else None


def write_qc_report(root: str | Path, out: str | Path, n_boot: int = 1000) -> dict[str, Path]:
    """Write the QC table and figures of the run at ``root`` under ``out``; {} when it has no ``qc.csv``."""
    root = Path(root)
    images = load_qc(root)
    if images.empty:
        return {}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    table = qc_summary_table(images, n_boot=n_boot)
    table.to_csv(out / "qc.csv", index=False)
    (out / "qc.md").write_text(markdown(table))
    scatter, calib = plot_qc(images, out / "qc_scatter.png", out / "qc_calibration.png")
    paths = {"qc_csv": out / "qc.csv", "qc_md": out / "qc.md", "qc_scatter_png": scatter, "qc_calibration_png": calib}
    fit = fit_table_of(root)
    loso = leave_one_set_out(pd.read_csv(fit), n_boot=n_boot) if fit is not None else pd.DataFrame()
    if not loso.empty:
        loso.to_csv(out / "qc_leave_one_out.csv", index=False)
        (out / "qc_leave_one_out.md").write_text(markdown(loso))
        paths.update(qc_loso_csv=out / "qc_leave_one_out.csv", qc_loso_md=out / "qc_leave_one_out.md")
    return paths


__all__ = [
    "fit_table_of",
    "leave_one_set_out",
    "find_qc_tables",
    "load_qc",
    "markdown",
    "plot_qc",
    "qc_summary_table",
    "write_qc_report",
]
