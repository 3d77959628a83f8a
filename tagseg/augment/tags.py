"""Tags on the fly: SPAMM modulation drawn per sample (tagging cine, re-tagging tagged images),
and tag-contrast change.

:class:`SpammTagging` multiplies each image by ``|Mz|`` of a SPAMM preparation computed by
:func:`tagseg.physics.tagging.line_set_mz` (the same pulse/gradient recurrence the phantom and the
physics translator use) with its tag spacing (mm, through the sample's pixel size), grid angle,
binomial pulse train (1-1, 1-2-1, 1-3-3-1, ...), total flip, phase offset and one or two line sets
drawn per sample, then faded to a drawn time after tagging by
:func:`tagseg.physics.fading.faded_mz`. On a cine image this is tagging; on a tagged image it lays a
second pattern over the first (re-tagging), so a model cannot rely on one grid.
:class:`TagContrast` scales the image's fine detail (tag modulation included) about a local mean:
weaker tags as in late, faded frames, or stronger ones.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from tagseg.augment.base import BatchTransform, BatchView, as_range, choice, uniform
from tagseg.conventions import LV, RV
from tagseg.errors import ConfigError
from tagseg.physics.fading import faded_mz
from tagseg.physics.tagging import check_tag_params, line_set_mz

#: the smallest tag period drawn, pixels (2 is the Nyquist limit; 3 keeps lines resolvable)
MIN_PERIOD_PX = 3.0


def pulse_flips(pattern: Sequence[float], flip_deg: float) -> list[float]:
    """Flip angles (radians) of one line set's RF train: ``flip_deg`` split by the binomial weights."""
    pat = check_tag_params(2.0, flip_deg, pattern)
    return [math.radians(flip_deg) * w / sum(pat) for w in pat]


def spamm_modulation(
    shape: tuple[int, int],
    period_px: float,
    angle_deg: float,
    flips_rad: Sequence[float],
    offset_px: tuple[float, float],
    grid: bool,
    device: torch.device,
) -> torch.Tensor:
    """Signed Mz (H, W) right after a SPAMM preparation of one (``grid=False``) or two line sets.

    The first set's lines are normal to ``angle_deg`` (rows = y, columns = x), the second's to
    ``angle_deg - 90``, as in :func:`tagseg.physics.tagging.tag_mz`.
    """
    h, w = shape
    rows = torch.arange(h, device=device, dtype=torch.float32).view(h, 1)
    cols = torch.arange(w, device=device, dtype=torch.float32).view(1, w)
    a = math.radians(angle_deg)
    k = 2 * math.pi / period_px
    mz = line_set_mz(k * (rows * math.cos(a) + cols * math.sin(a) - offset_px[0]), flips_rad)
    if grid:
        b = a - math.pi / 2
        mz = mz * line_set_mz(k * (rows * math.cos(b) + cols * math.sin(b) - offset_px[1]), flips_rad)
    return mz


