"""Strain of one slice: seed the mesh in the ED myocardium, track it, measure Ecc and Err.

The one function every caller uses (the ``strain`` stage, the validation, the benchmark), so the
checks of the input (frame count and sizes, a ring-shaped myocardium, tags in the spectrum) are
made in one place, each a :class:`~tagseg.errors.DataError` naming the input.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from tagseg.errors import ConfigError, DataError
from tagseg.strain.aha import aha_segments, check_level
from tagseg.strain.harp import MIN_FRAMES, find_tag_peaks
from tagseg.strain.mesh import MyocardialMesh, seed_mesh
from tagseg.strain.schema import SliceStrain
from tagseg.strain.tensors import strain_curves
from tagseg.strain.thickening import radial_strain_from_masks
from tagseg.strain.tracking import Tracker

#: where Err comes from: ``auto`` (masks when every frame's myocardium is given, else tags), ``tags``, ``masks``
RADIAL_SOURCES = ("auto", "tags", "masks")


def stack_frames(frames: Sequence[np.ndarray] | np.ndarray, where: str = "frames") -> np.ndarray:
    """(T, H, W) float64 from a sequence of 2D frames, checking their count and sizes.

    Raises:
        DataError: fewer than :data:`~tagseg.strain.harp.MIN_FRAMES` frames, or frames of different sizes.
    """
    shapes = [np.shape(f) for f in frames]
    if len(shapes) < MIN_FRAMES:
        raise DataError(f"{where}: {len(shapes)} frame(s); expected a cine series of >= {MIN_FRAMES} frames, ED first")
    if any(len(s) != 2 for s in shapes) or len(set(shapes)) > 1:
        sizes = sorted({"x".join(map(str, s)) for s in shapes})
        raise DataError(f"{where}: frames of different sizes {sizes}; expected every frame of a slice the same 2D size")
    return np.stack([np.asarray(f, np.float64) for f in frames])


def point_segments(mesh: MyocardialMesh, level: str) -> np.ndarray:
    """AHA segment of every mesh point (P,), from its ray's offset from the insertion."""
    return np.tile(aha_segments(mesh.sector_offset_deg, level), mesh.n_layers)


def analyse_slice(
    frames: Sequence[np.ndarray] | np.ndarray,
    ed_labels: np.ndarray,
    spacing_mm: tuple[float, float],
    tracker: Tracker,
    level: str = "mid",
    subject: str = "",
    slice_index: int = 0,
    tracker_name: str = "",
    mesh: dict[str, Any] | None = None,
    where: str = "frames",
    frame_labels: np.ndarray | None = None,
    radial: str = "auto",
) -> tuple[SliceStrain, MyocardialMesh]:
    """Track the myocardial mesh of one slice and measure its strain.

    Args:
        frames: (T, H, W) tagged frames, frame 0 = ED.
        ed_labels: (H, W) ED label map (1 RV, 2 MYO, 3 LV; a binary map is the myocardium).
        spacing_mm: (row, col) pixel spacing.
        tracker: any :class:`~tagseg.strain.tracking.Tracker`.
        level: ``basal``, ``mid`` or ``apical`` (the AHA segments).
        subject, slice_index, tracker_name: recorded in the result.
        mesh: keyword arguments of :func:`~tagseg.strain.mesh.seed_mesh` (``n_sectors``, ``layer_fractions``).
        where: the input named in error messages.
        frame_labels: (T, H, W) label maps of every frame (frame 0 = ED), for Err from wall thickening.
        radial: where Err comes from (:data:`RADIAL_SOURCES`; :mod:`tagseg.strain.thickening` says why).

    Returns:
        The slice's :class:`~tagseg.strain.schema.SliceStrain` and its mesh.

    Raises:
        DataError: too few frames, frames of different sizes, an ED mask that is not a ring or of
            another size, no tags in the spectrum; frame labels of another shape.
        ConfigError: ``radial`` unknown, or ``masks`` without ``frame_labels``.
    """
    if radial not in RADIAL_SOURCES:
        raise ConfigError(f"radial: expected one of {list(RADIAL_SOURCES)}, got {radial!r}")
    if radial == "masks" and frame_labels is None:
        raise ConfigError("radial=masks needs the myocardium of every frame (a model, or a store with masks)")
    stack = stack_frames(frames, where)
    labels = np.asarray(ed_labels)
    if labels.shape != stack.shape[1:]:
        raise DataError(f"{where}: ED mask of {labels.shape} for frames of {stack.shape[1:]}; expected the same size")
    level = check_level(level)
    # every tracker needs tags: a cine series is refused here, naming the input, whatever tracks it
    find_tag_peaks(stack[0], min_peak_ratio=float(getattr(tracker, "min_peak_ratio", 12.0)), where=where)
    m = seed_mesh(labels, where=where, **dict(mesh or {}))
    positions = np.asarray(tracker.track(stack, m.points_rc, tuple(spacing_mm)), np.float64)
    sp = np.asarray(spacing_mm, np.float64)
    positions_mm = positions * sp
    curves = strain_curves(positions_mm, m, level)
    source = "tags"
    if frame_labels is not None and radial != "tags":
        all_labels = np.asarray(frame_labels)
        if all_labels.shape != stack.shape:
            raise DataError(
                f"{where}: frame masks of {all_labels.shape} for frames of {stack.shape}; expected one mask per frame"
            )
        curves.err = radial_strain_from_masks(all_labels, positions, m, tuple(spacing_mm), level)
        source = "masks"
    result = SliceStrain(
        subject=str(subject),
        slice=int(slice_index),
        level=level,
        spacing_mm=(float(sp[0]), float(sp[1])),
        tracker=tracker_name or type(tracker).__name__,
        landmark=m.landmark,
        start_angle_deg=m.start_angle_deg,
        sense=m.sense,
        n_sectors=m.n_sectors,
        layer_fractions=[float(v) for v in m.layer_fractions],
        segments=list(curves.segments),
        point_segments=point_segments(m, level),
        points_ed_mm=positions_mm[0],
        displacement_mm=positions_mm - positions_mm[:1],
        ecc=curves.ecc,
        err=curves.err,
        radial=source,
    )
    return result, m


__all__ = ["RADIAL_SOURCES", "analyse_slice", "point_segments", "stack_frames"]
