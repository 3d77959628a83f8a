"""Appearance: random convolutions and global intensity curves (histogram shifts), the
transforms single-source domain-generalisation methods use to change texture and contrast while
keeping shape, and tissue contrast (gains per labelled tissue), which no global curve reaches.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from tagseg.augment.base import BatchTransform, BatchView, as_range, choice, image_stats, log_uniform, uniform
from tagseg.augment.tags import gaussian_blur
from tagseg.conventions import LV, MYO, RV
from tagseg.errors import ConfigError


class RandomConvolution(BatchTransform):
    """A random ``k x k`` convolution (k drawn from ``kernel_sizes``), rescaled to the image's mean
    and standard deviation and mixed with the original by a drawn weight.

    Args:
        prob: probability per sample.
        kernel_sizes: odd kernel sizes to choose from.
        mix: range of the original image's weight in the result.
    """

    family = "appearance"

    def __init__(self, prob: float, kernel_sizes: Sequence[int] = (1, 3, 5), mix: Sequence[float] = (0.0, 0.7)) -> None:
        super().__init__(prob)
        sizes = [int(k) for k in kernel_sizes]
        if not sizes or any(k < 1 or k % 2 == 0 for k in sizes):
            raise ConfigError(f"RandomConvolution.kernel_sizes: expected odd sizes >= 1, got {list(kernel_sizes)}")
        self.kernel_sizes = sizes
        self.mix = as_range(mix, "RandomConvolution.mix", 0.0, 1.0)

    def apply(self, sub: BatchView, gen: torch.Generator) -> BatchView:
        image = sub["image"]
        n = image.shape[0]
        dev = image.device
        size = self.kernel_sizes[int(choice(gen, 1, len(self.kernel_sizes), dev))]
        # He-like scale keeps the output's spread comparable whatever the kernel size
        kernel = torch.randn(n, 1, size, size, generator=gen, device=dev) / size
        pad = F.pad(image.transpose(0, 1), (size // 2,) * 4, mode="reflect")
        conv = F.conv2d(pad, kernel, groups=n).transpose(0, 1)
        mean, std = image_stats(image)
        cmean, cstd = image_stats(conv)
        conv = (conv - cmean) / cstd.clamp(min=1e-6) * std + mean
        mix = uniform(gen, n, self.mix, dev).view(n, 1, 1, 1)
        return {"image": (mix * image + (1 - mix) * conv).clamp(min=0.0)}


class IntensityCurve(BatchTransform):
    """A random monotone intensity curve on [0, peak]: piecewise linear through ``points`` control
    points whose increments are drawn in ``[1 - jitter, 1 + jitter]`` (histogram shifts).

    With ``monotone=False`` the control values after 0 are drawn in [0.05, 1] independently, so
    tissues may swap brightness (blood darker than myocardium, organs brighter): another scanner's
    tissue contrast, which no monotone curve reaches.

    Args:
        prob: probability per sample.
        points: control points of the curve (>= 2).
        jitter: relative spread of the increments (0: the identity); monotone curves only.
        monotone: draw monotone curves (histogram shifts) or free ones (contrast inversions).
    """

    family = "appearance"

    def __init__(self, prob: float, points: int = 6, jitter: float = 0.6, monotone: bool = True) -> None:
        super().__init__(prob)
        self.monotone = bool(monotone)
        if int(points) < 2:
            raise ConfigError(f"IntensityCurve.points: expected >= 2, got {points}")
        self.points = int(points)
        self.jitter = float(as_range(jitter, "IntensityCurve.jitter", 0.0, 1.0)[0])

    def apply(self, sub: BatchView, gen: torch.Generator) -> BatchView:
        image = sub["image"].clamp(min=0.0)
        n = image.shape[0]
        dev = image.device
        segments = self.points - 1
        if self.monotone:
            steps = uniform(gen, n * segments, (1 - self.jitter, 1 + self.jitter), dev).view(n, segments)
            ys = torch.cat([torch.zeros(n, 1, device=dev), steps.cumsum(1)], 1)
            ys = ys / ys[:, -1:]
        else:
            levels = uniform(gen, n * segments, (0.05, 1.0), dev).view(n, segments)
            ys = torch.cat([torch.zeros(n, 1, device=dev), levels / levels.amax(1, keepdim=True)], 1)
        peak = image.flatten(1).amax(1).clamp(min=1e-6).view(n, 1, 1, 1)
        x = (image / peak).flatten(1) * segments
        idx = x.floor().clamp(max=segments - 1).long()
        y0, y1 = ys.gather(1, idx), ys.gather(1, idx + 1)
        out = y0 + (x - idx.float()) * (y1 - y0)
        return {"image": out.view_as(image) * peak}


class TissueContrast(BatchTransform):
    """Another tissue contrast: the LV and RV blood pools and everything unlabelled (body, organs,
    fat) scaled against the myocardium by gains drawn per sample (log-uniform), through label maps
    softened by a Gaussian of ``sigma_px`` so that no label edge becomes an intensity step.

    A global intensity curve maps equal greys alike, so it cannot darken the blood against a
    myocardium of the same grey; another sequence or scanner does (inflow, T1, tags fading faster in
    the blood). On the phantom, blood is as bright as the myocardium (pool / myocardium 0.95-1.02);
    its ``scanner`` shift has 0.5-0.6.

    Args:
        prob: probability per sample.
        blood: range of each blood pool's gain (LV and RV drawn independently).
        other: range of the gain of every unlabelled pixel.
        sigma_px: range of the softening of the label maps, pixels.
    """

    family = "appearance"
    keys = ("image", "label")

    def __init__(
        self,
        prob: float,
        blood: Sequence[float] = (0.4, 1.5),
        other: Sequence[float] = (0.6, 1.7),
        sigma_px: Sequence[float] = (0.7, 2.0),
    ) -> None:
        super().__init__(prob)
        self.blood = as_range(blood, "TissueContrast.blood", 0.01, 100.0)
        self.other = as_range(other, "TissueContrast.other", 0.01, 100.0)
        self.sigma_px = as_range(sigma_px, "TissueContrast.sigma_px", 0.1, 20.0)

    def apply(self, sub: BatchView, gen: torch.Generator) -> BatchView:
        image, label = sub["image"], sub["label"].round()
        n, dev = image.shape[0], image.device
        gains = {
            LV: log_uniform(gen, n, self.blood, dev),
            RV: log_uniform(gen, n, self.blood, dev),
            MYO: torch.ones(n, device=dev),
        }
        field = log_uniform(gen, n, self.other, dev).view(n, 1, 1, 1).expand_as(image).clone()
        for value, gain in gains.items():
            field = torch.where(label == value, gain.view(n, 1, 1, 1).to(field.dtype), field)
        field = gaussian_blur(field, uniform(gen, n, self.sigma_px, dev))
        return {"image": (image * field).clamp(min=0.0)}


__all__ = ["IntensityCurve", "RandomConvolution", "TissueContrast"]
