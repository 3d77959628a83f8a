"""Acquisition: coil shading, contrast and gamma, Rician noise, resolution loss, Gibbs ringing,
respiratory ghosting, motion blur and poor-gating frame blending.

The k-space transforms (:class:`KSpaceTruncation`, :class:`RespiratoryGhosting`,
:class:`MotionBlur`) act on the 2-D Fourier transform of the magnitude image and return the
magnitude, as a scanner's reconstruction does.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from tagseg.augment.base import BatchTransform, BatchView, as_range, choice, log_uniform, uniform


def frequencies(n: int, device: torch.device) -> torch.Tensor:
    """FFT sample frequencies in cycles per pixel (``torch.fft.fftfreq``), float32."""
    return torch.fft.fftfreq(n, device=device).float()


class BiasField(BatchTransform):
    """Multiplicative coil shading ``exp(strength * f)``, ``f`` a smooth field of unit peak.

    Args:
        prob: probability per sample.
        strength: range of the log-amplitude (0.5: intensities within about x0.6 to x1.65).
        grid: control points per side of the coarse random field.
    """

    family = "appearance"

    def __init__(self, prob: float, strength: Sequence[float] = (0.1, 0.6), grid: int = 4) -> None:
        super().__init__(prob)
        self.strength = as_range(strength, "BiasField.strength", 0.0, 5.0)
        self.grid = max(2, int(grid))

    def apply(self, sub: BatchView, gen: torch.Generator) -> BatchView:
        image = sub["image"]
        n, _, h, w = image.shape
        coarse = torch.randn(n, 1, self.grid, self.grid, generator=gen, device=image.device)
        field = F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=True)
        field = field / field.flatten(1).abs().amax(1).clamp(min=1e-6).view(n, 1, 1, 1)
        strength = uniform(gen, n, self.strength, image.device).view(n, 1, 1, 1)
        return {"image": image * torch.exp(strength * field)}


class GammaContrast(BatchTransform):
    """``image ** gamma`` (on [0, 1]), then a contrast change about the image mean.

    Args:
        prob: probability per sample.
        gamma: range of the exponent (log-uniform).
        contrast: range of the contrast factor about the mean.
    """

    family = "appearance"

    def __init__(
        self, prob: float, gamma: Sequence[float] = (0.6, 1.7), contrast: Sequence[float] = (0.7, 1.4)
    ) -> None:
        super().__init__(prob)
        self.gamma = as_range(gamma, "GammaContrast.gamma", 0.05, 20.0)
        self.contrast = as_range(contrast, "GammaContrast.contrast", 0.0, 10.0)

    def apply(self, sub: BatchView, gen: torch.Generator) -> BatchView:
        image = sub["image"].clamp(min=0.0)
        n = image.shape[0]
        peak = image.flatten(1).amax(1).clamp(min=1e-6).view(n, 1, 1, 1)
        gamma = log_uniform(gen, n, self.gamma, image.device).view(n, 1, 1, 1)
        out = peak * (image / peak) ** gamma
        mean = out.flatten(1).mean(1).view(n, 1, 1, 1)
        contrast = uniform(gen, n, self.contrast, image.device).view(n, 1, 1, 1)
        return {"image": (mean + contrast * (out - mean)).clamp(min=0.0)}


class RicianNoise(BatchTransform):
    """Rician noise at an SNR drawn log-uniform in ``snr``: ``|image + n_re + i n_im|``.

    The SNR is the mean signal of the labelled pixels (the myocardium; the whole image where a
    sample has no label) over the noise sigma, the phantom's definition (``data.snr``).

    Args:
        prob: probability per sample.
        snr: range of the signal-to-noise ratio.
    """

    family = "noise"
    keys = ("image", "label")

    def __init__(self, prob: float, snr: Sequence[float] = (2.0, 40.0)) -> None:
        super().__init__(prob)
        self.snr = as_range(snr, "RicianNoise.snr", 0.1, 1e4)

    def sigma(self, sub: BatchView, snr: torch.Tensor) -> torch.Tensor:
        """Noise sigma per sample (B,) for SNRs ``snr`` (B,)."""
        image, label = sub["image"], sub["label"] > 0
        labelled = label.flatten(1).sum(1)
        signal = torch.where(
            labelled > 0,
            (image * label).flatten(1).sum(1) / labelled.clamp(min=1),
            image.flatten(1).mean(1),
        )
        return signal / snr

    def apply(self, sub: BatchView, gen: torch.Generator) -> BatchView:
        image = sub["image"]
        n = image.shape[0]
        snr = log_uniform(gen, n, self.snr, image.device)
        sigma = self.sigma(sub, snr).view(n, 1, 1, 1)
        real = image + sigma * torch.randn(image.shape, generator=gen, device=image.device)
        imag = sigma * torch.randn(image.shape, generator=gen, device=image.device)
        return {"image": torch.sqrt(real**2 + imag**2)}


class KSpaceTruncation(BatchTransform):
    """Resolution loss: keep a central fraction of k-space along each axis (anisotropic).

    With ``taper = 0`` the cut is hard and edges ring (Gibbs); ``taper = 1`` rolls the kept band
    off with a full Hann window (smooth blur, no ringing); in between, a Tukey window.

    Args:
        prob: probability per sample.
        keep: range of the kept fraction of each axis' frequencies (drawn per axis).
        taper: fraction of the kept band that rolls off.
    """

    family = "resolution"

    def __init__(self, prob: float, keep: Sequence[float] = (0.3, 1.0), taper: float = 0.5) -> None:
        super().__init__(prob)
        self.keep = as_range(keep, "KSpaceTruncation.keep", 0.02, 1.0)
        self.taper = float(as_range(taper, "KSpaceTruncation.taper", 0.0, 1.0)[0])

    def window(self, freq: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """(B, N) weights of frequencies ``freq`` (N,) for kept fractions ``keep`` (B,)."""
        cut = 0.5 * keep.view(-1, 1)
        r = freq.abs().view(1, -1) / cut
        inside = r <= 1.0
        if self.taper <= 0:
            return inside.float()
        edge = 1.0 - self.taper
        ramp = 0.5 * (1 + torch.cos(math.pi * (r - edge).clamp(min=0) / self.taper))
        return torch.where(r <= edge, torch.ones_like(r), ramp) * inside

    def apply(self, sub: BatchView, gen: torch.Generator) -> BatchView:
        image = sub["image"]
        n, _, h, w = image.shape
        keep = uniform(gen, 2 * n, self.keep, image.device).view(n, 2)
        wy = self.window(frequencies(h, image.device), keep[:, 0])
        wx = self.window(frequencies(w, image.device), keep[:, 1])
        mask = (wy[:, :, None] * wx[:, None, :])[:, None]
        return {"image": torch.fft.ifft2(torch.fft.fft2(image) * mask).abs()}


class RespiratoryGhosting(BatchTransform):
    """Ghosts along the phase-encoding axis from periodic motion between k-space lines.

    Each phase-encoding line ``ky`` gets a phase error ``a * sin(2 pi ky / period + phi)``, which
    replicates the image at offsets of ``H / period`` pixels with weights given by Bessel functions
    of ``a``.

    Args:
        prob: probability per sample.
        strength: range of the phase amplitude ``a`` (radians).
        period_lines: range of the motion period in phase-encoding lines.
    """

    family = "artefacts"

    def __init__(
        self, prob: float, strength: Sequence[float] = (0.2, 1.0), period_lines: Sequence[float] = (2.0, 12.0)
    ) -> None:
        super().__init__(prob)
        self.strength = as_range(strength, "RespiratoryGhosting.strength", 0.0, 10.0)
        self.period_lines = as_range(period_lines, "RespiratoryGhosting.period_lines", 1.5, 1e4)

    def apply(self, sub: BatchView, gen: torch.Generator) -> BatchView:
        image = sub["image"]
        n, _, h, w = image.shape
        dev = image.device
        amp = uniform(gen, n, self.strength, dev).view(n, 1)
        period = uniform(gen, n, self.period_lines, dev).view(n, 1)
        phi = uniform(gen, n, (0.0, 2 * math.pi), dev).view(n, 1)
        axis = choice(gen, n, 2, dev)  # 0: rows are phase-encoded, 1: columns
        out = torch.empty_like(image)
        for along, size in ((0, h), (1, w)):
            rows = (axis == along).nonzero().flatten()
            if rows.numel() == 0:
                continue
            lines = torch.arange(size, device=dev).float().view(1, -1)
            phase = amp[rows] * torch.sin(2 * math.pi * lines / period[rows] + phi[rows])
            err = torch.polar(torch.ones_like(phase), phase)
            err = err[:, None, :, None] if along == 0 else err[:, None, None, :]
            k = torch.fft.fft2(image[rows])
            out[rows] = torch.fft.ifft2(k * err).abs()
        return {"image": out}


class MotionBlur(BatchTransform):
    """Linear in-plane motion during the acquisition: a box blur of ``length_px`` along a drawn
    direction, applied in k-space as ``sinc(length * k . d)``.

    Args:
        prob: probability per sample.
        length_px: range of the blur length, pixels.
    """

    family = "artefacts"

    def __init__(self, prob: float, length_px: Sequence[float] = (1.0, 6.0)) -> None:
        super().__init__(prob)
        self.length_px = as_range(length_px, "MotionBlur.length_px", 0.0, 100.0)

    def apply(self, sub: BatchView, gen: torch.Generator) -> BatchView:
        image = sub["image"]
        n, _, h, w = image.shape
        dev = image.device
        length = uniform(gen, n, self.length_px, dev).view(n, 1, 1)
        angle = uniform(gen, n, (0.0, math.pi), dev).view(n, 1, 1)
        ky = frequencies(h, dev).view(1, h, 1)
        kx = frequencies(w, dev).view(1, 1, w)
        response = torch.sinc(length * (ky * torch.sin(angle) + kx * torch.cos(angle)))
        return {"image": torch.fft.ifft2(torch.fft.fft2(image) * response[:, None]).abs()}


class GatingBlend(BatchTransform):
    """Poor ECG gating: blend a frame with another frame of the same subject and slice.

    The partner is a neighbouring frame in the batch (the nearest other frame of that subject and
    slice); a sample with none is blended with a copy of itself shifted by a few pixels (the
    heart a little elsewhere), which is what a neighbouring frame would look like to first order.

    Args:
        prob: probability per sample.
        weight: range of the partner's weight.
        shift_px: range of the fallback shift, pixels.
    """

    family = "artefacts"
    keys = ("image",)

    def __init__(
        self, prob: float, weight: Sequence[float] = (0.2, 0.5), shift_px: Sequence[float] = (1.0, 4.0)
    ) -> None:
        super().__init__(prob)
        self.weight = as_range(weight, "GatingBlend.weight", 0.0, 1.0)
        self.shift_px = as_range(shift_px, "GatingBlend.shift_px", 0.0, 100.0)

    def partners(self, batch: BatchView) -> list[int | None]:
        """For each sample, the batch row of its nearest other frame (same subject and slice), or None."""
        subjects = list(batch.get("subject") or [])
        n = batch["image"].shape[0]
        if len(subjects) != n or "frame" not in batch or "slice" not in batch:
            return [None] * n
        frames = [int(f) for f in batch["frame"]]
        slices = [int(s) for s in batch["slice"]]
        out: list[int | None] = []
        for i in range(n):
            same = [
                j
                for j in range(n)
                if j != i and subjects[j] == subjects[i] and slices[j] == slices[i] and frames[j] != frames[i]
            ]
            out.append(min(same, key=lambda j: abs(frames[j] - frames[i])) if same else None)
        return out

    def forward(self, batch: BatchView, gen: torch.Generator) -> BatchView:
        image = batch["image"]
        n = image.shape[0]
        dev = image.device
        fire = torch.rand(n, generator=gen, device=dev) < self.prob
        weight = uniform(gen, n, self.weight, dev)
        shift = uniform(gen, n, self.shift_px, dev)
        angle = uniform(gen, n, (0.0, 2 * math.pi), dev)
        if not fire.any():
            return batch
        partner = self.partners(batch)
        out = image.clone()
        for i in fire.nonzero().flatten().tolist():
            if partner[i] is not None:
                other = image[partner[i]]
            else:
                dy = int(round(float(shift[i] * torch.sin(angle[i]))))
                dx = int(round(float(shift[i] * torch.cos(angle[i]))))
                other = torch.roll(image[i], shifts=(dy, dx), dims=(-2, -1))
            out[i] = (1 - weight[i]) * image[i] + weight[i] * other
        batch["image"] = out
        return batch

    def apply(self, sub: BatchView, gen: torch.Generator) -> BatchView:
        return sub  # the partner search needs the whole batch: see forward


__all__ = [
    "BiasField",
    "GammaContrast",
    "GatingBlend",
    "KSpaceTruncation",
    "MotionBlur",
    "RespiratoryGhosting",
    "RicianNoise",
    "frequencies",
]
