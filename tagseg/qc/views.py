"""Segmentation with the by-products quality control reads: the averaged softmax and the views.

:func:`segment_with_uncertainty` gives the same label maps as
:func:`tagseg.models.segmenter.segment_frames` (the same softmax sums in the same order), plus,
per image, the softmax entropy over the predicted myocardium and the mean pairwise Dice of the
views' myocardium: one view per test-time flip (``tta``) and per ensemble member. A single model
without flips has one view: its agreement is NaN and QC costs only the signals.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tagseg.models.orientation import myo_channel
from tagseg.models.segmenter import TTA_FLIPS, per_frame_spacing, resize_nearest, softmax
from tagseg.qc.signals import entropy_over, mean_pairwise_dice


@dataclass
class Uncertainty:
    """Label maps and per-image uncertainty of one scan.

    Attributes:
        labels: (T, H, W) uint8 label maps, each at its frame's size.
        entropy: (T,) normalised softmax entropy over the predicted myocardium (NaN when empty).
        agreement: (T,) mean pairwise Dice of the views' myocardium (NaN with one view).
        n_views: flips x members.
    """

    labels: np.ndarray
    entropy: np.ndarray
    agreement: np.ndarray
    n_views: int


def _member_views(member: Any, x: np.ndarray, tta: bool) -> tuple[np.ndarray, list[np.ndarray]]:
    """A member's softmax (averaged over flips as :meth:`Segmenter.probabilities` does) and each flip's softmax."""
    if not tta:
        p = softmax(member.logits(x))
        return p, [p]
    total, views = None, []
    for axes in TTA_FLIPS:
        flipped = np.flip(x, axes).copy() if axes else x
        p = softmax(member.logits(flipped))
        p = np.flip(p, axes) if axes else p
        views.append(p)
        total = p if total is None else total + p
    return total / len(TTA_FLIPS), views


def segment_with_uncertainty(
    segmenter: Any,
    frames: np.ndarray,
    batch_size: int = 16,
    scaled: bool = False,
    tta: bool = False,
    spacing_mm: Any = None,
) -> Uncertainty:
    """Segment ``frames`` (T, H, W) like ``segmenter.segment`` and measure the uncertainty QC reads.

    Args:
        segmenter: a :class:`~tagseg.models.segmenter.Segmenter` or an ensemble (``members``).
        frames: raw frames, or [0, 1] store images with ``scaled``.
        batch_size: frames per forward pass.
        scaled: the frames are slice-store images.
        tta: average the softmax over the training flips (each flip is a view).
        spacing_mm: the frames' pixel spacing, (2,) or (T, 2), for models trained at one pixel size
            (:meth:`~tagseg.models.segmenter.Segmenter.preprocess`).
    """
    members: Sequence[Any] = getattr(segmenter, "members", [segmenter])
    frames = np.asarray(frames)
    shape = tuple(frames.shape[1:])
    labels_of = tuple(members[0].labels)
    lut = np.asarray(labels_of, np.uint8)
    channel = myo_channel(labels_of)
    per_frame = None if spacing_mm is None else per_frame_spacing(spacing_mm, len(frames))
    same_size = len({m.image_size for m in members}) == 1 and not any(m.on_grid(per_frame) for m in members)
    out = np.zeros(frames.shape, np.uint8)
    entropy = np.full(len(frames), np.nan)
    agreement = np.full(len(frames), np.nan)
    n_views = len(members) * (len(TTA_FLIPS) if tta else 1)
    step = max(1, int(batch_size))
    for start in range(0, len(frames), step):
        chunk = frames[start : start + step]
        sp = None if per_frame is None else per_frame[start : start + step]
        total, views = None, []
        for m in members:
            p, member_views = _member_views(m, m.preprocess(chunk, scaled, sp), tta)
            if not same_size:
                p = m.to_frames(p, shape, sp)
                member_views = [m.to_frames(v, shape, sp) for v in member_views]
            views.extend(v.argmax(axis=1) == channel for v in member_views)
            total = p if total is None else total + p
        classes = total.argmax(axis=1).astype(np.uint8)
        mean_p = total / len(members)
        for j in range(len(chunk)):
            entropy[start + j] = entropy_over(mean_p[j], classes[j] == channel)
            if n_views > 1:
                agreement[start + j] = mean_pairwise_dice([v[j] for v in views])
        if same_size:
            classes = resize_nearest(classes, shape)
        out[start : start + len(chunk)] = lut[classes]
    return Uncertainty(labels=out, entropy=entropy, agreement=agreement, n_views=n_views)


__all__ = ["Uncertainty", "segment_with_uncertainty"]
