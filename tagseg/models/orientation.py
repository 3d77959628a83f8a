"""Scan orientation: which of the eight mirror / transpose views of a scan the model reads best.

Readers keep each file's voxel order (docs/data-formats.md), so the same heart arrives mirrored or
transposed depending on the converter that wrote it: NIfTI from one tool, DICOM from another, an
``imt`` array stored (x, y) or (y, x). A model trained without flipped images (``augment=tagged``)
sees the RV on the side it learnt it, and gains on noisy and unfamiliar images from that prior;
mirrored, it draws the ring around the RV (Dice 0.3-0.5 on the phantom's mixed layouts).

With ``orientation.mode=auto`` (``tagseg predict``, ``strain``, ``evaluate``) each subject is looked
at in the eight views of the square (identity, the three flips, the transpose and its three flips)
on up to ``orientation.frames`` frames spread over its images; the view with the highest
**myocardial confidence** (mean softmax probability over the pixels predicted as myocardium,
an image without any counting 0) is kept when it beats the identity by more than
``orientation.margin`` on average **and** on at least ``orientation.agreement`` of those frames,
else the subject is read as stored. Why both: under shift the views' confidences come within
0.01-0.02 of each other and one or two frames can carry a wrong view past the margin; a view the
scan is really stored in wins on nearly every frame (docs/experiments.md, "Orientation at inference":
with 8 frames and agreement 0.75, false turns 2 of 923 subjects against 11 with 4 frames and the
margin alone, and more turned scans recovered). The masks are segmented in that view and
turned back, so every output stays in the scan's own geometry. One decision per subject (a file is
one subject and one voxel order; a slice store may mix subjects stored differently), over all its
slices and frames, so one unclear frame does not turn a slice.

Measured in docs/experiments.md ("Orientation at inference"): on the phantom's raw layouts (one
subject stored flipped, one transposed) the flipless ``make demo`` model goes from Dice 0.48 to
0.93; on the eleven shifted sets every subject kept the identity.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tagseg.conventions import MYO
from tagseg.errors import ConfigError
from tagseg.models.segmenter import per_frame_spacing, softmax

MODES = ("auto", "none")
DEFAULT_MARGIN = 0.005
DEFAULT_FRAMES = 8
DEFAULT_AGREEMENT = 0.75


@dataclass(frozen=True)
class View:
    """A view of the last two axes: transposed first (rows <-> columns), then flipped.

    Attributes:
        name: ``identity``, ``flip_x`` (columns reversed), ``flip_y`` (rows reversed), ``flip_xy``
            and the same four after ``transpose``.
        transpose: swap rows and columns.
        flip_y: reverse the rows (after the transpose).
        flip_x: reverse the columns (after the transpose).
    """

    name: str
    transpose: bool
    flip_y: bool
    flip_x: bool


def _name(transpose: bool, flip_y: bool, flip_x: bool) -> str:
    flips = ("x" if flip_x else "") + ("y" if flip_y else "")
    parts = (["transpose"] if transpose else []) + ([f"flip_{flips}"] if flips else [])
    return "_".join(parts) or "identity"


#: the eight views, identity first
VIEWS: tuple[View, ...] = tuple(
    View(_name(t, fy, fx), t, fy, fx) for t in (False, True) for fy in (False, True) for fx in (False, True)
)
IDENTITY = VIEWS[0]
BY_NAME: dict[str, View] = {v.name: v for v in VIEWS}


def view_named(name: str) -> View:
    """The view called ``name`` (one of :data:`VIEWS`).

    Raises:
        ConfigError: an unknown name.
    """
    if name not in BY_NAME:
        raise ConfigError(f"orientation: unknown view '{name}'; expected one of {list(BY_NAME)}")
    return BY_NAME[name]


def _flip_axes(view: View) -> tuple[int, ...]:
    return tuple(ax for ax, on in ((-2, view.flip_y), (-1, view.flip_x)) if on)


def apply_view(a: Any, view: View) -> Any:
    """``a`` (NumPy array or torch tensor, ``(..., H, W)``) seen in ``view``: ``(..., H, W)`` or ``(..., W, H)``."""
    if view == IDENTITY:
        return a
    axes = _flip_axes(view)
    if isinstance(a, np.ndarray):
        out = np.swapaxes(a, -1, -2) if view.transpose else a
        return np.ascontiguousarray(np.flip(out, axes) if axes else out)
    out = a.transpose(-1, -2) if view.transpose else a
    return out.flip(axes) if axes else out.contiguous()


def invert_view(a: Any, view: View) -> Any:
    """Undo :func:`apply_view`: an array in ``view`` back to the scan's own order."""
    if view == IDENTITY:
        return a
    axes = _flip_axes(view)
    if isinstance(a, np.ndarray):
        out = np.flip(a, axes) if axes else a
        return np.ascontiguousarray(np.swapaxes(out, -1, -2) if view.transpose else out)
    out = a.flip(axes) if axes else a
    return (out.transpose(-1, -2) if view.transpose else out).contiguous()


