"""Circumferential and radial strain of a tracked mesh: global and per AHA segment.

Strain here is the **Lagrangian engineering strain** of line elements: ``E = l(t) / l(ED) - 1``
(the stretch minus one, referred to end-diastole), the definition of the phantom's mid-wall
circumferential strain and of most tagged-MRI strain reports. (Green strain would be
``(stretch^2 - 1) / 2``; it differs by a few percent at -0.2.)

* circumferential elements join neighbouring sectors of one layer;
* radial elements join neighbouring layers of one sector (at least two layers needed);
* a region's strain (global, or an AHA segment) is the ratio of the summed element lengths minus
  one, so it is the stretch of the region's total fibre length, not an average of ratios of short
  noisy elements. An element belongs to the segment of its midpoint's offset from the insertion.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tagseg.strain.aha import LEVEL_SEGMENTS, aha_segments
from tagseg.strain.mesh import MyocardialMesh

#: strain components and the sign of their peak (circumferential shortens, radial thickens)
COMPONENTS: dict[str, int] = {"ecc": -1, "err": 1}


@dataclass
class StrainCurves:
    """Strain over the cycle of one slice.

    Attributes:
        ecc, err: {"global" or AHA segment number as str: (T,) strain}.
        segments: the slice's AHA segments, in order from the insertion.
    """

    ecc: dict[str, np.ndarray]
    err: dict[str, np.ndarray]
    segments: tuple[int, ...]

    def component(self, name: str) -> dict[str, np.ndarray]:
        return {"ecc": self.ecc, "err": self.err}[name]


def element_lengths(positions_mm: np.ndarray, mesh: MyocardialMesh) -> tuple[np.ndarray, np.ndarray]:
    """Circumferential (T, L, S) and radial (T, L - 1, S) element lengths (mm) of (T, P, 2) positions."""
    grid = mesh.grid(np.asarray(positions_mm, np.float64))
    circ = np.linalg.norm(np.roll(grid, -1, axis=-2) - grid, axis=-1)
    radial = np.linalg.norm(grid[..., 1:, :, :] - grid[..., :-1, :, :], axis=-1)
    return circ, radial


def element_segments(mesh: MyocardialMesh, level: str) -> tuple[np.ndarray, np.ndarray]:
    """AHA segment of each circumferential (S,) and radial (S,) element (same for every layer)."""
    step = 360.0 / mesh.n_sectors
    return aha_segments(mesh.sector_offset_deg + 0.5 * step, level), aha_segments(mesh.sector_offset_deg, level)


def region_strain(lengths: np.ndarray, member: np.ndarray) -> np.ndarray:
    """(T,) strain of the elements ``member`` (S,) of (T, L, S) lengths: summed length over the ED one, minus 1.

    NaN when no element is a member.
    """
    if not np.any(member):
        return np.full(lengths.shape[0], np.nan)
    total = lengths[..., member].sum(axis=(-2, -1))
    return total / total[0] - 1.0


def strain_curves(positions_mm: np.ndarray, mesh: MyocardialMesh, level: str) -> StrainCurves:
    """Global and per-segment Ecc and Err of tracked positions (T, P, 2) in mm (frame 0 = ED)."""
    circ, radial = element_lengths(positions_mm, mesh)
    seg_c, seg_r = element_segments(mesh, level)
    segments = LEVEL_SEGMENTS[level]
    ecc = {"global": region_strain(circ, np.ones(mesh.n_sectors, bool))}
    err: dict[str, np.ndarray] = {}
    if mesh.n_layers > 1:
        err["global"] = region_strain(radial, np.ones(mesh.n_sectors, bool))
    for seg in segments:
        ecc[str(seg)] = region_strain(circ, seg_c == seg)
        if mesh.n_layers > 1:
            err[str(seg)] = region_strain(radial, seg_r == seg)
    return StrainCurves(ecc=ecc, err=err, segments=segments)


def peak(curve: np.ndarray, sign: int) -> tuple[float, int]:
    """(peak value, frame of the peak) of a strain curve: its minimum for ``sign`` -1, maximum for +1.

    NaN frames are skipped; a curve with none measured gives (NaN, -1).
    """
    c = np.asarray(curve, np.float64)
    if not np.isfinite(c).any():
        return float("nan"), -1
    frame = int(np.nanargmin(c) if sign < 0 else np.nanargmax(c))
    return float(c[frame]), frame


__all__ = [
    "COMPONENTS",
    "StrainCurves",
    "element_lengths",
    "element_segments",
    "peak",
    "region_strain",
    "strain_curves",
]
