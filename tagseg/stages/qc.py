"""``tagseg qc ckpt=<run>``: fit a trained segmenter's QC model and store it next to its checkpoint.

The model (:mod:`tagseg.qc.model`) learns the segmenter's own Dice from its own mistakes, on sets
that never score it:

* the **validation split** of the run's training store (the test split is left for evaluation);
* **phantom shifts** tagseg generates itself (``conf/shift``, ``shifts``), drawn with seed
  ``prepare seed +`` :data:`QC_SEED_OFFSET` (2000): other subjects than the training cohort
  and than the shifted test sets of ``tagseg evaluate shifts=...`` (seed + 1000).

Each image is segmented twice: without flips (the masks ``tagseg predict`` writes by default)
for the variant without agreement, and with ``tta=flip`` for the variant that reads it. The
result is ``<run>/qc_model.json`` (``tagseg predict`` and ``evaluate`` read it from there, and
``tagseg export`` copies it into the exported folder) and ``<run>/qc_fit.csv`` (the fitting rows).

``tagseg evaluate`` (``qc.enabled``) adds, next to each ``test_metrics.csv``, a ``qc.csv`` (per
image: true Dice, predicted Dice, flag, signals) and ``qc_summary.json`` (:func:`evaluate_qc`).
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from tagseg.data.shifts import check_shifts, prepare_shift_store, shift_data_config
from tagseg.data.store_spec import StoreSpec
from tagseg.errors import ConfigError
from tagseg.io.atomic import atomic_write_text
from tagseg.io.store import read_store
from tagseg.models.orientation import View
from tagseg.qc.evaluation import qc_statistics
from tagseg.qc.model import QCModel, find_qc_model, fit_qc_model, load_qc_model, qc_model_path
from tagseg.qc.scoring import split_of, store_rows

log = logging.getLogger(__name__)

#: added to the preparation seed for the shifted sets that fit a QC model
QC_SEED_OFFSET = 2000
FIT_TABLE = "qc_fit.csv"
#: what ``tagseg evaluate`` writes next to each test_metrics.csv
QC_TABLE = "qc.csv"
QC_SUMMARY = "qc_summary.json"


def run_config(ckpt_file: Path) -> DictConfig | None:
    """The resolved config of the run a checkpoint belongs to (``<run>/config.yaml``), if there is one."""
    folder = ckpt_file.parent.parent if ckpt_file.parent.name == "checkpoints" else ckpt_file.parent
    path = folder / "config.yaml"
    return OmegaConf.load(path) if path.is_file() else None  # type: ignore[return-value]


def write_rows(path: Path, rows: list[dict[str, Any]]) -> Path:
    """A list of dicts as CSV, atomically (the first row's keys are the header)."""
    import io

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]) if rows else ["subject"])
    writer.writeheader()
    writer.writerows(rows)
    return atomic_write_text(path, buf.getvalue())


def fit_qc(cfg: DictConfig) -> tuple[QCModel, Path]:
    """Fit and store the QC model of ``cfg.ckpt`` (see the module docstring).

    Args:
        cfg: the composed ``conf/qc.yaml``.

    Returns:
        The model and the file it was written to.

    Raises:
        ConfigError: no or several checkpoints, a store without a validation split, too few images.
    """
    from tagseg.models.segmenter import find_checkpoint, load_segmenter

    if not cfg.get("ckpt"):
        raise ConfigError("ckpt: no checkpoint given (pass ckpt=<file.ckpt or run folder>)")
    ckpt = find_checkpoint(cfg.ckpt)
    segmenter = load_segmenter(ckpt, device=str(cfg.device))
    trained = run_config(ckpt)
    data_cfg = trained.data if trained is not None and "data" in trained else cfg.data
    store = cfg.get("fit_store") or data_cfg.get("store")
    if not store or not Path(store).is_file():
        raise ConfigError(f"fit_store: the training store {store!r} does not exist (pass fit_store=<store.h5>)")
    seed_node = trained if trained is not None else cfg
    seed = int(OmegaConf.select(seed_node, "prepare.seed", default=seed_node.get("seed", 0)) or 0) + QC_SEED_OFFSET
    batch = int(cfg.batch_size)
    split = str(cfg.fit_split)
    sets = [(split, split_of(store, split))]
    if len(sets[0][1]) == 0:
        raise ConfigError(f"{store}: no images in split {split!r} to fit the QC model on")
    spec = StoreSpec.from_config(seed_node.get("prepare"), data_cfg)
    for name in check_shifts(cfg.get("shifts")):
        node = shift_data_config(data_cfg, name, int(cfg.shift_subjects))
        sets.append((f"shift:{name}", split_of(prepare_shift_store(node, seed, cfg.shift_dir, spec), "all")))
    plain, flipped = [], []
    for name, images in sets:
        plain += store_rows(segmenter, images, tta=False, batch_size=batch, test_set=name)
        if segmenter.flips:  # the flip variant only for a model that knows flipped views (check_tta)
            flipped += store_rows(segmenter, images, tta=True, batch_size=batch, test_set=name)
    model = fit_qc_model(
        plain,
        [r["dice"] for r in plain],
        view_rows=flipped,
        view_dice=[r["dice"] for r in flipped],
        threshold=float(cfg.threshold),
        ridge=float(cfg.ridge),
        fitted_on={
            "checkpoint": str(ckpt),
            "sets": [name for name, _ in sets],
            "store": str(store),
            "shift_seed": seed,
            "n_images": len(plain),
        },
    )
    out = Path(cfg.output) if cfg.get("output") else qc_model_path(ckpt)
    model.save(out)
    for rows, views in ((plain, "none"), (flipped, "flip")):
        for row in rows:
            row["tta"] = views
    write_rows(out.with_name(FIT_TABLE), [*plain, *flipped])
    return model, out


