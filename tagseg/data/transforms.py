"""Train-time augmentation (METHOD 4: flips, Gaussian noise, blur, affine, elastic) and normalisation.

Augmentation uses MONAI dictionary transforms on channel-first tensors, so one pipeline moves the
image, the label and the shape-information maps together:

* ``image`` float32 (1, H, W) in [0, 1] (normalised after augmentation, see :func:`normalise`);
* ``label`` float32 (1, H, W) class indices (nearest-neighbour resampling keeps them integral);
* ``si`` float32 (K, H, W) shape-information maps (bilinear, like the image).

Regions moved in from outside the image are zero in all three (background, no shape).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
from monai.transforms import (
    Compose,
    Rand2DElasticd,
    RandAffined,
    RandFlipd,
    RandGaussianNoised,
    RandGaussianSmoothd,
    ToTensord,
)

from tagseg.conventions import NORM_MEAN, NORM_STD  # noqa: F401  (the normalisation's home: tagseg.conventions)
from tagseg.errors import ConfigError, reject_unknown_keys

SPATIAL_KEYS = ("image", "label", "si")
SPATIAL_MODES = ("bilinear", "nearest", "bilinear")


@dataclass(frozen=True)
class AugmentConfig:
    """Probabilities and ranges of the train-time augmentations (all off with every ``*_prob`` = 0).

    Attributes:
        flip_prob: probability of a flip along each image axis (independently).
        noise_prob: probability of additive Gaussian noise.
        noise_std: its standard deviation (image in [0, 1]).
        blur_prob: probability of a Gaussian blur.
        blur_sigma: range of the blur sigma, pixels.
        affine_prob: probability of a random affine transform.
        rotate_deg: rotations drawn in +-rotate_deg.
        scale: relative zoom drawn in +-scale.
        translate: shifts drawn in +-translate * image side.
        elastic_prob: probability of an elastic deformation.
        elastic_grid: control-point spacing as a fraction of the image side.
        elastic_magnitude: range of the control-point displacement magnitude (MONAI units).
    """

    flip_prob: float = 0.5
    noise_prob: float = 0.2
    noise_std: float = 0.03
    blur_prob: float = 0.2
    blur_sigma: tuple[float, float] = (0.25, 1.0)
    affine_prob: float = 0.3
    rotate_deg: float = 15.0
    scale: float = 0.1
    translate: float = 0.05
    elastic_prob: float = 0.1
    elastic_grid: float = 0.125
    elastic_magnitude: tuple[float, float] = (1.0, 2.0)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None, where: str = "datamodule.augment") -> AugmentConfig:
        """Build from a config mapping; unknown keys and probabilities outside [0, 1] are errors.

        Raises:
            ConfigError: naming ``where`` and the offending key.
        """
        values = dict(values or {})
        reject_unknown_keys(values, {f.name for f in fields(cls)}, where)
        for key in ("blur_sigma", "elastic_magnitude"):
            if key in values:
                values[key] = tuple(float(v) for v in values[key])
        cfg = cls(**values)
        for key, value in asdict(cfg).items():
            if key.endswith("_prob") and not 0.0 <= float(value) <= 1.0:
                raise ConfigError(f"{where}.{key}: a probability in [0, 1] expected, got {value}")
        return cfg

    @property
    def enabled(self) -> bool:
        """Whether any augmentation can fire."""
        return any(getattr(self, f.name) > 0 for f in fields(self) if f.name.endswith("_prob"))


def build_augmentation(cfg: AugmentConfig, image_size: Sequence[int]) -> Compose:
    """The train-time augmentation pipeline (MONAI dictionary transforms).

    Args:
        cfg: probabilities and ranges.
        image_size: (H, W) of the images, for the elastic grid spacing.

    Returns:
        A MONAI ``Compose`` over ``{"image", "label", "si"}`` returning plain tensors.
    """
    keys = list(SPATIAL_KEYS)
    modes = list(SPATIAL_MODES)
    side = float(min(image_size))
    steps: list[Any] = []
    if cfg.flip_prob > 0:
        steps += [RandFlipd(keys, prob=cfg.flip_prob, spatial_axis=axis) for axis in (0, 1)]
    if cfg.noise_prob > 0:
        steps.append(RandGaussianNoised("image", prob=cfg.noise_prob, mean=0.0, std=cfg.noise_std))
    if cfg.blur_prob > 0:
        steps.append(RandGaussianSmoothd("image", sigma_x=cfg.blur_sigma, sigma_y=cfg.blur_sigma, prob=cfg.blur_prob))
    if cfg.affine_prob > 0:
        steps.append(
            RandAffined(
                keys,
                prob=cfg.affine_prob,
                rotate_range=math.radians(cfg.rotate_deg),
                scale_range=(cfg.scale, cfg.scale),
                translate_range=(cfg.translate * side, cfg.translate * side),
                mode=modes,
                padding_mode="zeros",
            )
        )
    if cfg.elastic_prob > 0:
        grid = max(2.0, cfg.elastic_grid * side)
        steps.append(
            Rand2DElasticd(
                keys,
                spacing=(grid, grid),
                magnitude_range=cfg.elastic_magnitude,
                prob=cfg.elastic_prob,
                mode=modes,
                padding_mode="zeros",
            )
        )
    steps.append(ToTensord(keys, track_meta=False))
    return Compose(steps)


def normalise(image: torch.Tensor, mean: float = NORM_MEAN, std: float = NORM_STD) -> torch.Tensor:
    """``(image - mean) / std`` for an image already scaled to [0, 1] (the paper's 0.456 / 0.224)."""
    return (image - mean) / std


def denormalise(image: torch.Tensor, mean: float = NORM_MEAN, std: float = NORM_STD) -> torch.Tensor:
    """Inverse of :func:`normalise` (back to [0, 1], e.g. for overlays)."""
    return image * std + mean


__all__ = ["AugmentConfig", "NORM_MEAN", "NORM_STD", "build_augmentation", "denormalise", "normalise"]
