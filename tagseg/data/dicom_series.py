"""DICOM inputs of ``tagseg predict``: recognition by preamble, series grouping, patient geometry.

A file is DICOM when bytes 128-131 read ``DICM`` (whatever its suffix). Single-frame files are
grouped into series by ``SeriesInstanceUID`` (segmentations, structured reports and other
non-image objects are skipped); a multi-frame file (``NumberOfFrames`` > 1, enhanced
with per-frame functional groups, or a legacy multi-frame file) is a series on its own.

Every 2D plane of a series is placed by ``ImagePositionPatient`` (IPP), ``ImageOrientationPatient``
(IOP) and ``PixelSpacing``; planes at the same position along the slice normal form one slice, its
planes ordered in time (``TemporalPositionIndex``, ``TriggerTime``, then ``InstanceNumber``). The
volume is (x = column, y = row, z = slice, t) and its affine maps voxel (x, y, z) to patient RAS mm,
as nibabel does (DICOM patient space is LPS: x and y are negated)::

    LPS = IPP_0 + x * col_spacing * IOP[:3] + y * row_spacing * IOP[3:] + z * slice_step
    slice_step = (IPP_last - IPP_0) / (n_slices - 1), or the normal * SpacingBetweenSlices /
                 SliceThickness (1 mm when neither is given) for one slice
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tagseg.errors import DataError

log = logging.getLogger(__name__)

#: DICOM objects that are not images to segment (e.g. SEG files a previous prediction wrote)
SKIPPED_MODALITIES = ("SEG", "SR", "RTSTRUCT", "PR", "KO")

#: LPS (DICOM patient space) -> RAS (NIfTI / nibabel)
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def is_dicom(path: Path) -> bool:
    """Whether ``path`` is a DICOM Part 10 file (``DICM`` after the 128-byte preamble)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


@dataclass
class DicomSeriesInput:
    """One DICOM series found on disk (files in reading order), before its pixels are read."""

    name: str
    files: list[Path]
    multiframe: bool = False


@dataclass
class Plane:
    """One 2D image of a series: pixels, placement and the instance / frame it comes from."""

    pixels: np.ndarray
    ipp: np.ndarray | None
    iop: np.ndarray | None
    spacing: tuple[float, float] | None
    time_key: tuple[float, ...]
    dataset: Any
    frame_number: int | None = None  # 1-based frame of a multi-frame instance


@dataclass
class DicomVolume:
    """A series as a (Z, T) grid of planes with its geometry.

    Attributes:
        frames: float32 (Z * T, H, W), slice-major (index = z * T + t), rows = image rows.
        n_slices: Z.
        n_times: T.
        spacing: (row, col) pixel spacing in mm (None when the files give none).
        affine: voxel (x = column, y = row, z = slice) -> patient RAS mm (None without IPP / IOP).
        datasets: the source instances, one per plane (the same one for every frame of a multi-frame file).
        frame_numbers: 1-based frame of each plane in its instance (None for single-frame files).
    """

    frames: np.ndarray
    n_slices: int
    n_times: int
    spacing: tuple[float, float] | None
    affine: np.ndarray | None
    datasets: list[Any] = field(default_factory=list, repr=False)
    frame_numbers: list[int | None] = field(default_factory=list)


def _read_header(path: Path) -> Any:
    import pydicom

    try:
        return pydicom.dcmread(str(path), stop_before_pixels=True)
    except Exception:  # a broken file becomes its own input, failing with the reader's message
        return None


