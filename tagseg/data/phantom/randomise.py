"""Domain randomisation of the phantom (``data.randomise``): ranges for what differs between cohorts and scanners.

By default (``data.randomise: null``) the phantom draws nothing here and stays byte-identical to the
fixed phantom. A preset name (``wide``) or a mapping of ``key: [low, high]`` ranges turns on a
*separate* random stream per subject (seeded by ``(seed, cohort, item)`` like the subject's own
stream, so paired cine and tagged subjects share it) from which each named factor is drawn
uniformly; factors not named keep the fixed phantom's values. A mapping may start from a preset
(``{preset: wide, snr: [8, 20]}``).

Factors (all ranges ``[low, high]``; a number means a fixed value):

* ``tag_angle_deg``: normal direction of the first tag line set (fixed phantom: 45; 0-90 covers every grid).
* ``tag_spacing_mm``: tag line spacing (fixed phantom: 7-8.5).
* ``pixel_scale``: multiplies the pixel spacing (and field of view) per subject: the heart looks
  smaller (> 1) or larger (< 1) in pixels.
* ``snr``: myocardium signal / noise sigma (replaces ``data.snr``).
* ``coil_strength``: multiplies the coil shading's ramp and surface-coil bump (1 = fixed phantom).
* ``lv_ellipticity``: relative amplitude of an elliptic (2nd harmonic) LV cavity deformation.
* ``septal_thickening``: relative extra wall thickness towards the RV (septum).
* ``papillary``: probability that a slice (base and mid) shows the two papillary muscles, which
  have myocardial signal but are labelled LV cavity, as in ACDC.
* ``trabeculae``: depth of a trabecular layer (fraction of the cavity radius) of myocardial strands
  at the endocardium, labelled cavity.
* ``rv_scale``: RV size (fixed phantom: 0.9-1.1).
* ``rv_attachment``: how far the RV ellipse sits beyond the LV (0.2 fixed): smaller values wrap the
  RV further round the LV (insertion points further apart).
* ``fat_mm``: epicardial fat band width (fixed phantom: 2-6).
* ``organ_contrast``: independent multiplier of each background tissue's signal (fat, muscle,
  liver, lung, spine, aorta, mediastinum).
* ``blood_contrast``: multiplier of the blood signal (blood-myocardium contrast).
* ``t1_scale``: multiplier of the myocardial T1 (tag fading speed).
* ``readout_flip_deg``: readout flip angle per frame (faster fading when larger; fixed: 10-15).
* ``rv_wall_mm``: RV free-wall thickness (fixed phantom: 3). The wall stays labelled background
  (not myocardium) and moves with the heart.
* ``rv_wall_contrast``: multiplier of the RV wall's signal (1: the LV myocardium's; > 1 brighter).
* ``body_scale``: multiplies the body's and the organs' axes and the organs' offsets from the body
  centre (a smaller or larger person; the heart stays).
* ``body_aspect``: multiplies the ratio of the body's long to short axis at constant area (fixed: ~1.35).
* ``lung_scale``: multiplies both lungs' axes (about their centres).
* ``lung_shift_mm``: moves each lung away from (> 0) or towards (< 0) the body centre.

Not a factor: ``fraction`` (a number in [0, 1], default 1) is the share of subjects that are
randomised; the others are the fixed phantom's subjects, unchanged. Mixing keeps the fixed
phantom's distribution in every training epoch, which is what keeps in-distribution Dice while the
randomised half widens what the model has seen (preset ``mixed``: ``wide`` on half the subjects).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from tagseg.errors import ConfigError, reject_unknown_keys

#: factor -> allowed [low, high] (checked for presets and user ranges alike)
LIMITS: dict[str, tuple[float, float]] = {
    "tag_angle_deg": (-180.0, 180.0),
    "tag_spacing_mm": (3.0, 20.0),
    "pixel_scale": (0.4, 2.5),
    "snr": (1.0, 200.0),
    "coil_strength": (0.0, 3.0),
    "lv_ellipticity": (0.0, 0.3),
    "septal_thickening": (0.0, 1.0),
    "papillary": (0.0, 1.0),
    "trabeculae": (0.0, 0.35),
    "rv_scale": (0.4, 2.0),
    "rv_attachment": (-0.5, 1.0),
    "fat_mm": (0.0, 20.0),
    "organ_contrast": (0.2, 3.0),
    "blood_contrast": (0.2, 3.0),
    "t1_scale": (0.3, 3.0),
    "readout_flip_deg": (1.0, 45.0),
    # drawn after the factors above, so presets and ranges without them draw exactly as before
    "rv_wall_mm": (1.0, 12.0),
    "rv_wall_contrast": (0.3, 2.5),
    "body_scale": (0.7, 1.4),
    "body_aspect": (0.6, 1.6),
    "lung_scale": (0.5, 1.6),
    "lung_shift_mm": (-30.0, 30.0),
}

#: not a factor: the share of randomised subjects (a single number)
FRACTION = "fraction"

#: named settings of ``data.randomise``
PRESETS: dict[str, dict[str, list[float]]] = {
    # every factor widened around the fixed phantom; the shifted test sets (conf/shift) lie partly outside
    "wide": {
        "tag_angle_deg": [0.0, 90.0],
        "tag_spacing_mm": [6.0, 10.0],
        "pixel_scale": [0.8, 1.25],
        "snr": [6.0, 40.0],
        "coil_strength": [0.5, 1.8],
        "lv_ellipticity": [0.0, 0.15],
        "septal_thickening": [0.0, 0.4],
        "papillary": [0.0, 1.0],
        "trabeculae": [0.0, 0.2],
        "rv_scale": [0.8, 1.35],
        "rv_attachment": [0.0, 0.35],
        "fat_mm": [1.0, 10.0],
        "organ_contrast": [0.7, 1.4],
        "blood_contrast": [0.75, 1.3],
        "t1_scale": [0.7, 1.3],
        "readout_flip_deg": [8.0, 20.0],
    },
}
# `wide` on half of the subjects, the fixed phantom on the other half
PRESETS["mixed"] = {**PRESETS["wide"], FRACTION: [0.5, 0.5]}


def parse_randomise(value: Any) -> dict[str, tuple[float, float]]:
    """``data.randomise`` -> factor ranges (empty: the fixed phantom).

    Args:
        value: ``None``, a preset name, or a mapping of factor -> number or ``[low, high]``
            (optionally with ``preset: <name>`` to start from).

    Raises:
        ConfigError: an unknown preset or factor, or a range outside :data:`LIMITS`.
    """
    if value is None or value is False:
        return {}
    if isinstance(value, str):
        value = {"preset": value}
    if not isinstance(value, Mapping):
        raise ConfigError(
            f"data.randomise must be null, a preset name {sorted(PRESETS)} or a mapping of ranges, got {value!r}"
        )
    given = dict(value)
    preset = given.pop("preset", None)
    reject_unknown_keys(given, {**LIMITS, FRACTION: None}, "data.randomise")
    spec: dict[str, Any] = {}
    if preset is not None:
        if str(preset) not in PRESETS:
            raise ConfigError(f"data.randomise: unknown preset {preset!r}; expected one of {sorted(PRESETS)}")
        spec.update(PRESETS[str(preset)])
    spec.update(given)
    out = {}
    for key, rng in spec.items():
        if key == FRACTION:
            lo, hi = checked_range(rng, f"data.randomise.{key}", 0.0, 1.0)
            if lo != hi:
                raise ConfigError(f"data.randomise.fraction must be one number in [0, 1], got {rng}")
            if lo < 1.0:  # 1 is the default: left out so a fraction of 1 changes nothing
                out[key] = (lo, hi)
            continue
        out[key] = checked_range(rng, f"data.randomise.{key}", *LIMITS[key])
    if set(out) == {FRACTION}:
        return {}  # a fraction of nothing randomised is the fixed phantom
    return out


def is_randomised(spec: Mapping[str, tuple[float, float]], draw: float) -> bool:
    """Whether a subject whose uniform draw in [0, 1) is ``draw`` is randomised under ``spec``."""
    return bool(spec) and draw < spec.get(FRACTION, (1.0, 1.0))[0]


def checked_range(
    value: Any, name: str, low: float = -math.inf, high: float = math.inf, kind: type = float
) -> tuple[Any, Any]:
    """A ``[lo, hi]`` range of ``kind`` numbers (a scalar means a fixed value), checked against ``[low, high]``:
    the one range rule of the phantom's settings (``data.*``, ``data.randomise.*``, ``cohort.*``).

    Raises:
        ConfigError: ``<name> must be a number or a [low, high] range within [low, high], got <value>``.
    """
    vals = [value] if isinstance(value, (int, float)) else list(value)
    try:
        lo, hi = (kind(vals[0]), kind(vals[-1])) if len(vals) in (1, 2) else (math.nan, math.nan)
    except (TypeError, ValueError):
        lo = hi = math.nan
    if not (low <= lo <= hi <= high):
        raise ConfigError(f"{name} must be a number or a [low, high] range within [{low}, {high}], got {value}")
    return lo, hi


@dataclass(frozen=True)
class Domain:
    """One subject's randomised factors; ``None`` keeps the fixed phantom's value."""

    tag_angle_deg: float | None = None
    tag_spacing_mm: float | None = None
    pixel_scale: float | None = None
    snr: float | None = None
    coil_strength: float | None = None
    lv_ellipticity: float | None = None
    ellipse_angle_rad: float = 0.0
    septal_thickening: float | None = None
    papillary: float | None = None
    papillary_draw: float = 1.0
    trabeculae: float | None = None
    trabeculae_phase: float = 0.0
    rv_scale: float | None = None
    rv_attachment: float | None = None
    fat_mm: float | None = None
    organ_contrast: tuple[float, ...] | None = None
    blood_contrast: float | None = None
    t1_scale: float | None = None
    readout_flip_deg: float | None = None
    rv_wall_mm: float | None = None
    rv_wall_contrast: float | None = None
    body_scale: float | None = None
    body_aspect: float | None = None
    lung_scale: float | None = None
    lung_shift_mm: float | None = None


#: background tissues whose signal ``organ_contrast`` scales (one draw each)
ORGANS = ("subcutaneous_fat", "muscle", "mediastinum", "lung", "liver", "spine", "aorta", "epicardial_fat")


def draw_domain(spec: Mapping[str, tuple[float, float]], rng: np.random.Generator) -> Domain:
    """Draw every factor of ``spec`` from ``rng`` (a fixed order, so a subject's draw is reproducible)."""
    values: dict[str, Any] = {}
    for key in LIMITS:  # fixed order; factors not in spec draw nothing
        if key not in spec:
            continue
        lo, hi = spec[key]
        if key == "organ_contrast":
            values[key] = tuple(float(v) for v in rng.uniform(lo, hi, len(ORGANS)))
        else:
            values[key] = float(rng.uniform(lo, hi))
        if key == "lv_ellipticity":
            values["ellipse_angle_rad"] = float(rng.uniform(0.0, np.pi))
        elif key == "papillary":
            values["papillary_draw"] = float(rng.uniform())
        elif key == "trabeculae":
            values["trabeculae_phase"] = float(rng.uniform(0.0, 2 * np.pi))
    return Domain(**values)


__all__ = ["FRACTION", "Domain", "LIMITS", "ORGANS", "PRESETS", "draw_domain", "is_randomised", "parse_randomise"]
