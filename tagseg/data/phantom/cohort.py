"""A heterogeneous phantom cohort, as real multi-centre cohorts are: per subject its own matrix, spacing,
slice thickness, number of frames and slices, voxel order, and basal / apical slices without labels.

:func:`draw_subject` renders one subject with :class:`~tagseg.data.phantom.PhantomSource` on a square
grid and crops it to its (non-square) matrix; :mod:`tagseg.data.phantom.layouts` writes it in the
on-disk layout of ACDC, M&Ms, SCD or the tagged set (``tagseg phantom format=...``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tagseg.data.phantom.randomise import checked_range
from tagseg.data.phantom.source import PhantomSource
from tagseg.errors import ConfigError

#: voxel orders a subject may be stored in (NIfTI affine / DICOM ImageOrientationPatient say which)
ORIENTATIONS = ("identity", "flip_x", "flip_y", "transpose")


@dataclass(frozen=True)
class CohortSpec:
    """Ranges each subject's acquisition is drawn from (``[low, high]``, both included).

    Attributes:
        matrix: rows and columns, drawn apart (non-square); real cohorts ~150-512.
        spacing_mm: in-plane pixel spacing (real 0.7-2.0 mm).
        thickness_mm: slice thickness (real 5-10 mm).
        frames: frames per cycle (real 12-35).
        slices: labelled short-axis slices per subject.
        unlabelled_slices: extra slices above the base and below the apex written without labels
            (cine formats; the tagged set has one file per labelled slice).
        orientations: voxel orders drawn per subject (:data:`ORIENTATIONS`).
        test_fraction: subjects written to the dataset's own test folder (ACDC ``testing``, M&Ms ``Testing``).
        val_fraction: subjects written to M&Ms ``Validation``.
        snr: Rician signal-to-noise range of the phantom.
    """

    matrix: tuple[int, int] = (64, 96)
    spacing_mm: tuple[float, float] = (1.3, 2.0)
    thickness_mm: tuple[float, float] = (5.0, 10.0)
    frames: tuple[int, int] = (12, 35)
    slices: tuple[int, int] = (3, 4)
    unlabelled_slices: int = 1
    orientations: tuple[str, ...] = ORIENTATIONS
    test_fraction: float = 0.25
    val_fraction: float = 0.2
    snr: tuple[float, float] = (10.0, 30.0)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None) -> CohortSpec:
        """Build and check a spec from config values (``tagseg phantom cohort.<key>=...``).

        Raises:
            ConfigError: an unknown key or a value out of range, naming ``cohort.<key>``.
        """
        values = dict(values or {})
        unknown = sorted(set(values) - set(cls.__dataclass_fields__))
        if unknown:
            raise ConfigError(f"cohort: unknown key(s) {unknown}; expected {sorted(cls.__dataclass_fields__)}")
        out: dict[str, Any] = {}
        bounds = (
            ("matrix", 32, 1024, int),
            ("spacing_mm", 0.2, 3.5, float),
            ("thickness_mm", 0.5, 20.0, float),
            ("frames", 2, 60, int),
            ("slices", 1, 30, int),
            ("snr", 1.0, 1000.0, float),
        )
        for key, lo, hi, kind in bounds:
            if key in values:
                out[key] = checked_range(values[key], f"cohort.{key}", lo, hi, kind)
        if "unlabelled_slices" in values:
            n = values["unlabelled_slices"]
            if not isinstance(n, int) or isinstance(n, bool) or not 0 <= n <= 5:
                raise ConfigError(f"cohort.unlabelled_slices must be an integer in [0, 5], got {n!r}")
            out["unlabelled_slices"] = n
        if "orientations" in values:
            orients = tuple(str(o) for o in values["orientations"])
            bad = [o for o in orients if o not in ORIENTATIONS]
            if bad or not orients:
                raise ConfigError(
                    f"cohort.orientations must be a non-empty list of {list(ORIENTATIONS)}, got {list(orients)}"
                )
            out["orientations"] = orients
        for key in ("test_fraction", "val_fraction"):
            if key in values:
                f = values[key]
                if not isinstance(f, (int, float)) or not 0.0 <= float(f) < 1.0:
                    raise ConfigError(f"cohort.{key} must be in [0, 1), got {f!r}")
                out[key] = float(f)
        return cls(**out)


@dataclass
class CohortSubject:
    """One rendered subject, before it is written in a dataset's layout.

    Attributes:
        index: position in the cohort (0-based).
        group: ``control`` or ``dmd``.
        images: float32 (Z, T, rows, cols) in about [0, 1], base to apex, in display orientation.
        labels: uint8 (Z, T, rows, cols) ACDC labels; zero on the unlabelled slices.
        labelled: bool (Z,) which slices carry labels.
        ed, es: 0-based ED / ES frames.
        spacing_mm: in-plane pixel spacing (isotropic in-plane).
        thickness_mm: slice thickness (and spacing between slices).
        orientation: voxel order it is stored in (:data:`ORIENTATIONS`).
        split: the dataset's own folder split: ``test``, ``val`` or ``""`` (training folder).
        displacement: float32 (Z, T, 2, rows, cols) true Lagrangian displacement (pixels, row / col) of
            the tissue at each ED pixel, in display orientation (the phantom's ``/displacement``), or None.
    """

    index: int
    group: str
    images: np.ndarray
    labels: np.ndarray
    labelled: np.ndarray
    ed: int
    es: int
    spacing_mm: float
    thickness_mm: float
    orientation: str
    split: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    displacement: np.ndarray | None = None

    @property
    def n_frames(self) -> int:
        return int(self.images.shape[1])

    @property
    def matrix(self) -> tuple[int, int]:
        return int(self.images.shape[2]), int(self.images.shape[3])


def folder_split(index: int, n_subjects: int, spec: CohortSpec) -> str:
    """The dataset-folder split of subject ``index``: the last ones go to test, those before to val."""
    n_test = int(round(n_subjects * spec.test_fraction))
    n_val = int(round(n_subjects * spec.val_fraction))
    if index >= n_subjects - n_test:
        return "test"
    if index >= n_subjects - n_test - n_val:
        return "val"
    return ""


def draw_subject(
    modality: str, index: int, n_subjects: int, seed: int, spec: CohortSpec, unlabelled_ends: bool = True
) -> CohortSubject:
    """Render subject ``index`` of a cohort of ``n_subjects`` with its own acquisition (deterministic in the seed).

    Args:
        modality: ``cine`` or ``tagged``.
        index: the subject.
        n_subjects: cohort size (the phantom draws the group ratio over it).
        seed: cohort seed.
        spec: the ranges.
        unlabelled_ends: add ``spec.unlabelled_slices`` slices without labels at base and apex.
    """
    rng = np.random.default_rng([int(seed) % (1 << 32), 7919, MODALITY_CODE[modality], int(index)])
    rows, cols = (int(rng.integers(spec.matrix[0], spec.matrix[1] + 1)) for _ in range(2))
    spacing = float(rng.uniform(*spec.spacing_mm))
    thickness = float(rng.uniform(*spec.thickness_mm))
    n_frames = int(rng.integers(spec.frames[0], spec.frames[1] + 1))
    n_labelled = int(rng.integers(spec.slices[0], spec.slices[1] + 1))
    orientation = str(spec.orientations[int(rng.integers(len(spec.orientations)))])
    ends = spec.unlabelled_slices if unlabelled_ends else 0
    n_z = n_labelled + 2 * ends
    side = max(rows, cols, 32)
    source = PhantomSource(
        name=f"phantom_{modality}",
        modality=modality,
        image_size=side,
        spacing_mm=spacing,
        n_subjects=n_subjects,
        n_slices=n_z,
        n_frames=n_frames,
        snr=list(spec.snr),
    )
    records = source.load(index, seed)
    images = np.stack([r.image for r in records]).reshape(n_z, n_frames, side, side)
    labels = np.stack([r.mask for r in records]).reshape(n_z, n_frames, side, side)
    r0, c0 = (side - rows) // 2, (side - cols) // 2
    images = np.ascontiguousarray(images[:, :, r0 : r0 + rows, c0 : c0 + cols], dtype=np.float32)
    labels = np.ascontiguousarray(labels[:, :, r0 : r0 + rows, c0 : c0 + cols])
    disp = np.stack([r.extras["displacement"] for r in records]).reshape(n_z, n_frames, 2, side, side)
    disp = np.ascontiguousarray(disp[..., r0 : r0 + rows, c0 : c0 + cols], dtype=np.float32)
    labelled = np.zeros(n_z, bool)
    labelled[ends : n_z - ends] = True
    labels[~labelled] = 0
    es = next(r.frame for r in records if r.phase == "ES") if any(r.phase == "ES" for r in records) else n_frames // 3
    return CohortSubject(
        index=index,
        group=records[0].group,
        images=images,
        labels=labels,
        labelled=labelled,
        ed=0,
        es=int(es),
        spacing_mm=spacing,
        thickness_mm=thickness,
        orientation=orientation,
        displacement=disp,
    )


MODALITY_CODE = {"cine": 1, "tagged": 2}


# --------------------------------------------------------------------------- voxel orders


def nifti_volume(slices: np.ndarray, orientation: str) -> tuple[np.ndarray, np.ndarray]:
    """A NIfTI (x, y, ...) volume and its voxel-axis permutation / flips from display slices (..., rows, cols).

    ``slices`` is (Z, rows, cols) or (Z, T, rows, cols). Returns the volume and a (3, 3) matrix whose
    columns are the world directions of voxel axes 0, 1, 2 (to be scaled by the spacings).
    """
    vol = np.moveaxis(slices, (-1, -2), (0, 1))  # cols -> x (voxel 0), rows -> y (voxel 1), then z[, t]
    axes = np.eye(3)
    if orientation == "flip_x":
        vol, axes = vol[::-1], axes @ np.diag([-1.0, 1.0, 1.0])
    elif orientation == "flip_y":
        vol, axes = vol[:, ::-1], axes @ np.diag([1.0, -1.0, 1.0])
    elif orientation == "transpose":
        vol, axes = np.swapaxes(vol, 0, 1), axes[:, [1, 0, 2]]
    elif orientation != "identity":
        raise ConfigError(f"unknown orientation {orientation!r}; expected one of {list(ORIENTATIONS)}")
    return np.ascontiguousarray(vol), axes


def nifti_affine(shape: Sequence[int], axes: np.ndarray, zooms: Sequence[float]) -> np.ndarray:
    """The affine of a volume whose voxel axes point along ``axes`` columns with sizes ``zooms``;
    a flipped axis starts at the far end, so every voxel keeps its world position."""
    affine = np.eye(4)
    affine[:3, :3] = axes * np.asarray(zooms[:3], float)[None, :]
    for i in range(3):
        if axes[:, i].sum() < 0:
            affine[:3, 3] -= affine[:3, i] * (shape[i] - 1)
    return affine


def display_to_stored(image: np.ndarray, orientation: str) -> np.ndarray:
    """A display slice (rows, cols) as the reader will see it for a volume stored in ``orientation``."""
    if orientation == "flip_x":
        return image[..., :, ::-1]
    if orientation == "flip_y":
        return image[..., ::-1, :]
    if orientation == "transpose":
        return np.swapaxes(image, -1, -2)
    return image


def displacement_to_stored(displacement: np.ndarray, orientation: str) -> np.ndarray:
    """A display-orientation displacement (..., 2, rows, cols) (row, col pixels) as the reader will see it for a
    volume stored in ``orientation``: the field re-indexed as :func:`display_to_stored` and its components
    turned with it (a flipped axis negates its component, a transpose swaps them)."""
    field_ = display_to_stored(np.asarray(displacement), orientation)
    u_row, u_col = field_[..., 0, :, :], field_[..., 1, :, :]
    if orientation == "flip_x":
        u_col = -u_col
    elif orientation == "flip_y":
        u_row = -u_row
    elif orientation == "transpose":
        u_row, u_col = u_col, u_row
    return np.ascontiguousarray(np.stack([u_row, u_col], axis=-3))


def contour_xy(region: np.ndarray) -> np.ndarray | None:
    """The longest iso-contour (x, y) = (column, row) points of a boolean region, or ``None`` if empty."""
    from skimage.measure import find_contours

    if not region.any():
        return None
    padded = np.pad(region.astype(np.float32), 1)  # closes contours that touch the border
    contours = find_contours(padded, 0.5)
    if not contours:
        return None
    best = max(contours, key=len)[:-1] - 1.0  # (row, col), closed (last = first)
    return np.ascontiguousarray(best[:, ::-1])


__all__ = [
    "CohortSpec",
    "CohortSubject",
    "ORIENTATIONS",
    "contour_xy",
    "display_to_stored",
    "displacement_to_stored",
    "draw_subject",
    "folder_split",
    "nifti_affine",
    "nifti_volume",
]
