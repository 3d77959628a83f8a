"""The ``physics.`` parameters of ``tagseg translate`` (tag geometry, flips, contrast, jitter)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tagseg.errors import ConfigError, reject_unknown_keys
from tagseg.physics.contrast import get_contrast
from tagseg.physics.tagging import DEFAULT_PATTERN, check_tag_params


@dataclass(frozen=True)
class PhysicsParams:
    """Tagging and contrast parameters of the physics transform (the config node ``physics``).

    Attributes:
        spacing_px: distance between parallel tag lines in pixels (paper: 5 on the 256 grid).
        spacing_mm: if set, the tag spacing in mm; each image's spacing in pixels is then
            ``spacing_mm / mean(meta/spacing_mm)`` (overrides ``spacing_px``).
        flip_deg: total flip of one line set's RF train, in (0, 180] (paper: 70).
        pattern: relative RF pulse weights (paper: 1-3-3-1).
        angle_deg: normal direction of the first line set (45: lines along the diagonals).
        offset_px: tag phase offset of each line set, pixels (0: tag phase zero at pixel (0, 0)).
        contrast: ``sqrt`` (paper), ``power`` (authors' code variant) or ``none``.
        random_offset: draw each line set's offset uniformly in [0, spacing) per image.
        spacing_jitter: relative spacing jitter per image, uniform in [-j, +j] (e.g. 0.2).
        flip_jitter: relative flip jitter per image, uniform in [-j, +j] (clipped to 180 degrees).
        angle_jitter_deg: grid angle jitter per image, uniform in [-j, +j] degrees.
    """

    spacing_px: float = 5.0
    spacing_mm: float | None = None
    flip_deg: float = 70.0
    pattern: tuple[float, ...] = DEFAULT_PATTERN
    angle_deg: float = 45.0
    offset_px: tuple[float, float] = (0.0, 0.0)
    contrast: str = "sqrt"
    random_offset: bool = False
    spacing_jitter: float = 0.0
    flip_jitter: float = 0.0
    angle_jitter_deg: float = 0.0

    def __post_init__(self) -> None:
        if self.spacing_mm is not None and not float(self.spacing_mm) > 0:
            raise ConfigError(f"physics.spacing_mm must be > 0 mm (or null), got {self.spacing_mm}")
        if not 0 < float(self.flip_deg) <= 180:
            raise ConfigError(f"physics.flip_deg must be in (0, 180] degrees, got {self.flip_deg}")
        check_tag_params(float(self.spacing_px), float(self.flip_deg), self.pattern)
        if len(tuple(self.offset_px)) != 2:
            raise ConfigError(f"physics.offset_px must be two numbers (one per line set), got {list(self.offset_px)}")
        for key in ("spacing_jitter", "flip_jitter"):
            if not 0 <= float(getattr(self, key)) < 1:
                raise ConfigError(f"physics.{key} must be in [0, 1) (relative), got {getattr(self, key)}")
        if not 0 <= float(self.angle_jitter_deg) <= 90:
            raise ConfigError(f"physics.angle_jitter_deg must be in [0, 90] degrees, got {self.angle_jitter_deg}")
        get_contrast(self.contrast)

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any] | PhysicsParams | None) -> PhysicsParams:
        """Build from a config mapping; unknown keys are an error naming them.

        Raises:
            ConfigError: an unknown key or an invalid value (the message names ``physics.<key>``).
        """
        if isinstance(cfg, PhysicsParams):
            return cfg
        cfg = dict(cfg or {})
        reject_unknown_keys(cfg, {f.name for f in dataclasses.fields(cls)}, "physics")
        if "pattern" in cfg:
            cfg["pattern"] = tuple(float(w) for w in cfg["pattern"])
        if "offset_px" in cfg:
            cfg["offset_px"] = tuple(float(o) for o in cfg["offset_px"])
        for key in ("spacing_px", "flip_deg", "angle_deg", "spacing_jitter", "flip_jitter", "angle_jitter_deg"):
            if key in cfg:
                cfg[key] = _number(key, cfg[key])
        if cfg.get("spacing_mm") is not None:
            cfg["spacing_mm"] = _number("spacing_mm", cfg["spacing_mm"])
        return cls(**cfg)

    @property
    def jittered(self) -> bool:
        """True when the tag geometry differs per image (no single cached pattern)."""
        return bool(self.random_offset or self.spacing_jitter or self.flip_jitter or self.angle_jitter_deg)

    def tag_kwargs(
        self, spacing_mm: Sequence[float] | None = None, rng: np.random.Generator | None = None
    ) -> dict[str, Any]:
        """Keyword arguments of :func:`~tagseg.physics.tagging.tag_mz` for one image.

        Args:
            spacing_mm: the image's (row, col) pixel spacing, used when ``spacing_mm`` is set.
            rng: the image's generator, used for the jitter options.
        """
        spacing = self.spacing_px
        if self.spacing_mm is not None:
            if spacing_mm is None:
                raise ConfigError("physics.spacing_mm needs each image's pixel spacing (meta/spacing_mm)")
            spacing = float(self.spacing_mm) / float(np.mean(spacing_mm))
            if spacing < 2:
                raise ConfigError(
                    f"physics.spacing_mm={self.spacing_mm} gives {spacing:.2f} px at pixel spacing "
                    f"{list(np.round(spacing_mm, 3))} mm; tag spacing must be >= 2 px"
                )
        flip, angle, offset = self.flip_deg, self.angle_deg, tuple(self.offset_px)
        if rng is not None and self.jittered:
            spacing = max(2.0, spacing * (1 + rng.uniform(-self.spacing_jitter, self.spacing_jitter)))
            flip = min(180.0, flip * (1 + rng.uniform(-self.flip_jitter, self.flip_jitter)))
            angle = angle + rng.uniform(-self.angle_jitter_deg, self.angle_jitter_deg)
            if self.random_offset:
                offset = tuple(float(o) for o in rng.uniform(0.0, spacing, size=2))
        return {
            "spacing_px": float(spacing),
            "flip_deg": float(flip),
            "pattern": tuple(self.pattern),
            "angle_deg": float(angle),
            "offset_px": (float(offset[0]), float(offset[1])),
        }

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready parameters (recorded in the output store's attrs)."""
        d = dataclasses.asdict(self)
        d["pattern"], d["offset_px"] = list(self.pattern), list(self.offset_px)
        return d


def _number(key: str, value: Any) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"physics.{key} must be a number, got {value!r}") from None
    if not math.isfinite(out):
        raise ConfigError(f"physics.{key} must be finite, got {value!r}")
    return out
