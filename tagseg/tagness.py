"""Tagness: how much of a slice's spectral energy sits at a tag grid's frequency.

Used to compare translated images with real tagged and cine images without any pretrained
feature network. A SPAMM grid multiplies the image by a periodic pattern, which moves energy
from the image's (low-frequency) spectrum to copies centred on the grid's spatial frequencies:
sharp peaks at ``1 / spacing`` in the directions normal to the two line sets (and their
conjugates). A cine image has no such peaks.

Estimator (per slice, documented because the numbers in reports depend on it):

1. remove the Hann-weighted mean and apply a 2D Hann window (no DC, little edge leakage);
2. power spectrum ``P = |FFT2|^2``; ``total = sum(P)`` (all energy except DC, which is 0);
3. the *annulus* holds the frequencies whose period lies in ``[min_period_px, max_period_px]``,
   any direction. The default 3-8 px covers the paper's 5 px (256 px images) and 7-8.5 mm tags
   at 1-2.3 mm pixels, and stays clear of the low frequencies where anatomy (cine) puts its
   energy; widen it for coarser tags;
4. take the ``n_peaks`` strongest peaks in the annulus one after the other (default 4: two line
   sets times the conjugate pair); each peak claims the energy within ``peak_radius`` cycles/px
   of its maximum (the tag line's spread by the image envelope) that no earlier peak claimed;
5. ``tagness = claimed energy / total`` in [0, 1].

Nothing assumes a tag angle or exact spacing, so jittered grids, grids of another angle and
generated (imperfect) grids score alike. Measured on the 64 px phantom (1.8 mm pixels, 10
frames, fading tags): cine ~0.01, tagged ~0.18 (0.6 at ED, lower as tags fade).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from tagseg.errors import ConfigError, DataError
from tagseg.io.store import iter_images, split_rows


def _check(min_period_px: float, max_period_px: float, n_peaks: int, peak_radius: float) -> None:
    if not (2.0 <= min_period_px < max_period_px):
        raise ConfigError(
            f"tagness: need 2 <= min_period_px < max_period_px (pixels), got {min_period_px}, {max_period_px}"
        )
    if int(n_peaks) < 1 or not peak_radius > 0:
        raise ConfigError(
            f"tagness: n_peaks must be >= 1 and peak_radius > 0 (cycles/px), got {n_peaks}, {peak_radius}"
        )


def tagness(
    images: np.ndarray | torch.Tensor,
    min_period_px: float = 3.0,
    max_period_px: float = 8.0,
    n_peaks: int = 4,
    peak_radius: float = 0.03,
) -> np.ndarray:
    """Tagness of each slice (see the module docstring for the estimator).

    Args:
        images: (H, W) or (N, H, W), any intensity scale (the measure is scale-free).
        min_period_px: shortest tag period counted, pixels (>= 2, the Nyquist limit).
        max_period_px: longest tag period counted, pixels.
        n_peaks: spectral peaks claimed (4: a two-line-set grid and its conjugates).
        peak_radius: radius of each peak, cycles per pixel.

    Returns:
        float64 array (N,) (or a 0-d array for one image) in [0, 1]; 0 for a constant image.

    Raises:
        ConfigError: a bad band or peak setting.
        DataError: images that are not 2D / 3D or hold NaN or infinite values.

    Example::

        >>> from tagseg.physics.tagging import apply_tagging
        >>> img = torch.rand(64, 64)
        >>> float(tagness(apply_tagging(img))) > 5 * float(tagness(img))
        True
    """
    _check(float(min_period_px), float(max_period_px), int(n_peaks), float(peak_radius))
    x = torch.as_tensor(np.asarray(images) if not isinstance(images, torch.Tensor) else images).detach()
    single = x.ndim == 2
    if x.ndim not in (2, 3):
        raise DataError(f"tagness: images must be (H, W) or (N, H, W), got shape {tuple(x.shape)}")
    x = x.to(torch.float64).reshape(-1, *x.shape[-2:]).cpu()
    if not torch.isfinite(x).all():
        raise DataError("tagness: images hold NaN or infinite values")
    n, h, w = x.shape
    win = torch.outer(
        torch.hann_window(h, periodic=False, dtype=torch.float64),
        torch.hann_window(w, periodic=False, dtype=torch.float64),
    )
    mean = (x * win).sum((-2, -1), keepdim=True) / win.sum()
    power = torch.fft.fft2((x - mean) * win).abs().square()
    fy = torch.fft.fftfreq(h, dtype=torch.float64)[:, None].expand(h, w)
    fx = torch.fft.fftfreq(w, dtype=torch.float64)[None, :].expand(h, w)
    radius = torch.sqrt(fy**2 + fx**2)
    annulus = (radius >= 1.0 / max_period_px) & (radius <= 1.0 / min_period_px)
    total = power.sum((-2, -1))
    free = torch.ones_like(power, dtype=torch.bool)
    claimed = torch.zeros(n, dtype=torch.float64)
    for _ in range(int(n_peaks)):
        candidates = torch.where(annulus & free, power, torch.full_like(power, -1.0)).reshape(n, -1)
        peak = candidates.argmax(1)
        ok = candidates.gather(1, peak[:, None])[:, 0] > 0
        # distance to the peak on the periodic frequency grid (wrap at +-0.5 cycles/px)
        dy = fy[None] - fy.reshape(-1)[peak][:, None, None]
        dx = fx[None] - fx.reshape(-1)[peak][:, None, None]
        dy, dx = dy - torch.round(dy), dx - torch.round(dx)
        near = (dy.square() + dx.square() <= peak_radius**2) & free & ok[:, None, None]
        claimed += (power * near).sum((-2, -1))
        free &= ~near
    out = torch.where(total > 0, claimed / total.clamp_min(1e-300), torch.zeros_like(total)).numpy()
    return out[0] if single else out


def store_tagness(
    path: str | Path,
    splits: Sequence[str] | None = None,
    max_images: int | None = None,
    batch_size: int = 64,
    progress: bool = False,
    **kwargs: float,
) -> np.ndarray:
    """Tagness of the images of a slice store.

    Args:
        path: the store.
        splits: only rows of these ``meta/split`` values (``None``: every row).
        max_images: evenly spaced subset of at most this many rows (``None``: all).
        batch_size: rows read at a time.
        progress: show a progress bar.
        **kwargs: estimator settings of :func:`tagness`.

    Returns:
        float64 (M,) tagness per selected row.

    Raises:
        StoreError: the store is missing or malformed.
        DataError: no row matches ``splits``.
    """
    rows = split_rows(path, splits)
    if rows.size == 0:
        raise DataError(f"{path}: no rows in splits {list(splits or [])}")
    if max_images is not None and rows.size > int(max_images):
        rows = rows[np.unique(np.linspace(0, rows.size - 1, int(max_images)).round().astype(int))]
    batches = iter_images(path, rows, int(batch_size))
    total = -(-rows.size // int(batch_size))
    out = [
        tagness(images, **kwargs)
        for images in tqdm(batches, total=total, desc=f"tagness {Path(path).name}", disable=not progress)
    ]
    return np.concatenate(out)


__all__ = ["store_tagness", "tagness"]