def view_spacing(spacing_mm: Any, view: View) -> Any:
    """Pixel spacing ``(row, col)`` ((2,) or (T, 2)) of a scan seen in ``view`` (a transpose swaps it)."""
    if spacing_mm is None or not view.transpose:
        return spacing_mm
    return np.asarray(spacing_mm, np.float64)[..., ::-1].copy()


@dataclass(frozen=True)
class OrientationSettings:
    """How ``tagseg predict`` / ``strain`` / ``evaluate`` pick a scan's view (``orientation:`` in their configs).

    Attributes:
        mode: ``auto`` (pick per scan) or ``none`` (read every scan as stored).
        margin: the best view must beat the identity's mean myocardial confidence by more than this.
        frames: frames per scan the choice looks at (spread evenly over the scan).
        agreement: the share of those frames on which the best view must beat the identity (0: the
            mean alone decides).
    """

    mode: str = "auto"
    margin: float = DEFAULT_MARGIN
    frames: int = DEFAULT_FRAMES
    agreement: float = DEFAULT_AGREEMENT

    @property
    def enabled(self) -> bool:
        return self.mode == "auto"

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any] | None) -> OrientationSettings:
        """Settings from an ``orientation:`` block (None: the defaults).

        Raises:
            ConfigError: an unknown mode, a negative margin, fewer than one frame or an agreement
                outside [0, 1].
        """
        cfg = dict(cfg or {})
        unknown = set(cfg) - {"mode", "margin", "frames", "agreement"}
        if unknown:
            raise ConfigError(f"orientation: unknown keys {sorted(unknown)}; expected mode, margin, frames, agreement")
        mode = str(cfg.get("mode", "auto"))
        if mode not in MODES:
            raise ConfigError(f"orientation.mode: expected one of {list(MODES)}, got '{mode}'")
        margin = float(cfg.get("margin", DEFAULT_MARGIN))
        frames = int(cfg.get("frames", DEFAULT_FRAMES))
        if not margin >= 0:
            raise ConfigError(f"orientation.margin: expected >= 0, got {margin}")
        if frames < 1:
            raise ConfigError(f"orientation.frames: expected >= 1, got {frames}")
        agreement = float(cfg.get("agreement", DEFAULT_AGREEMENT))
        if not 0.0 <= agreement <= 1.0:
            raise ConfigError(f"orientation.agreement: expected a share of the frames in [0, 1], got {agreement}")
        return cls(mode, margin, frames, agreement)


def spread_rows(n: int, k: int) -> np.ndarray:
    """At most ``k`` row indices spread evenly over ``n`` rows (first and last included)."""
    if n <= 0:
        return np.zeros(0, np.int64)
    return np.unique(np.linspace(0, n - 1, min(n, max(1, k))).round().astype(np.int64))


def frame_confidences(probs: np.ndarray, channel: int) -> np.ndarray:
    """Per image (B,): the mean softmax maximum over the pixels predicted as ``channel`` (an image
    predicting none of it: 0). ``probs``: (B, C, H, W)."""
    probs = np.asarray(probs)
    predicted = probs.argmax(axis=1) == channel
    peak = probs.max(axis=1)
    return np.asarray([float(p[m].mean()) if m.any() else 0.0 for p, m in zip(peak, predicted)], np.float64)


def view_frame_scores(
    probabilities: Callable[[np.ndarray], np.ndarray], x: np.ndarray, channel: int, views: Sequence[View] = VIEWS
) -> dict[str, np.ndarray]:
    """Per-frame myocardial confidence of ``x`` (pre-processed square images (B, 1, S, S)) in each view, by name.

    Args:
        probabilities: softmax (B, C, S, S) of a pre-processed batch.
        x: the frames the choice looks at.
        channel: the myocardium's output channel.
        views: the views tried.
    """
    return {v.name: frame_confidences(probabilities(apply_view(x, v)), channel) for v in views}


