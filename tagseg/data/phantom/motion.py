"""Heart motion of the phantom: a Lagrangian displacement over the cardiac cycle.

A tissue point at end-diastolic (ED) position X, at polar radius R and angle theta about the LV
centre, moves to radius r and angle theta + phi. With ``s`` the contraction state (0 at ED, 1 at
peak systole), ``c = 1 + ecc * s`` the mid-wall circumferential stretch and ``k = 1 + area_gain * s``
the in-plane wall-area change (longitudinal shortening pushes wall into the slice)::

    myocardium   r^2 = k (R^2 - R_mid^2) + (c R_mid)^2          (area of any wall annulus x k)
    LV cavity    r = R * r_endo / R_endo                          (uniform scaling)
    outside      r^2 = R^2 - (R_epi^2 - r_epi^2), faded to rest over ``taper_mm``
    RV           an extra inward pull of the free wall towards the septum (bellows motion)
    rotation     phi = twist * s inside the epicardium, faded to 0 outside

so mid-wall circumferential strain is ``ecc * s`` exactly, the wall thickens (radial strain
positive) and the myocardial area changes by ``area_gain * s`` only.

Regional dysfunction (:class:`Dysfunction`, off unless given): around one direction the stretch
becomes ``c = 1 + ecc * s * (1 - severity * w(theta))``, ``w`` a smooth bump (1 within 0.6 of the
half-width, 0 beyond 1.4 of it), so a hypokinetic (``severity`` < 1) or akinetic (1) sector
shortens less; the map stays monotone in R, hence invertible. Every piece is monotone in R,
so the map is invertible; :func:`inverse_positions` finds each pixel's ED position (the Eulerian
inverse) by fixed-point iteration of ``X = x - u(X)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tagseg.data.phantom.anatomy import SliceAnatomy


@dataclass(frozen=True)
class Dysfunction:
    """A hypokinetic or akinetic sector of the wall.

    Attributes:
        angle_rad: its centre, in the anatomy's polar angle (row = sin, col = cos about the LV centre).
        half_width_rad: half its angular width.
        severity: fraction of the contraction lost at its centre (1 = akinetic).
    """

    angle_rad: float
    half_width_rad: float
    severity: float

    def weight(self, cos_t: np.ndarray, sin_t: np.ndarray) -> np.ndarray:
        """Fraction of the normal contraction kept at each polar direction (1 - severity * bump)."""
        d = np.abs(np.angle((cos_t + 1j * sin_t) * np.exp(-1j * self.angle_rad)))
        bump = _taper((d - 0.6 * self.half_width_rad) / (0.8 * self.half_width_rad))
        return 1.0 - self.severity * bump


@dataclass(frozen=True)
class SliceMotion:
    """Peak-systolic motion parameters of one slice.

    Attributes:
        ecc: mid-wall circumferential strain at peak (negative, e.g. -0.21).
        area_gain: relative in-plane myocardial area change at peak (e.g. 0.05).
        twist_rad: rotation of the LV at peak (positive = counter-clockwise on screen).
        rv_pull_mm: inward motion of the RV free wall at peak.
        taper_mm: distance beyond the epicardium over which the motion fades to rest.
        dysfunction: a hypokinetic / akinetic sector (None: normal everywhere).
    """

    ecc: float
    area_gain: float
    twist_rad: float
    rv_pull_mm: float
    taper_mm: float = 40.0
    dysfunction: Dysfunction | None = None

    @staticmethod
    def limited(
        anatomy: SliceAnatomy,
        ecc: float,
        area_gain: float,
        twist_rad: float,
        rv_pull_mm: float,
        min_cavity_ratio: float = 0.35,
    ) -> SliceMotion:
        """Motion with ``ecc`` reduced where a thick wall around a small cavity would close it.

        The peak endocardial radius is kept at least ``min_cavity_ratio`` of its ED value.
        """
        re, rm = anatomy.endo_mm, anatomy.endo_mm + 0.5 * anatomy.wall_mm
        k = 1.0 + area_gain
        re2 = k * (re**2 - rm**2) + ((1 + ecc) * rm) ** 2
        floor = (min_cavity_ratio * re) ** 2
        if re2 < floor:
            ecc = float(np.sqrt(floor - k * (re**2 - rm**2)) / rm - 1.0)
        return SliceMotion(ecc=ecc, area_gain=area_gain, twist_rad=twist_rad, rv_pull_mm=rv_pull_mm)

    def reach_mm(self, anatomy: SliceAnatomy) -> float:
        """Radius about the LV centre beyond which nothing moves."""
        return anatomy.max_epi_mm + max(self.taper_mm, 2.2 * _rv_width_mm(anatomy)) + 1.0


def _rv_width_mm(anatomy: SliceAnatomy) -> float:
    return 1.2 * anatomy.rv.semi_along_mm + anatomy.rv_wall_mm


def activation(n_frames: int, peak_fraction: float, relax_fraction: float = 0.75) -> np.ndarray:
    """Contraction state per frame over one cycle (frame 0 = ED): 0 -> 1 at ``peak_fraction`` -> 0.

    Smooth (raised cosine) contraction, relaxation complete at ``relax_fraction`` of the cycle,
    then diastasis at the ED state.
    """
    phase = np.arange(n_frames) / n_frames
    rise = 0.5 * (1 - np.cos(np.pi * np.clip(phase / peak_fraction, 0, 1)))
    fall = 0.5 * (1 + np.cos(np.pi * np.clip((phase - peak_fraction) / (relax_fraction - peak_fraction), 0, 1)))
    return np.where(phase <= peak_fraction, rise, fall)


def _taper(q: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.cos(np.pi * np.clip(q, 0.0, 1.0)))


def polar_map(
    anatomy: SliceAnatomy,
    motion: SliceMotion,
    s: np.ndarray | float,
    r0: np.ndarray,
    cos_t: np.ndarray,
    sin_t: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Radius ``r`` (mm) and rotation ``phi`` (rad) at contraction ``s`` of tissue at ED polar (R, theta)."""
    endo, epi = anatomy.radii(cos_t, sin_t)
    mid = 0.5 * (endo + epi)
    c = 1.0 + motion.ecc * s
    if motion.dysfunction is not None:
        c = 1.0 + motion.ecc * s * motion.dysfunction.weight(cos_t, sin_t)
    k = 1.0 + motion.area_gain * s
    cmid2 = (c * mid) ** 2
    r_myo = np.sqrt(np.maximum(k * (r0**2 - mid**2) + cmid2, 0.0))
    r_endo = np.sqrt(np.maximum(k * (endo**2 - mid**2) + cmid2, 0.0))
    r_epi2 = k * (epi**2 - mid**2) + cmid2
    fade = _taper((r0 - epi) / motion.taper_mm)
    r_out = r0 - (r0 - np.sqrt(np.maximum(r0**2 - epi**2 + r_epi2, 0.0))) * fade
    r = np.where(r0 < endo, r0 * r_endo / endo, np.where(r0 < epi, r_myo, r_out))
    # RV bellows: the free wall moves towards the septum, zero at the epicardium and far away
    width = _rv_width_mm(anatomy)
    toward_rv = np.maximum(cos_t * np.cos(anatomy.rv_angle_rad) + sin_t * np.sin(anatomy.rv_angle_rad), 0.0) ** 2
    q = (r0 - epi) / width
    bump = np.where(q < 1.0, 1.0 - _taper(q), _taper((q - 1.0) / 1.2))
    pull = min(motion.rv_pull_mm, 0.35 * width)  # keeps dr/dR > 0.4: no folding where the RV is thin
    r = r - pull * s * toward_rv * bump * (q > 0)
    phi = motion.twist_rad * s * np.where(r0 < epi, 1.0, fade)
    return r, phi


