"""Shape-information maps SI(g) of binary masks (METHOD Eq. 1-2).

Used by the shape-aware loss (:mod:`tagseg.losses`) and precomputed per slice by the DataModule
(:mod:`tagseg.data.datamodule`); both import it from here, below them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from scipy.ndimage import distance_transform_edt
from scipy.special import expit

from tagseg.errors import ConfigError

Array = Any  # np.ndarray | torch.Tensor


def check_k(k: float) -> float:
    """``k`` as a float, checked: the temperature of the sigmoid H (METHOD Eq. 1) must be > 0."""
    if not k > 0:
        raise ConfigError(f"loss.k: the shape-information temperature must be > 0, got {k}")
    return float(k)


def _si_2d(mask: np.ndarray, k: float) -> np.ndarray:
    inside = mask.astype(bool)
    si = np.zeros(inside.shape, dtype=np.float32)
    if not inside.any():
        return si
    if inside.all():
        # no background pixel: scipy's EDT is undefined, so measure as if the image were surrounded by background
        dist = distance_transform_edt(np.pad(inside, 1))[1:-1, 1:-1]
    else:
        dist = distance_transform_edt(inside)
    phi = dist[inside] / dist.max()
    si[inside] = expit((1.0 - phi) / k)
    return si


def shape_information(mask: Array, k: float = 0.2) -> Array:
    """The shape-information map SI(g) of one 2D binary mask (METHOD Eq. 1-2).

    ``phi = distance_transform_edt(mask) / max`` inside the mask (scipy semantics: a mask pixel
    next to a background pixel has distance 1; the image edge is not background), negative
    outside; ``SI = H(1 - phi) = sigmoid((1 - phi) / k)`` where ``phi >= 0`` (inside), 0 outside.
    SI is close to 1 on the mask boundary and 0.5 at its deepest point. An empty mask gives all
    zeros; a mask covering the whole image is measured as if surrounded by background.

    Args:
        mask: (H, W) binary mask, numpy or torch (any dtype; non-zero is inside).
        k: temperature of the sigmoid H (Eq. 1), > 0; the paper's 0.2.

    Returns:
        float32 (H, W) in [0, 1), same type as ``mask`` (a tensor on the mask's device).

    Raises:
        ConfigError: ``k <= 0``.
        ValueError: ``mask`` is not 2D.
    """
    k = check_k(k)
    if mask.ndim != 2:
        raise ValueError(f"shape_information: expected a 2D (H, W) mask, got shape {tuple(mask.shape)}")
    if isinstance(mask, torch.Tensor):
        return torch.from_numpy(_si_2d(mask.detach().cpu().numpy(), k)).to(mask.device)
    return _si_2d(np.asarray(mask), k)


def shape_information_batch(masks: Array, k: float = 0.2) -> Array:
    """:func:`shape_information` of every 2D mask in a stack (..., H, W), e.g. (B, C, H, W).

    Args:
        masks: binary masks, numpy or torch, at least 2D.
        k: temperature of the sigmoid H (Eq. 1), > 0.

    Returns:
        float32 array of the same shape and type.

    Raises:
        ConfigError: ``k <= 0``.
        ValueError: fewer than 2 dimensions.
    """
    k = check_k(k)
    if masks.ndim < 2:
        raise ValueError(f"shape_information_batch: expected (..., H, W) masks, got shape {tuple(masks.shape)}")
    is_torch = isinstance(masks, torch.Tensor)
    arr = masks.detach().cpu().numpy() if is_torch else np.asarray(masks)
    flat = arr.reshape(-1, *arr.shape[-2:])
    out = np.stack([_si_2d(m, k) for m in flat]).reshape(arr.shape) if len(flat) else np.zeros(arr.shape, np.float32)
    return torch.from_numpy(out).to(masks.device) if is_torch else out


__all__ = ["check_k", "shape_information", "shape_information_batch"]
