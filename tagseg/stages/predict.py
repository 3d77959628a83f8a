"""Segment new tagged scans with a trained segmenter (the library behind ``tagseg predict``).

For every input scan (:mod:`tagseg.data.scans`): each frame is pre-processed as in training
(scaled to [0, 1] as ``tagseg prepare`` does, resized to the model's size as the DataModule does,
normalised with the checkpoint's mean / std), segmented in batches, and the class map is resized back
to the frame's own size (nearest neighbour) and written in the tagseg label convention
(0 background, 2 myocardium, ...). Outputs, under the output folder:

* ``<name>_mask.nii.gz`` (NIfTI, h5 and DICOM inputs): uint8 (x, y, t) in the input's geometry
  (a NIfTI input's own affine; otherwise x = column, y = row, zooms = pixel spacing), readable
  back as a label file by the tagged reader; for a slice-store input, ``<name>_pred.h5``: the
  input store with its masks replaced by the predictions;
* ``<name>_overlay.png``: frames with the predicted inner / outer contours;
* ``<name>_points.json`` and one ``reference_points.csv`` for all scans: the myocardial
  reference points (inner and outer contour, see :mod:`tagseg.contours`) per frame, in pixels
  (x = column, y = row) and mm;
* ``predictions.csv``: one row per frame (scan, frame, myocardium pixels and area in mm^2,
  whether the myocardium is a closed ring).
"""

from __future__ import annotations

import csv
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm

from tagseg.contours import MyocardialContours, myocardial_contours
from tagseg.conventions import MYO
from tagseg.data.scans import Scan, check_inputs, find_inputs, read_scan
from tagseg.io.store import write_store
from tagseg.io.checkpoints import resolve_checkpoint
from tagseg.models.segmenter import Segmenter, load_segmenter  # noqa: F401  (their home: tagseg.models.segmenter)
from tagseg.runtime.config import config_yaml

log = logging.getLogger(__name__)


@dataclass
class PredictReport:
    """What :func:`predict` wrote."""

    output: Path
    scans: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)

    def table(self) -> str:
        """A short per-scan summary for the console."""
        lines = [f"{'scan':<32} {'frames':>6} {'closed rings':>12} {'mean area mm2':>14}"]
        for name in self.scans:
            rows = [r for r in self.rows if r["scan"] == name]
            area = np.mean([r["myocardium_mm2"] for r in rows]) if rows else 0.0
            rings = sum(bool(r["closed_ring"]) for r in rows)
            lines.append(f"{name:<32} {len(rows):>6} {rings:>12} {area:>14.1f}")
        return "\n".join(lines)


def _nifti_mask(scan: Scan, labels: np.ndarray, path: Path) -> Path:
    import nibabel as nib

    data = np.transpose(labels, (2, 1, 0))  # (t, rows, cols) -> (x, y, t)
    if scan.affine is not None:
        affine = scan.affine
    else:
        row_mm, col_mm = scan.spacing_mm[0]
        affine = np.diag([col_mm, row_mm, 1.0, 1.0])
    img = nib.Nifti1Image(data, affine)
    img.header.set_xyzt_units("mm")
    nib.save(img, str(path))
    return path


def _store_mask(scan: Scan, labels: np.ndarray, path: Path, attrs: dict[str, Any]) -> Path:
    assert scan.meta is not None
    return write_store(path, scan.frames, labels, scan.meta, attrs={"name": f"{scan.name}-pred", **attrs})