def group_series(files: Sequence[Path], folder_name: str) -> list[DicomSeriesInput]:
    """DICOM files of one folder -> series (single-frame files by SeriesInstanceUID; multi-frame files alone).

    Args:
        files: DICOM files (recognised by :func:`is_dicom`) in one folder.
        folder_name: the folder's name, used as the series name when it holds one series.
    """
    groups: dict[str, list[Path]] = {}
    numbers: dict[str, Any] = {}
    out: list[DicomSeriesInput] = []
    for path in sorted(files):
        ds = _read_header(path)
        if ds is None:
            out.append(DicomSeriesInput(path.name, [path]))
            continue
        if str(getattr(ds, "Modality", "")) in SKIPPED_MODALITIES:
            continue
        if int(getattr(ds, "NumberOfFrames", 1) or 1) > 1:
            out.append(DicomSeriesInput(_stem(path), [path], multiframe=True))
            continue
        uid = str(getattr(ds, "SeriesInstanceUID", "") or "")
        groups.setdefault(uid, []).append(path)
        numbers.setdefault(uid, getattr(ds, "SeriesNumber", None))
    for i, (uid, paths) in enumerate(sorted(groups.items(), key=lambda kv: str(kv[1][0]))):
        if len(groups) == 1:
            name = folder_name
        else:
            name = f"{folder_name}_series{numbers[uid] if numbers[uid] is not None else i + 1}"
        out.append(DicomSeriesInput(name, paths))
    return out


def _stem(path: Path) -> str:
    return path.stem if path.suffix.lower() in (".dcm", ".dicom", ".ima") else path.name


def _floats(value: Any, n: int) -> np.ndarray | None:
    if value is None:
        return None
    try:
        arr = np.asarray([float(v) for v in value], np.float64)
    except (TypeError, ValueError):
        return None
    return arr if arr.size == n else None


def _first(seq_owner: Any, seq: str) -> Any:
    items = getattr(seq_owner, seq, None)
    return items[0] if items else None


def _group_item(ds: Any, frame_group: Any, seq: str) -> Any:
    """A functional group macro (e.g. PlanePositionSequence) from the frame's group, else the shared one."""
    item = _first(frame_group, seq) if frame_group is not None else None
    if item is None:
        item = _first(_first(ds, "SharedFunctionalGroupsSequence"), seq)
    return item


def _pixels(ds: Any, path: Path) -> np.ndarray:
    try:
        return np.asarray(ds.pixel_array, np.float32)
    except Exception as exc:  # pydicom raises many types for missing / compressed pixel data
        raise DataError(f"{path}: unreadable DICOM pixel data ({type(exc).__name__}: {exc})") from None


def _planes_of(path: Path) -> list[Plane]:
    import pydicom

    try:
        ds = pydicom.dcmread(str(path))
    except Exception as exc:  # pydicom raises many types for broken files
        raise DataError(f"{path}: unreadable DICOM ({type(exc).__name__}: {exc})") from None
    pixels = _pixels(ds, path)
    n_frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    top_ipp = _floats(getattr(ds, "ImagePositionPatient", None), 3)
    top_iop = _floats(getattr(ds, "ImageOrientationPatient", None), 6)
    top_sp = _floats(getattr(ds, "PixelSpacing", None), 2)
    instance = float(getattr(ds, "InstanceNumber", 0) or 0)
    trigger = float(getattr(ds, "TriggerTime", 0) or 0)
    if n_frames <= 1:
        if pixels.ndim != 2:
            raise DataError(f"{path}: expected a 2D grey-level DICOM image, got pixel array shape {pixels.shape}")
        sp = None if top_sp is None else (float(top_sp[0]), float(top_sp[1]))
        return [Plane(pixels, top_ipp, top_iop, sp, (0.0, trigger, instance), ds)]
    if pixels.ndim != 3 or pixels.shape[0] != n_frames:
        raise DataError(
            f"{path}: NumberOfFrames = {n_frames} but pixel array shape {pixels.shape}; expected (frames, rows, columns)"
        )
    per_frame = getattr(ds, "PerFrameFunctionalGroupsSequence", None)
    planes = []
    for f in range(n_frames):
        group = per_frame[f] if per_frame is not None and f < len(per_frame) else None
        pos = _group_item(ds, group, "PlanePositionSequence")
        ori = _group_item(ds, group, "PlaneOrientationSequence")
        meas = _group_item(ds, group, "PixelMeasuresSequence")
        content = _group_item(ds, group, "FrameContentSequence")
        cardiac = _group_item(ds, group, "CardiacSynchronizationSequence")
        ipp = _floats(getattr(pos, "ImagePositionPatient", None), 3) if pos is not None else None
        iop = _floats(getattr(ori, "ImageOrientationPatient", None), 6) if ori is not None else None
        sp = _floats(getattr(meas, "PixelSpacing", None), 2) if meas is not None else None
        ipp = top_ipp if ipp is None else ipp
        iop = top_iop if iop is None else iop
        sp = top_sp if sp is None else sp
        temporal = float(getattr(content, "TemporalPositionIndex", 0) or 0) if content is not None else 0.0
        delay = float(getattr(cardiac, "NominalCardiacTriggerDelayTime", 0) or 0) if cardiac is not None else 0.0
        planes.append(
            Plane(
                pixels[f],
                ipp,
                iop,
                None if sp is None else (float(sp[0]), float(sp[1])),
                (temporal, delay, float(f)),
                ds,
                frame_number=f + 1,
            )
        )
    return planes