class SpammTagging(BatchTransform):
    """SPAMM tags drawn per sample, faded to a drawn time after tagging.

    Args:
        prob: probability per sample.
        spacing_mm: tag spacing range, mm (periods below 3 pixels are raised to 3).
        angle_deg: range of the first line set's normal direction.
        flip_deg: range of each line set's total flip angle.
        patterns: the binomial RF trains to choose from (uniformly).
        one_d_prob: probability of a single line set (1-D tags) instead of a grid.
        frame_ms: range of the time between frames; the sample's ``frame`` times it is the time
            since tagging the fading is computed for.
        t1_ms: range of the tissue T1 (shorter: faster fading).
        readout_flip_deg: range of the readout flip per frame.

    Raises:
        ConfigError: a bad range or pulse train.
    """

    family = "tags"
    keys = ("image", "spacing_mm", "frame")

    def __init__(
        self,
        prob: float,
        spacing_mm: Sequence[float] = (5.0, 12.0),
        angle_deg: Sequence[float] = (0.0, 180.0),
        flip_deg: Sequence[float] = (60.0, 110.0),
        patterns: Sequence[Sequence[float]] = ((1.0, 1.0), (1.0, 2.0, 1.0), (1.0, 3.0, 3.0, 1.0)),
        one_d_prob: float = 0.15,
        frame_ms: Sequence[float] = (20.0, 80.0),
        t1_ms: Sequence[float] = (500.0, 1200.0),
        readout_flip_deg: Sequence[float] = (8.0, 20.0),
    ) -> None:
        super().__init__(prob)
        self.spacing_mm = as_range(spacing_mm, "SpammTagging.spacing_mm", 1.0, 50.0)
        self.angle_deg = as_range(angle_deg, "SpammTagging.angle_deg")
        self.flip_deg = as_range(flip_deg, "SpammTagging.flip_deg", 0.0, 180.0)
        if not patterns:
            raise ConfigError("SpammTagging.patterns: expected at least one RF train, e.g. [[1, 1], [1, 2, 1]]")
        self.patterns = [check_tag_params(2.0, 90.0, p) for p in patterns]
        if not 0.0 <= float(one_d_prob) <= 1.0:
            raise ConfigError(f"SpammTagging.one_d_prob: a probability in [0, 1] expected, got {one_d_prob}")
        self.one_d_prob = float(one_d_prob)
        self.frame_ms = as_range(frame_ms, "SpammTagging.frame_ms", 1.0, 1000.0)
        self.t1_ms = as_range(t1_ms, "SpammTagging.t1_ms", 10.0, 5000.0)
        self.readout_flip_deg = as_range(readout_flip_deg, "SpammTagging.readout_flip_deg", 0.0, 89.0)

    def apply(self, sub: BatchView, gen: torch.Generator) -> BatchView:
        image = sub["image"]
        n, _, h, w = image.shape
        dev = image.device
        spacing = uniform(gen, n, self.spacing_mm, dev)
        period = (spacing / sub["spacing_mm"].float().mean(1).to(dev)).clamp(min=MIN_PERIOD_PX)
        angle = uniform(gen, n, self.angle_deg, dev)
        flip = uniform(gen, n, self.flip_deg, dev)
        which = choice(gen, n, len(self.patterns), dev)
        offset = torch.rand(n, 2, generator=gen, device=dev) * period.view(n, 1)
        grid = torch.rand(n, generator=gen, device=dev) >= self.one_d_prob
        frame_ms = uniform(gen, n, self.frame_ms, dev)
        t1 = uniform(gen, n, self.t1_ms, dev)
        readout = uniform(gen, n, self.readout_flip_deg, dev)
        frames = sub["frame"].float().to(dev) if "frame" in sub else torch.zeros(n, device=dev)
        out = torch.empty_like(image)
        for i in range(n):
            mz0 = spamm_modulation(
                (h, w),
                float(period[i]),
                float(angle[i]),
                pulse_flips(self.patterns[int(which[i])], float(flip[i])),
                (float(offset[i, 0]), float(offset[i, 1])),
                bool(grid[i]),
                dev,
            )
            mz = faded_mz(mz0, float(frames[i]), float(frame_ms[i]), float(t1[i]), float(readout[i]))
            out[i] = image[i].abs() * mz.abs()
        return {"image": out}


class TagContrast(BatchTransform):
    """Scale the detail above a local mean: ``m + gain * (image - m)``, ``m`` a Gaussian blur.

    ``gain < 1`` fades tags (and fine detail) as late frames do; ``gain > 1`` sharpens them.

    Args:
        prob: probability per sample.
        gain: range of the detail gain.
        sigma_px: range of the local mean's Gaussian sigma, pixels (about half a tag period).
    """

    family = "tags"

    def __init__(self, prob: float, gain: Sequence[float] = (0.2, 1.5), sigma_px: Sequence[float] = (1.5, 3.0)) -> None:
        super().__init__(prob)
        self.gain = as_range(gain, "TagContrast.gain", 0.0, 10.0)
        self.sigma_px = as_range(sigma_px, "TagContrast.sigma_px", 0.3, 20.0)

    def apply(self, sub: BatchView, gen: torch.Generator) -> BatchView:
        image = sub["image"]
        n = image.shape[0]
        gain = uniform(gen, n, self.gain, image.device).view(n, 1, 1, 1)
        sigma = uniform(gen, n, self.sigma_px, image.device)
        local = gaussian_blur(image, sigma)
        return {"image": (local + gain * (image - local)).clamp(min=0.0)}


