"""The batch-transform protocol: what a transform sees, how it draws, how it is switched on.

A *batch view* is the training batch as the transforms see it (a dict of tensors on one device):

* ``image`` float (B, 1, H, W), intensities in [0, 1] (the store's scale, before normalisation);
* ``label`` float (B, 1, H, W) class indices (spatial transforms resample it nearest);
* ``si`` float (B, K, H, W) shape-information maps (resampled bilinear, like the image);
* ``spacing_mm`` float (B, 2) (row, col) pixel spacing, updated by rescaling transforms;
* ``frame`` long (B,), ``slice`` long (B,), ``subject`` list of str (read by frame blending).

Every draw comes from the ``torch.Generator`` passed in, so a batch's augmentation is a function of
that generator's seed only.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Sequence
from typing import Any, ClassVar

import torch

from tagseg.errors import ConfigError

#: the transform families an ablation can leave out, and the shift each one is tested on (docs/experiments.md)
FAMILIES = ("geometry", "tags", "noise", "resolution", "artefacts", "appearance")
#: what a spatial transform moves together
SPATIAL_KEYS = ("image", "label", "si", "spacing_mm")

BatchView = dict[str, Any]


def as_range(
    value: float | Sequence[float], name: str, low: float = -math.inf, high: float = math.inf
) -> tuple[float, float]:
    """A ``[low, high]`` range from config (a number means a fixed value).

    Raises:
        ConfigError: not one or two numbers, reversed, or outside ``[low, high]``.
    """
    values = [value] if isinstance(value, (int, float)) else list(value)
    if len(values) not in (1, 2) or not all(isinstance(v, (int, float)) for v in values):
        raise ConfigError(f"{name}: expected a number or a [low, high] range, got {value!r}")
    lo, hi = float(values[0]), float(values[-1])
    if not low <= lo <= hi <= high:
        raise ConfigError(f"{name}: expected low <= high within [{low}, {high}], got {value!r}")
    return lo, hi


def uniform(gen: torch.Generator, n: int, rng: tuple[float, float], device: torch.device) -> torch.Tensor:
    """``n`` draws uniform in ``rng`` (float32, on ``device``)."""
    return rng[0] + (rng[1] - rng[0]) * torch.rand(n, generator=gen, device=device)


def log_uniform(gen: torch.Generator, n: int, rng: tuple[float, float], device: torch.device) -> torch.Tensor:
    """``n`` draws log-uniform in ``rng`` (both ends > 0): each octave equally likely."""
    return torch.exp(uniform(gen, n, (math.log(rng[0]), math.log(rng[1])), device))


def choice(gen: torch.Generator, n: int, k: int, device: torch.device) -> torch.Tensor:
    """``n`` indices drawn uniformly from ``range(k)``."""
    return torch.randint(k, (n,), generator=gen, device=device)


class BatchTransform(torch.nn.Module, abc.ABC):
    """A random transform of a batch view, applied to each sample with probability ``prob``.

    Subclasses set ``family`` and ``keys`` (the entries they read and write) and implement
    :meth:`apply` on the sub-batch of samples that fire.

    Args:
        prob: probability per sample.

    Raises:
        ConfigError: ``prob`` outside [0, 1].
    """

    family: ClassVar[str] = ""
    keys: ClassVar[tuple[str, ...]] = ("image",)

    def __init__(self, prob: float) -> None:
        super().__init__()
        if not 0.0 <= float(prob) <= 1.0:
            raise ConfigError(f"{type(self).__name__}.prob: a probability in [0, 1] expected, got {prob}")
        self.prob = float(prob)

    def forward(self, batch: BatchView, gen: torch.Generator) -> BatchView:
        """Draw which samples fire, transform them, return the batch view with those rows replaced."""
        image = batch["image"]
        fire = torch.rand(image.shape[0], generator=gen, device=image.device) < self.prob
        rows = fire.nonzero().flatten()
        if rows.numel() == 0:
            return batch
        out = self.apply({k: batch[k][rows] for k in self.keys if k in batch}, gen)
        for key, value in out.items():
            batch[key] = batch[key].index_copy(0, rows, value.to(batch[key].dtype))
        return batch

    @abc.abstractmethod
    def apply(self, sub: BatchView, gen: torch.Generator) -> BatchView:
        """The transformed entries of the firing samples (same shapes as given)."""


def image_stats(image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample mean and standard deviation of (B, C, H, W) images, shaped (B, 1, 1, 1)."""
    flat = image.flatten(1)
    return flat.mean(1).view(-1, 1, 1, 1), flat.std(1).view(-1, 1, 1, 1)


__all__ = [
    "FAMILIES",
    "SPATIAL_KEYS",
    "BatchTransform",
    "BatchView",
    "as_range",
    "choice",
    "image_stats",
    "log_uniform",
    "uniform",
]
