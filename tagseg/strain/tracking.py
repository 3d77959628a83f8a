"""The tracker interface: what every tracker of the ``tracker=`` config group implements."""

from __future__ import annotations

from typing import Protocol

import numpy as np


class Tracker(Protocol):
    """Tracks tissue points through a tagged cine series."""

    def track(self, frames: np.ndarray, points_rc: np.ndarray, spacing_mm: tuple[float, float]) -> np.ndarray:
        """frames: (T, H, W) float tagged images of one slice, frame 0 = end-diastole (the
        reference); points_rc: (P, 2) point positions (row, col) in pixels in frame 0.
        Returns (T, P, 2) positions (row, col) in pixels in every frame (frame 0 == points_rc)."""
