"""Segment new tagged scans with a trained segmenter (the library behind ``tagseg predict``).

Every scan under the input (:mod:`tagseg.data.scans`) is predicted on its own: a scan that cannot
be read or written is one line on the console and one row of ``failed.csv`` (file, reason), and
the others go on. Each image is pre-processed as in training and segmented in batches
(:mod:`tagseg.models.segmenter`: one model, an ensemble, optional flip TTA), and the class map is
written back in the tagseg label convention (0 background, 2 myocardium, ...). Outputs, under the
output folder (formats in ``docs/data-formats.md``):

* ``<name>_mask.nii.gz`` (NIfTI, h5 and DICOM inputs): uint8 in the input's own layout and
  geometry (a NIfTI input's header; a DICOM series' patient affine); for a slice-store input,
  ``<name>_pred.h5``: the input store with its masks replaced by the predictions;
* ``<name>_seg.dcm`` with ``dicom_seg=true`` (DICOM inputs): a DICOM SEG referencing the sources;
* ``<name>_overlay.png``: images with the predicted inner / outer contours;
* ``<name>_points.json`` and one ``reference_points.csv`` for all scans: myocardial reference
  points per image, in pixels, mm and patient mm (:mod:`tagseg.contours`);
* ``predictions.csv``: one row per image (scan, subject, slice, frame, myocardium area, ring; with
  QC on (``qc.enabled``, the default) also ``predicted_dice``, ``qc_flag`` and the signals, :mod:`tagseg.qc`);
* ``qc_scans.csv`` (QC on): one row per scan (mean / lowest predicted Dice, images flagged, flag);
  ``review.html`` for a folder input: the scans, worst predicted Dice first, with overlays;
* ``failed.csv``: one row per scan that failed (file, reason).

Each scan's files appear together (temporary names, then renames); the tables are rewritten
atomically at the end.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tagseg.data.scans import Scan, ScanInput, find_inputs, read_scan
from tagseg.errors import ConfigError, TagsegError
from tagseg.io.atomic import OutputLock
from tagseg.models.orientation import IDENTITY, OrientationSettings, segment_in_views, subject_views
from tagseg.models.segmenter import (  # noqa: F401
    Ensemble,
    Segmenter,
    check_tta,
    find_checkpoint,
    find_checkpoints,
    load_segmenter,
    load_segmenters,
)
from tagseg.postprocess import apply_postprocess, check_postprocess
from tagseg.predict_outputs import (
    FAILED_FIELDS,
    POINT_FIELDS,
    PREDICTION_FIELDS,
    contours_of,
    point_rows,
    prediction_rows,
    publish,
    scan_outputs,
    write_csv,
)
from tagseg.qc.review import write_review
from tagseg.qc.scan import QCSettings, ScanQC, assess_scan, qc_settings
from tagseg.qc.scoring import QC_COLUMNS, SCAN_COLUMNS
from tagseg.qc.views import Uncertainty, segment_with_uncertainty

log = logging.getLogger(__name__)

#: exit status of ``tagseg predict`` when some scans failed (the others were predicted)
EXIT_SOME_FAILED = 1
#: exit status when every scan failed: nothing was predicted (the usual refusal status)
EXIT_ALL_FAILED = 2


@dataclass
class PredictReport:
    """What :func:`predict` wrote.

    Attributes:
        output: the output folder.
        scans: names of the scans predicted.
        files: every file written.
        rows: one ``predictions.csv`` row per image.
        failures: (file, reason) of each scan that failed.
        timings: seconds spent per step (``read``, ``segment``, ``qc``, ``write``; ``start_up`` (wall and
            ``start_up_cpu``: imports and config, before any work), ``load_model`` and ``total`` from
            :func:`predict_scans`) and ``images`` segmented.
        qc: each predicted scan's QC (empty with QC off).
        qc_threshold: the QC model's flag threshold (None: no model).
        reoriented: (scan, view) of each scan segmented in another view than stored
            (:mod:`tagseg.models.orientation`).
    """

    output: Path
    scans: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    qc: list[ScanQC] = field(default_factory=list)
    qc_threshold: float | None = None
    reoriented: list[tuple[str, str]] = field(default_factory=list)

    def exit_status(self) -> int:
        """0: every scan predicted; :data:`EXIT_SOME_FAILED`: some failed; :data:`EXIT_ALL_FAILED`: all failed."""
        if not self.failures:
            return 0
        return EXIT_SOME_FAILED if self.scans else EXIT_ALL_FAILED

    def table(self) -> str:
        """A short per-scan summary for the console."""
        lines = [f"{'scan':<32} {'images':>6} {'closed rings':>12} {'mean area mm2':>14}"]
        for name in self.scans:
            rows = [r for r in self.rows if r["scan"] == name]
            area = sum(r["myocardium_mm2"] for r in rows) / len(rows) if rows else 0.0
            rings = sum(bool(r["closed_ring"]) for r in rows)
            lines.append(f"{name:<32} {len(rows):>6} {rings:>12} {area:>14.1f}")
        if self.reoriented:
            shown = ", ".join(f"{name} ({view})" for name, view in self.reoriented)
            lines.append(f"read in another orientation (orientation.mode=auto; masks in the scan's own): {shown}")
        if self.failures:
            lines.append(f"failed: {len(self.failures)} scan(s), listed in {self.output / 'failed.csv'}")
        flagged = [q.summary for q in self.qc if q.flagged]
        if flagged:
            lines.append(f"QC flagged {len(flagged)} scan(s) (an image's predicted Dice < {self.qc_threshold:.2f}):")
            lines += [
                f"  {s['scan']}: predicted Dice {s['predicted_dice']} (min {s['predicted_dice_min']})" for s in flagged
            ]
        elif self.qc and self.qc_threshold is None:
            lines.append("QC: signals only (no qc_model.json with this model; fit one with `tagseg qc ckpt=<run>`)")
        return "\n".join(lines)

    def timing_line(self) -> str:
        """The time split, e.g. ``start-up 1.1 s, load model 0.2 s, read 0.1 s, segment 0.4 s (5.0 ms/image), ...``."""
        t = self.timings
        parts = [
            f"{label} {t[key]:.2f} s"
            for key, label in (
                ("start_up", "start-up"),
                ("load_model", "load model"),
                ("read", "read"),
                ("segment", "segment"),
                ("qc", "qc"),
                ("write", "write"),
            )
            if key in t
        ]
        if "start_up_cpu" in t and parts:
            parts[0] += f" ({t['start_up_cpu']:.2f} s CPU)"
        if t.get("images") and "segment" in t:
            at = next(i for i, p in enumerate(parts) if p.startswith("segment "))
            parts[at] += f" ({1000 * t['segment'] / t['images']:.1f} ms/image)"
        if "total" in t:
            parts.append(f"total {t['total']:.2f} s")
        return "time: " + ", ".join(parts)


def process_seconds() -> float | None:
    """Seconds since this process started (Linux ``/proc``; None elsewhere)."""
    try:
        with open("/proc/self/stat") as fh:
            start_ticks = int(fh.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as fh:
            uptime = float(fh.read().split()[0])
        return max(0.0, uptime - start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return None


def _one_line(exc: BaseException, path: Path) -> str:
    """The failure reason of one scan, without the file name (``failed.csv`` has it in its own column)."""
    text = " ".join(str(exc).split()) or type(exc).__name__  # every line of it: a reason is never cut
    text = text[len(f"{path}: ") :] if text.startswith(f"{path}: ") else text
    if isinstance(exc, TagsegError):
        return text
    return f"{type(exc).__name__}: {text} (unexpected error; the log holds the traceback)"


def _subject_name(scan: Scan, subject: str) -> str:
    """How the console names a subject of a scan: the scan, or scan:subject when it holds several."""
    return scan.name if len(set(map(str, scan.subject))) == 1 else f"{scan.name}:{subject}"


def _predict_one(
    segmenter: Segmenter | Ensemble,
    inp: ScanInput,
    out: Path,
    report: PredictReport,
    opts: dict[str, Any],
    point_table: list[list[Any]],
) -> None:
    t0 = time.perf_counter()
    scan: Scan = read_scan(inp, **opts["reader"])
    t1 = time.perf_counter()
    qc: QCSettings | None = opts["qc"]
    scaled = scan.kind == "store"
    # each subject segmented in the view the model reads best, the masks turned back to the scan's voxel order
    views = subject_views(segmenter, scan.frames, scan.subject, opts["orientation"], scaled, scan.spacing_mm)
    entropy, agreement, n_views = np.full(len(scan), np.nan), np.full(len(scan), np.nan), [1]

    def run(frames: np.ndarray, spacing: Any, rows: np.ndarray) -> np.ndarray:
        if qc is None:
            return segmenter.segment(frames, opts["batch_size"], scaled=scaled, tta=opts["tta"], spacing_mm=spacing)
        part = segment_with_uncertainty(
            segmenter, frames, opts["batch_size"], scaled=scaled, tta=opts["tta"], spacing_mm=spacing
        )
        entropy[rows], agreement[rows], n_views[0] = part.entropy, part.agreement, part.n_views
        return part.labels

    labels = segment_in_views(run, scan.frames, scan.spacing_mm, scan.subject, views)
    unc = Uncertainty(labels=labels, entropy=entropy, agreement=agreement, n_views=n_views[0])
    labels = apply_postprocess(opts["postprocess"], labels)
    report.reoriented += [(_subject_name(scan, subject), v.name) for subject, v in views.items() if v != IDENTITY]
    t_qc = time.perf_counter()
    checked = None
    if qc is not None:
        checked = assess_scan(scan, labels, unc, segmenter.labels, qc, thumbnails=opts["review"])
        report.timings["qc"] = report.timings.get("qc", 0.0) + time.perf_counter() - t_qc
    t2 = time.perf_counter()
    withhold = checked is not None and qc is not None and qc.action == "skip" and checked.flagged
    contours = contours_of(scan, labels, opts["n_points"], opts["start_angle_deg"])
    pairs = scan_outputs(
        scan,
        labels,
        contours,
        out,
        overlays=opts["overlays"],
        overlay_max_frames=opts["overlay_max_frames"],
        attrs=opts["attrs"],
        dicom_seg_file=opts["dicom_seg"],
        masks=not withhold,
    )
    report.files.extend(publish(pairs))
    t3 = time.perf_counter()
    if not withhold:
        point_table.extend(point_rows(scan, contours))
    rows = prediction_rows(
        scan, labels, contours, orientations=[views.get(str(s), IDENTITY).name for s in scan.subject]
    )
    if checked is not None:
        for row, extra in zip(rows, checked.rows):
            row.update(extra)
        report.qc.append(checked)
    report.rows.extend(rows)
    report.scans.append(scan.name)
    for key, dt in (("read", t1 - t0), ("segment", t2 - t1), ("write", t3 - t2)):
        report.timings[key] = report.timings.get(key, 0.0) + dt
    report.timings["images"] = report.timings.get("images", 0) + len(scan)


def predict(
    segmenter: Segmenter | Ensemble,
    input_path: str | Path,
    output: str | Path,
    batch_size: int = 16,
    device: str | None = None,
    n_points: int | None = 48,
    overlays: bool = True,
    overlay_max_frames: int = 25,
    reader: dict[str, Any] | None = None,
    attrs: dict[str, Any] | None = None,
    progress: bool = True,
    tta: bool = False,
    dicom_seg: bool = False,
    start_angle_deg: float = 90.0,
    postprocess: str = "none",
    qc: QCSettings | None = None,
    orientation: OrientationSettings | None = None,
) -> PredictReport:
    """Segment every scan under ``input_path`` and write masks, overlays and reference points.

    Args:
        segmenter: a trained network and its pre-processing, or an ensemble (:mod:`tagseg.models.segmenter`).
        input_path: a file or folder (see :mod:`tagseg.data.scans`).
        output: the folder to write into (created).
        batch_size: images per forward pass.
        device: where a torch network runs (default: the segmenter's).
        n_points: reference points per contour (None: every contour vertex).
        overlays: write one overlay PNG per scan.
        overlay_max_frames: images shown per overlay (evenly spread).
        reader: keyword arguments of :func:`tagseg.data.scans.read_scan` (``imt_axes``, ``default_spacing_mm``,
            ``formats``).
        attrs: extra attributes for output stores (e.g. the resolved config, the checkpoint).
        progress: show a progress bar.
        tta: average the softmax over the training flips.
        dicom_seg: also write a DICOM SEG for DICOM inputs.
        start_angle_deg: the reference points' start ray when no RV is predicted (see :mod:`tagseg.contours`).
        postprocess: ``none`` or ``largest_component`` (see :mod:`tagseg.postprocess`).
        qc: quality control (:mod:`tagseg.qc.scan`); None: off.
        orientation: how each scan's view is chosen (:mod:`tagseg.models.orientation`); None: read as stored.

    Returns:
        A report listing the scans, the files written, one row per image and the failures.

    Raises:
        DataError: the input does not exist or holds no scan (nothing is written then).
    """
    inputs = find_inputs(input_path, formats=(reader or {}).get("formats"))
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    if device is not None:
        for member in getattr(segmenter, "members", [segmenter]):
            member.to(device)
    report = PredictReport(output=out, qc_threshold=qc.threshold if qc is not None else None)
    opts = {
        "qc": qc,
        "review": qc is not None and qc.review and Path(input_path).is_dir(),
        "reader": reader or {},
        "batch_size": batch_size,
        "tta": tta,
        "n_points": n_points,
        "start_angle_deg": start_angle_deg,
        "overlays": overlays,
        "overlay_max_frames": overlay_max_frames,
        "attrs": dict(attrs or {}),
        "dicom_seg": dicom_seg,
        "postprocess": check_postprocess(postprocess),
        "orientation": orientation or OrientationSettings(mode="none"),
    }
    point_table: list[list[Any]] = []
    bar = None
    if progress and len(inputs) > 1:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(inputs), desc="predict", unit="scan")
    for inp in inputs:
        try:
            _predict_one(segmenter, inp, out, report, opts, point_table)
        except Exception as exc:  # a batch survives one bad member; each failure is one line and one row
            reason = _one_line(exc, inp.path)
            if not isinstance(exc, TagsegError):
                log.debug("%s failed", inp.path, exc_info=True)
            report.failures.append((str(inp.path), reason))
            print(f"tagseg: failed: {inp.path}: {reason}", file=sys.stderr)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    report.files.append(write_csv(out / "reference_points.csv", POINT_FIELDS, point_table))
    fields = PREDICTION_FIELDS + (list(QC_COLUMNS) if qc is not None else [])
    report.files.append(write_csv(out / "predictions.csv", fields, [[r[f] for f in fields] for r in report.rows]))
    if qc is not None:
        scans = [[q.summary[c] for c in SCAN_COLUMNS] for q in report.qc]
        report.files.append(write_csv(out / "qc_scans.csv", SCAN_COLUMNS, scans))
        if opts["review"]:
            report.files.append(write_review(out / "review.html", [q.review for q in report.qc], qc.threshold))
    report.files.append(write_csv(out / "failed.csv", FAILED_FIELDS, report.failures))
    return report


def _device(name: str) -> str:
    if name != "auto":
        return name
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def load_predictor(cfg: Any) -> Segmenter | Ensemble:
    """The segmenter of ``cfg.exported_model`` (``model=`` on the command line: a folder written by
    ``tagseg export``) or ``cfg.ckpt`` (checkpoint(s), a sweep folder).

    Raises:
        ConfigError: neither or both given, or a bad checkpoint / model.
    """
    model, ckpt = cfg.get("exported_model"), cfg.get("ckpt")
    if (model is None) == (ckpt is None):
        raise ConfigError(
            "ckpt / model: pass exactly one: ckpt=<checkpoint, run folder, [a,b,c] or sweep folder> "
            "or model=<folder written by tagseg export>"
        )
    if model is not None:
        from tagseg.stages.export import load_exported

        return load_exported(model, device=str(cfg.device))
    return load_segmenters(list(ckpt) if not isinstance(ckpt, (str, Path)) else ckpt, device=_device(str(cfg.device)))


def predict_scans(cfg: Any) -> PredictReport:
    """``tagseg predict``: load the model(s), segment every input scan (``cfg.input``) into ``cfg.output``."""
    from omegaconf import OmegaConf

    start_up, start_up_cpu = process_seconds(), time.process_time()
    t0 = time.perf_counter()
    if cfg.tta not in (None, "none", "flip"):
        raise ConfigError(f"tta: expected none or flip, got {cfg.tta!r}")
    postprocess = check_postprocess(cfg.get("postprocess"))
    find_inputs(
        cfg.input, formats=cfg.reader.get("formats")
    )  # a missing or empty input fails before the model is loaded
    segmenter = load_predictor(cfg)
    check_tta(segmenter, cfg.tta == "flip")
    qc = qc_settings(cfg.get("qc"), str(segmenter.source), ensemble=hasattr(segmenter, "members"))
    t1 = time.perf_counter()
    # one writer per output folder (each file is written under a temporary name and renamed)
    with OutputLock(cfg.output, what="predict output folder"):
        report = predict(
            segmenter,
            cfg.input,
            cfg.output,
            batch_size=cfg.batch_size,
            n_points=cfg.n_points,
            overlays=cfg.overlays,
            overlay_max_frames=cfg.overlay_max_frames,
            reader=OmegaConf.to_container(cfg.reader, resolve=True),
            attrs={"config": OmegaConf.to_yaml(cfg, resolve=True), "checkpoint": str(segmenter.source)},
            progress=cfg.progress,
            tta=cfg.tta == "flip",
            dicom_seg=bool(cfg.dicom_seg),
            start_angle_deg=float(cfg.start_angle_deg),
            postprocess=postprocess,
            qc=qc,
            orientation=OrientationSettings.from_config(cfg.get("orientation")),
        )
    if start_up is not None:
        report.timings["start_up"] = start_up
        report.timings["start_up_cpu"] = start_up_cpu
    report.timings["load_model"] = t1 - t0
    report.timings["total"] = (start_up or 0.0) + time.perf_counter() - t0
    return report


__all__ = ["EXIT_SOME_FAILED", "PredictReport", "load_predictor", "predict", "predict_scans", "process_seconds"]
