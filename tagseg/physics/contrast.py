"""Cine (bSSFP) -> tagged (GRE-like) contrast change, the first step of the physics transform.

- ``sqrt``: the paper's element-wise square root.
- ``power``: the variant of the authors' code: intensities above a *transition value* ``t`` are
  raised to the power 0.4, where ``t`` is the ``q``-quantile of the image's myocardium
  intensities with ``q ~ U(0, 0.5)`` drawn per image. tagseg uses the continuous form
  ``y = t + (1 - t) * ((x - t) / (1 - t)) ** power`` above ``t`` (``y = x`` below), so the
  curve stays monotone and maps [0, 1] onto [0, 1].
- ``none``: unchanged.

Choose with ``physics.contrast=sqrt|power|none``; :data:`CONTRASTS` maps the name to the function.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from tagseg.conventions import MYO as MYO_LABEL
from tagseg.errors import ConfigError


def sqrt_contrast(images: torch.Tensor, masks: np.ndarray | None = None, rngs=None) -> torch.Tensor:
    """The paper's contrast change: ``sqrt(|images|)`` (images (..., H, W) in [0, 1])."""
    return images.abs().sqrt()


def no_contrast(images: torch.Tensor, masks: np.ndarray | None = None, rngs=None) -> torch.Tensor:
    """Leave the contrast unchanged (tags only)."""
    return images


def transition_power(images: torch.Tensor, transitions: torch.Tensor, power: float = 0.4) -> torch.Tensor:
    """Raise intensities above a per-image transition value to ``power`` (continuous, monotone).

    Args:
        images: (B, H, W) in [0, 1].
        transitions: (B,) transition values ``t`` in [0, 1).
        power: exponent applied above ``t``.

    Returns:
        (B, H, W) in [0, 1]: ``x`` below ``t``, ``t + (1 - t) * ((x - t) / (1 - t)) ** power`` above.
    """
    t = transitions.to(images).view(-1, *([1] * (images.ndim - 1)))
    span = (1.0 - t).clamp_min(1e-6)
    above = t + span * ((images - t).clamp_min(0.0) / span).clamp(0.0, 1.0) ** power
    return torch.where(images > t, above, images)


def myocardium_transitions(images: torch.Tensor, masks: np.ndarray | None, quantiles: np.ndarray) -> torch.Tensor:
    """Per image, the given quantile of the myocardium intensities (of the whole image if no myocardium)."""
    out = []
    for k in range(images.shape[0]):
        img = images[k]
        sel = img[torch.from_numpy(masks[k] == MYO_LABEL).to(img.device)] if masks is not None else img.reshape(-1)
        if sel.numel() == 0:
            sel = img.reshape(-1)
        out.append(torch.quantile(sel.float(), float(quantiles[k])))
    return torch.stack(out)


def power_contrast(
    images: torch.Tensor, masks: np.ndarray | None = None, rngs=None, power: float = 0.4, max_quantile: float = 0.5
) -> torch.Tensor:
    """The authors' variant: power 0.4 above a ``U(0, max_quantile)`` quantile of the myocardium intensities.

    Args:
        images: (B, H, W) in [0, 1].
        masks: (B, H, W) labels (myocardium = 2), or None.
        rngs: one ``numpy.random.Generator`` per image (the quantile draw), or None for the median
            of the range (``max_quantile / 2``).
        power: exponent above the transition value.
        max_quantile: upper bound of the drawn quantile.
    """
    b = images.shape[0]
    q = np.array([r.uniform(0.0, max_quantile) for r in rngs]) if rngs is not None else np.full(b, max_quantile / 2)
    return transition_power(images, myocardium_transitions(images, masks, q), power)


ContrastFn = Callable[..., torch.Tensor]

#: ``physics.contrast`` value -> contrast function ``f(images, masks, rngs)``
CONTRASTS: dict[str, ContrastFn] = {"sqrt": sqrt_contrast, "power": power_contrast, "none": no_contrast}


def get_contrast(name: str) -> ContrastFn:
    """The contrast function called ``name``.

    Raises:
        ConfigError: ``name`` is not one of :data:`CONTRASTS`.
    """
    if name not in CONTRASTS:
        raise ConfigError(f"physics.contrast must be one of {sorted(CONTRASTS)}, got {name!r}")
    return CONTRASTS[name]
