"""Radial strain from wall thickening: the myocardium of every frame measured along the tracked rays.

Why not from the tags: the band-pass that isolates one harmonic smooths the phase over about one
tag period (7-8 mm), as wide as the wall, so the inner and outer layers of a tracked mesh move
with a blur of the wall and its surroundings and HARP reads about 40 % of the true thickening
(docs/experiments.md). The myocardium's edges in each frame (a model's masks, or the given ones)
carry the wall thickness directly. So, per frame and sector:

* the centre is the centroid of the cavity the frame's myocardium encloses (the mean of the
  tracked points when it encloses none);
* the ray runs from that centre through the sector's tracked points (their mean over layers), so
  a sector follows its tissue as the heart rotates;
* the wall is the run of myocardium along the ray that holds the tracked points (sub-pixel edges
  of the mask smoothed by a Gaussian of 0.7 pixel, cut at 0.5); its length is the thickness (mm).

A region's radial strain is its summed thickness over the ED one, minus one (the same region rule
as :mod:`tagseg.strain.tensors`); a sector whose wall is not found in some frame is left out of
every frame. With true masks it matches the true strain of the tracked layers to about 0.01.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from tagseg.strain.aha import LEVEL_SEGMENTS
from tagseg.strain.mesh import MyocardialMesh
from tagseg.strain.tensors import element_segments, region_strain

#: the Gaussian (pixels) that gives the binary myocardium sub-pixel edges
EDGE_SIGMA_PX = 0.7
#: ray sampling step as a fraction of the smaller pixel side
STEP_FRACTION = 0.2


def _myocardium(labels: np.ndarray, myo_label: int) -> np.ndarray:
    lab = np.asarray(labels)
    return lab.astype(bool) if lab.dtype == bool else lab == myo_label


def _centre_rc(myo: np.ndarray, points_rc: np.ndarray) -> np.ndarray:
    cavity = ndimage.binary_fill_holes(myo) & ~myo
    if cavity.any():
        return np.argwhere(cavity).mean(axis=0)
    return points_rc.mean(axis=0)


def _walls_along(
    field: np.ndarray, centre_rc: np.ndarray, through_rc: np.ndarray, spacing: np.ndarray, reach_mm: float
) -> np.ndarray:
    """(S,) length (mm) of the myocardial run on each ray from ``centre_rc`` through ``through_rc`` (S, 2).

    NaN where the point is not in the myocardium or its run reaches the centre or the ray's end.
    """
    direction_mm = (through_rc - centre_rc[None]) * spacing[None]
    target_mm = np.hypot(direction_mm[:, 0], direction_mm[:, 1])
    unit_px = direction_mm / np.maximum(target_mm, 1e-9)[:, None] / spacing[None]
    step = STEP_FRACTION * float(spacing.min())
    r = np.arange(0.0, reach_mm, step)
    coords = centre_rc[:, None, None] + unit_px.T[:, :, None] * r[None, None, :]  # (2, S, R)
    values = ndimage.map_coordinates(field, coords.reshape(2, -1), order=1, mode="constant", cval=0.0)
    values = values.reshape(len(through_rc), len(r)) - 0.5
    out = np.full(len(through_rc), np.nan)
    for s, row in enumerate(values):
        at = int(np.clip(round(target_mm[s] / step), 0, len(r) - 1))
        outside = np.flatnonzero(row <= 0)
        if row[at] <= 0 or target_mm[s] < 1e-6:
            continue
        before, after = outside[outside < at], outside[outside > at]
        if not len(before) or not len(after) or before[-1] == 0:
            continue  # the run touches the centre or the end of the ray: not a wall
        lo, hi = before[-1], after[0]  # the outside samples just beyond each edge
        inner = r[lo] + step * row[lo] / (row[lo] - row[lo + 1])
        outer = r[hi - 1] + step * row[hi - 1] / (row[hi - 1] - row[hi])
        out[s] = outer - inner
    return out


def wall_thickness(
    labels: np.ndarray,
    positions_rc: np.ndarray,
    mesh: MyocardialMesh,
    spacing_mm: tuple[float, float],
    myo_label: int = 2,
) -> np.ndarray:
    """(T, S) wall thickness (mm) of every sector in every frame (NaN where no wall holds its points).

    Args:
        labels: (T, H, W) label maps of the slice's frames (or binary myocardium maps), frame 0 = ED.
        positions_rc: (T, L * S, 2) tracked mesh positions (pixels).
        mesh: the mesh they belong to.
        spacing_mm: (row, col) pixel spacing.
        myo_label: the myocardium's label.
    """
    spacing = np.asarray(spacing_mm, np.float64)
    grid = mesh.grid(np.asarray(positions_rc, np.float64))  # (T, L, S, 2)
    n_frames = grid.shape[0]
    out = np.full((n_frames, mesh.n_sectors), np.nan)
    reach = float(np.hypot(*(np.asarray(np.shape(labels)[1:]) * spacing)))  # the image diagonal, mm
    for t in range(n_frames):
        myo = _myocardium(labels[t], myo_label)
        field = ndimage.gaussian_filter(myo.astype(np.float64), EDGE_SIGMA_PX)
        centre = _centre_rc(myo, grid[t].reshape(-1, 2))
        out[t] = _walls_along(field, centre, grid[t].mean(axis=0), spacing, reach)
    return out


def radial_strain_from_masks(
    labels: np.ndarray,
    positions_rc: np.ndarray,
    mesh: MyocardialMesh,
    spacing_mm: tuple[float, float],
    level: str,
    myo_label: int = 2,
) -> dict[str, np.ndarray]:
    """Global and per-segment Err curves (T,) from the wall thickness of every frame's myocardium.

    A segment none of whose sectors has a wall in every frame gets NaN.
    """
    thickness = wall_thickness(labels, positions_rc, mesh, spacing_mm, myo_label)
    seen = np.all(np.isfinite(thickness), axis=0)
    lengths = np.where(seen[None], thickness, 0.0)[:, None, :]  # (T, 1, S): one radial element per sector
    _, seg_r = element_segments(mesh, level)
    curves = {"global": region_strain(lengths, seen)}
    for seg in LEVEL_SEGMENTS[level]:
        curves[str(seg)] = region_strain(lengths, (seg_r == seg) & seen)
    return curves


__all__ = ["EDGE_SIGMA_PX", "radial_strain_from_masks", "wall_thickness"]