@dataclass
class EvalQC:
    """What ``tagseg evaluate`` needs to add QC tables: the segmenter, its QC model and settings."""

    segmenter: Any
    model: QCModel | None
    tta: bool
    batch_size: int


def eval_qc_settings(spec: Any, members: Sequence[Path]) -> EvalQC | None:
    """``cfg.qc`` of ``tagseg evaluate`` (None when off) for the checkpoint(s) ``members``: ``model``
    auto (next to the checkpoint; none for an ensemble of several: a QC model is fitted on one model's
    masks) | null | a file; ``tta`` none | flip.

    Raises:
        ConfigError: an unknown ``tta`` or a missing / invalid model file.
    """
    from tagseg.models.segmenter import check_tta, load_segmenters

    if spec is None or not spec.get("enabled", True):
        return None
    tta = str(spec.get("tta", "none"))
    if tta not in ("none", "flip"):
        raise ConfigError(f"qc.tta: expected none or flip, got {tta!r}")
    choice = spec.get("model", "auto")
    if choice is None:
        model = None
    elif str(choice) == "auto":
        model = find_qc_model(members[0]) if len(members) == 1 else None
    elif not Path(str(choice)).is_file():
        raise ConfigError(f"qc.model: {choice} does not exist (expected a qc_model.json written by tagseg qc)")
    else:
        model = load_qc_model(str(choice))
    segmenter = load_segmenters(members)
    check_tta(segmenter, tta == "flip")
    return EvalQC(segmenter, model, tta == "flip", int(spec.get("batch_size", 16)))


def evaluate_qc(
    settings: EvalQC,
    rows_by_store: Mapping[str, np.ndarray],
    folder: Path,
    test_set: str,
    views: Mapping[str, Mapping[str, View]] | None = None,
) -> Path:
    """Write ``<folder>/qc.csv`` (one row per image tested: ``rows_by_store``, each store's own row
    numbers) and ``qc_summary.json`` (``views``: each store's subjects' views, as the true metrics
    were segmented).

    Returns:
        The path of ``qc.csv``.
    """
    rows: list[dict[str, Any]] = []
    stores = list(rows_by_store)
    for store, selected in rows_by_store.items():
        images = read_store(store, extras=False).subset(selected)
        rows += store_rows(
            settings.segmenter,
            images,
            settings.model,
            settings.tta,
            settings.batch_size,
            test_set=test_set,
            views=(views or {}).get(store),
        )
    path = write_rows(Path(folder) / QC_TABLE, rows)
    summary: dict[str, Any] = {"test_set": test_set, "model": settings.model is not None, "tta": settings.tta}
    fitted = settings.model.fitted_on if settings.model is not None else {}
    if test_set in fitted.get("sets", []) and _same_file(fitted.get("store"), stores):
        # held-out evaluation only: scores on the images that fitted the model are not a measurement
        log.warning("qc: %s of %s fitted this QC model; its QC statistics are not held out", test_set, fitted["store"])
        summary["scored_on_fit_set"] = True
    if settings.model is not None and rows:
        summary.update(
            qc_statistics(np.array([r["predicted_dice"] for r in rows]), np.array([r["dice"] for r in rows]))
        )
        summary["threshold"] = settings.model.threshold
    atomic_write_text(Path(folder) / QC_SUMMARY, json.dumps(summary, indent=1, default=float))
    return path


def _same_file(path: Any, stores: list[str]) -> bool:
    return path is not None and Path(str(path)).resolve() in {Path(s).resolve() for s in stores}


def log_qc(loggers: Any, run_dir: Path) -> None:
    """Mirror the QC figures and statistics of an evaluation into its W&B run(s) (none: nothing)."""
    from tagseg.report.dashboard import wandb_runs
    from tagseg.report.qc import write_qc_report

    runs = wandb_runs(loggers or [])
    if not runs:
        return
    import wandb

    paths = write_qc_report(run_dir, run_dir / "qc")
    if not paths:
        return
    import pandas as pd

    table = pd.read_csv(paths["qc_csv"])
    for run in runs:
        run.log({"qc/scatter": wandb.Image(str(paths["qc_scatter_png"]))})
        run.log({"qc/calibration": wandb.Image(str(paths["qc_calibration_png"]))})
        for _, row in table.iterrows():
            for key in ("auroc", "spearman", "mae", "caught_at_5pct"):
                run.summary[f"qc/{row['test_set']}/{key}"] = float(row[key])


__all__ = [
    "EvalQC",
    "FIT_TABLE",
    "QC_SEED_OFFSET",
    "eval_qc_settings",
    "evaluate_qc",
    "fit_qc",
    "log_qc",
    "run_config",
    "write_rows",
]
