"""Geometry: flips, scale to another pixel size with rotation and shift, elastic deformation, a
smaller field of view.

Spatial transforms move the image and shape maps (bilinear) and the label (nearest) through the
same sampling grid, so a label stays the label of its pixel; regions moved in from outside the
image are zero in all three (background, no shape), as in the per-sample MONAI chain.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from tagseg.augment.base import SPATIAL_KEYS, BatchTransform, BatchView, as_range, log_uniform, uniform


def warp(sub: BatchView, grid: torch.Tensor) -> BatchView:
    """Resample image, shape maps (bilinear) and label (nearest) at ``grid`` (B, H, W, 2), zeros outside."""
    out = dict(sub)
    for key, mode in (("image", "bilinear"), ("si", "bilinear"), ("label", "nearest")):
        out[key] = F.grid_sample(sub[key].float(), grid, mode=mode, padding_mode="zeros", align_corners=False)
    return out


def identity_grid(n: int, h: int, w: int, device: torch.device) -> torch.Tensor:
    """The sampling grid (n, h, w, 2) that reproduces an image (normalised x, y; align_corners=False)."""
    theta = torch.eye(2, 3, device=device).expand(n, 2, 3)
    return F.affine_grid(theta, [n, 1, h, w], align_corners=False)


class RandomFlip(BatchTransform):
    """Flip along each image axis independently with probability ``prob`` (METHOD 4's flips)."""

    family = "geometry"
    keys = SPATIAL_KEYS

    def forward(self, batch: BatchView, gen: torch.Generator) -> BatchView:
        for dim in (-2, -1):
            fire = torch.rand(batch["image"].shape[0], generator=gen, device=batch["image"].device) < self.prob
            if fire.any():
                view = fire.view(-1, 1, 1, 1)
                for key in ("image", "label", "si"):
                    batch[key] = torch.where(view, batch[key].flip(dim), batch[key])
        return batch

    def apply(self, sub: BatchView, gen: torch.Generator) -> BatchView:
        return sub  # flips are drawn per axis in forward


class RandomScaleRotate(BatchTransform):
    """Resample to a pixel size drawn in ``pixel_mm`` (log-uniform), rotated and shifted.

    A sample with spacing ``s`` mm resampled to ``p`` mm is magnified ``s / p`` about the image
    centre: the heart looks as it would at that pixel size, and ``spacing_mm`` becomes ``p``. With
    ``pixel_mm=None`` each sample keeps its pixel size (rotation and shift only): what a model trained
    on one pixel size needs (``prepare.fit=crop``), whatever that grid's spacing is.

    Args:
        prob: probability per sample.
        pixel_mm: range of the new pixel size, mm (0.6-2.5 covers clinical tagged protocols); None
            keeps each sample's own.
        rotate_deg: rotation drawn in +-rotate_deg (tag grids rotate with the anatomy).
        translate: shift drawn in +-translate * image side.
    """

    family = "geometry"
    keys = SPATIAL_KEYS

    def __init__(
        self,
        prob: float,
        pixel_mm: Sequence[float] | None = (0.6, 2.5),
        rotate_deg: float = 180.0,
        translate: float = 0.05,
    ) -> None:
        super().__init__(prob)
        self.pixel_mm = None if pixel_mm is None else as_range(pixel_mm, "RandomScaleRotate.pixel_mm", 0.05, 20.0)
        self.rotate_deg = float(rotate_deg)
        self.translate = float(translate)

    def apply(self, sub: BatchView, gen: torch.Generator) -> BatchView:
        image = sub["image"]
        n, _, h, w = image.shape
        dev = image.device
        if self.pixel_mm is None:
            zoom = torch.ones(n, device=dev)
        else:
            zoom = sub["spacing_mm"].float().mean(1).to(dev) / log_uniform(gen, n, self.pixel_mm, dev)
        angle = torch.deg2rad(uniform(gen, n, (-self.rotate_deg, self.rotate_deg), dev))
        shift = uniform(gen, 2 * n, (-2 * self.translate, 2 * self.translate), dev).view(n, 2)
        cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
        # rotation in pixel units: normalised x scales by w / 2, y by h / 2
        theta = torch.stack(
            [
                torch.stack([cos, -sin * h / w, shift[:, 0]], 1),
                torch.stack([sin * w / h, cos, shift[:, 1]], 1),
            ],
            1,
        )
        out = warp(sub, F.affine_grid(theta, [n, 1, h, w], align_corners=False))
        out["spacing_mm"] = sub["spacing_mm"] / zoom.view(n, 1).to(sub["spacing_mm"].dtype)
        return out


class ElasticDeform(BatchTransform):
    """Smooth random displacement: a coarse ``grid`` x ``grid`` field upsampled bicubically.

    Args:
        prob: probability per sample.
        magnitude_px: range of the displacement's standard deviation, pixels.
        grid: control points per image side.
    """

    family = "geometry"
    keys = SPATIAL_KEYS

    def __init__(self, prob: float, magnitude_px: Sequence[float] = (1.0, 4.0), grid: int = 6) -> None:
        super().__init__(prob)
        self.magnitude_px = as_range(magnitude_px, "ElasticDeform.magnitude_px", 0.0, 50.0)
        self.grid = max(2, int(grid))

    def apply(self, sub: BatchView, gen: torch.Generator) -> BatchView:
        image = sub["image"]
        n, _, h, w = image.shape
        dev = image.device
        sigma = uniform(gen, n, self.magnitude_px, dev).view(n, 1, 1, 1)
        coarse = torch.randn(n, 2, self.grid, self.grid, generator=gen, device=dev) * sigma
        field = F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=True)
        # pixels -> normalised units (x spans w pixels over 2, y h pixels)
        scale = torch.tensor([2.0 / w, 2.0 / h], device=dev).view(1, 2, 1, 1)
        grid = identity_grid(n, h, w, dev) + (field * scale).permute(0, 2, 3, 1)
        return warp(sub, grid)


