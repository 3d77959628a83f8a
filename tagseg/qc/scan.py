"""QC of one predicted scan in ``tagseg predict``: per-image columns, the scan's summary and review row."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tagseg.errors import ConfigError
from tagseg.qc.model import QCModel, find_qc_model, load_qc_model
from tagseg.qc.review import ReviewEntry, overlay_png, review_frames
from tagseg.qc.scoring import QC_COLUMNS, add_predictions, scan_summary, signal_rows
from tagseg.qc.signals import SIGNALS
from tagseg.qc.views import Uncertainty

#: ``qc.action`` values: flag (write every mask, flag in the tables) or skip (withhold flagged scans' masks)
ACTIONS = ("flag", "skip")


@dataclass
class QCSettings:
    """How ``tagseg predict`` runs QC.

    Attributes:
        model: the predicted-Dice model (None: signals only, no flag).
        action: ``flag`` or ``skip`` (a flagged scan's mask files and points are not written).
        review: write ``review.html`` for a folder input.
    """

    model: QCModel | None
    action: str = "flag"
    review: bool = True

    @property
    def threshold(self) -> float | None:
        return self.model.threshold if self.model is not None else None


@dataclass
class ScanQC:
    """QC of one scan: ``rows`` (one per image, :data:`~tagseg.qc.scoring.QC_COLUMNS`), ``summary``
    (:data:`~tagseg.qc.scoring.SCAN_COLUMNS`) and its review row."""

    rows: list[dict[str, Any]]
    summary: dict[str, Any]
    review: ReviewEntry

    @property
    def flagged(self) -> bool:
        return self.summary.get("qc_flag") == 1


def qc_settings(spec: Any, source: str, ensemble: bool) -> QCSettings | None:
    """``cfg.qc`` of ``tagseg predict`` as :class:`QCSettings` (None when ``qc.enabled`` is false).

    ``qc.model``: ``auto`` (the ``qc_model.json`` stored with the checkpoint or exported model, if
    any; none for an ensemble), ``null`` (signals only) or a file.

    Raises:
        ConfigError: an unknown action, a missing or invalid model file.
    """
    if spec is None or not spec.get("enabled", True):
        return None
    action = str(spec.get("action", "flag"))
    if action not in ACTIONS:
        raise ConfigError(f"qc.action: expected one of {list(ACTIONS)}, got {action!r}")
    choice = spec.get("model", "auto")
    if choice is None:
        model = None
    elif str(choice) == "auto":
        model = None if ensemble else find_qc_model(source)
    else:
        if not Path(str(choice)).is_file():
            raise ConfigError(f"qc.model: {choice} does not exist (expected a qc_model.json written by tagseg qc)")
        model = load_qc_model(str(choice))
    return QCSettings(model=model, action=action, review=bool(spec.get("review", True)))


def assess_scan(
    scan: Any,
    labels: np.ndarray,
    uncertainty: Uncertainty,
    predicted_labels: Any,
    settings: QCSettings,
    thumbnails: bool = True,
) -> ScanQC:
    """Signals, predicted Dice and flag of each image of ``scan`` (segmented as ``labels``), its
    summary and review row (with overlay thumbnails when ``thumbnails``)."""
    keys = [f"{s}/{z}" for s, z in zip(scan.subject, scan.slice)]
    unc = Uncertainty(labels=labels, entropy=uncertainty.entropy, agreement=uncertainty.agreement, n_views=1)
    rows = add_predictions(signal_rows(unc, scan.spacing_mm, keys, predicted_labels), settings.model)
    rows = [{k: r[k] for k in QC_COLUMNS} for r in rows]
    summary = scan_summary(scan.name, rows)
    means = {}
    for name in SIGNALS:
        values = np.array([r[name] for r in rows], np.float64)
        means[name] = float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")
    thumbs = []
    if thumbnails:
        phase = scan.meta.get("phase") if scan.meta else None
        for cap, i in review_frames(np.asarray(keys), scan.frame, [r["cavity_mm2"] for r in rows], phase):
            thumbs.append(
                (f"{cap} t={int(scan.frame[i])} z={int(scan.slice[i])}", overlay_png(scan.frames[i], labels[i]))
            )
    return ScanQC(rows=rows, summary=summary, review=ReviewEntry(scan.name, summary, means, thumbs))


__all__ = ["ACTIONS", "QCSettings", "ScanQC", "assess_scan", "qc_settings"]
