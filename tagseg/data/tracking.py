"""Training data of the learned tag tracker: phantom tagged sequences with their true motion.

:func:`phantom_sequences` renders phantom subjects (any :class:`~tagseg.data.records.DatasetSource`
whose records carry ``extras["displacement"]``, such as the randomised phantom) into one
:class:`TrackingSequence` per slice: the frames, the Lagrangian displacement of every ED pixel
(pixels, (row, col); the store's ``/displacement`` convention) and the ED myocardium.

:class:`TrackingPairs` draws training examples from them, each a function of ``(seed, index)``
only: a frame ``t``, a *prior* displacement to refine (the truth of a nearby frame ``t + lag``, the
lag as often before ``t`` as after it, plus a smooth random error), a crop
centred on a random myocardial pixel, and one of the eight flips / transposes of the square (the
displacement vectors turn with the image).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from tagseg.conventions import MYO
from tagseg.data.records import DatasetSource
from tagseg.errors import ConfigError, DataError


@dataclass(frozen=True)
class TrackingSequence:
    """One slice of a tagged cine series with its true motion.

    Attributes:
        frames: (T, H, W) float32 images, frame 0 = ED.
        displacement: (T, 2, H, W) float32 Lagrangian displacement (pixels, (row, col)) of each ED pixel.
        myocardium: (H, W) bool, the ED myocardium.
        spacing_mm: (row, col) pixel spacing.
        name: ``<subject>/<slice>``.
    """

    frames: np.ndarray
    displacement: np.ndarray
    myocardium: np.ndarray
    spacing_mm: tuple[float, float]
    name: str


def phantom_sequences(source: DatasetSource, items: Iterable[int], seed: int) -> list[TrackingSequence]:
    """Render ``items`` of ``source`` into one :class:`TrackingSequence` per slice.

    Raises:
        DataError: a record without ``extras["displacement"]`` (the source knows no true motion).
    """
    sequences = []
    for item in items:
        by_slice: dict[int, list[Any]] = {}
        for record in source.load(item, seed):
            if "displacement" not in record.extras:
                raise DataError(
                    f"{source.describe(item)}: the records carry no true displacement to train a tracker on"
                )
            by_slice.setdefault(record.slice, []).append(record)
        for index, records in sorted(by_slice.items()):
            records.sort(key=lambda r: r.frame)
            sequences.append(
                TrackingSequence(
                    frames=np.stack([r.image for r in records]).astype(np.float32),
                    displacement=np.stack([r.extras["displacement"] for r in records]).astype(np.float32),
                    myocardium=records[0].mask == MYO,
                    spacing_mm=tuple(float(s) for s in records[0].spacing_mm),
                    name=f"{records[0].subject}/{index}",
                )
            )
    return sequences


def smooth_field(rng: np.random.Generator, shape: tuple[int, int], amplitude_px: float, knots: int = 4) -> np.ndarray:
    """(2, H, W) smooth random displacement: uniform values in +-``amplitude_px`` on a coarse grid, interpolated."""
    coarse = torch.from_numpy(rng.uniform(-amplitude_px, amplitude_px, (1, 2, knots, knots)).astype(np.float32))
    return torch.nn.functional.interpolate(coarse, size=shape, mode="bicubic", align_corners=True)[0].numpy()


def dihedral(image: np.ndarray, vectors: np.ndarray, code: int) -> tuple[np.ndarray, np.ndarray]:
    """One of the 8 symmetries of the square applied to (..., H, W) images and (..., 2, H, W) (row, col) vectors.

    ``code`` bit 0 flips rows, bit 1 flips columns, bit 2 transposes; vector components turn with them.
    """
    if code & 1:
        image, vectors = image[..., ::-1, :], vectors[..., ::-1, :] * np.array([-1, 1], np.float32)[:, None, None]
    if code & 2:
        image, vectors = image[..., :, ::-1], vectors[..., :, ::-1] * np.array([1, -1], np.float32)[:, None, None]
    if code & 4:
        image = np.swapaxes(image, -1, -2)
        vectors = np.swapaxes(vectors, -1, -2)[..., ::-1, :, :]
    return np.ascontiguousarray(image), np.ascontiguousarray(vectors)


class TrackingPairs(Dataset):
    """Random (reference, frame, prior, target, weight) examples from tracking sequences.

    Args:
        sequences: the rendered sequences.
        length: examples per epoch (any index is valid; each is seeded by ``(seed, index)``).
        crop_px: side of the square crop (centred on a random ED myocardial pixel; ``None``: whole image).
        max_lag: the prior is the truth of frame ``t + lag``, ``lag`` uniform in ``-max_lag..max_lag``
            (clipped to the series). Symmetric on purpose: priors only from earlier frames make the
            residual point along the expected motion, which a network learns from the anatomy and
            the tag fading and then adds at every refinement (a drift that grows frame by frame).
        prior_noise_px: amplitude of the smooth random error added to the prior.
        weight_dilation_px: the loss counts on the ED myocardium dilated by this many pixels.
        augment: apply a random flip / transpose.
        seed: base seed.
    """

    def __init__(
        self,
        sequences: Sequence[TrackingSequence],
        length: int,
        crop_px: int | None = 48,
        max_lag: int = 3,
        prior_noise_px: float = 0.5,
        weight_dilation_px: int = 1,
        augment: bool = True,
        seed: int = 0,
    ) -> None:
        if not sequences:
            raise ConfigError("tracker.training: no training sequences (train_subjects must be >= 1)")
        if crop_px is not None and crop_px < 16:
            raise ConfigError(f"tracker.training.crop_px: expected >= 16 pixels or null, got {crop_px}")
        self.sequences = list(sequences)
        self.length, self.crop_px, self.max_lag = int(length), crop_px, int(max_lag)
        self.prior_noise_px, self.augment, self.seed = float(prior_noise_px), bool(augment), int(seed)
        self.weights = [_dilate(s.myocardium, int(weight_dilation_px)).astype(np.float32) for s in self.sequences]

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.seed, int(index)])
        k = int(rng.integers(len(self.sequences)))
        seq, weight = self.sequences[k], self.weights[k]
        n_frames = seq.frames.shape[0]
        t = int(rng.integers(1, n_frames))
        lag = int(rng.integers(-self.max_lag, self.max_lag + 1))
        prior = seq.displacement[int(np.clip(t + lag, 0, n_frames - 1))]
        h, w = seq.frames.shape[1:]
        if self.prior_noise_px > 0:
            prior = prior + smooth_field(rng, (h, w), self.prior_noise_px)
        window = self._window(rng, seq.myocardium, (h, w))
        images = np.stack([seq.frames[0], seq.frames[t], weight])[(slice(None), *window)]
        vectors = np.stack([prior, seq.displacement[t]])[(slice(None), slice(None), *window)]
        if self.augment:
            images, vectors = dihedral(images, vectors, int(rng.integers(8)))
        return {
            "reference": torch.from_numpy(images[0:1].copy()),
            "frame": torch.from_numpy(images[1:2].copy()),
            "weight": torch.from_numpy(images[2:3].copy()),
            "prior": torch.from_numpy(vectors[0].copy()),
            "target": torch.from_numpy(vectors[1].copy()),
        }

    def _window(self, rng: np.random.Generator, myocardium: np.ndarray, shape: tuple[int, int]) -> tuple[slice, slice]:
        if self.crop_px is None:
            return slice(None), slice(None)
        size = min(self.crop_px, *shape)
        rows, cols = np.nonzero(myocardium)
        j = int(rng.integers(rows.size)) if rows.size else 0
        centre = (rows[j], cols[j]) if rows.size else (shape[0] // 2, shape[1] // 2)
        r0 = int(np.clip(centre[0] - size // 2, 0, shape[0] - size))
        c0 = int(np.clip(centre[1] - size // 2, 0, shape[1] - size))
        return slice(r0, r0 + size), slice(c0, c0 + size)


def _dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    out = mask.copy()
    for _ in range(max(radius, 0)):
        grown = out.copy()
        grown[1:] |= out[:-1]
        grown[:-1] |= out[1:]
        grown[:, 1:] |= out[:, :-1]
        grown[:, :-1] |= out[:, 1:]
        out = grown
    return out


class TrackingDataModule(L.LightningDataModule):
    """Training and validation examples of the learned tracker, rendered from a phantom source.

    Args:
        source: the phantom (``tracker.training.phantom``, a DatasetSource with true displacement).
        train_subjects: items ``0 .. train_subjects-1`` are rendered for training.
        val_subjects: the next ``val_subjects`` items validate (whole images, prior = previous frame's truth).
        seed: the phantom's seed (and the examples' base seed).
        steps: training examples per epoch are ``steps * batch_size``.
        batch_size: examples per step.
        val_pairs: validation examples.
        pairs: keyword arguments of :class:`TrackingPairs` for training (``crop_px``, ``max_lag`` ...).
    """

    def __init__(
        self,
        source: DatasetSource,
        train_subjects: int = 16,
        val_subjects: int = 2,
        seed: int = 0,
        steps: int = 1000,
        batch_size: int = 8,
        val_pairs: int = 32,
        pairs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if train_subjects < 1 or val_subjects < 0 or steps < 1 or batch_size < 1:
            raise ConfigError(
                "tracker.training: train_subjects, steps and batch_size must be >= 1 and val_subjects >= 0, got "
                f"{train_subjects}, {steps}, {batch_size}, {val_subjects}"
            )
        self.source, self.seed = source, int(seed)
        self.train_subjects, self.val_subjects = int(train_subjects), int(val_subjects)
        self.steps, self.batch_size, self.val_pairs = int(steps), int(batch_size), int(val_pairs)
        self.pairs = dict(pairs or {})
        self.train_set: TrackingPairs | None = None
        self.val_set: TrackingPairs | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        train = phantom_sequences(self.source, range(self.train_subjects), self.seed)
        self.train_set = TrackingPairs(train, self.steps * self.batch_size, seed=self.seed, **self.pairs)
        if self.val_subjects:
            val = phantom_sequences(
                self.source, range(self.train_subjects, self.train_subjects + self.val_subjects), self.seed
            )
            self.val_set = TrackingPairs(
                val, self.val_pairs, crop_px=None, max_lag=1, prior_noise_px=0.0, augment=False, seed=self.seed + 1
            )

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=False, num_workers=0)

    def val_dataloader(self) -> DataLoader | list:
        return DataLoader(self.val_set, batch_size=self.batch_size, num_workers=0) if self.val_set is not None else []


__all__ = [
    "TrackingDataModule",
    "TrackingPairs",
    "TrackingSequence",
    "dihedral",
    "phantom_sequences",
    "smooth_field",
]