class BloodTagWashout(BatchTransform):
    """Tags washed out of the blood: inside the LV and RV pools the image is drawn towards the
    pool's own smooth signal by a drawn ``fade`` (1: untagged blood).

    Blood flows through the slice and carries its tags away within the first frames, so real tagged
    cines show tag-free, often bright pools against a tagged myocardium; a model that learned tags
    everywhere, as in a phantom whose blood keeps them, meets an edge it has not seen. The pool
    signal is a blur of the image weighted by the pool map (the myocardium does not leak in), and
    the pool map is softened by ``edge_px`` so that no label edge becomes an intensity step.

    Args:
        prob: probability per sample.
        fade: range of the share of the tag modulation removed in the pools.
        sigma_px: range of the pool signal's Gaussian sigma, pixels (about a tag period).
        edge_px: softening of the pool map, pixels.
    """

    family = "tags"
    keys = ("image", "label")

    def __init__(
        self,
        prob: float,
        fade: Sequence[float] = (0.6, 1.0),
        sigma_px: Sequence[float] = (2.0, 4.0),
        edge_px: float = 0.7,
    ) -> None:
        super().__init__(prob)
        self.fade = as_range(fade, "BloodTagWashout.fade", 0.0, 1.0)
        self.sigma_px = as_range(sigma_px, "BloodTagWashout.sigma_px", 0.3, 20.0)
        if not 0.0 < float(edge_px) <= 20.0:
            raise ConfigError(f"BloodTagWashout.edge_px: expected a softening in (0, 20] pixels, got {edge_px}")
        self.edge_px = float(edge_px)

    def apply(self, sub: BatchView, gen: torch.Generator) -> BatchView:
        image, label = sub["image"], sub["label"].round()
        n, dev = image.shape[0], image.device
        fade = uniform(gen, n, self.fade, dev).view(n, 1, 1, 1)
        sigma = uniform(gen, n, self.sigma_px, dev)
        pool = ((label == LV) | (label == RV)).to(image.dtype)
        smooth = gaussian_blur(image * pool, sigma) / gaussian_blur(pool, sigma).clamp(min=1e-3)
        weight = gaussian_blur(pool, torch.full((n,), self.edge_px, device=dev)) * pool
        return {"image": (image + fade * weight * (smooth - image)).clamp(min=0.0)}


def gaussian_blur(image: torch.Tensor, sigma_px: torch.Tensor) -> torch.Tensor:
    """Per-sample separable Gaussian blur of (B, 1, H, W) images with sigmas (B,), reflect padding."""
    n = image.shape[0]
    radius = int(math.ceil(3 * float(sigma_px.max())))
    x = torch.arange(-radius, radius + 1, device=image.device, dtype=image.dtype)
    kernel = torch.exp(-0.5 * (x.view(1, -1) / sigma_px.view(-1, 1).to(image.dtype)) ** 2)
    kernel = kernel / kernel.sum(1, keepdim=True)
    # one group per sample: (1, B, H, W) convolved with B kernels
    pad = F.pad(image.transpose(0, 1), (radius, radius, radius, radius), mode="reflect")
    out = F.conv2d(pad, kernel.view(n, 1, 1, -1), groups=n)
    out = F.conv2d(out, kernel.view(n, 1, -1, 1), groups=n)
    return out.transpose(0, 1)


__all__ = [
    "MIN_PERIOD_PX",
    "BloodTagWashout",
    "SpammTagging",
    "TagContrast",
    "gaussian_blur",
    "pulse_flips",
    "spamm_modulation",
]
