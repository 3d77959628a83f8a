"""Myocardial strain from tagged cine series (the library behind ``tagseg strain``).

Every scan under the input (:mod:`tagseg.data.scans`: a slice store, HDF5 ``imt``, NIfTI, DICOM,
as ``tagseg predict`` takes) is split into slices (its images grouped by subject and slice,
ordered by frame; the first frame is ED). The ED myocardium comes from a segmentation model
(``ckpt=`` / ``model=``, run as ``predict`` runs it, on the ED frames only) or, without one, from
a slice store's own ``/masks``. Each slice is analysed by
:func:`tagseg.strain.analysis.analyse_slice` with the tracker of ``cfg.tracker`` (a
``tracker=`` config choice). A slice that fails is one line on the console and one row of
``failed.csv``; the others go on. Outputs under the output folder (formats:
:mod:`tagseg.strain.schema`): ``strain.json``, ``strain_curves.csv``, ``strain_peaks.csv``,
``displacement.csv``, ``failed.csv`` and, with ``plots``, ``plots/<subject>_s<slice>_curves.png``,
``plots/<subject>_s<slice>_mesh.png`` and ``plots/<subject>_bullseye.png``.

A slice store carrying the true motion (``/displacement``: a phantom store, or one prepared from
the raw tagged layout written by ``tagseg phantom``) is also compared with the truth of the mesh
that was tracked (:mod:`tagseg.strain.truth`): ``strain_truth.csv``, dashed true curves in the
curves plots and one summary line per slice. Without ``/displacement`` nothing of this is written.
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tagseg.data.scans import Scan, find_inputs, read_scan
from tagseg.errors import ConfigError, DataError, TagsegError
from tagseg.io.atomic import OutputLock
from tagseg.io.store import read_store
from tagseg.models.orientation import OrientationSettings, segment_in_views, subject_views
from tagseg.predict_outputs import write_csv
from tagseg.strain.aha import level_of
from tagseg.strain.analysis import RADIAL_SOURCES, analyse_slice
from tagseg.strain.mesh import MyocardialMesh
from tagseg.strain.schema import SliceStrain, write_strain
from tagseg.strain.truth import TRUTH_FILE, SliceTruth, compare_with_truth, store_displacement, write_truth

log = logging.getLogger(__name__)

FAILED_FIELDS = ["input", "subject", "slice", "reason"]


@dataclass
class StrainReport:
    """What :func:`strain_scans` wrote: the slices analysed, the files, failures and timings."""

    output: Path
    slices: list[SliceStrain] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    failures: list[tuple[str, str, str, str]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    truths: list[SliceTruth] = field(default_factory=list)

    def exit_status(self) -> int:
        """0 all slices analysed, 1 some failed, 2 none analysed."""
        if not self.failures:
            return 0
        return 1 if self.slices else 2

    def table(self) -> str:
        """One line per slice: global peak Ecc / Err and the frame of the peak."""
        lines = [
            f"{'subject':<16} {'slice':>5} {'level':<7} {'peak Ecc':>9} {'(frame)':>7} {'peak Err':>9} {'(frame)':>7}"
        ]
        for s in self.slices:
            p = s.peaks()
            ecc, err = p["ecc"]["global"], p["err"].get("global", {"peak": float("nan"), "frame": -1})
            lines.append(
                f"{s.subject:<16} {s.slice:>5} {s.level:<7} {ecc['peak']:>9.3f} {ecc['frame']:>7} "
                f"{err['peak']:>9.3f} {err['frame']:>7}"
            )
        return "\n".join(lines)

    def truth_table(self) -> str:
        """One line per slice compared with the truth (empty when the input carries none)."""
        return "\n".join(t.line() for t in self.truths)


def slice_truth(
    scan: Scan, rows: np.ndarray, result: SliceStrain, mesh: MyocardialMesh, where: str
) -> SliceTruth | None:
    """The slice's measurement against the truth of its mesh, when the input is a store with ``/displacement``.

    End-systole is the row marked ``ES`` (else the frame of peak true Ecc). A malformed truth is one
    warning line and no comparison; the measurement stands.
    """
    if scan.kind != "store":
        return None
    try:
        disp = store_displacement(scan.path, rows)
        if disp is None:
            return None
        phase = [] if scan.meta is None or "phase" not in scan.meta else [str(scan.meta["phase"][r]) for r in rows]
        es = phase.index("ES") if "ES" in phase else None
        return compare_with_truth(result, mesh, disp, es, where)
    except TagsegError as exc:
        print(f"tagseg: warning: {where}: not compared with the truth: {_reason(exc, where)}", file=sys.stderr)
        return None


def slice_groups(scan: Scan) -> list[tuple[str, int, np.ndarray]]:
    """(subject, slice, rows ordered by frame) of every slice of a scan, in input order."""
    groups: dict[tuple[str, int], list[int]] = {}
    for row in range(len(scan)):
        groups.setdefault((str(scan.subject[row]), int(scan.slice[row])), []).append(row)
    return [
        (subject, sl, np.asarray(sorted(rows, key=lambda r: int(scan.frame[r]))))
        for (subject, sl), rows in groups.items()
    ]


def slice_labels(
    scan: Scan,
    groups: list[tuple[str, int, np.ndarray]],
    segmenter: Any | None,
    all_frames: bool,
    tta: bool = False,
    batch_size: int = 16,
    orientation: OrientationSettings | None = None,
) -> list[np.ndarray]:
    """Per slice of ``groups``, (T, H, W) label maps of every frame, or (1, H, W) of the ED frame alone.

    From the model (in the view of the scan it reads best, ``orientation``, turned back), or the
    store's masks.

    Raises:
        DataError: no model and the input carries no masks (not a slice store).
    """
    picked = [rows if all_frames else rows[:1] for _, _, rows in groups]
    if segmenter is not None:
        index = [r for rows in picked for r in rows]
        scaled = scan.kind == "store"
        settings = orientation or OrientationSettings(mode="none")
        views = subject_views(segmenter, scan.frames, scan.subject, settings, scaled, scan.spacing_mm)
        labels = segment_in_views(
            lambda frames, spacing, _: segmenter.segment(
                frames, batch_size, scaled=scaled, tta=tta, spacing_mm=spacing
            ),
            scan.frames[index],
            scan.spacing_mm[index],
            scan.subject[index],
            views,
        )
        bounds = np.cumsum([0, *(len(rows) for rows in picked)])
        return [labels[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
    if scan.kind != "store":
        raise DataError(
            f"{scan.path}: a {scan.kind} input carries no myocardium; pass ckpt=<checkpoint> or model=<exported "
            "model> to segment it, or a slice store with its masks"
        )
    masks = read_store(scan.path, extras=False).masks
    return [np.stack([masks[r] for r in rows]) for rows in picked]


def strain(
    inputs: Any,
    output: str | Path,
    tracker: Any,
    tracker_name: str = "",
    segmenter: Any | None = None,
    level: str = "auto",
    mesh: dict[str, Any] | None = None,
    reader: dict[str, Any] | None = None,
    plots: bool = True,
    plot_max_frames: int = 12,
    progress: bool = True,
    attrs: dict[str, Any] | None = None,
    tta: bool = False,
    batch_size: int = 16,
    radial: str = "auto",
    orientation: OrientationSettings | None = None,
) -> StrainReport:
    """Analyse every slice of every scan under ``inputs`` and write the strain outputs into ``output``.

    Args:
        inputs: a scan file, a DICOM folder or a folder of scans.
        output: the output folder.
        tracker: a :class:`~tagseg.strain.tracking.Tracker`.
        tracker_name: its config name (recorded in the outputs).
        segmenter: a segmenter / ensemble for the ED myocardium (None: the store's masks).
        level: ``auto`` (base to apex by slice index, in thirds) or ``basal`` / ``mid`` / ``apical``.
        mesh: keyword arguments of :func:`~tagseg.strain.mesh.seed_mesh`.
        reader: keyword arguments of :func:`~tagseg.data.scans.read_scan`.
        plots: write the curves, mesh and bull's-eye figures.
        plot_max_frames: frames shown in a mesh figure.
        progress: a progress bar over the slices.
        attrs: recorded in ``strain.json`` (the resolved config, the model).
        tta: flip test-time augmentation of the segmenter.
        batch_size: frames per forward pass of the segmenter.
        radial: where Err comes from (``auto``, ``tags``, ``masks``; :func:`~tagseg.strain.analysis.analyse_slice`):
            every frame is segmented unless ``tags``.
        orientation: how each scan's view is chosen for the segmenter (:mod:`tagseg.models.orientation`;
            None: read as stored).
    """
    from tagseg.strain.plots import plot_bullseye, plot_curves, plot_mesh_frames

    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    report = StrainReport(output=out)
    found = find_inputs(inputs, formats=(reader or {}).get("formats"))
    bar = None
    t0 = time.perf_counter()
    for inp in found:
        try:
            scan = read_scan(inp, **dict(reader or {}))
            groups = slice_groups(scan)
            labels = slice_labels(scan, groups, segmenter, radial != "tags", tta, batch_size, orientation)
        except Exception as exc:  # one bad scan is one row; the others go on
            report.failures.append((str(inp.path), "", "", _reason(exc, inp.path)))
            print(f"tagseg: failed: {inp.path}: {_reason(exc, inp.path)}", file=sys.stderr)
            continue
        if progress and bar is None:
            from tqdm.auto import tqdm

            bar = tqdm(desc="strain", unit="slice", total=0)
        if bar is not None:
            bar.total += len(groups)
            bar.refresh()
        n_slices: dict[str, int] = {}
        for subject, sl, _ in groups:
            n_slices[subject] = max(n_slices.get(subject, 0), sl + 1)
        for (subject, sl, rows), every in zip(groups, labels):
            where = f"{inp.path} (subject {subject}, slice {sl})"
            try:
                frames = [scan.frames[r] for r in rows]
                spacing = tuple(float(v) for v in scan.spacing_mm[rows[0]])
                lvl = level_of(sl, n_slices[subject]) if level == "auto" else level
                result, mesh_ = analyse_slice(
                    frames,
                    every[0],
                    spacing,  # type: ignore[arg-type]
                    tracker,
                    level=lvl,
                    subject=subject,
                    slice_index=sl,
                    tracker_name=tracker_name,
                    mesh=mesh,
                    where=where,
                    frame_labels=every if len(every) > 1 else None,
                    radial=radial,
                )
                report.slices.append(result)
                truth = slice_truth(scan, rows, result, mesh_, where)
                if truth is not None:
                    report.truths.append(truth)
                if plots:
                    stem = f"{_safe(subject)}_s{sl}"
                    true_curves = None if truth is None else truth.truth
                    report.files.append(plot_curves(result, out / "plots" / f"{stem}_curves.png", truth=true_curves))
                    sp = np.asarray(result.spacing_mm)
                    positions = (result.points_ed_mm + result.displacement_mm) / sp
                    report.files.append(
                        plot_mesh_frames(
                            np.stack(frames),
                            positions,
                            out / "plots" / f"{stem}_mesh.png",
                            len(result.layer_fractions),
                            max_frames=plot_max_frames,
                        )
                    )
            except Exception as exc:
                reason = _reason(exc, where)
                if not isinstance(exc, TagsegError):
                    log.debug("%s failed", where, exc_info=True)
                report.failures.append((str(inp.path), subject, str(sl), reason))
                print(f"tagseg: failed: {where}: {reason}", file=sys.stderr)
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    report.timings["analyse"] = time.perf_counter() - t0
    if plots:
        for subject in dict.fromkeys(s.subject for s in report.slices):
            mine = [s for s in report.slices if s.subject == subject]
            report.files.append(plot_bullseye(mine, out / "plots" / f"{_safe(subject)}_bullseye.png"))
    report.files.extend(write_strain(out, report.slices, attrs))
    if report.truths:
        report.files.append(write_truth(out, report.truths))
    else:  # a truth file left by an earlier run in this folder would describe other slices
        (out / TRUTH_FILE).unlink(missing_ok=True)
    report.files.append(write_csv(out / "failed.csv", FAILED_FIELDS, report.failures))
    return report


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "scan"


def _reason(exc: BaseException, where: Any) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    prefix = f"{where}: "
    text = text[len(prefix) :] if text.startswith(prefix) else text
    return text if isinstance(exc, TagsegError) else f"{type(exc).__name__}: {text} (unexpected error)"


def strain_scans(cfg: Any) -> StrainReport:
    """``tagseg strain``: build the tracker, load the model (if any), analyse ``cfg.input`` into ``cfg.output``."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from tagseg.models.segmenter import check_tta
    from tagseg.stages.predict import load_predictor

    # a missing or empty input fails before the model is loaded
    find_inputs(cfg.input, formats=cfg.reader.get("formats"))
    tracker = instantiate(cfg.tracker)
    segmenter = None
    if cfg.get("ckpt") is not None or cfg.get("exported_model") is not None:
        segmenter = load_predictor(cfg)
    if cfg.tta not in (None, "none", "flip"):
        raise ConfigError(f"tta: expected none or flip, got {cfg.tta!r}")
    if segmenter is not None:
        check_tta(segmenter, cfg.tta == "flip")
    if cfg.get("radial", "auto") not in RADIAL_SOURCES:
        raise ConfigError(f"radial: expected one of {list(RADIAL_SOURCES)}, got {cfg.radial!r}")
    if cfg.level not in ("auto", "basal", "mid", "apical"):
        raise ConfigError(f"level: expected auto, basal, mid or apical, got {cfg.level!r}")
    with OutputLock(cfg.output, what="strain output folder"):
        report = strain(
            cfg.input,
            cfg.output,
            tracker,
            tracker_name=type(tracker).__name__,
            segmenter=segmenter,
            level=str(cfg.level),
            mesh=OmegaConf.to_container(cfg.mesh, resolve=True),  # type: ignore[arg-type]
            reader=OmegaConf.to_container(cfg.reader, resolve=True),  # type: ignore[arg-type]
            plots=bool(cfg.plots),
            plot_max_frames=int(cfg.plot_max_frames),
            progress=bool(cfg.progress),
            attrs={"config": OmegaConf.to_yaml(cfg, resolve=True), "model": str(getattr(segmenter, "source", ""))},
            tta=cfg.tta == "flip",
            batch_size=int(cfg.batch_size),
            radial=str(cfg.get("radial", "auto")),
            orientation=OrientationSettings.from_config(cfg.get("orientation")),
        )
    if not report.slices and report.failures:
        first = report.failures[0]
        where = first[0] + (f" (subject {first[1]}, slice {first[2]})" if first[1] else "")
        more = f" (and {len(report.failures) - 1} more in failed.csv)" if len(report.failures) > 1 else ""
        raise DataError(f"{where}: {first[3]}{more}")
    return report


__all__ = ["FAILED_FIELDS", "StrainReport", "slice_groups", "slice_labels", "slice_truth", "strain", "strain_scans"]
