"""Post-processing of predicted label maps (``postprocess=`` of ``tagseg evaluate``, ``tagseg predict``
and ``strategy.postprocess``).

A heart has one myocardium, one LV blood pool and one RV per short-axis slice, so a prediction
with several pieces of one label is partly wrong. ``largest_component`` keeps, per image and per
foreground label, only the largest 8-connected component (nnU-Net's "remove all but the largest
component"); the removed pixels become background. It removes false positives away from the heart
(bright fat, other organs), but also the true pieces of a myocardial ring that broke up: on the
phantom's shifted test sets it lowered Dice and raised HD95 (docs/experiments.md,
"Post-processing"), so it is opt-in, as nnU-Net applies it only where validation shows a gain.
``none`` leaves the argmax as it is, as the paper reports it.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from tagseg.conventions import BACKGROUND
from tagseg.errors import ConfigError

#: the accepted ``postprocess`` values
POSTPROCESS = ("none", "largest_component")
_EIGHT = np.ones((3, 3), dtype=bool)


def check_postprocess(value: object, key: str = "postprocess") -> str:
    """``value`` as a :data:`POSTPROCESS` name (``None`` reads as ``none``).

    Raises:
        ConfigError: any other value, naming ``key``.
    """
    name = "none" if value is None else str(value)
    if name not in POSTPROCESS:
        raise ConfigError(f"{key}: expected one of {list(POSTPROCESS)}, got {value!r}")
    return name


def largest_component(labels: np.ndarray) -> np.ndarray:
    """Keep the largest 8-connected component of each foreground label in each 2D image.

    Args:
        labels: integer label maps, (H, W) or (..., H, W); 0 is background.

    Returns:
        A copy of ``labels`` in which every smaller component of a label is background. Ties keep the
        component met first in row-major order.
    """
    labels = np.asarray(labels)
    out = labels.copy()
    flat = out.reshape((-1, *out.shape[-2:]))
    for image in flat:
        for value in np.unique(image):
            if value == BACKGROUND:
                continue
            components, count = ndimage.label(image == value, structure=_EIGHT)
            if count < 2:
                continue
            sizes = np.bincount(components.ravel())[1:]
            image[(components > 0) & (components != int(np.argmax(sizes)) + 1)] = BACKGROUND
    return out


def apply_postprocess(name: str, labels: np.ndarray) -> np.ndarray:
    """``labels`` post-processed by the :data:`POSTPROCESS` step ``name`` (``none``: unchanged)."""
    name = check_postprocess(name)
    return labels if name == "none" else largest_component(labels)


__all__ = ["POSTPROCESS", "apply_postprocess", "check_postprocess", "largest_component"]
