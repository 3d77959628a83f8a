"""Unpaired images of two domains for the CycleGAN: A = cine, B = tagged.

Domain A reads every frame of a cine slice store (masks unused); domain B reads a tagged slice
store (labels unused). Each domain has its own sampler with its own seed, so the two are shuffled
independently (no fixed A/B pairing, also under DDP where each sampler shards by rank). One epoch
is as long as the larger domain; the smaller one cycles (Lightning's ``max_size_cycle``).

Intensities: stores hold [0, 1]; items are converted once, here, to the GAN's [-1, 1] with
:func:`tagseg.data.intensity.to_gan`.

By default the tagged domain uses only its ``train`` split: its test subjects are the ones the
segmenter is finally scored on and must not shape the generated pretraining data.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.utilities import CombinedLoader
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from tagseg.data.intensity import to_gan
from tagseg.errors import ConfigError, DataError
from tagseg.io.store import read_images, split_rows, store_shape

#: seed offset of domain B's sampler, so the two domains never share a permutation
_SEED_OFFSET_B = 1_000_003


class DomainImages(Dataset):
    """Images of one domain as GAN inputs: item ``i`` -> (1, H, W) float32 in [-1, 1].

    Args:
        images: float32 (N, H, W) in [0, 1] (a slice store's ``/images`` rows).
    """

    def __init__(self, images: np.ndarray) -> None:
        self.images = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, index: int) -> torch.Tensor:
        return to_gan(self.images[index]).unsqueeze(0)


def read_domain(path: str | Path, splits: Sequence[str] | None, where: str) -> np.ndarray:
    """The ``/images`` rows of a store whose ``meta/split`` is in ``splits`` (``None``: all rows).

    Args:
        path: the slice store.
        splits: split names to keep, or ``None``.
        where: the config key named in errors (e.g. ``data_a``).

    Returns:
        float32 (N, H, W) in [0, 1].

    Raises:
        StoreError: the store is missing or malformed.
        DataError: no rows selected, a missing split column, or values outside [0, 1].
    """
    rows = split_rows(path, splits, where)
    if rows.size == 0:
        raise DataError(f"{path} ({where}): no images in splits {list(splits or [])}")
    images = read_images(path, rows)
    lo, hi = float(images.min()), float(images.max())
    if not (np.isfinite(lo) and np.isfinite(hi)) or lo < -1e-4 or hi > 1 + 1e-4:
        raise DataError(f"{path} ({where}): images must be in [0, 1] (the store convention), got [{lo:.3g}, {hi:.3g}]")
    return images


class UnpairedDataModule(pl.LightningDataModule):
    """Two independently shuffled domains (A cine, B tagged) for :class:`~tagseg.models.cyclegan.CycleGANModule`.

    Training batches are ``{"A": (b, 1, H, W), "B": (b, 1, H', W')}`` in [-1, 1].

    Args:
        store_a: the cine slice store (domain A).
        store_b: the tagged slice store (domain B).
        splits_a: ``meta/split`` values used from A (``None``: every slice, every frame).
        splits_b: ``meta/split`` values used from B (default ``["train"]``).
        batch_size: images per domain per step (1 in the reference CycleGAN).
        num_workers: DataLoader workers per domain.
        seed: seeds the two samplers (B uses a fixed offset).

    Raises:
        ConfigError: a non-positive batch size or negative worker count.
    """

    def __init__(
        self,
        store_a: str | Path,
        store_b: str | Path,
        splits_a: Sequence[str] | None = None,
        splits_b: Sequence[str] | None = ("train",),
        batch_size: int = 1,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if int(batch_size) < 1:
            raise ConfigError(f"datamodule.batch_size must be >= 1, got {batch_size}")
        if int(num_workers) < 0:
            raise ConfigError(f"datamodule.num_workers must be >= 0, got {num_workers}")
        self.store_a, self.store_b = Path(store_a), Path(store_b)
        self.splits_a = None if splits_a is None else [str(s) for s in splits_a]
        self.splits_b = None if splits_b is None else [str(s) for s in splits_b]
        self.batch_size, self.num_workers, self.seed = int(batch_size), int(num_workers), int(seed)
        self.domain_a: DomainImages | None = None
        self.domain_b: DomainImages | None = None

    def setup(self, stage: str | None = None) -> None:
        """Read both domains into memory (images only)."""
        if self.domain_a is None:
            self.domain_a = DomainImages(read_domain(self.store_a, self.splits_a, "data_a"))
            self.domain_b = DomainImages(read_domain(self.store_b, self.splits_b, "data_b"))

    def image_shapes(self) -> dict[str, tuple[int, int]]:
        """``{"A": (H, W), "B": (H, W)}`` read from the store headers (no images loaded)."""
        return {key: store_shape(path)[1:] for key, path in (("A", self.store_a), ("B", self.store_b))}

    def _loader(self, ds: Dataset, seed: int) -> DataLoader:
        trainer = self.trainer
        replicas, rank = (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)
        # our own (rank-aware) sampler: Lightning keeps it, and calls set_epoch on it every epoch
        sampler = DistributedSampler(ds, num_replicas=replicas, rank=rank, shuffle=True, seed=seed)
        return DataLoader(
            ds,
            batch_size=self.batch_size,
            sampler=sampler,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            drop_last=False,
        )

    def train_dataloader(self) -> CombinedLoader:
        """``{"A": loader, "B": loader}`` combined in ``max_size_cycle`` mode."""
        self.setup()
        assert self.domain_a is not None and self.domain_b is not None
        loaders = {
            "A": self._loader(self.domain_a, self.seed),
            "B": self._loader(self.domain_b, self.seed + _SEED_OFFSET_B),
        }
        return CombinedLoader(loaders, mode="max_size_cycle")

    def examples(self, n: int = 4) -> dict[str, torch.Tensor]:
        """``n`` fixed, evenly spaced images per domain (for the PNG grids): ``{"A": (n, 1, H, W), "B": ...}``."""
        self.setup()
        out = {}
        for key, ds in (("A", self.domain_a), ("B", self.domain_b)):
            assert ds is not None
            rows = np.unique(np.linspace(0, len(ds) - 1, min(int(n), len(ds))).round().astype(int))
            out[key] = torch.stack([ds[int(r)] for r in rows])
        return out


__all__ = ["DomainImages", "UnpairedDataModule", "read_domain"]
