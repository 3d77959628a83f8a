"""The mesh of myocardial points a tracker follows: radial layers x circumferential sectors.

Seeded in the end-diastolic myocardium of one slice. The inner and outer contours and the
anterior RV insertion come from :func:`tagseg.contours.myocardial_contours`; from the LV centre,
``n_sectors`` rays leave at equal angles, the first through the insertion, turning towards the
septum (the side of the RV; counter-clockwise on screen without an RV). On each ray the points
sit at ``layer_fractions`` of the way from the inner to the outer contour (0 endocardium,
1 epicardium). Point ``i`` is layer ``i // n_sectors``, sector ``i % n_sectors``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tagseg.contours import myocardial_contours
from tagseg.errors import DataError


@dataclass(frozen=True)
class MyocardialMesh:
    """Points in the ED myocardium of one slice.

    Attributes:
        points_rc: (L * S, 2) ED positions (row, col) in pixels, layer-major.
        layer_fractions: (L,) position of each layer between the inner (0) and outer (1) contour.
        n_sectors: rays (S).
        centre_rc: LV centre the rays leave from.
        start_angle_deg: screen angle of the first ray (the anterior RV insertion, or the default).
        sense: +1 when the sectors turn counter-clockwise on screen, -1 clockwise.
        landmark: ``"rv_insertion"`` or ``"angle"`` (no RV found).
    """

    points_rc: np.ndarray
    layer_fractions: np.ndarray
    n_sectors: int
    centre_rc: tuple[float, float]
    start_angle_deg: float
    sense: int
    landmark: str

    @property
    def n_layers(self) -> int:
        return len(self.layer_fractions)

    @property
    def sector_offset_deg(self) -> np.ndarray:
        """(S,) offset of each ray from the first, degrees in the sectors' sense."""
        return np.arange(self.n_sectors) * 360.0 / self.n_sectors

    def grid(self, positions: np.ndarray) -> np.ndarray:
        """(..., L * S, 2) point positions -> (..., L, S, 2)."""
        return positions.reshape(*positions.shape[:-2], self.n_layers, self.n_sectors, 2)


def _screen_angle(rc: np.ndarray, centre_rc: np.ndarray) -> np.ndarray:
    return np.arctan2(-(rc[..., 0] - centre_rc[0]), rc[..., 1] - centre_rc[1])


def _radius_at(contour_xy: np.ndarray, centre_rc: np.ndarray, angles: np.ndarray) -> np.ndarray:
    """Radius of a star-shaped closed contour (x, y points) about ``centre_rc`` at screen ``angles``."""
    rc = contour_xy[:, ::-1]
    ang = _screen_angle(rc, centre_rc)
    rad = np.hypot(rc[:, 0] - centre_rc[0], rc[:, 1] - centre_rc[1])
    order = np.argsort(ang)
    ang, rad = ang[order], rad[order]
    ang = np.concatenate([ang[-1:] - 2 * np.pi, ang, ang[:1] + 2 * np.pi])
    rad = np.concatenate([rad[-1:], rad, rad[:1]])
    return np.interp(np.angle(np.exp(1j * angles)), ang, rad)


def seed_mesh(
    labels: np.ndarray,
    myo_label: int = 2,
    rv_label: int | None = 1,
    n_sectors: int = 48,
    layer_fractions: Sequence[float] = (0.25, 0.5, 0.75),
    start_angle_deg: float = 90.0,
    where: str = "mask",
) -> MyocardialMesh:
    """Seed the mesh in one ED label map.

    Args:
        labels: (H, W) label map (tagseg convention: 1 RV, 2 MYO, 3 LV) or a binary myocardium.
        myo_label: the myocardium's label.
        rv_label: the RV's label (None: no RV; the first ray is at ``start_angle_deg``).
        n_sectors: rays; a multiple of 12 keeps whole sectors in every AHA segment.
        layer_fractions: layers, each in (0, 1).
        start_angle_deg: first ray without an RV (0 = image right, 90 = up).
        where: the input named in error messages.

    Raises:
        DataError: the myocardium is not a ring (no cavity, or open), or too thin for the layers.
        ValueError: bad ``n_sectors`` / ``layer_fractions``.
    """
    lab = np.asarray(labels)
    if n_sectors < 8:
        raise ValueError(f"n_sectors must be >= 8, got {n_sectors}")
    fractions = np.asarray(layer_fractions, np.float64)
    if fractions.size < 1 or np.any((fractions <= 0) | (fractions >= 1)) or np.any(np.diff(fractions) <= 0):
        raise ValueError(f"layer_fractions must increase within (0, 1), got {list(layer_fractions)}")
    myo = lab == myo_label if lab.dtype != bool else lab
    rv = (lab == rv_label) if rv_label is not None and lab.dtype != bool else None
    contours = myocardial_contours(myo, n_points=None, rv=rv, start_angle_deg=start_angle_deg)
    if not contours.closed_ring:
        raise DataError(
            f"{where}: the ED myocardium is not a ring ({int(myo.sum())} pixels, no enclosed cavity); "
            "expected a closed myocardial ring around the LV cavity"
        )
    centre = np.array([contours.centre[1], contours.centre[0]])
    start = np.radians(contours.start_angle_deg)
    sense = 1
    if rv is not None and rv.any() and contours.landmark == "rv_insertion":
        rv_angle = float(_screen_angle(np.argwhere(rv).mean(axis=0), centre))
        sense = 1 if np.angle(np.exp(1j * (rv_angle - start))) >= 0 else -1
    angles = start + sense * np.radians(np.arange(n_sectors) * 360.0 / n_sectors)
    r_in = _radius_at(contours.inner, centre, angles)
    r_out = _radius_at(contours.outer, centre, angles)
    thickness = r_out - r_in
    if np.any(thickness < 1.0):
        raise DataError(
            f"{where}: the ED myocardium is not a ring all round (wall under 1 pixel on "
            f"{int(np.sum(thickness < 1.0))} of {n_sectors} rays); expected a closed myocardial ring"
        )
    radius = r_in[None] + fractions[:, None] * thickness[None]
    rows = centre[0] - radius * np.sin(angles)[None]
    cols = centre[1] + radius * np.cos(angles)[None]
    return MyocardialMesh(
        points_rc=np.stack([rows.ravel(), cols.ravel()], axis=1),
        layer_fractions=fractions,
        n_sectors=int(n_sectors),
        centre_rc=(float(centre[0]), float(centre[1])),
        start_angle_deg=float(np.degrees(start)),
        sense=sense,
        landmark=contours.landmark,
    )


__all__ = ["MyocardialMesh", "seed_mesh"]
