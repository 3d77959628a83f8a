"""Helpers shared by the raw-dataset readers: file loading with clear errors, orientation, polygons.

Orientation (the same for every reader, see :mod:`tagseg.data.records`): a stored slice has
array axis 0 = rows (image y, top to bottom) and axis 1 = columns (image x, left to right).

* NIfTI volumes are indexed (x, y, ...) = (voxel axis 0, voxel axis 1, ...): a slice is
  ``volume[:, :, ...].T`` (rows = voxel axis 1, cols = voxel axis 0), in the order the voxels are
  stored, with no flip and no reorientation from the affine; spacing (row, col) = (pixdim of voxel
  axis 1, pixdim of voxel axis 0). A volume stored flipped or with its in-plane axes swapped gives
  flipped or transposed slices, with its spacing following the axes (docs/data-formats.md).
  ``.nii`` and ``.nii.gz`` are read alike (:func:`find_nifti`).
* DICOM ``pixel_array`` is already (rows, columns); spacing = ``PixelSpacing`` (row, col).
* Contour / ROI points are (x, y) = (column, row) in pixel units, pixel centres at integers.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from skimage.draw import polygon2mask

from tagseg.conventions import BACKGROUND, LABELS, LV, MYO, RV  # noqa: F401  (re-exported for the readers)
from tagseg.data.records import SliceRecord
from tagseg.errors import DataError

log = logging.getLogger(__name__)


def require_dir(root: str | Path, dataset: str, layout: str) -> Path:
    """Return ``root`` as a Path, or raise naming it and the expected layout.

    Raises:
        DataError: ``root`` is not an existing folder.
    """
    path = Path(str(root)).expanduser()
    if not path.is_dir():
        raise DataError(
            f"{path}: {dataset} root folder not found; expected the layout\n{layout}\n(set data.root=<folder>)"
        )
    return path


#: NIfTI file endings, in the order they are looked for
NIFTI_SUFFIXES = (".nii.gz", ".nii")


def nifti_stem(path: str | Path) -> str | None:
    """The name of a NIfTI file without ``.nii.gz`` / ``.nii`` (``None`` for another file)."""
    name = Path(path).name
    for suffix in NIFTI_SUFFIXES:
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return None


def find_nifti(folder: str | Path, stem: str) -> Path:
    """``<folder>/<stem>.nii.gz`` or, if only that exists, ``<stem>.nii``.

    Raises:
        DataError: neither exists, or both do (which one is meant is unclear).
    """
    folder = Path(folder)
    found = [folder / f"{stem}{suffix}" for suffix in NIFTI_SUFFIXES if (folder / f"{stem}{suffix}").is_file()]
    if len(found) > 1:
        raise DataError(f"{folder / stem}: both .nii.gz and .nii exist; keep one")
    if not found:
        raise DataError(f"{folder / stem}.nii.gz: file not found (nor {stem}.nii)")
    return found[0]


def load_nifti(path: str | Path) -> tuple[np.ndarray, tuple[float, ...]]:
    """Read a NIfTI file fully: ``(array as stored, voxel sizes in mm)``.

    Raises:
        DataError: the file is missing, truncated or not NIfTI.
    """
    import nibabel as nib
    from nibabel.filebasedimages import ImageFileError

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        img = nib.load(str(path))
        data = np.asarray(img.dataobj)
        zooms = tuple(float(z) for z in img.header.get_zooms())
    except (OSError, EOFError, ValueError, zlib.error, ImageFileError) as exc:
        raise DataError(f"{path.absolute()}: unreadable NIfTI (truncated or corrupt?): {exc}") from exc
    return data, zooms


def nifti_has_spacing(path: str | Path) -> bool:
    """Whether a NIfTI header carries a real pixel size (not the 1.0 placeholder with unknown units)."""
    import nibabel as nib

    hdr = nib.load(str(path)).header
    zooms = hdr.get_zooms()[:2]
    unit = hdr.get_xyzt_units()[0]
    return not (all(float(z) in (0.0, 1.0) for z in zooms) and unit == "unknown")


def nifti_slice(volume: np.ndarray, *index: int) -> np.ndarray:
    """The 2D (rows = y, cols = x) slice ``volume[:, :, *index]`` of a NIfTI (x, y, ...) array."""
    return np.ascontiguousarray(volume[(slice(None), slice(None), *index)].T)


def volume_records(
    image: np.ndarray,
    labels: np.ndarray | None,
    frame: int,
    phase: str,
    *,
    time_index: int | None = None,
    drop_empty: bool = False,
    extra_meta: Mapping[str, Any] | None = None,
    **fields: Any,
) -> list[SliceRecord]:
    """One :class:`SliceRecord` per z slice of a NIfTI (x, y, z[, t]) volume at one frame.

    Args:
        image: the image volume; ``labels``: its label volume (ACDC values), or None for an
            unlabelled frame (all-background masks).
        frame: the record's 0-based frame; ``phase``: ``"ED"``, ``"ES"`` or ``""``.
        time_index: the t index to slice in 4D volumes (None: the volumes are 3D).
        drop_empty: skip slices whose mask is all background (labelled frames only).
        extra_meta: the records' extra meta columns (each record gets its own copy).
        fields: the other SliceRecord fields (subject, n_frames, group, spacing_mm, source, split).
    """
    at = () if time_index is None else (int(time_index),)
    records = []
    for z in range(image.shape[2]):
        img = nifti_slice(image, z, *at).astype(np.float32)
        mask = np.zeros(img.shape, np.uint8) if labels is None else nifti_slice(labels, z, *at).astype(np.uint8)
        if labels is not None and drop_empty and not mask.any():
            continue
        records.append(
            SliceRecord(
                image=img, mask=mask, slice=z, frame=frame, phase=phase, extra_meta=dict(extra_meta or {}), **fields
            )
        )
    return records


def nifti_spacing(zooms: Sequence[float]) -> tuple[float, float]:
    """(row, col) spacing in mm from NIfTI zooms (x, y, ...)."""
    return float(zooms[1]), float(zooms[0])


def check_label_values(labels: np.ndarray, allowed: Iterable[int], path: str | Path, convention: str) -> None:
    """Raise naming ``path`` if ``labels`` holds a value outside ``allowed``.

    Raises:
        DataError: a value is not in ``allowed``.
    """
    values = np.unique(labels)
    bad = np.setdiff1d(values, np.asarray(list(allowed)))
    if bad.size:
        shown = [float(v) if not float(v).is_integer() else int(v) for v in bad[:10]]
        raise DataError(f"{path}: label value(s) {shown} outside the convention {convention}")


def check_same_shape(image: np.ndarray, labels: np.ndarray, image_path: str | Path, label_path: str | Path) -> None:
    """Raise naming both files if image and label arrays differ in shape.

    Raises:
        DataError: the shapes differ.
    """
    if image.shape != labels.shape:
        raise DataError(f"{label_path}: label shape {labels.shape} differs from image {image_path} shape {image.shape}")


def fill_polygon(points_xy: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Boolean mask of the polygon through ``points_xy`` ((N, 2) x = column, y = row).

    Pixels whose centre lies inside the polygon are set (``skimage.draw.polygon2mask``).
    """
    pts = np.asarray(points_xy, dtype=np.float64)
    return polygon2mask(shape, pts[:, ::-1])


