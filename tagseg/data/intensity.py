"""The one intensity conversion between slice stores and the CycleGAN.

Convention, end to end (the ranges are :data:`tagseg.conventions.STORE_RANGE` / ``GAN_RANGE``):

* slice stores (and every segmentation model) hold images in **[0, 1]** (``tagseg prepare``);
* the CycleGAN's generators end in ``tanh`` and are trained and run on **[-1, 1]**.

The conversion happens only here: :func:`to_gan` when images enter the GAN (the unpaired
DataModule, the translator) and :func:`from_gan` when generator outputs leave it. Note
``from_gan`` is ``(g + 1) / 2``: the authors' code used ``0.5 * g + 1``, which maps [-1, 1] to
[0.5, 1.5] and fed the segmenter images in a range it was never trained on.
"""

from __future__ import annotations

import torch

from tagseg.conventions import GAN_RANGE, STORE_RANGE

_LO, _HI = STORE_RANGE
_GLO, _GHI = GAN_RANGE
_SCALE = (_GHI - _GLO) / (_HI - _LO)


def to_gan(images: torch.Tensor) -> torch.Tensor:
    """Store intensities [0, 1] -> GAN intensities [-1, 1] (``2 x - 1``).

    Args:
        images: any shape, values in [0, 1].

    Returns:
        A tensor of the same shape and dtype in [-1, 1].
    """
    return (images - _LO) * _SCALE + _GLO


def from_gan(images: torch.Tensor) -> torch.Tensor:
    """GAN intensities [-1, 1] -> store intensities [0, 1] (``(g + 1) / 2``, clamped).

    The clamp only guards against rounding (a ``tanh`` output is already within [-1, 1]).

    Args:
        images: any shape, values in [-1, 1].

    Returns:
        A tensor of the same shape and dtype in [0, 1].
    """
    return ((images - _GLO) / _SCALE + _LO).clamp(_LO, _HI)


__all__ = ["from_gan", "to_gan"]
