"""Myocardial reference points: the inner (endocardial) and outer (epicardial) contours of a mask.

These are the points an expert places by hand on a tagged frame (the real tagged set stores them
as ``pts_interp_inner`` / ``pts_interp_outer``), in the same convention: (x, y) = (column, row)
pixel coordinates, pixel centres at integers.

* outer contour: the boundary of the myocardium with its holes filled (myocardium + cavity);
* inner contour: the boundary of the cavity (the holes of the myocardium); absent when the
  predicted myocardium is not a closed ring.

Each contour is the longest iso-line at level 0.5 (``skimage.measure.find_contours``) of its
region, so small spurious blobs are ignored; it is resampled to ``n_points`` points equally spaced
along its length, starting at the point nearest the top (smallest row) and running clockwise as
displayed (``imshow``: row 0 at the top).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import binary_fill_holes
from skimage.measure import find_contours


@dataclass
class MyocardialContours:
    """Inner and outer contour points of one frame, (N, 2) x, y each (empty (0, 2) if absent)."""

    inner: np.ndarray
    outer: np.ndarray

    @property
    def closed_ring(self) -> bool:
        """Whether both contours were found (the myocardium encloses a cavity)."""
        return len(self.inner) > 0 and len(self.outer) > 0


def _longest_contour_rc(region: np.ndarray) -> np.ndarray:
    """(N, 2) row, col vertices of the longest 0.5 iso-line of ``region`` (closed; empty if none)."""
    if not region.any():
        return np.zeros((0, 2))
    padded = np.pad(region.astype(np.float32), 1)  # closes contours that touch the image edge
    lines = find_contours(padded, 0.5)
    if not lines:
        return np.zeros((0, 2))
    best = max(lines, key=lambda c: float(np.linalg.norm(np.diff(c, axis=0), axis=1).sum()))
    return best[:-1] - 1.0 if np.allclose(best[0], best[-1]) else best - 1.0


def _clockwise_from_top(rc: np.ndarray) -> np.ndarray:
    """Closed polygon (rows, cols) re-ordered clockwise as displayed, starting at its top point."""
    rows, cols = rc[:, 0], rc[:, 1]
    # shoelace in display coordinates (x = col, y = row pointing down): positive = clockwise on screen
    area = 0.5 * np.sum(cols * np.roll(rows, -1) - np.roll(cols, -1) * rows)
    if area < 0:
        rc = rc[::-1]
    start = int(np.lexsort((rc[:, 1], rc[:, 0]))[0])
    return np.roll(rc, -start, axis=0)


def _resample_closed(rc: np.ndarray, n_points: int) -> np.ndarray:
    """``n_points`` points equally spaced along the closed polygon ``rc`` (first point kept)."""
    ring = np.vstack([rc, rc[:1]])
    seg = np.linalg.norm(np.diff(ring, axis=0), axis=1)
    arc = np.concatenate([[0.0], np.cumsum(seg)])
    if arc[-1] == 0:
        return np.repeat(rc[:1], n_points, axis=0)
    at = np.linspace(0.0, arc[-1], n_points, endpoint=False)
    return np.stack([np.interp(at, arc, ring[:, 0]), np.interp(at, arc, ring[:, 1])], axis=1)


def _points_xy(region: np.ndarray, n_points: int | None) -> np.ndarray:
    rc = _longest_contour_rc(region)
    if len(rc) < 3:
        return np.zeros((0, 2))
    rc = _clockwise_from_top(rc)
    if n_points:
        rc = _resample_closed(rc, n_points)
    return rc[:, ::-1].copy()


def myocardial_contours(myocardium: np.ndarray, n_points: int | None = 48) -> MyocardialContours:
    """Inner and outer contour points of a 2D myocardium mask.

    Args:
        myocardium: (H, W) binary mask of the myocardium.
        n_points: points per contour, equally spaced along it; None keeps every iso-line vertex.

    Returns:
        The contours as (N, 2) x, y arrays (pixel units; empty (0, 2) when absent).

    Raises:
        ValueError: ``myocardium`` is not 2D, or ``n_points`` < 3.
    """
    myo = np.asarray(myocardium).astype(bool)
    if myo.ndim != 2:
        raise ValueError(f"myocardial_contours: expected a 2D mask, got shape {myo.shape}")
    if n_points is not None and n_points < 3:
        raise ValueError(f"myocardial_contours: n_points must be >= 3 (a polygon), got {n_points}")
    filled = binary_fill_holes(myo)
    cavity = filled & ~myo
    return MyocardialContours(inner=_points_xy(cavity, n_points), outer=_points_xy(filled, n_points))


__all__ = ["MyocardialContours", "myocardial_contours"]