def myocardium_mask(
    outer_xy: np.ndarray, inner_xy: np.ndarray, shape: tuple[int, int], cavity: bool = False
) -> np.ndarray:
    """uint8 mask: MYO (2) = filled outer minus filled inner contour; LV (3) inside the inner one if ``cavity``."""
    outer = fill_polygon(outer_xy, shape)
    inner = fill_polygon(inner_xy, shape)
    mask = np.zeros(shape, np.uint8)
    mask[outer & ~inner] = MYO
    if cavity:
        mask[inner] = LV
    return mask


def read_dicom(path: str | Path, need_spacing: bool = True):
    """Read one DICOM file with its pixels.

    Raises:
        DataError: unreadable, no pixel data, or (``need_spacing``) no ``PixelSpacing``.
    """
    import pydicom

    path = Path(path)
    try:
        ds = pydicom.dcmread(str(path))
        _ = ds.pixel_array
    except Exception as exc:  # pydicom raises many types for broken files
        raise DataError(f"{path}: unreadable DICOM ({type(exc).__name__}: {exc})") from exc
    if need_spacing and dicom_spacing(ds) is None:
        raise DataError(f"{path}: DICOM has no PixelSpacing (0028,0030); cannot give the pixel size in mm")
    return ds


def dicom_spacing(ds) -> tuple[float, float] | None:
    """(row, col) spacing in mm from ``PixelSpacing``, or ``None`` if absent."""
    sp = getattr(ds, "PixelSpacing", None)
    if sp is None or len(sp) != 2:
        return None
    return float(sp[0]), float(sp[1])


def check_series(datasets: Sequence, paths: Sequence[str | Path]) -> list:
    """The DICOM frames of one series sorted by ``InstanceNumber``, after checking they form one series.

    Raises:
        DataError: naming the offending file: a missing or repeated ``InstanceNumber``, a frame that
            is not 2D, or a frame whose matrix differs from the others'.
    """
    if not datasets:
        raise DataError("empty DICOM series")
    seen: dict[int, Path] = {}
    for ds, path in zip(datasets, paths):
        number = getattr(ds, "InstanceNumber", None)
        if number is None or str(number).strip() == "":
            raise DataError(f"{path}: DICOM has no InstanceNumber (0020,0013); cannot order the frames")
        if int(number) in seen:
            raise DataError(f"{path}: InstanceNumber {int(number)} repeats {seen[int(number)].name} in the same series")
        seen[int(number)] = Path(path)
    shapes = [tuple(ds.pixel_array.shape) for ds in datasets]
    common = max(set(shapes), key=shapes.count)
    for shape, path in zip(shapes, paths):
        if len(shape) != 2:
            raise DataError(f"{path}: expected one 2D image per DICOM file, got pixel array shape {shape}")
        if shape != common:
            raise DataError(
                f"{path}: matrix {shape[0]}x{shape[1]} differs from the {common[0]}x{common[1]} of "
                f"the other {shapes.count(common)} frame(s) of its series"
            )
    order = sorted(range(len(datasets)), key=lambda i: int(datasets[i].InstanceNumber))
    return [datasets[i] for i in order]
