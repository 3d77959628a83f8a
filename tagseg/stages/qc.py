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
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from tagseg.data.shifts import check_shifts, prepare_shift_store, shift_data_config
from tagseg.errors import ConfigError
from tagseg.io.atomic import atomic_write_text
from tagseg.qc.model import QCModel, fit_qc_model, qc_model_path
from tagseg.qc.scoring import split_of, store_rows

#: added to the preparation seed for the shifted sets that fit a QC model
QC_SEED_OFFSET = 2000
FIT_TABLE = "qc_fit.csv"


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
    for name in check_shifts(cfg.get("shifts")):
        node = shift_data_config(data_cfg, name, int(cfg.shift_subjects))
        sets.append((f"shift:{name}", split_of(prepare_shift_store(node, seed, cfg.shift_dir), "all")))
    plain, flipped = [], []
    for name, images in sets:
        plain += store_rows(segmenter, images, tta=False, batch_size=batch, test_set=name)
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


__all__ = ["FIT_TABLE", "QC_SEED_OFFSET", "fit_qc", "run_config", "write_rows"]
