"""The network grid at a fixed pixel size: a frame resampled to ``spacing_mm`` and centred on a square.

With ``prepare.fit=crop`` every stored slice is resampled to ``prepare.spacing_mm`` and then
centre-cropped or zero-padded to ``image_size`` (rather than resized to it), so a heart keeps its
size in pixels whatever the scanner's pixel size or field of view. A model trained on such a store
records the spacing (``spacing_mm`` in its hyper-parameters and exported metadata) and
:class:`~tagseg.models.segmenter.Segmenter` places new frames on the same grid, then maps its output
back to each frame's own geometry (:func:`from_grid`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tagseg.errors import ConfigError

#: how a frame becomes the stored square: resized to it, or resampled to a pixel size and centred on it
FITS = ("resize", "crop")


def check_fit(fit: str, spacing_mm: float | None, image_size: int | None, key: str = "prepare") -> str:
    """``fit`` checked against :data:`FITS`; ``crop`` needs a spacing and a square size.

    Raises:
        ConfigError: an unknown fit, or ``crop`` without ``spacing_mm`` or ``image_size``.
    """
    fit = str(fit)
    if fit not in FITS:
        raise ConfigError(f"{key}.fit must be one of {list(FITS)}, got {fit!r}")
    if fit == "crop" and not spacing_mm:
        raise ConfigError(f"{key}.fit=crop needs {key}.spacing_mm (the pixel size every slice is resampled to)")
    if fit == "crop" and image_size is None:
        raise ConfigError(f"{key}.fit=crop needs {key}.image_size (the square every slice is centred on)")
    return fit


def resampled_shape(shape: Sequence[int], spacing_mm: Sequence[float], target_mm: float) -> tuple[int, int]:
    """(rows, cols) of a ``shape`` image at ``spacing_mm`` once resampled to ``target_mm`` pixels."""
    return tuple(max(1, int(round(n * float(s) / float(target_mm)))) for n, s in zip(shape, spacing_mm))  # type: ignore[return-value]


def centre_offset(n: int, size: int) -> int:
    """Where index 0 of an axis of length ``n`` lands on a centred axis of length ``size`` (negative: cropped)."""
    return (int(size) - int(n)) // 2


def _spans(n: int, size: int) -> tuple[slice, slice]:
    """(source, destination) slices of one axis placed centred on ``size``."""
    off = centre_offset(n, size)
    lo_src, lo_dst = max(0, -off), max(0, off)
    length = min(n - lo_src, size - lo_dst)
    return slice(lo_src, lo_src + length), slice(lo_dst, lo_dst + length)


def to_grid(array: np.ndarray, size: int, fill: float = 0.0) -> np.ndarray:
    """(..., h, w) centred on (..., size, size): cropped where larger, padded with ``fill`` where smaller."""
    array = np.asarray(array)
    (sr, dr), (sc, dc) = _spans(array.shape[-2], size), _spans(array.shape[-1], size)
    out = np.full((*array.shape[:-2], int(size), int(size)), fill, dtype=array.dtype)
    out[..., dr, dc] = array[..., sr, sc]
    return out


def from_grid(array: np.ndarray, shape: Sequence[int], fill: float = 0.0) -> np.ndarray:
    """The inverse of :func:`to_grid`: (..., size, size) -> (..., *shape); what the crop removed is ``fill``."""
    array = np.asarray(array)
    h, w = (int(v) for v in shape)
    (sr, dr), (sc, dc) = _spans(h, array.shape[-2]), _spans(w, array.shape[-1])
    out = np.full((*array.shape[:-2], h, w), fill, dtype=array.dtype)
    out[..., sr, sc] = array[..., dr, dc]
    return out


def resize_pair(img: np.ndarray, mask: np.ndarray, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """An image (bilinear, float32) and its mask (nearest, same dtype) resized to ``shape``, as ``tagseg
    prepare`` resizes every slice (no anti-aliasing)."""
    from skimage.transform import resize

    if img.shape == tuple(shape):
        return img, mask
    img = resize(img, shape, order=1, preserve_range=True, anti_aliasing=False).astype(np.float32)
    mask = resize(mask, shape, order=0, preserve_range=True, anti_aliasing=False).astype(mask.dtype)
    return img, mask


def place_slices(
    images: np.ndarray, masks: np.ndarray, spacing_mm: np.ndarray, grid_mm: float, size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Store slices (N, H, W) at their own spacing (N, 2) on the ``size`` grid of ``grid_mm`` pixels
    (images bilinear, masks nearest, as ``tagseg prepare`` with ``fit=crop`` does); a slice already on
    the grid is returned unchanged."""
    n, h, w = images.shape
    out_img = np.zeros((n, size, size), np.float32)
    out_mask = np.zeros((n, size, size), masks.dtype)
    for i in range(n):
        img, mask = resize_pair(images[i], masks[i], resampled_shape((h, w), spacing_mm[i], grid_mm))
        out_img[i], out_mask[i] = to_grid(np.asarray(img, np.float32), size), to_grid(mask, size)
    return out_img, out_mask


__all__ = [
    "FITS",
    "place_slices",
    "resize_pair",
    "centre_offset",
    "check_fit",
    "from_grid",
    "resampled_shape",
    "to_grid",
]
