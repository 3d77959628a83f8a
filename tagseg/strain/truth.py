"""True motion and strain of a mesh from a known Lagrangian displacement (the phantom's ``/displacement``).

The phantom stores, per frame, the displacement ``u`` (pixels, row / col) of the tissue at every
ED pixel (zero at ED; :mod:`tagseg.physics.dynamic` documents the convention). The true position
of an ED point ``X`` in frame ``t`` is ``X + u_t(X)``, ``u`` interpolated bilinearly (the motion
is smooth inside the myocardium). The true strain of a slice and of each AHA segment is the
strain of these true trajectories measured exactly as a tracker's (:mod:`tagseg.strain.tensors`),
so a tracker's strain error is its tracking error alone.

The true strain is computed here, on demand, from a store's ``/displacement`` and ED masks
(:func:`store_true_strain`), not written by ``tagseg prepare``: the data layer does not depend on
strain analysis, and the truth belongs to a mesh (its sectors, layers and landmark), which is the
analysis's choice. ``tagseg strain`` compares its measurement with the truth of the very mesh it
tracked (:func:`compare_with_truth`) and writes ``strain_truth.csv`` (:func:`write_truth`).
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tagseg.errors import DataError
from tagseg.io.atomic import atomic_write_text
from tagseg.io.store import StoreReader
from tagseg.strain.aha import level_of
from tagseg.strain.harp import sample_bilinear
from tagseg.strain.mesh import MyocardialMesh, seed_mesh
from tagseg.strain.schema import SliceStrain
from tagseg.strain.tensors import COMPONENTS, StrainCurves, strain_curves

#: the store's extra dataset holding the true displacement (N, 2, H, W), pixels (row, col)
DISPLACEMENT_KEY = "displacement"
#: largest ED displacement (pixels) taken as zero: the first frame of a slice must be the reference (ED)
ED_TOLERANCE_PX = 1e-3
TRUTH_FILE = "strain_truth.csv"
TRUTH_FIELDS = [
    "subject",
    "slice",
    "level",
    "component",
    "region",
    "frame",
    "strain_true",
    "strain_measured",
    "error",
]


def true_positions(displacement_px: np.ndarray, points_rc: np.ndarray) -> np.ndarray:
    """(T, P, 2) true positions (pixels) of ED points under a (T, 2, H, W) Lagrangian displacement."""
    u = np.asarray(displacement_px, np.float64)
    pts = np.asarray(points_rc, np.float64)
    return pts[None] + np.stack([sample_bilinear(u[t], pts).T for t in range(u.shape[0])])


def true_strain(
    displacement_px: np.ndarray, mesh: MyocardialMesh, spacing_mm: tuple[float, float], level: str
) -> StrainCurves:
    """Global and per-segment Ecc / Err of the mesh under the true displacement."""
    positions = true_positions(displacement_px, mesh.points_rc) * np.asarray(spacing_mm, np.float64)
    return strain_curves(positions, mesh, level)


def check_reference(displacement_px: np.ndarray, where: str) -> None:
    """Refuse a slice's displacement whose first frame is not the reference (zero displacement, ED).

    Raises:
        DataError: naming ``where`` and the largest first-frame displacement.
    """
    first = float(np.abs(np.asarray(displacement_px[0])).max()) if len(displacement_px) else 0.0
    if first > ED_TOLERANCE_PX:
        raise DataError(
            f"{where}: the true displacement of the first frame is {first:.3g} px, not zero; expected the "
            "slice's first frame to be ED, the reference of the Lagrangian displacement"
        )


def store_displacement(path: str | os.PathLike, rows: Sequence[int] | np.ndarray) -> np.ndarray | None:
    """The true displacement (len(rows), 2, H, W) float64 of some rows of a store, or None when the
    store carries none.

    Raises:
        StoreError: the store is missing or unreadable.
        DataError: ``/displacement`` is not (N, 2, H, W) for images (N, H, W).
    """
    with StoreReader(path) as reader:
        return _displacement_rows(reader, rows)


def _displacement_rows(reader: StoreReader, rows: Sequence[int] | np.ndarray) -> np.ndarray | None:
    if DISPLACEMENT_KEY not in reader.extra_names():
        return None
    _, h, w = reader.shape
    shape, _ = reader.extra_spec()[DISPLACEMENT_KEY]
    if shape != (2, h, w):
        raise DataError(
            f"{reader.path}: /{DISPLACEMENT_KEY} rows of shape {shape}; expected (2, {h}, {w}): the true "
            "displacement (row, col) in pixels of every image"
        )
    return reader.rows(DISPLACEMENT_KEY, np.asarray(rows, np.int64)).astype(np.float64)


@dataclass
class TrueSlice:
    """The true strain of one slice of a store, on the mesh seeded in its ED mask."""

    subject: str
    slice: int
    level: str
    spacing_mm: tuple[float, float]
    frames: np.ndarray  # (T,) the store's frame numbers, ED first
    mesh: MyocardialMesh
    curves: StrainCurves


def store_true_strain(
    path: str | os.PathLike, level: str = "auto", mesh: dict[str, Any] | None = None
) -> list[TrueSlice]:
    """True Ecc / Err, global and per AHA segment, of every slice of a store with ``/displacement``.

    Each slice's rows are ordered by frame; the mesh is seeded in the first row's mask (ED), as
    ``tagseg strain`` seeds it from a store's masks, so the two are comparable point for point.

    Args:
        path: the store.
        level: ``auto`` (base to apex by slice index, in thirds) or ``basal`` / ``mid`` / ``apical``.
        mesh: keyword arguments of :func:`~tagseg.strain.mesh.seed_mesh`.

    Raises:
        DataError: the store carries no ``/displacement`` or a malformed one, a slice's first frame is
            not ED, or an ED myocardium is not a ring.
    """
    out: list[TrueSlice] = []
    with StoreReader(path) as reader:
        meta = reader.meta()
        if DISPLACEMENT_KEY not in reader.extra_names():
            raise DataError(f"{path}: no /{DISPLACEMENT_KEY}; the store carries no true motion (a phantom store does)")
        subjects = [str(s) for s in meta["subject"]]
        slices, frames = np.asarray(meta["slice"], int), np.asarray(meta["frame"], int)
        groups: dict[tuple[str, int], list[int]] = {}
        for row, key in enumerate(zip(subjects, slices)):
            groups.setdefault((key[0], int(key[1])), []).append(row)
        n_slices: dict[str, int] = {}
        for subject, sl in groups:
            n_slices[subject] = max(n_slices.get(subject, 0), sl + 1)
        for (subject, sl), rows in groups.items():
            order = np.asarray(sorted(rows, key=lambda r: frames[r]))
            where = f"{path} (subject {subject}, slice {sl})"
            disp = np.asarray(_displacement_rows(reader, order))
            check_reference(disp, where)
            m = seed_mesh(reader.rows("masks", order[:1])[0], where=where, **dict(mesh or {}))
            sp = np.asarray(meta["spacing_mm"], np.float64)[order[0]]
            spacing = (float(sp[0]), float(sp[1]))
            lvl = level_of(sl, n_slices[subject]) if level == "auto" else level
            curves = true_strain(disp, m, spacing, lvl)
            out.append(TrueSlice(subject, sl, lvl, spacing, frames[order], m, curves))
    return out


@dataclass
class SliceTruth:
    """A slice's measured strain next to the truth of the same mesh.

    Attributes:
        measured: the analysis (:class:`~tagseg.strain.schema.SliceStrain`).
        truth: the true strain of its mesh.
        es_frame: end-systole: the slice's frame marked ``ES``, else the frame of peak true global Ecc.
        rmse_mm: displacement RMSE (mm) of the tracked mesh points against their true positions, every frame.
    """

    measured: SliceStrain
    truth: StrainCurves
    es_frame: int
    rmse_mm: float

    def es_error(self, component: str) -> float:
        """Measured minus true global strain at end-systole (NaN when the component is not measured)."""
        measured, truth = getattr(self.measured, component), self.truth.component(component)
        if "global" not in measured or "global" not in truth:
            return float("nan")
        return float(measured["global"][self.es_frame] - truth["global"][self.es_frame])

    def line(self) -> str:
        """One summary line: ES global Ecc / Err errors and the displacement RMSE."""
        m = self.measured
        return (
            f"truth: {m.subject} slice {m.slice} ({m.level}): ES (frame {self.es_frame}) global Ecc error "
            f"{self.es_error('ecc'):+.3f}, Err error {self.es_error('err'):+.3f}, displacement RMSE {self.rmse_mm:.2f} mm"
        )


def compare_with_truth(
    measured: SliceStrain,
    mesh: MyocardialMesh,
    displacement_px: np.ndarray,
    es_frame: int | None = None,
    where: str = "slice",
) -> SliceTruth:
    """The truth of the mesh a slice was tracked with, under its true displacement (T, 2, H, W) pixels.

    Raises:
        DataError: the displacement's frames differ from the measurement's, or its first frame is not ED.
    """
    disp = np.asarray(displacement_px, np.float64)
    if disp.shape[0] != measured.n_frames:
        raise DataError(f"{where}: true displacement of {disp.shape[0]} frames for {measured.n_frames} tracked")
    check_reference(disp, where)
    sp = np.asarray(measured.spacing_mm, np.float64)
    true_mm = true_positions(disp, mesh.points_rc) * sp
    truth = strain_curves(true_mm, mesh, measured.level)
    tracked_mm = measured.points_ed_mm[None] + measured.displacement_mm
    rmse = float(np.sqrt(np.mean(np.sum((tracked_mm - true_mm) ** 2, axis=-1))))
    es = int(np.argmin(truth.ecc["global"])) if es_frame is None else int(es_frame)
    return SliceTruth(measured=measured, truth=truth, es_frame=es, rmse_mm=rmse)


def truth_rows(truths: list[SliceTruth]) -> list[list[Any]]:
    """Rows of ``strain_truth.csv``: every component, region and frame of every slice."""
    rows = []
    for t in truths:
        s = t.measured
        for comp in COMPONENTS:
            true_curves = t.truth.component(comp)
            for region, curve in getattr(s, comp).items():
                if region not in true_curves:
                    continue
                for frame, (measured, true) in enumerate(zip(curve, true_curves[region])):
                    rows.append(
                        [s.subject, s.slice, s.level, comp, region, frame]
                        + [f"{v:.6f}" for v in (true, measured, measured - true)]
                    )
    return rows


def write_truth(folder: str | os.PathLike, truths: list[SliceTruth]) -> Path:
    """Write ``strain_truth.csv`` into ``folder`` (atomically)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(TRUTH_FIELDS)
    writer.writerows(truth_rows(truths))
    return atomic_write_text(Path(folder) / TRUTH_FILE, buf.getvalue())


__all__ = [
    "DISPLACEMENT_KEY",
    "ED_TOLERANCE_PX",
    "TRUTH_FIELDS",
    "TRUTH_FILE",
    "SliceTruth",
    "TrueSlice",
    "check_reference",
    "compare_with_truth",
    "store_displacement",
    "store_true_strain",
    "true_positions",
    "true_strain",
    "truth_rows",
    "write_truth",
]
