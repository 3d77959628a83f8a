"""AHA segments of a short-axis slice, counted from the anterior RV insertion.

The American Heart Association's 17-segment model (Cerqueira et al. 2002), short-axis part:
basal 1-6 and mid 7-12 in 60-degree sectors, apical 13-16 in 90-degree sectors. Angles here are
*offsets*: degrees from the anterior RV insertion, counted towards the septum (the RV side), so the
assignment holds whichever way the image is flipped:

* basal / mid: [0, 60) anteroseptal (2 / 8), then inferoseptal (3 / 9), inferior (4 / 10),
  inferolateral (5 / 11), anterolateral (6 / 12), and [300, 360) anterior (1 / 7);
* apical: the septal sector is centred on the septum (60 degrees past the anterior insertion for
  a septum spanning 120 degrees), so [15, 105) septal (14), then inferior (15), lateral (16),
  and [285, 15) anterior (13).
"""

from __future__ import annotations

import numpy as np

#: slice levels and their segments in order of increasing offset from the anterior insertion
LEVEL_SEGMENTS: dict[str, tuple[int, ...]] = {
    "basal": (2, 3, 4, 5, 6, 1),
    "mid": (8, 9, 10, 11, 12, 7),
    "apical": (14, 15, 16, 13),
}
#: where the first segment of a level starts, degrees past the anterior insertion
LEVEL_START_DEG: dict[str, float] = {"basal": 0.0, "mid": 0.0, "apical": 15.0}
#: segment names (AHA 17-segment model)
SEGMENT_NAMES: dict[int, str] = {
    1: "basal anterior",
    2: "basal anteroseptal",
    3: "basal inferoseptal",
    4: "basal inferior",
    5: "basal inferolateral",
    6: "basal anterolateral",
    7: "mid anterior",
    8: "mid anteroseptal",
    9: "mid inferoseptal",
    10: "mid inferior",
    11: "mid inferolateral",
    12: "mid anterolateral",
    13: "apical anterior",
    14: "apical septal",
    15: "apical inferior",
    16: "apical lateral",
}


def check_level(level: str) -> str:
    """``level`` if it is one of :data:`LEVEL_SEGMENTS`, else a ValueError naming the choices."""
    if level not in LEVEL_SEGMENTS:
        raise ValueError(f"slice level must be one of {list(LEVEL_SEGMENTS)}, got {level!r}")
    return level


def level_of(slice_index: int, n_slices: int) -> str:
    """The level of slice ``slice_index`` of ``n_slices`` short-axis slices ordered base to apex (thirds)."""
    if n_slices <= 1:
        return "mid"
    pos = slice_index / (n_slices - 1)
    return "basal" if pos < 1 / 3 else "mid" if pos <= 2 / 3 else "apical"


def aha_segments(offset_deg: np.ndarray, level: str) -> np.ndarray:
    """AHA segment number of each offset (degrees from the anterior insertion towards the septum).

    Example:
        >>> aha_segments(np.array([10.0, 70.0, 350.0]), "mid").tolist()
        [8, 9, 7]
    """
    segments = LEVEL_SEGMENTS[check_level(level)]
    width = 360.0 / len(segments)
    rel = np.mod(np.asarray(offset_deg, np.float64) - LEVEL_START_DEG[level], 360.0)
    index = np.minimum(np.floor(rel / width + 1e-9).astype(int), len(segments) - 1)
    return np.asarray(segments)[index]


__all__ = ["LEVEL_SEGMENTS", "LEVEL_START_DEG", "SEGMENT_NAMES", "aha_segments", "check_level", "level_of"]