class FieldOfView(BatchTransform):
    """A smaller field of view: outside a window of ``extent`` of each axis, image, label and shape maps
    are zero, as in a scan of a smaller field of view placed on a one-pixel-size grid (zero-padded,
    :mod:`tagseg.data.grid`); the anatomy keeps its size. The window is centred within ``shift`` of the
    free margin (a scanner centres the field of view on the heart only roughly).

    Args:
        prob: probability per sample.
        extent: range of the window's side as a fraction of each image axis (drawn per axis).
        shift: how far the window moves off centre, as a fraction of the margin left on each side.
    """

    family = "geometry"
    keys = ("image", "label", "si")

    def __init__(self, prob: float, extent: Sequence[float] = (0.55, 0.95), shift: float = 0.5) -> None:
        super().__init__(prob)
        self.extent = as_range(extent, "FieldOfView.extent", 0.05, 1.0)
        self.shift = float(as_range(shift, "FieldOfView.shift", 0.0, 1.0)[0])

    def apply(self, sub: BatchView, gen: torch.Generator) -> BatchView:
        image = sub["image"]
        n, _, h, w = image.shape
        dev = image.device
        keep = torch.ones(n, 1, h, w, dtype=torch.bool, device=dev)
        for axis, size in ((2, h), (3, w)):
            side = uniform(gen, n, self.extent, dev) * size
            margin = size - side
            start = margin / 2 + (torch.rand(n, generator=gen, device=dev) * 2 - 1) * self.shift * margin / 2
            pos = torch.arange(size, device=dev, dtype=torch.float32) + 0.5
            inside = (pos[None] >= start[:, None]) & (pos[None] < (start + side)[:, None])
            keep &= inside.view(n, 1, size, 1) if axis == 2 else inside.view(n, 1, 1, size)
        return {key: torch.where(keep, sub[key], torch.zeros_like(sub[key])) for key in self.keys if key in sub}


__all__ = ["ElasticDeform", "FieldOfView", "RandomFlip", "RandomScaleRotate", "identity_grid", "warp"]
