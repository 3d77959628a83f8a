"""The learned tracker (``tracker=learned``): a network trained inside tagseg on phantom motion.

:class:`LearnedTracker` implements :class:`~tagseg.strain.tracking.Tracker`. Its network
(:class:`~tagseg.models.tracking.TrackingModule`) comes from ``checkpoint`` when one is given, else
it is trained from ``training`` on randomised phantom sequences (any tag angle and spacing) and
cached (:func:`~tagseg.strain.tracker_training.cached_tracker_checkpoint`): the same config never
trains twice.

Tracking one slice: the frames are cropped to the points plus ``margin_mm`` and resampled to
``working_spacing_mm`` (the pixel size the network was trained at, so tag spacing in pixels
matches training whatever the scan's pixel size); the dense Lagrangian displacement of every ED
pixel is estimated frame by frame, each frame starting from the previous frame's field and
refined ``iterations`` times against the ED frame (a smooth error of the prior is corrected, not
carried on), each refined field smoothed by ``smooth_px`` (the pixel-scale error the network does
not correct would otherwise add up over the frames); the field is sampled at the points (bilinear).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tagseg.errors import ConfigError, DataError
from tagseg.io.checkpoints import TRACKER, load_checkpoint, resolve_checkpoint
from tagseg.models.tracking import TrackingModule
from tagseg.runtime.config import plain
from tagseg.strain.tracker_training import cached_tracker_checkpoint


class LearnedTracker:
    """Tag tracking by a trained residual-displacement network.

    Args:
        checkpoint: a tracker checkpoint (file or folder, :func:`~tagseg.io.checkpoints.resolve_checkpoint`);
            ``None``: train from ``training`` (or reuse the cached result).
        training: the training config (``tracker.training``), used when ``checkpoint`` is ``None``.
        cache_dir: where trained trackers are kept, one folder per training config.
        iterations: refinements per frame (>= 1).
        working_spacing_mm: pixel size the frames are resampled to before tracking (null: as given).
        margin_mm: :meth:`track` works on the points' bounding box grown by this margin (null: the
            whole image); the network was trained on crops around the myocardium, not whole scans.
        smooth_px: standard deviation (working pixels) of the Gaussian that smooths each refined
            field (0: none). The network corrects smooth errors of its prior but not pixel-to-pixel
            ones, so without it each refinement's rough error is carried to the next frame and adds up.
        device: torch device of the network.

    Raises:
        ConfigError: neither ``checkpoint`` nor ``training``, or invalid values.
        CheckpointError: an unreadable checkpoint or one of another model type.

    Example:
        >>> tracker = LearnedTracker(checkpoint="cache/tracker/<key>/tracker.ckpt")  # doctest: +SKIP
        >>> tracker.track(frames, points_rc, (1.4, 1.4)).shape  # doctest: +SKIP
        (25, 120, 2)
    """

    def __init__(
        self,
        checkpoint: str | Path | None = None,
        training: Mapping[str, Any] | None = None,
        cache_dir: str | Path = "cache/tracker",
        iterations: int = 1,
        working_spacing_mm: float | None = 1.4,
        margin_mm: float | None = 20.0,
        smooth_px: float = 1.0,
        device: str = "cpu",
    ) -> None:
        if checkpoint is None and not training:
            raise ConfigError("tracker: give tracker.checkpoint or a tracker.training config to train one")
        if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 1:
            raise ConfigError(f"tracker.iterations: expected an integer >= 1, got {iterations!r}")
        if working_spacing_mm is not None and not float(working_spacing_mm) > 0:
            raise ConfigError(f"tracker.working_spacing_mm: expected > 0 mm or null, got {working_spacing_mm!r}")
        self.checkpoint = checkpoint
        self.training = plain(training) if training else None
        self.cache_dir = Path(str(cache_dir))
        self.iterations = int(iterations)
        self.working_spacing_mm = None if working_spacing_mm is None else float(working_spacing_mm)
        if margin_mm is not None and not float(margin_mm) >= 0:
            raise ConfigError(f"tracker.margin_mm: expected >= 0 mm or null, got {margin_mm!r}")
        self.margin_mm = None if margin_mm is None else float(margin_mm)
        if not float(smooth_px) >= 0:
            raise ConfigError(f"tracker.smooth_px: expected >= 0 pixels, got {smooth_px!r}")
        self.smooth_px = float(smooth_px)
        self.device = torch.device(device)
        self._module: TrackingModule | None = None

    @property
    def checkpoint_path(self) -> Path:
        """The checkpoint in use: the given one, or the cached (trained on first use) one."""
        if self.checkpoint is not None:
            return resolve_checkpoint(self.checkpoint, key="tracker.checkpoint")
        return cached_tracker_checkpoint(self.training or {}, self.cache_dir)

    @property
    def module(self) -> TrackingModule:
        """The network, loaded (``weights_only=True``) on first use."""
        if self._module is None:
            state = load_checkpoint(self.checkpoint_path, kind=TRACKER, map_location="cpu")
            self._module = TrackingModule.from_checkpoint_state(state).to(self.device)
        return self._module

    def displacement(self, frames: np.ndarray, spacing_mm: tuple[float, float]) -> np.ndarray:
        """Dense Lagrangian displacement of every ED pixel in every frame.

        Args:
            frames: (T, H, W) tagged images of one slice, frame 0 = ED.
            spacing_mm: (row, col) pixel spacing.

        Returns:
            float32 (T, 2, H, W) displacement in input pixels (row, col); zero in frame 0.

        Raises:
            DataError: ``frames`` is not a (T, H, W) series of at least 2 finite frames.
        """
        frames = np.asarray(frames)
        if frames.ndim != 3 or frames.shape[0] < 2 or min(frames.shape[1:]) < 8:
            raise DataError(f"tracker: expected (T, H, W) frames with T >= 2 and H, W >= 8, got shape {frames.shape}")
        if not np.isfinite(frames).all():
            raise DataError("tracker: the frames hold NaN or infinite values")
        x = torch.as_tensor(frames, dtype=torch.float32, device=self.device)[:, None]
        h, w = frames.shape[1:]
        size = self._working_size((h, w), spacing_mm)
        if size != (h, w):
            x = torch.nn.functional.interpolate(x, size=size, mode="bilinear", align_corners=True)
        module = self.module  # trained here on first use: outside no_grad, which training would undo
        with torch.no_grad():
            reference = x[:1]
            field = torch.zeros(1, 2, *size, device=self.device)
            fields = [field]
            for t in range(1, x.shape[0]):
                for _ in range(self.iterations):
                    field = gaussian_smooth(module(reference, x[t : t + 1], field), self.smooth_px)
                fields.append(field)
            out = torch.cat(fields)  # (T, 2, h', w') in working pixels at working ED pixels
        if size != (h, w):
            # back to input pixels: values scale by the size ratio, the grid is resampled
            scale = torch.tensor([(h - 1) / max(size[0] - 1, 1), (w - 1) / max(size[1] - 1, 1)], device=self.device)
            out = torch.nn.functional.interpolate(out, size=(h, w), mode="bilinear", align_corners=True)
            out = out * scale.view(1, 2, 1, 1)
        return out.cpu().numpy().astype(np.float32)

    def track(self, frames: np.ndarray, points_rc: np.ndarray, spacing_mm: tuple[float, float]) -> np.ndarray:
        """Positions (T, P, 2) (row, col) in pixels of ``points_rc`` (P, 2) (ED pixels) in every frame.

        Frame 0 returns ``points_rc`` exactly. Points are followed by the bilinear sample of the dense
        displacement at their ED position (see :meth:`displacement`), computed on the points'
        bounding box grown by ``margin_mm`` (a tissue point moves less than that over the cycle).

        Raises:
            DataError: bad ``frames`` or ``points_rc`` not of shape (P, 2).
        """
        points = np.asarray(points_rc, dtype=np.float64)
        if points.ndim != 2 or points.shape[1] != 2:
            raise DataError(f"tracker: expected points of shape (P, 2) (row, col), got {points.shape}")
        frames = np.asarray(frames)
        origin = np.zeros(2)
        if self.margin_mm is not None and frames.ndim == 3 and points.size:
            frames, origin = self._window(frames, points, spacing_mm)
        points = points - origin
        field = torch.from_numpy(self.displacement(frames, spacing_mm)).to(torch.float64)
        t, _, h, w = field.shape
        grid = torch.from_numpy(
            np.stack([points[:, 1] / max(w - 1, 1), points[:, 0] / max(h - 1, 1)], axis=-1) * 2 - 1
        ).view(1, 1, -1, 2)
        sampled = torch.nn.functional.grid_sample(
            field, grid.expand(t, 1, -1, 2), mode="bilinear", padding_mode="border", align_corners=True
        )  # (T, 2, 1, P)
        positions = points[None] + origin + sampled[:, :, 0].permute(0, 2, 1).numpy()
        positions[0] = points + origin
        return positions

    def _window(
        self, frames: np.ndarray, points: np.ndarray, spacing_mm: tuple[float, float]
    ) -> tuple[np.ndarray, np.ndarray]:
        """The frames cropped to the points' bounding box grown by ``margin_mm``, and the crop's (row, col) origin."""
        h, w = frames.shape[1:]
        margin = np.ceil(float(self.margin_mm) / np.asarray(spacing_mm, np.float64))
        low = np.maximum(np.floor(points.min(axis=0) - margin), 0).astype(int)
        high = np.minimum(np.ceil(points.max(axis=0) + margin) + 1, (h, w)).astype(int)
        return frames[:, low[0] : high[0], low[1] : high[1]], low.astype(np.float64)

    def _working_size(self, shape: tuple[int, int], spacing_mm: tuple[float, float]) -> tuple[int, int]:
        if self.working_spacing_mm is None:
            return shape
        spacing = tuple(float(s) for s in spacing_mm)
        if len(spacing) != 2 or min(spacing) <= 0:
            raise DataError(f"tracker: spacing_mm must be two positive numbers (row, col), got {spacing_mm}")
        size = tuple(max(int(round((n - 1) * s / self.working_spacing_mm)) + 1, 8) for n, s in zip(shape, spacing))
        # within a few percent of the working size the resampling would only blur
        if all(abs(a - b) <= 0.02 * b for a, b in zip(size, shape)):
            return shape
        return size  # type: ignore[return-value]


def gaussian_smooth(field: torch.Tensor, sigma_px: float) -> torch.Tensor:
    """Each channel of a (B, C, H, W) field smoothed by a Gaussian of ``sigma_px`` pixels (edges replicated)."""
    if sigma_px <= 0:
        return field
    radius = max(int(np.ceil(3 * sigma_px)), 1)
    x = torch.arange(-radius, radius + 1, dtype=field.dtype, device=field.device)
    kernel = torch.exp(-0.5 * (x / sigma_px) ** 2)
    kernel = kernel / kernel.sum()
    c = field.shape[1]
    out = torch.nn.functional.pad(field, (radius, radius, radius, radius), mode="replicate")
    out = torch.nn.functional.conv2d(out, kernel.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return torch.nn.functional.conv2d(out, kernel.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


__all__ = ["LearnedTracker", "gaussian_smooth"]