def pick_view(
    scores: Mapping[str, float],
    margin: float = DEFAULT_MARGIN,
    frame_scores: Mapping[str, np.ndarray] | None = None,
    agreement: float = 0.0,
) -> View:
    """The view of highest (mean) score when it beats the identity's by more than ``margin`` and, with
    ``frame_scores`` (per-frame scores by view), on at least ``agreement`` of the frames; else the identity."""
    best = max(scores, key=lambda name: scores[name])
    if best == IDENTITY.name or scores[best] - scores[IDENTITY.name] <= margin:
        return IDENTITY
    if frame_scores is not None and agreement > 0:
        wins = np.asarray(frame_scores[best]) > np.asarray(frame_scores[IDENTITY.name])
        if wins.size and wins.mean() < agreement:
            return IDENTITY
    return BY_NAME[best]


def myo_channel(labels: Sequence[int]) -> int:
    """The output channel of the myocardium among a model's ``labels`` (the last foreground class when
    the model has no myocardium)."""
    labels = list(labels)
    return labels.index(MYO) if MYO in labels else len(labels) - 1


def scan_view(
    segmenter: Any,
    frames: np.ndarray,
    settings: OrientationSettings,
    scaled: bool = False,
    spacing_mm: Any = None,
) -> tuple[View, dict[str, float]]:
    """The view a :class:`~tagseg.models.segmenter.Segmenter` (or ensemble) reads the scan ``frames``
    (T, H, W) in best (the identity when ``settings`` are off); confidences averaged over members."""
    if not settings.enabled or len(frames) == 0:
        return IDENTITY, {}
    rows = spread_rows(len(frames), settings.frames)
    sample = np.asarray(frames)[rows]
    spacing = None if spacing_mm is None else per_frame_spacing(spacing_mm, len(frames))[rows]
    members = list(getattr(segmenter, "members", [segmenter]))
    channel = myo_channel(members[0].labels)
    per_frame: dict[str, np.ndarray] = {}
    for m in members:
        scores = view_frame_scores(lambda b, m=m: softmax(m.logits(b)), m.preprocess(sample, scaled, spacing), channel)
        for name, values in scores.items():
            per_frame[name] = per_frame.get(name, 0.0) + values / len(members)
    totals = {name: float(values.mean()) for name, values in per_frame.items()}
    return pick_view(totals, settings.margin, per_frame, settings.agreement), totals


def subject_views(
    segmenter: Any,
    frames: np.ndarray,
    subjects: Sequence[Any],
    settings: OrientationSettings,
    scaled: bool = False,
    spacing_mm: Any = None,
) -> dict[str, View]:
    """The view of each subject among ``frames`` (T, H, W), chosen by :func:`scan_view` over all its
    frames: a subject is one scan, stored in one voxel order. Empty when ``settings`` are off."""
    if not settings.enabled:
        return {}
    names = np.asarray(subjects).astype(str)
    spacing = None if spacing_mm is None else per_frame_spacing(spacing_mm, len(names))
    views = {}
    for subject in dict.fromkeys(names.tolist()):
        rows = np.flatnonzero(names == subject)
        rows = rows[spread_rows(len(rows), settings.frames)]  # copy only the frames the choice looks at
        part = None if spacing is None else spacing[rows]
        views[subject], _ = scan_view(segmenter, np.asarray(frames)[rows], settings, scaled, part)
    return views


def segment_in_views(
    segment: Callable[[np.ndarray, Any, np.ndarray], np.ndarray],
    frames: np.ndarray,
    spacing_mm: Any,
    subjects: Sequence[Any],
    views: Mapping[str, View],
) -> np.ndarray:
    """Label maps (T, H, W) of ``frames``, each subject segmented in its view of ``views`` (identity when
    absent) and turned back: ``segment(frames_in_view, spacing_in_view, rows)`` runs once per view."""
    frames = np.asarray(frames)
    names = np.asarray(subjects).astype(str)
    spacing = None if spacing_mm is None else per_frame_spacing(spacing_mm, len(frames))
    chosen = [views.get(name, IDENTITY) for name in names]
    out = np.zeros(frames.shape, np.uint8)
    for view in dict.fromkeys(chosen):
        rows = np.flatnonzero([v == view for v in chosen])
        part = None if spacing is None else view_spacing(spacing[rows], view)
        out[rows] = invert_view(segment(apply_view(frames[rows], view), part, rows), view)
    return out
