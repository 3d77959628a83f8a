"""Tag fading over the cardiac cycle: T1 recovery plus the readout pulses of each frame.

Right after tagging, tissue holds a signed longitudinal magnetisation ``mz0`` (fraction of M0,
see :func:`tagseg.physics.tagging.tag_mz`). Each frame of length ``frame_ms`` the readout tips it
by ``readout_flip_deg`` (leaving ``cos(beta)`` of Mz) and T1 recovery pulls it towards M0::

    Mz[n] = a * Mz[n-1] + b,   a = cos(beta) * exp(-frame_ms / T1),   b = 1 - exp(-frame_ms / T1)
    =>  Mz[n] = a**n * mz0 + b * (1 - a**n) / (1 - a)

so the tag modulation depth shrinks as ``a**n``: monotonically, faster for short T1 (blood, whose
effective T1 is short because inflowing blood never saw the tagging pulses).
"""

from __future__ import annotations

import math
from typing import TypeVar

import numpy as np
import torch

from tagseg.errors import ConfigError

ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)


def faded_mz(
    mz0: ArrayT,
    frame: float | ArrayT,
    frame_ms: float = 40.0,
    t1_ms: float | ArrayT = 1000.0,
    readout_flip_deg: float = 12.0,
) -> ArrayT:
    """Longitudinal magnetisation at ``frame`` (0 = right after tagging) for tagged ``mz0``.

    Args:
        mz0: signed Mz right after tagging (per unit M0), any shape.
        frame: frame index (0-based), scalar or broadcastable to ``mz0``.
        frame_ms: time between frames.
        t1_ms: T1 in ms, scalar or per pixel (e.g. short for blood).
        readout_flip_deg: readout flip angle per frame.

    Returns:
        Mz at that frame, same type and shape as ``mz0``; equals ``mz0`` at frame 0.
    """
    if frame_ms <= 0:
        raise ConfigError(f"frame_ms must be > 0, got {frame_ms}")
    if not 0 <= readout_flip_deg < 90:
        raise ConfigError(f"readout_flip_deg must be in [0, 90), got {readout_flip_deg}")
    lib = torch if isinstance(mz0, torch.Tensor) else np
    t1 = t1_ms if not isinstance(t1_ms, (int, float)) else lib.full_like(mz0, float(t1_ms))
    if (lib.as_tensor(t1) if lib is torch else np.asarray(t1)).min() <= 0:
        raise ConfigError("t1_ms must be > 0")
    e1 = lib.exp(-frame_ms / t1)
    a = math.cos(math.radians(readout_flip_deg)) * e1
    b = 1.0 - e1
    an = a**frame
    return an * mz0 + b * (1.0 - an) / (1.0 - a)
