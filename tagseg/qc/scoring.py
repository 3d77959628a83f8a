"""QC rows of a scan or of a labelled slice store: the signals, the true Dice when labels exist,
and the predicted Dice and flag when a QC model is given.

One row per image. A store's images are grouped into slices by (subject, slice) for the temporal
signals; a scan by its ``slice`` column. The true Dice compares the predicted and the stored
myocardium of the same label maps the signals were computed on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tagseg.conventions import MYO, RV
from tagseg.metrics import dice
from tagseg.models.orientation import IDENTITY, View, apply_view, invert_view, view_spacing
from tagseg.qc.model import QCModel
from tagseg.qc.signals import SIGNALS, image_signals
from tagseg.qc.views import Uncertainty, segment_with_uncertainty

#: the QC columns of a prediction or evaluation table, after its own columns
QC_COLUMNS = ("predicted_dice", "qc_flag", *SIGNALS)
#: the per-scan QC columns of ``tagseg predict``'s ``qc_scans.csv``
SCAN_COLUMNS = ("scan", "n_images", "predicted_dice", "predicted_dice_min", "n_flagged", "qc_flag")


def signal_rows(
    uncertainty: Uncertainty, spacing_mm: np.ndarray, slice_keys: Sequence[Any], labels_predicted: Sequence[int]
) -> list[dict[str, float]]:
    """The signals of each image of one segmented scan (RV signals when the model predicts an RV)."""
    rv = RV if RV in labels_predicted else None
    rows = image_signals(
        uncertainty.labels,
        np.asarray(spacing_mm, np.float64).reshape(len(uncertainty.labels), 2),
        slice_keys,
        myo_label=MYO,
        rv_label=rv,
        entropy=uncertainty.entropy,
        agreement=uncertainty.agreement,
    )
    return [{k: round(v, 4) for k, v in row.items()} for row in rows]


def add_predictions(rows: list[dict[str, Any]], model: QCModel | None) -> list[dict[str, Any]]:
    """Fill ``predicted_dice`` (rounded to 4 places) and ``qc_flag`` of each row (empty without a model)."""
    if model is None:
        for row in rows:
            row["predicted_dice"], row["qc_flag"] = "", ""
        return rows
    predicted = model.predict(rows)
    for row, p, f in zip(rows, predicted, model.flag(predicted)):
        row["predicted_dice"], row["qc_flag"] = round(float(p), 4), int(f)
    return rows


def scan_summary(name: str, rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One scan's QC: mean and lowest predicted Dice over its images, images flagged; the scan is
    flagged when any image is (a reader checks the scan)."""
    values = [r["predicted_dice"] for r in rows if r.get("predicted_dice") not in ("", None)]
    flags = [int(r["qc_flag"]) for r in rows if r.get("qc_flag") not in ("", None)]
    return {
        "scan": name,
        "n_images": len(rows),
        "predicted_dice": round(float(np.mean(values)), 4) if values else "",
        "predicted_dice_min": round(float(np.min(values)), 4) if values else "",
        "n_flagged": sum(flags) if flags else "",
        "qc_flag": int(any(flags)) if flags else "",
    }


def store_rows(
    segmenter: Any,
    store: Any,
    model: QCModel | None = None,
    tta: bool = False,
    batch_size: int = 16,
    test_set: str = "",
    views: Mapping[str, View] | None = None,
) -> list[dict[str, Any]]:
    """QC rows of every image of a labelled store (a :class:`~tagseg.io.store.SliceStore`, e.g. a split).

    Each (subject, slice) is segmented as one scan, in its subject's view of ``views``
    (:mod:`tagseg.models.orientation`; default: as stored), the masks turned back. Rows: ``test_set``, subject, slice, frame,
    group, ``dice`` (true myocardial Dice), then :data:`QC_COLUMNS`.
    """
    meta = store.meta
    keys = np.array([f"{s}/{z}" for s, z in zip(meta["subject"], meta["slice"])])
    rows: list[dict[str, Any]] = []
    for key in dict.fromkeys(keys.tolist()):
        idx = np.flatnonzero(keys == key)
        idx = idx[np.argsort(meta["frame"][idx], kind="stable")]
        view = (views or {}).get(str(meta["subject"][idx[0]]), IDENTITY)
        unc = segment_with_uncertainty(
            segmenter,
            apply_view(store.images[idx], view),
            batch_size=batch_size,
            scaled=True,
            tta=tta,
            spacing_mm=view_spacing(meta["spacing_mm"][idx], view),
        )
        unc.labels = invert_view(unc.labels, view)
        signals = signal_rows(unc, meta["spacing_mm"][idx], [key] * len(idx), segmenter.labels)
        for j, i in enumerate(idx):
            rows.append(
                {
                    "test_set": test_set,
                    "subject": str(meta["subject"][i]),
                    "slice": int(meta["slice"][i]),
                    "frame": int(meta["frame"][i]),
                    "group": str(meta["group"][i]) if "group" in meta else "",
                    "dice": round(dice(unc.labels[j] == MYO, store.masks[i] == MYO), 4),
                    **signals[j],
                }
            )
    add_predictions(rows, model)
    return [{k: r[k] for k in ("test_set", "subject", "slice", "frame", "group", "dice", *QC_COLUMNS)} for r in rows]


def split_of(path: str | Path, split: str) -> Any:
    """The rows of a store in ``split`` (``all``: every row)."""
    from tagseg.io.store import read_store

    store = read_store(path, extras=False)
    if split == "all":
        return store
    return store.subset(np.flatnonzero(np.asarray(store.meta["split"]).astype(str) == split))


__all__ = ["QC_COLUMNS", "SCAN_COLUMNS", "add_predictions", "scan_summary", "signal_rows", "split_of", "store_rows"]