def _overlay_png(scan: Scan, labels: np.ndarray, contours: Sequence[MyocardialContours], path: Path, max_frames: int) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    index = np.unique(np.linspace(0, len(scan) - 1, min(len(scan), max_frames)).round().astype(int))
    cols = min(5, len(index))
    rows = int(np.ceil(len(index) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(2.4 * cols, 2.4 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, t in zip(axes.ravel(), index):
        ax.imshow(scan.frames[t], cmap="gray")
        ax.contour(labels[t] == MYO, levels=[0.5], colors="yellow", linewidths=0.6)
        for pts, color in ((contours[t].outer, "lime"), (contours[t].inner, "red")):
            if len(pts):
                ax.plot(*np.vstack([pts, pts[:1]]).T, ".-", color=color, markersize=2, linewidth=0.6)
        ax.set_title(f"{scan.name} t={t}", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _points_json(scan: Scan, contours: Sequence[MyocardialContours], path: Path) -> Path:
    frames = []
    for t, c in enumerate(contours):
        row_mm, col_mm = (float(v) for v in scan.spacing_mm[t])
        frames.append({
            "frame": t,
            "spacing_mm": [row_mm, col_mm],
            "inner_xy": np.round(c.inner, 3).tolist(),
            "outer_xy": np.round(c.outer, 3).tolist(),
        })
    doc = {"scan": scan.name, "input": str(scan.path), "kind": scan.kind,
           "convention": "x = column, y = row, pixel units, pixel centres at integers; clockwise as displayed from the top point",
           "frames": frames}
    path.write_text(json.dumps(doc, indent=1))
    return path


def _point_rows(scan: Scan, contours: Sequence[MyocardialContours]) -> Iterable[list[Any]]:
    for t, c in enumerate(contours):
        row_mm, col_mm = scan.spacing_mm[t]
        for name, pts in (("inner", c.inner), ("outer", c.outer)):
            for i, (x, y) in enumerate(pts):
                yield [scan.name, t, name, i, round(float(x), 3), round(float(y), 3), round(float(x * col_mm), 3), round(float(y * row_mm), 3)]


def predict(
    segmenter: Segmenter,
    input_path: str | Path,
    output: str | Path,
    batch_size: int = 16,
    device: str | torch.device = "cpu",
    n_points: int | None = 48,
    overlays: bool = True,
    overlay_max_frames: int = 25,
    reader: dict[str, Any] | None = None,
    attrs: dict[str, Any] | None = None,
    progress: bool = True,
) -> PredictReport:
    """Segment every scan under ``input_path`` and write masks, overlays and reference points.

    Args:
        segmenter: the trained network and its pre-processing (see :func:`load_segmenter`).
        input_path: a file or folder (see :mod:`tagseg.data.scans`).
        output: the folder to write into (created).
        batch_size: frames per forward pass.
        device: where the network runs (``"cpu"``, ``"cuda"``).
        n_points: reference points per contour (None: every contour vertex).
        overlays: write one overlay PNG per scan.
        overlay_max_frames: frames shown per overlay (evenly spread).
        reader: keyword arguments of :func:`tagseg.data.scans.read_scan` (``imt_axes``,
            ``default_spacing_mm``).
        attrs: extra attributes for output stores (e.g. the resolved config, the checkpoint).
        progress: show a progress bar.

    Returns:
        A report listing the scans, the files written and one row per frame.

    Raises:
        DataError: a missing, unreadable or unrecognised input (before any segmentation).
        StoreError: a malformed slice-store input.
    """
    inputs = find_inputs(input_path)
    check_inputs(inputs)
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    report = PredictReport(output=out)
    point_rows: list[list[Any]] = []
    for path in tqdm(inputs, desc="predict", unit="scan", disable=not progress):
        scan = read_scan(path, **(reader or {}))
        labels = segmenter.segment(scan.frames, batch_size=batch_size, device=device, scaled=scan.kind == "store")
        contours = [myocardial_contours(m == MYO, n_points=n_points) for m in labels]
        if scan.kind == "store":
            report.files.append(_store_mask(scan, labels, out / f"{scan.name}_pred.h5", dict(attrs or {})))
        else:
            report.files.append(_nifti_mask(scan, labels, out / f"{scan.name}_mask.nii.gz"))
        if overlays:
            report.files.append(_overlay_png(scan, labels, contours, out / f"{scan.name}_overlay.png", overlay_max_frames))
        report.files.append(_points_json(scan, contours, out / f"{scan.name}_points.json"))
        point_rows.extend(_point_rows(scan, contours))
        for t, c in enumerate(contours):
            n_px = int((labels[t] == MYO).sum())
            report.rows.append({
                "scan": scan.name, "frame": t, "myocardium_px": n_px,
                "myocardium_mm2": round(n_px * float(np.prod(scan.spacing_mm[t])), 3),
                "closed_ring": c.closed_ring, "input": str(scan.path),
            })
        report.scans.append(scan.name)
    report.files.append(_write_csv(out / "reference_points.csv", ["scan", "frame", "contour", "point", "x", "y", "x_mm", "y_mm"], point_rows))
    fields = ["scan", "frame", "myocardium_px", "myocardium_mm2", "closed_ring", "input"]
    report.files.append(_write_csv(out / "predictions.csv", fields, [[r[f] for f in fields] for r in report.rows]))
    return report


def predict_scans(cfg: DictConfig) -> PredictReport:
    """``tagseg predict``: load the checkpoint, segment every input scan (``cfg.input``) into ``cfg.output``."""
    device = ("cuda" if torch.cuda.is_available() else "cpu") if cfg.device == "auto" else str(cfg.device)
    ckpt = resolve_checkpoint(cfg.ckpt)
    check_inputs(find_inputs(cfg.input))  # bad input fails before the model is loaded
    segmenter = load_segmenter(ckpt, device=device)
    report = predict(
        segmenter,
        cfg.input,
        cfg.output,
        batch_size=cfg.batch_size,
        device=device,
        n_points=cfg.n_points,
        overlays=cfg.overlays,
        overlay_max_frames=cfg.overlay_max_frames,
        reader=OmegaConf.to_container(cfg.reader, resolve=True),
        attrs={"config": config_yaml(cfg), "checkpoint": str(ckpt)},
        progress=cfg.progress,
    )
    return report


def _write_csv(path: Path, header: list[str], rows: Iterable[Sequence[Any]]) -> Path:
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return path