def plane_affine(ipp: np.ndarray, iop: np.ndarray, spacing: tuple[float, float], slice_step: np.ndarray) -> np.ndarray:
    """The RAS affine of voxel (x = column, y = row, z = slice) from one plane's tags (see the module docstring)."""
    row_mm, col_mm = spacing
    lps = np.eye(4)
    lps[:3, 0] = iop[:3] * col_mm  # IOP[:3]: direction of increasing column
    lps[:3, 1] = iop[3:] * row_mm  # IOP[3:]: direction of increasing row
    lps[:3, 2] = slice_step
    lps[:3, 3] = ipp
    return LPS_TO_RAS @ lps


def read_series(series: DicomSeriesInput) -> DicomVolume:
    """Read a series' pixels and geometry.

    Raises:
        DataError: unreadable files, planes of different shapes or orientations, or slices with
            different numbers of frames.
    """
    planes: list[Plane] = []
    for path in series.files:
        planes.extend(_planes_of(path))
    if not planes:
        raise DataError(f"{series.name}: no DICOM image")
    shapes = sorted({p.pixels.shape for p in planes})
    where = series.files[0] if len(series.files) == 1 else series.files[0].parent
    if len(shapes) != 1:
        raise DataError(f"{where}: DICOM images of different shapes {shapes} in one series")
    placed = all(p.ipp is not None and p.iop is not None for p in planes)
    if placed:
        iop = planes[0].iop
        if any(not np.allclose(p.iop, iop, atol=1e-4) for p in planes):
            raise DataError(f"{where}: ImageOrientationPatient differs between images of one series")
        normal = np.cross(iop[:3], iop[3:])
        depth = np.asarray([float(p.ipp @ normal) for p in planes])
        keys = np.round(depth, 2)
    else:
        keys = np.zeros(len(planes))
    slices: list[list[Plane]] = []
    for key in np.unique(keys):
        group = [p for p, k in zip(planes, keys) if k == key]
        slices.append(sorted(group, key=lambda p: p.time_key))
    counts = sorted({len(s) for s in slices})
    if len(counts) != 1:
        raise DataError(
            f"{where}: {len(slices)} slice positions with different numbers of frames {counts}; "
            "expected every slice over the same frames"
        )
    n_z, n_t = len(slices), counts[0]
    ordered = [p for s in slices for p in s]
    spacing = ordered[0].spacing
    affine = None
    if placed and spacing is not None:
        if n_z > 1:
            step = (slices[-1][0].ipp - slices[0][0].ipp) / (n_z - 1)
        else:
            ds = ordered[0].dataset
            thick = getattr(ds, "SpacingBetweenSlices", None) or getattr(ds, "SliceThickness", None) or 1.0
            step = normal * float(thick)
        affine = plane_affine(slices[0][0].ipp, iop, spacing, step)
    elif not placed:
        log.warning(
            "%s: no ImagePositionPatient / ImageOrientationPatient; the mask is not placed in patient space", where
        )
    frames = np.stack([p.pixels for p in ordered]).astype(np.float32)
    return DicomVolume(
        frames,
        n_z,
        n_t,
        spacing,
        affine,
        datasets=[p.dataset for p in ordered],
        frame_numbers=[p.frame_number for p in ordered],
    )


__all__ = ["DicomSeriesInput", "DicomVolume", "LPS_TO_RAS", "group_series", "is_dicom", "plane_affine", "read_series"]
