"""Real tagged MRI reader: the authors' MATLAB layout, and a plain NIfTI / DICOM layout for new data.

Each item is one short-axis slice over time (a cine of tagged frames); every labelled frame
becomes one record with a MYO-only mask (label 2). The item kind is recognised from its files, so
one root may mix the layouts::

    <root>/<name>.h5          authors' layout: key ``imt`` (MATLAB v7.3 = HDF5), every frame
    <root>/<name>_roi.h5      ``pts_interp_inner`` / ``pts_interp_outer``: one (N, 2) x, y point
                              array per frame, through HDF5 object references (a MATLAB cell array)
    <root>/<name>.nii.gz      plain layout: image (x, y, t) (or (x, y, 1, t)); ``.nii`` alike
    <root>/<name>_mask.nii.gz     mask (x, y, t): 0 background, 1 or 2 myocardium
    <root>/<name>/*.dcm       plain layout: one DICOM file per frame (sorted by InstanceNumber; a
                              repeated InstanceNumber or a frame of another matrix is an error)
    <root>/<name>_mask.nii.gz     mask (x, y, t) as above, x = DICOM column

Optional true motion (the phantom writes it; real data has none): key ``disp`` of ``<name>.h5``
(as h5py reads it: imt's axes then a component axis, (x, y, t, 2) for ``imt_axes: xyt``), or
``<name>_disp.nii.gz`` next to a NIfTI image or DICOM folder ((x, y, t, 2), the voxel order of the
mask). The two components are (u_row, u_col): the Lagrangian displacement in pixels of the tissue at
each ED pixel, of the slice as read (rows = y, columns = x); zero at ED. Read into each record's
``extras["displacement"]`` (2, H, W), so the prepared store carries ``/displacement``.

Axes. MATLAB writes arrays column-major, so h5py sees the axes of a MATLAB array reversed. The
authors' ``imt`` files read by h5py are (x, y, t) (time on the last axis; x = image column,
y = image row): ``imt_axes: xyt`` (any permutation of ``x``, ``y``, ``t`` can be given for
other files). Each frame is stored rows = y, columns = x, the orientation of every tagseg reader.
ROI points are (x, y) = (column, row) pixel coordinates; as h5py reads them each referenced
array is (N, 2) (a (2, N) array is transposed). ``roi_origin: 1`` subtracts 1 for MATLAB 1-based
coordinates (default 0: the points are used as stored). Empty ROI cells mark unlabelled frames.

Name -> subject, group and slice location through ``name_pattern`` (named groups ``subject``,
``group``, ``location``): ``1_C_C_201_base`` -> subject ``1_C_C_201``, group ``C`` -> ``control``
(``D`` -> ``dmd``, see ``group_codes``), location ``base`` (slice index from ``slice_order``).
Pixel spacing: from the file (NIfTI header with units, DICOM ``PixelSpacing``, or an HDF5
``spacing_mm`` / ``pixel_spacing`` dataset or attribute, (row, col)); only when the file has
none, ``default_spacing_mm`` (1.4285714 mm, the authors' scanner) is used, with a warning.
With ``images_only=True`` every frame is read without labels (zero masks, ``labelled: false``):
the unlabelled tagged images of CycleGAN domain B.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from tagseg.data.readers.common import (
    MYO,
    NIFTI_SUFFIXES,
    check_label_values,
    check_same_shape,
    check_series,
    dicom_spacing,
    load_nifti,
    myocardium_mask,
    nifti_has_spacing,
    nifti_spacing,
    nifti_stem,
    read_dicom,
    require_dir,
)
from tagseg.data.records import SliceRecord
from tagseg.errors import ConfigError, DataError

log = logging.getLogger(__name__)

LAYOUT = """  <root>/<name>.h5 (key imt) + <name>_roi.h5 (pts_interp_inner, pts_interp_outer)
  or <root>/<name>.nii.gz (x, y, t) + <root>/<name>_mask.nii.gz
  or <root>/<name>/*.dcm + <root>/<name>_mask.nii.gz"""

ROI_KEYS = ("pts_interp_inner", "pts_interp_outer")
#: the true displacement next to a tagged slice: key of the ``<name>.h5`` layout, suffix of the others
DISPLACEMENT_KEY = "disp"
DISPLACEMENT_SUFFIX = "_disp"
DISPLACEMENT_MEANING = "the Lagrangian displacement (u_row, u_col) in pixels of every frame, finite"
SPACING_KEYS = ("spacing_mm", "pixel_spacing", "PixelSpacing")


@dataclass(frozen=True)
class TaggedItem:
    """One tagged slice over time: its name, kind (``h5`` | ``nifti`` | ``dicom``) and files."""

    name: str
    kind: str
    image: Path
    labels: Path


def _mask_path(folder: Path, stem: str) -> Path:
    """``<stem>_mask.nii.gz``, or ``<stem>_mask.nii`` if only that exists."""
    gz = folder / f"{stem}_mask.nii.gz"
    plain = folder / f"{stem}_mask.nii"
    return plain if plain.is_file() and not gz.is_file() else gz


def _displacement_path(folder: Path, stem: str) -> Path:
    """``<stem>_disp.nii.gz``, or ``<stem>_disp.nii`` if only that exists."""
    gz = folder / f"{stem}{DISPLACEMENT_SUFFIX}.nii.gz"
    plain = folder / f"{stem}{DISPLACEMENT_SUFFIX}.nii"
    return plain if plain.is_file() and not gz.is_file() else gz


def _open_h5(path: Path) -> h5py.File:
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise DataError(f"{path}: unreadable HDF5 / MATLAB v7.3 file ({exc})") from exc


def _h5_spacing(f: h5py.File) -> tuple[float, float] | None:
    for key in SPACING_KEYS:
        value = f.attrs.get(key)
        if value is None and key in f and isinstance(f[key], h5py.Dataset):
            value = f[key][...]
        if value is not None:
            arr = np.asarray(value, dtype=np.float64).reshape(-1)
            if arr.size == 1:
                arr = np.repeat(arr, 2)
            if arr.size == 2 and (arr > 0).all():
                return float(arr[0]), float(arr[1])
    return None


def _is_matlab_empty(ds: h5py.Dataset) -> bool:
    return bool(ds.attrs.get("MATLAB_empty", 0)) or ds.size == 0


def read_roi_frames(f: h5py.File, key: str, path: Path) -> list[np.ndarray | None]:
    """Per-frame (N, 2) x, y point arrays of ``key`` (``None`` for an empty cell = unlabelled frame).

    Accepts a MATLAB cell array (a dataset of HDF5 object references, any shape, read in order)
    or a plain numeric (t, N, 2) array.

    Raises:
        DataError: the key is missing, a reference is broken, or a point array is not (N, 2) / (2, N).
    """
    if key not in f:
        raise DataError(f"{path}: missing key '{key}' (expected {list(ROI_KEYS)})")
    ds = f[key]
    if not isinstance(ds, h5py.Dataset):
        raise DataError(f"{path}: '{key}' is a group, expected a cell array of per-frame point arrays")
    if h5py.check_ref_dtype(ds.dtype) is not None:
        arrays: list[np.ndarray | None] = []
        for i, ref in enumerate(ds[...].reshape(-1)):
            if not ref:
                arrays.append(None)
                continue
            try:
                target = f[ref]
            except (ValueError, KeyError) as exc:
                raise DataError(f"{path}: '{key}' frame {i}: broken object reference ({exc})") from exc
            arrays.append(None if _is_matlab_empty(target) else np.asarray(target[...], dtype=np.float64))
    else:
        data = np.asarray(ds[...], dtype=np.float64)
        if data.ndim != 3:
            raise DataError(f"{path}: '{key}' must be object references or a (t, N, 2) array, got shape {data.shape}")
        arrays = list(data)
    out: list[np.ndarray | None] = []
    for i, pts in enumerate(arrays):
        if pts is not None:
            if pts.ndim == 2 and pts.shape[1] != 2 and pts.shape[0] == 2:
                pts = pts.T
            if pts.ndim != 2 or pts.shape[1] != 2:
                raise DataError(f"{path}: '{key}' frame {i}: expected (N, 2) x, y points, got shape {pts.shape}")
            if len(pts) < 3:
                raise DataError(f"{path}: '{key}' frame {i}: {len(pts)} point(s); a polygon needs at least 3")
        out.append(pts)
    return out


class TaggedSource:
    """Real tagged slices (authors' HDF5 layout, NIfTI or DICOM) -> MYO-only slice records.

    Args:
        root: the folder holding the files (searched recursively).
        name: dataset name (store name and ``source`` column).
        store: the store path (used by the stages, not by the reader).
        imt_axes: axis order of ``imt`` as h5py reads it (a permutation of "xyt").
        roi_origin: subtracted from ROI point coordinates (1 for MATLAB 1-based pixels).
        name_pattern: regex with optional named groups ``subject``, ``group``, ``location``.
        group_codes: group code from the name -> group written to the store.
        slice_order: slice locations in order (slice index = position; numeric locations are
            used as numbers; others get -1).
        default_spacing_mm: pixel spacing used, with a warning, when a file has none.
        ed_frame: the 0-based frame marked "ED" (``None``: none).
        es_frame: the 0-based frame marked "ES" (``None``: none).
        images_only: read every frame without labels (zero masks).
    """

    def __init__(
        self,
        root: str,
        name: str = "tagged",
        store: str | None = None,
        imt_axes: str = "xyt",
        roi_origin: float = 0.0,
        name_pattern: str = r"^(?P<subject>[^_]+_(?P<group>[A-Za-z]+)_.+)_(?P<location>[^_]+)$",
        group_codes: Mapping[str, str] | None = None,
        slice_order: Sequence[str] = ("base", "mid", "apex"),
        default_spacing_mm: float = 1.4285714,
        ed_frame: int | None = 0,
        es_frame: int | None = None,
        images_only: bool = False,
    ) -> None:
        if sorted(str(imt_axes)) != ["t", "x", "y"]:
            raise ConfigError(
                f"data.imt_axes must be a permutation of 'xyt' (h5py axis order of imt), got {imt_axes!r}"
            )
        try:
            self.pattern = re.compile(name_pattern)
        except re.error as exc:
            raise ConfigError(f"data.name_pattern is not a valid regular expression: {exc}") from exc
        self.root = Path(str(root))
        self.name = name
        self.store = store
        self.imt_axes = str(imt_axes)
        self.roi_origin = float(roi_origin)
        self.group_codes = dict(group_codes if group_codes is not None else {"C": "control", "D": "dmd"})
        self.slice_order = [str(s) for s in slice_order]
        self.default_spacing_mm = float(default_spacing_mm)
        self.ed_frame = ed_frame
        self.es_frame = es_frame
        self.images_only = bool(images_only)
        self.store_attrs = {"labelled": not self.images_only}
        self.n_default_spacing = 0

    # -- discovery ------------------------------------------------------------------------------
    def items(self) -> list[TaggedItem]:
        """Every slice found under the root, sorted by name.

        Raises:
            DataError: the root is missing or holds no recognised file.
        """
        root = require_dir(self.root, "tagged", LAYOUT)
        items: list[TaggedItem] = []
        for path in sorted(root.rglob("*.h5")):
            if not path.stem.endswith("_roi"):
                items.append(TaggedItem(path.stem, "h5", path, path.with_name(f"{path.stem}_roi.h5")))
        niftis = sorted(p for suffix in NIFTI_SUFFIXES for p in root.rglob(f"*{suffix}"))
        stems = {(p.parent, nifti_stem(p)) for p in niftis}
        for path in niftis:
            stem = nifti_stem(path)
            if stem is None or stem.endswith("_mask") or self._is_displacement(path.parent, stem, stems):
                continue
            items.append(TaggedItem(stem, "nifti", path, _mask_path(path.parent, stem)))
        for folder in sorted({p.parent for p in root.rglob("*.dcm")}):
            items.append(TaggedItem(folder.name, "dicom", folder, _mask_path(folder.parent, folder.name)))
        names = [(it.name, it.image.parent) for it in items]
        twice = sorted({str(folder / name) for name, folder in names if names.count((name, folder)) > 1})
        if twice:
            raise DataError(
                f"{twice[0]}: found in more than one layout (e.g. both .nii and .nii.gz, or a file and a "
                "DICOM folder); keep one"
            )
        if not items:
            raise DataError(f"{root}: no tagged data found; expected the layout\n{LAYOUT}")
        return sorted(items, key=lambda it: (it.name, str(it.image)))

    @staticmethod
    def _is_displacement(folder: Path, stem: str, stems: set[tuple[Path, str | None]]) -> bool:
        """Whether ``<stem>`` is the ``_disp`` file of an image (NIfTI or DICOM folder) beside it."""
        if not stem.endswith(DISPLACEMENT_SUFFIX):
            return False
        base = stem[: -len(DISPLACEMENT_SUFFIX)]
        return (folder, base) in stems or (folder / base).is_dir()

    def describe(self, item: TaggedItem) -> str:
        return str(item.image.relative_to(self.root)) if item.image.is_relative_to(self.root) else str(item.image)

    # -- naming and spacing -----------------------------------------------------------------------
    def parse_name(self, name: str) -> tuple[str, str, int, str]:
        """(subject, group, slice index, location) of a slice name."""
        match = self.pattern.match(name)
        parts = match.groupdict() if match else {}
        subject = parts.get("subject") or name
        code = parts.get("group") or ""
        group = self.group_codes.get(code, code.lower())
        location = parts.get("location") or ""
        if location in self.slice_order:
            index = self.slice_order.index(location)
        elif location.isdigit():
            index = int(location)
        else:
            index = -1
        return subject, group, index, location

    def _spacing(self, found: tuple[float, float] | None, path: Path) -> tuple[float, float]:
        if found is not None:
            return found
        if self.n_default_spacing == 0:
            log.warning(
                "%s: no pixel spacing in the file; using default_spacing_mm = %s mm "
                "(warned once; later files without spacing use it too)",
                path,
                self.default_spacing_mm,
            )
        self.n_default_spacing += 1
        self.store_attrs["n_default_spacing"] = self.n_default_spacing
        return self.default_spacing_mm, self.default_spacing_mm

    # -- reading --------------------------------------------------------------------------------
    def _read_h5(self, item: TaggedItem) -> tuple[np.ndarray, tuple[float, float], list[np.ndarray] | None]:
        with _open_h5(item.image) as f:
            if "imt" not in f or not isinstance(f["imt"], h5py.Dataset):
                raise DataError(f"{item.image}: missing key 'imt' (the image series, MATLAB v7.3); keys: {sorted(f)}")
            raw = np.asarray(f["imt"][...])
            if raw.ndim != 3:
                raise DataError(
                    f"{item.image}: 'imt' must be 3D ({self.imt_axes} as read by h5py), got shape {raw.shape}"
                )
            frames = np.transpose(raw, [self.imt_axes.index(a) for a in "tyx"]).astype(np.float32)
            spacing = self._spacing(_h5_spacing(f), item.image)
        if self.images_only:
            return frames, spacing, None
        with _open_h5(item.labels) as f:
            inner = read_roi_frames(f, "pts_interp_inner", item.labels)
            outer = read_roi_frames(f, "pts_interp_outer", item.labels)
        if len(inner) != len(outer):
            raise DataError(f"{item.labels}: {len(inner)} inner but {len(outer)} outer contours")
        if len(inner) != frames.shape[0]:
            raise DataError(
                f"{item.labels}: {len(inner)} ROI frames but {item.image} 'imt' has {frames.shape[0]} frames "
                f"on its t axis (imt_axes = {self.imt_axes}, shape {raw.shape}); set data.imt_axes"
            )
        shape = frames.shape[1:]
        masks = []
        for t, (pin, pout) in enumerate(zip(inner, outer)):
            if pin is None or pout is None:
                masks.append(None)
                continue
            mask = myocardium_mask(pout - self.roi_origin, pin - self.roi_origin, shape)
            if not mask.any():
                raise DataError(f"{item.labels}: frame {t}: empty mask (no pixel between the outer and inner contour)")
            masks.append(mask)
        return frames, spacing, masks

    def _read_mask(self, path: Path, frames: np.ndarray, image_path: Path) -> list[np.ndarray | None]:
        labels, _ = load_nifti(path)
        if labels.ndim == 4 and labels.shape[2] == 1:
            labels = labels[:, :, 0]
        if labels.ndim == 2:
            labels = labels[:, :, None]
        labels = np.transpose(labels, (2, 1, 0))  # (x, y, t) -> (t, rows, cols)
        check_same_shape(frames, labels, image_path, path)
        check_label_values(labels, (0, 1, MYO), path, "0 background, 1 or 2 myocardium")
        if not labels.any():
            raise DataError(f"{path}: empty mask (every voxel is background)")
        return [np.where(m > 0, MYO, 0).astype(np.uint8) if m.any() else None for m in labels]

    def _read_nifti(self, item: TaggedItem) -> tuple[np.ndarray, tuple[float, float], list | None]:
        image, zooms = load_nifti(item.image)
        if image.ndim == 4 and image.shape[2] == 1:
            image = image[:, :, 0]
        if image.ndim == 2:
            image = image[:, :, None]
        if image.ndim != 3:
            raise DataError(f"{item.image}: expected an (x, y, t) image, got shape {image.shape}")
        frames = np.transpose(image, (2, 1, 0)).astype(np.float32)
        spacing = self._spacing(nifti_spacing(zooms) if nifti_has_spacing(item.image) else None, item.image)
        masks = None if self.images_only else self._read_mask(item.labels, frames, item.image)
        return frames, spacing, masks

    def _read_dicom(self, item: TaggedItem) -> tuple[np.ndarray, tuple[float, float], list | None]:
        paths = sorted(item.image.glob("*.dcm"))
        datasets = check_series([read_dicom(p, need_spacing=False) for p in paths], paths)
        frames = np.stack([np.asarray(ds.pixel_array, dtype=np.float32) for ds in datasets])
        spacing = self._spacing(dicom_spacing(datasets[0]), item.image)
        masks = None if self.images_only else self._read_mask(item.labels, frames, item.image)
        return frames, spacing, masks

    def read_displacement(self, item: TaggedItem, shape: tuple[int, ...]) -> np.ndarray | None:
        """The slice's true displacement, float32 (T, 2, H, W) for frames of ``shape`` (T, H, W); None
        when the item carries none (real data).

        Raises:
            DataError: a ``disp`` key or ``_disp`` file of the wrong shape or with non-finite values,
                naming the file and the expected shape.
        """
        n_t, n_y, n_x = (int(v) for v in shape)
        if item.kind == "h5":
            path = item.image
            with _open_h5(path) as f:
                if DISPLACEMENT_KEY not in f:
                    return None
                ds = f[DISPLACEMENT_KEY]
                sizes = {"x": n_x, "y": n_y, "t": n_t}
                expected = tuple(sizes[a] for a in self.imt_axes) + (2,)
                what = f"'{DISPLACEMENT_KEY}'"
                axes = f"imt's axes ({self.imt_axes}) then 2 components"
                raw = np.asarray(ds[...]) if isinstance(ds, h5py.Dataset) else None
            order = [self.imt_axes.index(a) for a in "tyx"] + [3]
        else:
            path = _displacement_path(item.image.parent, item.name)  # beside the NIfTI file or DICOM folder
            if not path.is_file():
                return None
            raw, _ = load_nifti(path)
            expected, what, axes, order = (n_x, n_y, n_t, 2), "displacement", "(x, y, t, 2)", [2, 1, 0, 3]
        if raw is None or raw.dtype.kind not in "fiu" or raw.shape != expected or not np.isfinite(raw).all():
            found = "a group" if raw is None else f"shape {raw.shape}, dtype {raw.dtype}"
            if raw is not None and raw.shape == expected and raw.dtype.kind in "fiu":
                found = "NaN or infinite values"
            raise DataError(
                f"{path}: {what} holds {found}; expected {expected} = {axes}: {DISPLACEMENT_MEANING} "
                f"of the {n_t} frame(s) of {n_y}x{n_x} pixels (or no {what} at all)"
            )
        # (t, rows, cols, component) -> (t, component, rows, cols)
        return np.ascontiguousarray(np.moveaxis(np.transpose(raw, order), -1, 1), dtype=np.float32)

    def load(self, item: TaggedItem, seed: int) -> list[SliceRecord]:
        """Records of one slice (every labelled frame, or every frame with ``images_only``).

        Raises:
            DataError: an unreadable file, a missing key, shapes that differ, labels outside
                {0, 1, 2}, or an empty mask.
        """
        if not self.images_only and not item.labels.is_file():
            raise DataError(f"{item.labels}: label file not found for {item.image} (or set data.images_only=true)")
        reader = {"h5": self._read_h5, "nifti": self._read_nifti, "dicom": self._read_dicom}[item.kind]
        frames, spacing, masks = reader(item)
        disp = self.read_displacement(item, frames.shape)
        subject, group, index, location = self.parse_name(item.name)
        n_frames = frames.shape[0]
        records = []
        for t in range(n_frames):
            mask = np.zeros(frames.shape[1:], np.uint8) if masks is None else masks[t]
            if mask is None:
                continue
            phase = "ED" if t == self.ed_frame else "ES" if t == self.es_frame else ""
            records.append(
                SliceRecord(
                    image=frames[t],
                    mask=mask,
                    subject=subject,
                    slice=index,
                    frame=t,
                    n_frames=n_frames,
                    phase=phase,
                    group=group,
                    spacing_mm=spacing,
                    source=self.name,
                    extra_meta={"location": location, "slice_name": item.name},
                    extras={} if disp is None else {"displacement": disp[t]},
                )
            )
        return records
