"""True motion and strain of a mesh from a known Lagrangian displacement (the phantom's ``/displacement``).

The phantom stores, per frame, the displacement ``u`` (pixels, row / col) of the tissue at every
ED pixel (zero at ED; :mod:`tagseg.physics.dynamic` documents the convention). The true position
of an ED point ``X`` in frame ``t`` is ``X + u_t(X)``, ``u`` interpolated bilinearly (the motion
is smooth inside the myocardium). The true strain of a slice and of each AHA segment is the
strain of these true trajectories measured exactly as a tracker's (:mod:`tagseg.strain.tensors`),
so a tracker's strain error is its tracking error alone.
"""

from __future__ import annotations

import numpy as np

from tagseg.strain.harp import sample_bilinear
from tagseg.strain.mesh import MyocardialMesh
from tagseg.strain.tensors import StrainCurves, strain_curves


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


__all__ = ["true_positions", "true_strain"]
