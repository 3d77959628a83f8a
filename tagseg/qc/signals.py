"""Quality signals of a predicted myocardium, computed without ground truth.

Three kinds, per image (one frame of one slice):

* **shape** (:func:`shape_signals`): a left-ventricular myocardium in a short-axis slice is one
  ring: one connected component (8-connectivity) around one hole (4-connected background not
  touching the image border), Euler number 0, enclosing the cavity, with a wall of physiological
  thickness all the way round. The wall is probed along :data:`N_RAYS` rays from the centre, in
  half-pixel steps: a ray's thickness is its length inside the myocardium in mm (a pixel counts
  from half a pixel before its centre to its centre plus half, so a wall ``w`` pixels deep along
  an axis reads ``w`` pixels times the spacing). A ray that meets no
  myocardium is a gap. With an RV predicted: its distance to the myocardium and its share
  inside the LV cavity;
* **uncertainty** (:func:`entropy_over`, :func:`mean_pairwise_dice`): the softmax entropy over
  the predicted myocardium (normalised by ``log C``, so in [0, 1]) and the agreement between
  test-time flips or ensemble members (mean pairwise Dice of their myocardium);
* **consistency over the cardiac cycle** (:func:`temporal_signals`): the myocardial area and
  centre change smoothly over the frames of a slice, so each frame's deviation from the slice's
  median area (relative) and median centre (mm) is a signal.

Undefined values (no myocardium, no RV, one view) are NaN; :mod:`tagseg.qc.model` imputes them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import ndimage

from tagseg.metrics import dice

#: rays from the centre along which the wall is probed (5 degrees apart)
N_RAYS = 72
#: wall thickness (mm) counted as physiological: thinner walls are broken or eroded
#: segmentations, thicker ones filled cavities or blobs (end-diastolic LV wall 6-11 mm, thicker
#: at end-systole and in hypertrophy)
THICKNESS_RANGE_MM = (3.0, 25.0)
#: 8-connectivity for the myocardium; the background then needs 4-connectivity (a diagonal
#: gap does not open a ring)
EIGHT = np.ones((3, 3), bool)

#: the per-image signals, in table order
SHAPE_SIGNALS = (
    "n_components",
    "n_holes",
    "euler",
    "ring",
    "cavity_enclosed",
    "cavity_mm2",
    "thickness_mean_mm",
    "thickness_min_mm",
    "thickness_cv",
    "thickness_out_of_range",
    "gap_fraction",
    "area_mm2",
    "rv_gap_mm",
    "rv_in_cavity",
)
TEMPORAL_SIGNALS = ("area_dev", "centre_dev_mm")
UNCERTAINTY_SIGNALS = ("entropy_myo", "agreement_dice")
SIGNALS = UNCERTAINTY_SIGNALS + SHAPE_SIGNALS + TEMPORAL_SIGNALS


def topology(myo: np.ndarray) -> tuple[int, int, np.ndarray]:
    """Components and holes of a binary mask.

    Returns:
        ``(components, holes, hole_labels)``: 8-connected foreground components, 4-connected
        background components that do not touch the border, and an int map numbering the holes
        1..holes (0 elsewhere).
    """
    myo = np.asarray(myo, bool)
    _, n_comp = ndimage.label(myo, structure=EIGHT)
    bg, n_bg = ndimage.label(~myo)
    border = np.unique(np.concatenate([bg[0], bg[-1], bg[:, 0], bg[:, -1]]))
    holes = np.setdiff1d(np.arange(1, n_bg + 1), border)
    lut = np.zeros(n_bg + 1, np.int32)
    lut[holes] = np.arange(1, len(holes) + 1)
    return int(n_comp), len(holes), lut[bg]


def ray_thickness_mm(
    myo: np.ndarray, centre_rc: np.ndarray, spacing_mm: Sequence[float], n_rays: int = N_RAYS
) -> np.ndarray:
    """Length (mm) of myocardium along each of ``n_rays`` rays from ``centre_rc`` (0 degrees = image
    right, counter-clockwise as displayed); NaN where a ray meets no myocardium."""
    myo = np.asarray(myo, bool)
    spacing = np.asarray(spacing_mm, np.float64)
    h, w = myo.shape
    step = 0.5
    steps = np.arange(0.0, float(np.hypot(h, w)), step)
    angles = np.linspace(0.0, 2 * np.pi, n_rays, endpoint=False)
    rows = np.floor(centre_rc[0] - np.outer(np.sin(angles), steps) + 0.5).astype(int)
    cols = np.floor(centre_rc[1] + np.outer(np.cos(angles), steps) + 0.5).astype(int)
    inside = (rows >= 0) & (rows < h) & (cols >= 0) & (cols < w)
    hits = inside & myo[np.clip(rows, 0, h - 1), np.clip(cols, 0, w - 1)]
    step_mm = step * np.hypot(np.sin(angles) * spacing[0], np.cos(angles) * spacing[1])
    length = hits.sum(axis=1) * step_mm
    return np.where(length > 0, length, np.nan)


def shape_signals(
    myo: np.ndarray, spacing_mm: Sequence[float], rv: np.ndarray | None = None, n_rays: int = N_RAYS
) -> dict[str, float]:
    """The shape signals (:data:`SHAPE_SIGNALS`) of one predicted myocardium.

    Args:
        myo: (H, W) binary myocardium.
        spacing_mm: (row, col) pixel spacing.
        rv: (H, W) binary RV when the model predicts one (None: the RV signals are NaN).
        n_rays: rays probing the wall.

    Returns:
        name -> value: ``ring`` is 1 for exactly one component and one hole; ``cavity_enclosed``
        1 when the myocardium's centroid lies in a hole (the cavity), whose area is ``cavity_mm2``;
        thickness statistics over the rays that meet the wall; ``gap_fraction`` the share of rays
        meeting none; ``thickness_out_of_range`` the share of rays meeting the wall outside
        :data:`THICKNESS_RANGE_MM`.
    """
    full = np.asarray(myo, bool)
    spacing = np.asarray(spacing_mm, np.float64)
    px_mm2 = float(spacing.prod())
    # on the myocardium's bounding box plus one background pixel: the same components and holes
    # (everything outside the box is background joined to the border), a fraction of the pixels
    myo, origin = _crop(full)
    n_comp, n_holes, holes = topology(myo)
    out: dict[str, float] = {
        "n_components": float(n_comp),
        "n_holes": float(n_holes),
        "euler": float(n_comp - n_holes),
        "ring": float(n_comp == 1 and n_holes == 1),
        "area_mm2": float(myo.sum()) * px_mm2,
        "cavity_enclosed": 0.0,
        "cavity_mm2": 0.0,
        "thickness_mean_mm": np.nan,
        "thickness_min_mm": np.nan,
        "thickness_cv": np.nan,
        "thickness_out_of_range": np.nan,
        "gap_fraction": 1.0,
        "rv_gap_mm": np.nan,
        "rv_in_cavity": np.nan,
    }
    if not myo.any():
        return out
    centre = np.array(ndimage.center_of_mass(myo))
    r, c = np.clip(np.rint(centre).astype(int), 0, np.array(myo.shape) - 1)
    cavity = holes == holes[r, c] if holes[r, c] else np.zeros_like(myo)
    if cavity.any():
        out["cavity_enclosed"] = 1.0
        out["cavity_mm2"] = float(cavity.sum()) * px_mm2
    thickness = ray_thickness_mm(myo, centre, spacing, n_rays)
    hit = thickness[np.isfinite(thickness)]
    out["gap_fraction"] = 1.0 - hit.size / thickness.size
    if hit.size:
        lo, hi = THICKNESS_RANGE_MM
        out["thickness_mean_mm"] = float(hit.mean())
        out["thickness_min_mm"] = float(hit.min())
        out["thickness_cv"] = float(hit.std() / hit.mean()) if hit.mean() > 0 else 0.0
        out["thickness_out_of_range"] = float(((hit < lo) | (hit > hi)).mean())
    if rv is not None and np.asarray(rv, bool).any():
        rv = np.asarray(rv, bool)
        to_myo = ndimage.distance_transform_edt(~full, sampling=spacing)
        out["rv_gap_mm"] = float(to_myo[rv].min())
        in_cavity = np.zeros_like(full)
        in_cavity[origin[0] : origin[0] + cavity.shape[0] - 2, origin[1] : origin[1] + cavity.shape[1] - 2] = cavity[
            1:-1, 1:-1
        ]
        out["rv_in_cavity"] = float(in_cavity[rv].mean())
    return out


def _crop(mask: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
    """``mask``'s bounding box padded with one background pixel, and the box's (row, col) origin."""
    if not mask.any():
        return mask, (0, 0)
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    return np.pad(mask[r0:r1, c0:c1], 1), (int(r0), int(c0))


def entropy_over(probabilities: np.ndarray, region: np.ndarray) -> float:
    """Mean softmax entropy, normalised by ``log C`` (so in [0, 1]), over ``region`` of one image.

    Args:
        probabilities: (C, H, W) softmax.
        region: (H, W) binary mask, e.g. the predicted myocardium (empty: NaN).
    """
    region = np.asarray(region, bool)
    if not region.any():
        return float("nan")
    p = np.clip(np.asarray(probabilities, np.float64)[:, region], 1e-12, 1.0)
    h = -(p * np.log(p)).sum(axis=0) / np.log(p.shape[0])
    return float(h.mean())


def mean_pairwise_dice(masks: Sequence[np.ndarray]) -> float:
    """Mean Dice over every pair of binary masks (flips or ensemble members); NaN for fewer than two."""
    if len(masks) < 2:
        return float("nan")
    values = [dice(masks[i], masks[j]) for i in range(len(masks)) for j in range(i + 1, len(masks))]
    return float(np.mean(values))


def temporal_signals(
    area_mm2: Sequence[float], centre_rc: np.ndarray, groups: Sequence[Any], spacing_mm: np.ndarray
) -> dict[str, np.ndarray]:
    """Each frame's deviation from its slice's median area and centre.

    Args:
        area_mm2: (T,) myocardial area per image.
        centre_rc: (T, 2) myocardial centroid per image in pixels (NaN when empty).
        groups: (T,) the slice each image belongs to (frames of one slice share a value).
        spacing_mm: (T, 2) pixel spacing per image.

    Returns:
        ``area_dev``: ``|area - median| / median`` (0 when the slice's median is 0);
        ``centre_dev_mm``: distance in mm from the slice's median centre (NaN when empty).
    """
    area = np.asarray(area_mm2, np.float64)
    centre = np.asarray(centre_rc, np.float64).reshape(len(area), 2)
    spacing = np.asarray(spacing_mm, np.float64).reshape(len(area), 2)
    keys = np.asarray([str(g) for g in groups])
    area_dev = np.zeros(len(area))
    centre_dev = np.full(len(area), np.nan)
    for key in np.unique(keys):
        idx = np.flatnonzero(keys == key)
        med = float(np.median(area[idx]))
        area_dev[idx] = np.abs(area[idx] - med) / med if med > 0 else 0.0
        finite = idx[np.isfinite(centre[idx]).all(axis=1)]
        if finite.size:
            mid = np.median(centre[finite], axis=0)
            centre_dev[finite] = np.hypot(*((centre[finite] - mid) * spacing[finite]).T)
    return {"area_dev": area_dev, "centre_dev_mm": centre_dev}


def centroid(myo: np.ndarray) -> np.ndarray:
    """(row, col) centroid of a binary mask; NaN when empty."""
    rows, cols = np.nonzero(np.asarray(myo, bool))
    return np.array([rows.mean(), cols.mean()]) if rows.size else np.full(2, np.nan)


def image_signals(
    labels: np.ndarray,
    spacing_mm: np.ndarray,
    slice_keys: Sequence[Any],
    myo_label: int,
    rv_label: int | None = None,
    entropy: Sequence[float] | None = None,
    agreement: Sequence[float] | None = None,
) -> list[dict[str, float]]:
    """Every signal (:data:`SIGNALS`) of each image of a scan.

    Args:
        labels: (T, H, W) label maps.
        spacing_mm: (T, 2) pixel spacing.
        slice_keys: (T,) the slice of each image (temporal signals compare the frames of a slice).
        myo_label: the myocardium's label value.
        rv_label: the RV's label value, when predicted.
        entropy: (T,) softmax entropy over the myocardium (NaN when not computed).
        agreement: (T,) mean pairwise Dice of the views (NaN with one view).
    """
    n = len(labels)
    rows = []
    centres = np.full((n, 2), np.nan)
    for i in range(n):
        myo = labels[i] == myo_label
        rv = labels[i] == rv_label if rv_label is not None else None
        rows.append(shape_signals(myo, spacing_mm[i], rv=rv if rv is not None and rv.any() else None))
        centres[i] = centroid(myo)
    temporal = temporal_signals([r["area_mm2"] for r in rows], centres, slice_keys, spacing_mm)
    for i, row in enumerate(rows):
        row["entropy_myo"] = float(entropy[i]) if entropy is not None else float("nan")
        row["agreement_dice"] = float(agreement[i]) if agreement is not None else float("nan")
        for key, values in temporal.items():
            row[key] = float(values[i])
    return [{k: row[k] for k in SIGNALS} for row in rows]


__all__ = [
    "N_RAYS",
    "SHAPE_SIGNALS",
    "SIGNALS",
    "TEMPORAL_SIGNALS",
    "THICKNESS_RANGE_MM",
    "UNCERTAINTY_SIGNALS",
    "centroid",
    "entropy_over",
    "image_signals",
    "mean_pairwise_dice",
    "ray_thickness_mm",
    "shape_signals",
    "temporal_signals",
    "topology",
]