def displacement_mm(
    anatomy: SliceAnatomy, motion: SliceMotion, s: np.ndarray | float, row_mm: np.ndarray, col_mm: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Lagrangian displacement (mm) of tissue at ED position (row_mm, col_mm) at contraction ``s``.

    Args:
        anatomy: the slice at ED.
        motion: its peak motion.
        s: contraction state, scalar or broadcastable to the positions (e.g. (T, 1)).
        row_mm, col_mm: ED positions.

    Returns:
        (u_row, u_col) in mm, broadcast shape of ``s`` and the positions.
    """
    r0, cos_t, sin_t = anatomy.polar(row_mm, col_mm)
    r, phi = polar_map(anatomy, motion, s, r0, cos_t, sin_t)
    cp, sp = np.cos(phi), np.sin(phi)
    new_row = r * (sin_t * cp + cos_t * sp)
    new_col = r * (cos_t * cp - sin_t * sp)
    return new_row - (row_mm - anatomy.lv_centre_mm[0]), new_col - (col_mm - anatomy.lv_centre_mm[1])


def inverse_positions(
    anatomy: SliceAnatomy, motion: SliceMotion, s: np.ndarray, row_mm: np.ndarray, col_mm: np.ndarray, n_iter: int = 6
) -> tuple[np.ndarray, np.ndarray]:
    """ED positions of the tissue found at (row_mm, col_mm) at each contraction state (Eulerian inverse).

    Solves ``X + u(X) = x`` in polar coordinates about the LV centre: Newton steps on the radius
    (the map is monotone in R; its slope is taken by a finite difference) and fixed-point steps
    on the angle (the rotation varies slowly).

    Args:
        s: (T,) contraction states.
        row_mm, col_mm: (N,) current positions.
        n_iter: iterations (6 gives < 1e-3 px on this motion).

    Returns:
        (T, N) ED rows and columns in mm.
    """
    st = np.asarray(s, dtype=np.float64)[:, None]
    target_r, target_c, target_s = anatomy.polar(np.asarray(row_mm, np.float64), np.asarray(col_mm, np.float64))
    shape = (st.shape[0], target_r.shape[0])
    radius = np.broadcast_to(target_r, shape).copy()
    cos_t, sin_t = np.broadcast_to(target_c, shape), np.broadcast_to(target_s, shape)
    step = 1e-3
    for _ in range(n_iter):
        r, phi = polar_map(anatomy, motion, st, radius, cos_t, sin_t)
        r_step, _ = polar_map(anatomy, motion, st, radius + step, cos_t, sin_t)
        slope = np.maximum((r_step - r) / step, 0.05)
        radius = np.maximum(radius - (r - target_r) / slope, 0.0)
        cp, sp = np.cos(phi), np.sin(phi)
        cos_t, sin_t = target_c * cp + target_s * sp, target_s * cp - target_c * sp
    return anatomy.lv_centre_mm[0] + radius * sin_t, anatomy.lv_centre_mm[1] + radius * cos_t
