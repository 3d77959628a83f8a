"""New scans to segment (``tagseg predict``): one reader for every input kind, keeping the geometry.

An input is a file or a folder:

* a slice store (``.h5`` with ``/images`` and ``/meta``, :mod:`tagseg.io.store`): one scan whose
  frames are the store's rows;
* an HDF5 / MATLAB v7.3 file with key ``imt`` (the real tagged layout, (x, y, t) as h5py reads it);
* a NIfTI image (x, y[, t]) or (x, y, 1, t);
* a folder of DICOM files (one frame each, sorted by ``InstanceNumber``);
* a folder holding any of the above (searched recursively; ``*_mask.nii.gz`` and ``*_roi.h5``
  label files are skipped).

Reading reuses :class:`tagseg.data.readers.tagged.TaggedSource` (``images_only``), so frames
follow tagseg's orientation (rows = image y, columns = image x) and spacing rules.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from tagseg.data.readers.tagged import TaggedItem, TaggedSource
from tagseg.errors import DataError
from tagseg.io.store import read_store

INPUT_KINDS = """  a slice store (.h5 with /images and /meta), an HDF5 / MATLAB v7.3 file with key 'imt',
  a NIfTI image (x, y[, t]), a folder of DICOM files, or a folder holding any of these"""


@dataclass
class Scan:
    """One scan to segment.

    Attributes:
        name: output file stem (the input's name).
        kind: ``"store"``, ``"h5"`` (``imt``), ``"nifti"`` or ``"dicom"``.
        path: the input file or DICOM folder.
        frames: float32 (T, H, W) intensities as read (stores: [0, 1]), rows = image y.
        spacing_mm: float64 (T, 2) (row, col) pixel spacing of each frame.
        affine: the NIfTI affine of a NIfTI input (masks are written back with it), else None.
        meta: a store's meta columns (copied to the output store), else None.
    """

    name: str
    kind: str
    path: Path
    frames: np.ndarray
    spacing_mm: np.ndarray
    affine: np.ndarray | None = None
    meta: dict[str, np.ndarray] | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return int(self.frames.shape[0])


def _is_store(path: Path) -> bool:
    try:
        with h5py.File(path, "r") as f:
            keys = set(f)
    except OSError as exc:
        raise DataError(f"{path}: unreadable HDF5 file ({exc}); expected{INPUT_KINDS[1:]}") from exc
    if "images" in keys and "meta" in keys:
        return True
    if "imt" in keys:
        return False
    raise DataError(f"{path}: HDF5 file with neither 'imt' nor a slice store's 'images' + 'meta' (keys: {sorted(keys)})")


def _nifti_stem(path: Path) -> str:
    return path.name[: -len(".nii.gz")] if path.name.endswith(".nii.gz") else path.stem


def _item(path: Path) -> TaggedItem | None:
    """The :class:`TaggedItem` of one input file or DICOM folder (None for a slice store)."""
    if path.is_dir():
        return TaggedItem(path.name, "dicom", path, path.with_name(f"{path.name}_mask.nii.gz"))
    if path.name.endswith((".nii", ".nii.gz")):
        return TaggedItem(_nifti_stem(path), "nifti", path, path)
    if path.suffix.lower() in (".h5", ".hdf5", ".mat"):
        return None if _is_store(path) else TaggedItem(path.stem, "h5", path, path)
    raise DataError(f"{path}: unrecognised input; expected{INPUT_KINDS[1:]}")


def find_inputs(path: str | Path) -> list[Path]:
    """The input files / DICOM folders under ``path`` (or ``path`` itself), sorted.

    Raises:
        DataError: ``path`` does not exist or holds nothing readable.
    """
    path = Path(str(path)).expanduser()
    if not path.exists():
        raise DataError(f"{path}: input not found; expected{INPUT_KINDS[1:]}")
    if path.is_file():
        return [path]
    if any(p.suffix.lower() == ".dcm" for p in path.iterdir() if p.is_file()):
        return [path]
    found = [p for p in path.rglob("*.h5") if not p.stem.endswith("_roi")]
    found += [p for p in path.rglob("*.nii*") if p.name.endswith((".nii", ".nii.gz")) and not _nifti_stem(p).endswith("_mask")]
    found += sorted({p.parent for p in path.rglob("*.dcm")})
    if not found:
        raise DataError(f"{path}: no scan found; expected{INPUT_KINDS[1:]}")
    return sorted(found)


def check_inputs(paths: Iterable[Path]) -> None:
    """Recognise every input's kind (opening HDF5 files for their keys) before any long work.

    Raises:
        DataError: an input that is not one of the accepted kinds.
    """
    for path in paths:
        _item(path)


def read_scan(path: str | Path, imt_axes: str = "xyt", default_spacing_mm: float = 1.4285714) -> Scan:
    """Read one input file or DICOM folder.

    Args:
        path: see the module docstring.
        imt_axes: axis order of ``imt`` as h5py reads it (see the tagged reader).
        default_spacing_mm: spacing used, with a warning, for files that carry none.

    Returns:
        The scan, frames in tagseg's orientation.

    Raises:
        DataError: unreadable or unrecognised input.
        StoreError: a malformed slice store.
    """
    path = Path(str(path)).expanduser()
    if not path.exists():
        raise DataError(f"{path}: input not found; expected{INPUT_KINDS[1:]}")
    item = _item(path)
    if item is None:
        store = read_store(path, extras=False)
        return Scan(path.stem, "store", path, store.images, np.asarray(store.meta["spacing_mm"], np.float64), meta=store.meta)
    source = TaggedSource(root=str(path.parent), imt_axes=imt_axes, default_spacing_mm=default_spacing_mm, images_only=True)
    records = source.load(item, seed=0)
    if not records:
        raise DataError(f"{path}: no frame to segment")
    frames = np.stack([np.asarray(r.image, np.float32) for r in records])
    spacing = np.asarray([r.spacing_mm for r in records], np.float64)
    affine = _nifti_affine(path) if item.kind == "nifti" else None
    return Scan(item.name, item.kind, path, frames, spacing, affine=affine)


def _nifti_affine(path: Path) -> np.ndarray:
    import nibabel as nib

    return np.asarray(nib.load(str(path)).affine, np.float64)


def read_scans(path: str | Path, **kwargs: Any) -> list[Scan]:
    """:func:`read_scan` of every input under ``path`` (see :func:`find_inputs`)."""
    return [read_scan(p, **kwargs) for p in find_inputs(path)]


__all__ = ["INPUT_KINDS", "Scan", "check_inputs", "find_inputs", "read_scan", "read_scans"]
