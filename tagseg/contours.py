"""Myocardial reference points: the inner (endocardial) and outer (epicardial) contours of a mask.

These are the points an expert places by hand on a tagged frame (the real tagged set stores them
as ``pts_interp_inner`` / ``pts_interp_outer``), in the same convention: (x, y) = (column, row)
pixel coordinates, pixel centres at integers.

* outer contour: the boundary of the myocardium with its holes filled (myocardium + cavity);
* inner contour: the boundary of the cavity (the holes of the myocardium); absent when the
  predicted myocardium is not a closed ring.

Each contour is the longest iso-line at level 0.5 (``skimage.measure.find_contours``) of its
region, so small spurious blobs are ignored; it runs clockwise as displayed (``imshow``: row 0 at
the top) and is resampled to ``n_points`` points equally spaced along its length.

Correspondence over time. Both contours have the same number of points and start on one ray from
the LV centre (the centroid of the cavity; of the filled myocardium when there is no cavity), so
that point i keeps to the same tissue from frame to frame as far as a segmentation allows:

* landmark ``"rv_insertion"`` (when an RV mask is given and touches the myocardium): the ray
  through the anterior RV insertion point, i.e. the end of the RV-myocardium contact arc (seen
  from the LV centre) nearer the top of the image (anterior in the standard short-axis view);
* landmark ``"angle"`` otherwise: the ray at ``start_angle_deg`` measured on screen from the
  +x axis (image right), counter-clockwise, so 90 = straight up (towards row 0).

The start point is where the ray crosses the contour (the crossing nearest the centre for the
inner contour, the farthest for the outer one).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import binary_dilation, binary_fill_holes
from skimage.measure import find_contours


@dataclass
class MyocardialContours:
    """Inner and outer contour points of one frame, (N, 2) x, y each (empty (0, 2) if absent).

    Attributes:
        inner: endocardial points, x = column, y = row.
        outer: epicardial points.
        centre: (x, y) of the LV centre the start ray leaves from (NaN when there is no myocardium).
        start_angle_deg: the start ray's angle on screen (0 = +x, 90 = up).
        landmark: ``"rv_insertion"`` or ``"angle"`` (see the module docstring).
    """

    inner: np.ndarray
    outer: np.ndarray
    centre: tuple[float, float] = (float("nan"), float("nan"))
    start_angle_deg: float = 90.0
    landmark: str = "angle"

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


def _clockwise(rc: np.ndarray) -> np.ndarray:
    """Closed polygon (rows, cols) oriented clockwise as displayed."""
    rows, cols = rc[:, 0], rc[:, 1]
    # shoelace in display coordinates (x = col, y = row pointing down): positive = clockwise on screen
    area = 0.5 * np.sum(cols * np.roll(rows, -1) - np.roll(cols, -1) * rows)
    return rc[::-1] if area < 0 else rc


def _start_at_ray(rc: np.ndarray, centre_rc: np.ndarray, angle: float, farthest: bool) -> np.ndarray:
    """The polygon re-started at its crossing with the ray from ``centre_rc`` at screen ``angle`` (radians)."""
    d = np.array([-np.sin(angle), np.cos(angle)])  # (row, col) step: up on screen = decreasing row
    a, b = rc, np.roll(rc, -1, axis=0)
    e = b - a
    w = a - centre_rc
    denom = d[0] * e[:, 1] - d[1] * e[:, 0]
    with np.errstate(divide="ignore", invalid="ignore"):
        s = (w[:, 0] * e[:, 1] - w[:, 1] * e[:, 0]) / denom  # distance along the ray
        u = (w[:, 0] * d[1] - w[:, 1] * d[0]) / denom  # position on the edge
    hit = np.flatnonzero(np.isfinite(s) & (s >= 0) & (u >= 0) & (u < 1))
    if hit.size == 0:  # centre outside the polygon: the vertex seen at the nearest angle
        ang = np.arctan2(-(rc[:, 0] - centre_rc[0]), rc[:, 1] - centre_rc[1])
        return np.roll(rc, -int(np.argmin(np.abs(np.angle(np.exp(1j * (ang - angle)))))), axis=0)
    i = int(hit[np.argmax(s[hit])] if farthest else hit[np.argmin(s[hit])])
    point = a[i] + u[i] * e[i]
    return np.vstack([point, rc[i + 1 :], rc[: i + 1]])


def _resample_closed(rc: np.ndarray, n_points: int) -> np.ndarray:
    """``n_points`` points equally spaced along the closed polygon ``rc`` (first point kept)."""
    ring = np.vstack([rc, rc[:1]])
    seg = np.linalg.norm(np.diff(ring, axis=0), axis=1)
    arc = np.concatenate([[0.0], np.cumsum(seg)])
    if arc[-1] == 0:
        return np.repeat(rc[:1], n_points, axis=0)
    at = np.linspace(0.0, arc[-1], n_points, endpoint=False)
    return np.stack([np.interp(at, arc, ring[:, 0]), np.interp(at, arc, ring[:, 1])], axis=1)


def _points_xy(
    region: np.ndarray, n_points: int | None, centre_rc: np.ndarray, angle: float, farthest: bool
) -> np.ndarray:
    rc = _longest_contour_rc(region)
    if len(rc) < 3:
        return np.zeros((0, 2))
    rc = _start_at_ray(_clockwise(rc), centre_rc, angle, farthest)
    if n_points:
        rc = _resample_closed(rc, n_points)
    return rc[:, ::-1].copy()


def _screen_angle(rc: np.ndarray, centre_rc: np.ndarray) -> np.ndarray:
    return np.arctan2(-(rc[..., 0] - centre_rc[0]), rc[..., 1] - centre_rc[1])


def rv_insertion_angle(myocardium: np.ndarray, rv: np.ndarray, centre_rc: np.ndarray) -> float | None:
    """Screen angle (radians) of the anterior RV insertion seen from ``centre_rc``; None if RV and myocardium do not touch.

    The contact pixels (myocardium next to the RV) span an arc around the LV centre; its two ends
    are the insertion points, and the one nearer the top of the image is taken as anterior.
    """
    contact = np.argwhere(myocardium & binary_dilation(rv, iterations=2))
    if len(contact) == 0:
        return None
    rv_rc = np.argwhere(rv).mean(axis=0)
    ref = float(_screen_angle(rv_rc, centre_rc))
    rel = np.angle(np.exp(1j * (_screen_angle(contact.astype(float), centre_rc) - ref)))
    ends = contact[[int(np.argmin(rel)), int(np.argmax(rel))]]
    anterior = ends[int(np.argmin(ends[:, 0]))].astype(float)
    return float(_screen_angle(anterior, centre_rc))


def myocardial_contours(
    myocardium: np.ndarray, n_points: int | None = 48, rv: np.ndarray | None = None, start_angle_deg: float = 90.0
) -> MyocardialContours:
    """Inner and outer contour points of a 2D myocardium mask, both starting at one landmark.

    Args:
        myocardium: (H, W) binary mask of the myocardium.
        n_points: points per contour, equally spaced along it; None keeps every iso-line vertex
            (then the two contours may differ in length).
        rv: (H, W) binary RV mask, when the segmentation has one: the start is the anterior RV
            insertion (see the module docstring).
        start_angle_deg: the start ray without an RV (0 = image right, 90 = up, counter-clockwise).

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
    if not filled.any():
        empty = np.zeros((0, 2))
        return MyocardialContours(inner=empty, outer=empty.copy(), start_angle_deg=float(start_angle_deg))
    centre_rc = np.argwhere(cavity if cavity.any() else filled).mean(axis=0)
    angle, landmark = np.radians(start_angle_deg), "angle"
    if rv is not None and np.asarray(rv).any():
        found = rv_insertion_angle(myo, np.asarray(rv).astype(bool), centre_rc)
        if found is not None:
            angle, landmark = found, "rv_insertion"
    return MyocardialContours(
        inner=_points_xy(cavity, n_points, centre_rc, angle, farthest=False),
        outer=_points_xy(filled, n_points, centre_rc, angle, farthest=True),
        centre=(float(centre_rc[1]), float(centre_rc[0])),
        start_angle_deg=float(np.degrees(angle)),
        landmark=landmark,
    )


__all__ = ["MyocardialContours", "myocardial_contours", "rv_insertion_angle"]
