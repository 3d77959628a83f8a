"""Image formation of the phantom: bSSFP cine and SPAMM-tagged GRE contrast, coil shading, Rician noise.

Each pixel's signal is the partial-volume mix of its tissues' signals. Cine (bSSFP) uses the
relative signals of METHOD.md section 6 (blood 1, myocardium ~0.6, fat ~0.73, liver ~0.74, lung ~0).
Tagged images use a spoiled-GRE-like contrast (blood darker than myocardium, fat bright) times
``|Mz|``: the tag pattern laid down at ED by :func:`tagseg.physics.tagging.tag_mz`, evaluated at the
tissue's ED position (so the tags move with it) and faded per tissue T1 by
:func:`tagseg.physics.fading.faded_mz`. Blood gets a short effective T1 (inflowing, untagged
blood), so the blood pool loses its tags within a few frames.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from tagseg.data.phantom.anatomy import TISSUES
from tagseg.physics.fading import faded_mz
from tagseg.physics.tagging import tag_mz

#: bSSFP signal relative to blood
CINE_SIGNAL = {
    "air": 0.0,
    "subcutaneous_fat": 0.73,
    "muscle": 0.38,
    "mediastinum": 0.45,
    "lung": 0.03,
    "liver": 0.74,
    "spine": 0.5,
    "aorta": 1.0,
    "epicardial_fat": 0.73,
    "rv_wall": 0.6,
    "rv_blood": 1.0,
    "myocardium": 0.6,
    "lv_blood": 1.0,
}
#: tagged GRE proton-density-like signal before tag modulation (blood darker than in cine)
TAGGED_SIGNAL = {
    "air": 0.0,
    "subcutaneous_fat": 0.85,
    "muscle": 0.5,
    "mediastinum": 0.5,
    "lung": 0.04,
    "liver": 0.6,
    "spine": 0.55,
    "aorta": 0.45,
    "epicardial_fat": 0.85,
    "rv_wall": 0.62,
    "rv_blood": 0.45,
    "myocardium": 0.62,
    "lv_blood": 0.45,
}
#: T1 (ms) of the static tissues; myocardium and blood come from the config
FIXED_T1_MS = {
    "air": 1000.0,
    "subcutaneous_fat": 280.0,
    "muscle": 900.0,
    "mediastinum": 900.0,
    "lung": 1200.0,
    "liver": 600.0,
    "spine": 550.0,
    "epicardial_fat": 280.0,
}
_BLOOD = ("aorta", "rv_blood", "lv_blood")
_MYO = ("rv_wall", "myocardium")


@dataclass(frozen=True)
class TagParams:
    """SPAMM grid and fading parameters of one subject.

    Attributes:
        spacing_px: tag line spacing in pixels.
        flip_deg: total flip of each line set's binomial RF train.
        pattern: relative RF pulse weights (e.g. 1-3-3-1).
        angle_deg: normal direction of the first line set (the second is at -90 degrees from it).
        offset_px: phase offset of each line set.
        frame_ms: time between frames.
        readout_flip_deg: readout flip per frame.
        t1_myocardium_ms, t1_blood_ms: T1 of myocardium and effective T1 of blood.
    """

    spacing_px: float
    flip_deg: float
    pattern: tuple[float, ...]
    angle_deg: float
    offset_px: tuple[float, float]
    frame_ms: float
    readout_flip_deg: float
    t1_myocardium_ms: float
    t1_blood_ms: float

    def t1_ms(self) -> np.ndarray:
        """T1 per tissue, in :data:`TISSUES` order."""
        return np.array(
            [
                self.t1_blood_ms if t in _BLOOD else self.t1_myocardium_ms if t in _MYO else FIXED_T1_MS[t]
                for t in TISSUES
            ]
        )

    def mz0(self, rows_px: np.ndarray, cols_px: np.ndarray) -> np.ndarray:
        """Signed Mz right after tagging at (ED) pixel positions."""
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # element-wise work this size is slower multi-threaded on busy cores
        try:
            mz = tag_mz(
                torch.from_numpy(np.ascontiguousarray(rows_px, np.float32)),
                torch.from_numpy(np.ascontiguousarray(cols_px, np.float32)),
                self.spacing_px,
                self.flip_deg,
                self.pattern,
                self.angle_deg,
                self.offset_px,
            )
        finally:
            torch.set_num_threads(threads)
        return mz.numpy()


def _signals(table: dict[str, float]) -> np.ndarray:
    return np.array([table[t] for t in TISSUES], np.float32)


def signal_table(modality: str, scale: np.ndarray | None = None) -> np.ndarray:
    """Relative signal of every tissue (:data:`TISSUES` order), optionally times per-tissue ``scale``."""
    table = _signals(CINE_SIGNAL if modality == "cine" else TAGGED_SIGNAL)
    return table if scale is None else (table * np.asarray(scale, np.float32)).astype(np.float32)


def cine_signal(fractions: np.ndarray, signal: np.ndarray | None = None) -> np.ndarray:
    """Noise-free bSSFP signal from (K, ...) tissue fractions (``signal``: a per-tissue table instead of the default)."""
    table = _signals(CINE_SIGNAL) if signal is None else signal
    return np.tensordot(table, fractions, axes=(0, 0)).astype(np.float32)


def fading_coefficients(frames: np.ndarray, tags: TagParams, t1_ms: float) -> tuple[np.ndarray, np.ndarray]:
    """``(alpha, beta)`` with ``Mz(frame) = alpha * mz0 + beta`` (the fading model is linear in mz0)."""
    frames = np.asarray(frames, np.float64)
    beta = faded_mz(np.zeros(frames.shape), frames, tags.frame_ms, t1_ms, tags.readout_flip_deg)
    alpha = faded_mz(np.ones(frames.shape), frames, tags.frame_ms, t1_ms, tags.readout_flip_deg) - beta
    return alpha.astype(np.float32), beta.astype(np.float32)


def tagged_signal(
    fractions: np.ndarray, mz0: np.ndarray, frames: np.ndarray, tags: TagParams, signal: np.ndarray | None = None
) -> np.ndarray:
    """Noise-free tagged GRE signal.

    Args:
        fractions: (K, ...) tissue fractions, broadcastable against ``mz0``.
        mz0: signed Mz right after tagging at each pixel's ED position.
        frames: frame indices (0 = right after tagging, at ED), broadcastable against ``mz0``.
        tags: fading parameters.
        signal: per-tissue signal table (default :data:`TAGGED_SIGNAL`).

    Returns:
        float32, the broadcast shape: ``sum_k fraction_k * signal_k * |Mz_k(frame)|``.
    """
    signal = _signals(TAGGED_SIGNAL) if signal is None else signal
    t1 = tags.t1_ms()
    out: np.ndarray | float = 0.0
    for value in np.unique(t1):  # tissues sharing a T1 share one fading curve
        group = np.flatnonzero((t1 == value) & (signal > 0))
        if group.size == 0:
            continue
        weight = np.tensordot(signal[group], fractions[group], axes=(0, 0))
        alpha, beta = fading_coefficients(frames, tags, float(value))
        out = out + weight * np.abs(alpha * mz0 + beta)
    return np.asarray(out, np.float32)


def coil_shading(
    rng: np.random.Generator,
    row_mm: np.ndarray,
    col_mm: np.ndarray,
    fov_mm: Sequence[float],
    strength: float | None = None,
) -> np.ndarray:
    """Smooth receive-coil sensitivity: a random linear ramp plus a bump near a surface coil (mean ~1).

    ``strength`` multiplies the ramp and the bump (domain randomisation; ``None`` = 1, the same draws).
    """
    ny, nx = (row_mm - fov_mm[0] / 2) / fov_mm[0], (col_mm - fov_mm[1] / 2) / fov_mm[1]
    grad = rng.uniform(-0.5, 0.5, 2)
    coil = rng.uniform(-0.45, 0.45, 2)
    width = rng.uniform(0.3, 0.5)
    bump = np.exp(-((ny - coil[0]) ** 2 + (nx - coil[1]) ** 2) / (2 * width**2))
    if strength is None:
        field = np.exp(grad[0] * ny + grad[1] * nx) * (0.7 + 0.5 * bump)
    else:
        field = np.exp(strength * (grad[0] * ny + grad[1] * nx)) * (0.7 + 0.5 * strength * bump)
    return (field / field.mean()).astype(np.float32)


def add_rician_noise(clean: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Magnitude of the signal plus complex Gaussian noise of standard deviation ``sigma`` per channel."""
    real = clean + sigma * rng.standard_normal(clean.shape, dtype=np.float32)
    imag = sigma * rng.standard_normal(clean.shape, dtype=np.float32)
    return np.hypot(real, imag).astype(np.float32)
