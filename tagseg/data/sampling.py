"""Training randomness as a function of (seed, epoch, position), so a resumed fit is exact.

Two pieces make the data order and the augmentation of epoch ``e`` the same whether the fit ran
straight through or was killed and resumed from a checkpoint:

* :class:`EpochSeed` (a Lightning callback) re-seeds Python, NumPy and torch at the start of every
  training epoch from ``(seed, epoch)``, so whatever ran before (a sanity check, a restore, the
  epochs of the first process) does not shift the random streams of the epochs that follow;
* :class:`SeededSampler` draws the epoch's order and one augmentation seed per sample from that
  stream in the main process and hands ``(row, seed)`` pairs to the dataset, which seeds its
  MONAI transforms per sample: the same sample gets the same augmentation whichever worker, and
  however many workers, load it (workers otherwise keep their own random state across epochs).
"""

from __future__ import annotations

import random
from typing import Iterator

import lightning as L
import numpy as np
import torch
from torch.utils.data import Sampler

#: augmentation seeds are drawn below this (MONAI's ``set_random_state`` takes uint32 seeds)
MAX_SEED = 2**32 - 1


def epoch_seed(seed: int, epoch: int) -> int:
    """A 32-bit seed for epoch ``epoch`` of a run seeded with ``seed`` (independent streams per epoch)."""
    return int(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(epoch)]).generate_state(1)[0])


def seed_all(seed: int) -> None:
    """Seed Python's ``random``, NumPy's global generator and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class EpochSeed(L.Callback):
    """Re-seed every random stream at the start of each training epoch from ``(seed, epoch)``.

    Args:
        seed: the run's seed (``cfg.seed``).
    """

    def __init__(self, seed: int) -> None:
        self.seed = int(seed)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        seed_all(epoch_seed(self.seed, trainer.current_epoch))


class SeededSampler(Sampler):
    """Rows of a dataset in a shuffled (or fixed) order, each with its own augmentation seed.

    Yields ``(row, seed)`` pairs; :class:`tagseg.data.datamodule.SliceDataset` seeds the sample's
    augmentation with ``seed``. Both are drawn from torch's global generator when iteration starts,
    which :class:`EpochSeed` has set from ``(seed, epoch)``.

    Args:
        n: number of rows.
        shuffle: a random order (else 0..n-1).
    """

    def __init__(self, n: int, shuffle: bool = True) -> None:
        self.n = int(n)
        self.shuffle = shuffle

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[tuple[int, int]]:
        base = int(torch.randint(0, MAX_SEED, (1,)).item())
        gen = torch.Generator().manual_seed(base)
        order = torch.randperm(self.n, generator=gen) if self.shuffle else torch.arange(self.n)
        seeds = torch.randint(0, MAX_SEED, (self.n,), generator=gen)
        for row, seed in zip(order.tolist(), seeds.tolist()):
            yield row, seed


__all__ = ["EpochSeed", "MAX_SEED", "SeededSampler", "epoch_seed", "seed_all"]
