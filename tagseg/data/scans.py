"""New scans to segment (``tagseg predict``): discovery, one reader per input kind, the geometry kept.

An input is a file or a folder (searched recursively; each scan found is predicted on its own):

* a slice store (``.h5`` with ``/images`` and ``/meta``, :mod:`tagseg.io.store`): one scan whose
  images are the store's rows (``/meta/slice`` and ``/meta/frame`` kept);
* an HDF5 / MATLAB v7.3 file with key ``imt`` (the real tagged layout, (x, y, t) as h5py reads it);
* a NIfTI image (NIfTI-1 or -2, ``.nii`` / ``.nii.gz``) of shape (x, y), (x, y, t), (x, y, 1, t)
  or (x, y, z, t): every slice of every frame is segmented;
* DICOM (recognised by its ``DICM`` preamble, with or without a ``.dcm`` suffix): the single-frame
  files of one folder grouped by series, a multi-frame file, or a single file
  (:mod:`tagseg.data.dicom_series`).

Skipped in folders: ``*_mask.nii[.gz]`` and ``*_roi.h5`` label files, hidden files, and files of
other types. Recognised but refused (one line each, no traceback): CIFTI, Analyze (``.hdr`` /
``.img``) and MGH (``.mgh`` / ``.mgz``) files.

Every scan is held as 2D images (N, H, W), rows = image y, columns = image x, with the slice and
frame of each image; for NIfTI and DICOM inputs N = Z * T in slice-major order (index = z * T + t)
and :meth:`Scan.to_input_layout` puts per-image results back in the input's own array layout.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tagseg.data.dicom_series import DicomSeriesInput, DicomVolume, group_series, is_dicom, read_series
from tagseg.data.scan_formats import SCAN_FORMATS, format_for, format_phrases, import_scan_formats
from tagseg.errors import DataError
from tagseg.io.store import hdf5_keys, is_store_layout, read_store

log = logging.getLogger(__name__)

#: what predict's built-in readers take, as one phrase
INPUT_KINDS = (
    "  a slice store (.h5 with /images and /meta), an HDF5 / MATLAB v7.3 file with key 'imt',"
    " a NIfTI image (x, y), (x, y, t), (x, y, 1, t) or (x, y, z, t), DICOM (a series folder, a single or"
    " multi-frame file)"
)


def expected_inputs() -> str:
    """What predict reads, as one line (it ends messages that are shown and stored as one line each)."""
    return f"{INPUT_KINDS.strip()}{format_phrases()}, or a folder holding any of these"


#: suffixes of image formats that are recognised and refused, with the reason shown
UNSUPPORTED = {
    ".hdr": "Analyze 7.5 / NIfTI pair (.hdr/.img)",
    ".img": "Analyze 7.5 / NIfTI pair (.hdr/.img)",
    ".mgh": "FreeSurfer MGH",
    ".mgz": "FreeSurfer MGH (compressed)",
}
#: second suffixes of CIFTI-2 files (``x.dtseries.nii``)
CIFTI_KINDS = ("dtseries", "dscalar", "dlabel", "ptseries", "pscalar", "pconn", "dconn", "pdconn", "dpconn", "plabel")
CONVERT_HINT = "convert it to NIfTI (.nii.gz) first"


@dataclass
class ScanInput:
    """One scan found on disk, not read yet.

    Attributes:
        name: output file stem.
        kind: ``"store"``, ``"h5"``, ``"nifti"``, ``"dicom"``, ``"unsupported"`` or a registered
            format's kind (:mod:`tagseg.data.scan_formats`).
        path: the file (or, for a DICOM series of several files, the folder) named in messages.
        series: the DICOM files of a ``"dicom"`` input.
        reason: why an ``"unsupported"`` input is refused.
    """

    name: str
    kind: str
    path: Path
    series: DicomSeriesInput | None = None
    reason: str = ""


@dataclass
class Scan:
    """One scan to segment, as 2D images with their place in the input.

    Attributes:
        name: output file stem.
        kind: ``"store"``, ``"h5"``, ``"nifti"``, ``"dicom"`` or a registered format's kind.
        path: the input file or DICOM folder.
        frames: float32 (N, H, W) intensities as read (stores: [0, 1]), rows = image y.
        spacing_mm: float64 (N, 2) (row, col) pixel spacing of each image.
        slice: int (N,) slice index of each image (z; a store's ``/meta/slice``).
        frame: int (N,) frame (time point) of each image (a store's ``/meta/frame``).
        subject: (N,) subject of each image (a store's ``/meta/subject``; else the scan name).
        affine: voxel (x = column, y = row, z = slice) -> mm: the NIfTI input's affine, the DICOM
            series' patient (RAS) affine, or ``diag(col, row, 1)`` mm when there is none.
        patient: whether ``affine`` maps to patient (scanner) space (NIfTI with an sform or qform
            code, DICOM with position and orientation tags).
        layout: (X, Y, Z, T) of NIfTI / DICOM / ``imt`` inputs.
        data_shape: the input array's shape (the mask is written with it).
        nifti: the input NIfTI image (its header is copied to the mask), else None.
        dicom: the DICOM series (source instances for a DICOM SEG), else None.
        meta: a store's meta columns (copied to the output store), else None.
    """

    name: str
    kind: str
    path: Path
    frames: np.ndarray
    spacing_mm: np.ndarray
    slice: np.ndarray
    frame: np.ndarray
    subject: np.ndarray
    affine: np.ndarray | None = None
    patient: bool = False
    layout: tuple[int, int, int, int] | None = None
    data_shape: tuple[int, ...] | None = None
    nifti: Any = field(default=None, repr=False)
    dicom: DicomVolume | None = field(default=None, repr=False)
    meta: dict[str, np.ndarray] | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return int(self.frames.shape[0])

    def to_input_layout(self, images: np.ndarray) -> np.ndarray:
        """Per-image (N, H, W) results -> the input's array layout (``data_shape``, x = column)."""
        if self.layout is None or self.data_shape is None:
            raise ValueError(f"{self.name}: a {self.kind} input has no array layout")
        x, y, z, t = self.layout
        vol = np.asarray(images).reshape(z, t, y, x).transpose(3, 2, 0, 1)
        return vol.reshape(self.data_shape)

    def patient_mm(self, index: int, xy: np.ndarray) -> np.ndarray | None:
        """Patient (RAS) mm of (N, 2) pixel points (x = column, y = row) of image ``index``; None without geometry."""
        if not self.patient or self.affine is None:
            return None
        pts = np.asarray(xy, np.float64).reshape(-1, 2)
        vox = np.column_stack([pts, np.full(len(pts), float(self.slice[index])), np.ones(len(pts))])
        return (vox @ self.affine.T)[:, :3]


# -- discovery ------------------------------------------------------------------------------------


def _nifti_stem(path: Path) -> str:
    name = path.name
    return (
        name[: -len(".nii.gz")]
        if name.endswith(".nii.gz")
        else name[: -len(".nii")]
        if name.endswith(".nii")
        else path.stem
    )


def _is_nifti(path: Path) -> bool:
    return path.name.endswith((".nii", ".nii.gz"))


def _cifti(path: Path) -> bool:
    stem = _nifti_stem(path)
    return "." in stem and stem.rsplit(".", 1)[1] in CIFTI_KINDS


def _is_displacement_file(path: Path) -> bool:
    """Whether ``path`` is the ``<name>_disp.nii[.gz]`` true displacement beside a tagged slice ``<name>``
    (a NIfTI image or a DICOM folder; :mod:`tagseg.data.readers.tagged`), not a scan."""
    if not _is_nifti(path) or not _nifti_stem(path).endswith("_disp"):
        return False
    base = _nifti_stem(path)[: -len("_disp")]
    return (path.parent / base).is_dir() or any((path.parent / f"{base}{s}").is_file() for s in (".nii.gz", ".nii"))


def _classify(path: Path, explicit: bool) -> ScanInput | None:
    """The input a file stands for (None: not a scan, skipped in a folder)."""
    if not explicit and (
        path.name.startswith(".")
        or (_is_nifti(path) and _nifti_stem(path).endswith("_mask"))
        or path.name.endswith("_roi.h5")
        or _is_displacement_file(path)
    ):
        return None
    suffix = path.suffix.lower()
    if _is_nifti(path):
        if _cifti(path):
            return ScanInput(path.name, "unsupported", path, reason=f"CIFTI-2 file: not a 2D+t image; {CONVERT_HINT}")
        return ScanInput(_nifti_stem(path), "nifti", path)
    if suffix in (".h5", ".hdf5", ".mat"):
        return ScanInput(path.stem, "h5", path)  # store or 'imt': told apart when read
    registered = format_for(path)
    if registered is not None:
        return ScanInput(registered.stem(path), registered.kind, path)
    if suffix in UNSUPPORTED or path.name.lower().endswith(".img.gz"):
        return ScanInput(
            path.name,
            "unsupported",
            path,
            reason=f"{UNSUPPORTED.get(suffix, 'Analyze 7.5')} format is not read; {CONVERT_HINT}",
        )
    if is_dicom(path):
        return ScanInput(
            path.stem if suffix in (".dcm", ".dicom", ".ima") else path.name,
            "dicom",
            path,
            series=DicomSeriesInput(path.stem, [path]),
        )
    if explicit:
        return ScanInput(path.name, "unsupported", path, reason=f"unrecognised input; expected {expected_inputs()}")
    return None


def find_inputs(path: str | Path, formats: Sequence[str] | None = None) -> list[ScanInput]:
    """The scans under ``path`` (or ``path`` itself), sorted by path; nothing is read but DICOM headers.

    Args:
        path: a scan file, a DICOM folder or a folder of scans.
        formats: modules registering extra formats (:mod:`tagseg.data.scan_formats`), imported first.

    Raises:
        DataError: ``path`` does not exist or holds no scan.
        ConfigError: a module of ``formats`` cannot be imported.
    """
    import_scan_formats(formats)
    path = Path(str(path)).expanduser()
    if not path.exists():
        raise DataError(f"{path}: input not found; expected {expected_inputs()}")
    if path.is_file():
        found = _classify(path, explicit=True)
        assert found is not None
        if found.kind == "dicom":
            series = group_series([path], found.name)[0]
            found = ScanInput(series.name, "dicom", path, series=series)
        return [found]
    inputs: list[ScanInput] = []
    dicom_by_folder: dict[Path, list[Path]] = {}
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        if any(part.startswith(".") for part in file.relative_to(path).parts):
            continue
        item = _classify(file, explicit=False)
        if item is None:
            continue
        if item.kind == "dicom":
            dicom_by_folder.setdefault(file.parent, []).append(file)
        else:
            inputs.append(item)
    for folder, files in dicom_by_folder.items():
        inputs.extend(_dicom_inputs(folder, files))
    if not inputs:
        raise DataError(f"{path}: no scan found; expected {expected_inputs()}")
    return sorted(inputs, key=lambda i: (str(i.path), i.name))


def _dicom_inputs(folder: Path, files: list[Path]) -> list[ScanInput]:
    out = []
    for series in group_series(files, folder.name):
        whole = not series.multiframe and (
            series.name == folder.name or series.name.startswith(f"{folder.name}_series")
        )
        out.append(ScanInput(series.name, "dicom", folder if whole else series.files[0], series=series))
    return out


# -- reading --------------------------------------------------------------------------------------


def read_scan(
    inp: ScanInput | str | Path,
    imt_axes: str = "xyt",
    default_spacing_mm: float = 1.4285714,
    formats: Sequence[str] | None = None,
) -> Scan:
    """Read one scan.

    Args:
        inp: a :class:`ScanInput` from :func:`find_inputs`, or a path standing for exactly one scan.
        imt_axes: axis order of ``imt`` as h5py reads it (see the tagged reader).
        default_spacing_mm: spacing used, with a warning, for files that carry none.
        formats: modules registering extra formats, imported first (as in :func:`find_inputs`).

    Returns:
        The scan, images in tagseg's orientation.

    Raises:
        DataError: unreadable, unsupported or unrecognised input; NaN / inf pixels (naming the
            slice and frame).
        StoreError: a malformed slice store.
    """
    import_scan_formats(formats)
    if not isinstance(inp, ScanInput):
        found = find_inputs(inp)
        if len(found) != 1:
            raise DataError(f"{inp}: holds {len(found)} scans; read them one by one (find_inputs)")
        inp = found[0]
    if inp.kind == "unsupported":
        raise DataError(f"{inp.path}: {inp.reason}")
    if inp.kind == "nifti":
        scan = _read_nifti(inp, default_spacing_mm)
    elif inp.kind == "dicom":
        scan = _read_dicom(inp, default_spacing_mm)
    elif inp.kind in SCAN_FORMATS:
        scan = _read_registered(inp, default_spacing_mm)
    elif _is_store(inp.path):
        scan = _read_store(inp)
    else:
        scan = _read_imt(inp, imt_axes, default_spacing_mm)
    check_finite(scan)
    return scan


def check_finite(scan: Scan) -> None:
    """Raise naming the scan, slice and frame when an image holds NaN or inf pixels (never segment them as blank).

    Raises:
        DataError: some image is not finite everywhere.
    """
    bad = np.flatnonzero(~np.isfinite(scan.frames).all(axis=(1, 2)))
    if bad.size:
        i = int(bad[0])
        raise DataError(
            f"{scan.path}: scan '{scan.name}' slice {int(scan.slice[i])} frame {int(scan.frame[i])} holds NaN / inf "
            f"pixels ({bad.size} image(s) affected); fix or crop the scan"
        )


def _is_store(path: Path) -> bool:
    try:
        keys = hdf5_keys(path)
    except OSError as exc:
        raise DataError(f"{path}: unreadable HDF5 file ({exc}); expected {expected_inputs()}") from None
    if is_store_layout(keys):
        return True
    if "imt" in keys:
        return False
    raise DataError(
        f"{path}: HDF5 file with neither 'imt' nor a slice store's 'images' + 'meta' (keys: {sorted(keys)})"
    )


def _grid(n_z: int, n_t: int) -> tuple[np.ndarray, np.ndarray]:
    return np.repeat(np.arange(n_z), n_t), np.tile(np.arange(n_t), n_z)


def _default_spacing(path: Path, default_spacing_mm: float) -> tuple[float, float]:
    log.warning("%s: no pixel spacing in the file; using default_spacing_mm = %s mm", path, default_spacing_mm)
    return float(default_spacing_mm), float(default_spacing_mm)


def _scan(
    inp: ScanInput, kind: str, frames: np.ndarray, spacing: tuple[float, float], n_z: int, n_t: int, **kw: Any
) -> Scan:
    zs, ts = _grid(n_z, n_t)
    n = len(frames)
    return Scan(
        inp.name,
        kind,
        inp.path,
        frames,
        np.tile(np.asarray(spacing, np.float64), (n, 1)),
        zs,
        ts,
        np.full(n, inp.name, dtype=object),
        layout=(frames.shape[2], frames.shape[1], n_z, n_t),
        **kw,
    )


def _read_store(inp: ScanInput) -> Scan:

    store = read_store(inp.path, extras=False)
    meta = store.meta
    n = len(store.images)
    col = lambda key, default: np.asarray(meta[key]) if key in meta else default  # noqa: E731
    return Scan(
        inp.name,
        "store",
        inp.path,
        store.images,
        np.asarray(meta["spacing_mm"], np.float64),
        col("slice", np.zeros(n, int)).astype(int),
        col("frame", np.arange(n)).astype(int),
        np.asarray([str(s) for s in col("subject", np.full(n, inp.name))], dtype=object),
        meta=meta,
    )


def _read_imt(inp: ScanInput, imt_axes: str, default_spacing_mm: float) -> Scan:
    from tagseg.data.readers.tagged import TaggedItem, TaggedSource

    source = TaggedSource(
        root=str(inp.path.parent), imt_axes=imt_axes, default_spacing_mm=default_spacing_mm, images_only=True
    )
    records = source.load(TaggedItem(inp.name, "h5", inp.path, inp.path), seed=0)
    if not records:
        raise DataError(f"{inp.path}: no frame to segment")
    frames = np.stack([np.asarray(r.image, np.float32) for r in records])
    row_mm, col_mm = records[0].spacing_mm
    scan = _scan(inp, "h5", frames, (row_mm, col_mm), 1, len(frames), affine=np.diag([col_mm, row_mm, 1.0, 1.0]))
    scan.data_shape = (frames.shape[2], frames.shape[1], len(frames))
    return scan


def _read_nifti(inp: ScanInput, default_spacing_mm: float) -> Scan:
    import nibabel as nib
    from nibabel.filebasedimages import ImageFileError

    path = inp.path
    try:
        img = nib.load(str(path))
        if isinstance(img, nib.Cifti2Image) or 3000 <= int(img.header.get("intent_code", 0)) < 3100:
            raise DataError(f"{path}: CIFTI-2 file: not a 2D+t image; {CONVERT_HINT}")
        if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
            raise DataError(f"{path}: {type(img).__name__} is not read; {CONVERT_HINT}")
        data = np.asarray(img.dataobj)
    except (OSError, EOFError, ValueError, zlib.error, ImageFileError) as exc:
        raise DataError(f"{path.absolute()}: unreadable NIfTI (truncated or corrupt?): {exc}") from None
    shape = data.shape
    if data.ndim not in (2, 3, 4) or data.dtype.kind not in "biuf":
        raise DataError(
            f"{path}: expected a grey-level (x, y), (x, y, t), (x, y, 1, t) or (x, y, z, t) image, "
            f"got shape {shape} of {data.dtype}"
        )
    vol = data.reshape(shape[0], shape[1], 1, 1) if data.ndim == 2 else data[:, :, None] if data.ndim == 3 else data
    n_x, n_y, n_z, n_t = vol.shape
    frames = np.ascontiguousarray(np.transpose(vol, (2, 3, 1, 0)).reshape(n_z * n_t, n_y, n_x), dtype=np.float32)
    hdr = img.header
    zooms = hdr.get_zooms()
    if all(float(z) in (0.0, 1.0) for z in zooms[:2]) and hdr.get_xyzt_units()[0] == "unknown":
        spacing = _default_spacing(path, default_spacing_mm)
    else:
        spacing = (float(zooms[1]), float(zooms[0]))
    patient = int(hdr["sform_code"]) > 0 or int(hdr["qform_code"]) > 0
    return _scan(
        inp,
        "nifti",
        frames,
        spacing,
        n_z,
        n_t,
        affine=np.asarray(img.affine, np.float64),
        patient=patient,
        data_shape=shape,
        nifti=img,
    )


def _read_dicom(inp: ScanInput, default_spacing_mm: float) -> Scan:
    assert inp.series is not None
    vol = read_series(inp.series)
    spacing = vol.spacing or _default_spacing(inp.path, default_spacing_mm)
    patient = vol.affine is not None
    affine = vol.affine if patient else np.diag([spacing[1], spacing[0], 1.0, 1.0])
    n_y, n_x = vol.frames.shape[1:]
    data_shape = (n_x, n_y, vol.n_times) if vol.n_slices == 1 else (n_x, n_y, vol.n_slices, vol.n_times)
    return _scan(
        inp,
        "dicom",
        vol.frames,
        spacing,
        vol.n_slices,
        vol.n_times,
        affine=affine,
        patient=patient,
        data_shape=data_shape,
        dicom=vol,
    )


def scan_from_frames(
    path: str | Path,
    kind: str,
    frames: np.ndarray,
    spacing_mm: tuple[float, float],
    name: str | None = None,
    affine: np.ndarray | None = None,
) -> Scan:
    """A :class:`Scan` from an array of frames, for the reader of a registered format.

    Args:
        path: the file read (named in messages).
        kind: the format's kind.
        frames: (T, H, W) frames of one slice or (Z, T, H, W), rows = image y, any real dtype.
        spacing_mm: (row, col) pixel spacing.
        name: the output file stem (default: the file name up to its first dot).
        affine: voxel (x = column, y = row, z = slice) -> patient mm; None: ``diag(col, row, 1)``
            mm, not patient space.

    Raises:
        DataError: ``frames`` is not 3D or 4D real numbers.
    """
    path = Path(path)
    arr = np.asarray(frames)
    if arr.ndim not in (3, 4) or arr.dtype.kind not in "biuf" or 0 in arr.shape:
        raise DataError(f"{path}: expected (T, H, W) or (Z, T, H, W) real frames, got shape {arr.shape} of {arr.dtype}")
    vol = arr[None] if arr.ndim == 3 else arr
    n_z, n_t, n_y, n_x = vol.shape
    row_mm, col_mm = (float(v) for v in spacing_mm)
    patient = affine is not None
    matrix = np.asarray(affine, np.float64) if patient else np.diag([col_mm, row_mm, 1.0, 1.0])
    inp = ScanInput(name or path.name.split(".")[0], kind, path)
    return _scan(
        inp,
        kind,
        np.ascontiguousarray(vol.reshape(n_z * n_t, n_y, n_x), dtype=np.float32),
        (row_mm, col_mm),
        n_z,
        n_t,
        affine=matrix,
        patient=patient,
        data_shape=(n_x, n_y, n_t) if n_z == 1 else (n_x, n_y, n_z, n_t),
    )


def _read_registered(inp: ScanInput, default_spacing_mm: float) -> Scan:
    """Run a registered format's reader and check what it returns (a plug-in is not trusted)."""
    scan = SCAN_FORMATS[inp.kind].read(inp.path, default_spacing_mm)
    if not isinstance(scan, Scan):
        raise DataError(f"{inp.path}: the {inp.kind} reader returned {type(scan).__name__}, expected a Scan")
    n = len(scan.frames) if getattr(scan.frames, "ndim", 0) == 3 else -1
    columns = (scan.spacing_mm.shape == (n, 2), len(scan.slice) == n, len(scan.frame) == n, len(scan.subject) == n)
    if n <= 0 or not all(columns):
        raise DataError(
            f"{inp.path}: the {inp.kind} reader returned inconsistent arrays (frames {np.shape(scan.frames)}, "
            f"spacing {np.shape(scan.spacing_mm)}); expected (N, H, W) frames and N rows of spacing, slice, frame"
        )
    scan.name = inp.name
    return scan


def read_scans(path: str | Path, **kwargs: Any) -> list[Scan]:
    """:func:`read_scan` of every input under ``path`` (see :func:`find_inputs`)."""
    return [read_scan(p, **kwargs) for p in find_inputs(path)]


__all__ = [
    "INPUT_KINDS",
    "Scan",
    "ScanInput",
    "check_finite",
    "expected_inputs",
    "find_inputs",
    "read_scan",
    "read_scans",
    "scan_from_frames",
]
