"""Training randomness as a function of (seed, epoch, position), so a resumed fit is exact.

Two pieces make the data order and the augmentation of epoch ``e`` the same whether the fit ran
straight through or was killed and resumed from a checkpoint:

* :class:`StepSeed` (a Lightning callback) re-seeds Python, NumPy and torch before every training
  batch from ``(seed, global step)``, so whatever ran before (a sanity check, a restore, the
  epochs of the first process) does not shift the random draws of the steps that follow;
* :class:`SeededSampler` draws the epoch's order and one augmentation seed per sample from
  ``(seed, epoch)`` (the epoch count is saved in checkpoints) in the main process and hands ``(row, seed)`` pairs to the dataset, which
  seeds its MONAI transforms per sample: the same sample gets the same augmentation whichever
  worker, and however many workers, load it (workers otherwise keep their own random state
  across epochs). It does not read the global generators: Lightning fetches the first batch of a
  process's first epoch before any epoch-start hook runs.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

import lightning as L
import numpy as np
import torch
from torch.utils.data import Sampler

#: augmentation seeds are drawn below this (MONAI's ``set_random_state`` takes uint32 seeds)
MAX_SEED = 2**32 - 1


def derived_seed(seed: int, *keys: int) -> int:
    """A 32-bit seed for ``keys`` (e.g. an epoch) of a run seeded with ``seed`` (independent streams)."""
    return int(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, *(int(k) for k in keys)]).generate_state(1)[0])


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of epoch ``epoch``'s data order and augmentation."""
    return derived_seed(seed, 0, epoch)


def step_seed(seed: int, step: int) -> int:
    """The seed of the global generators at optimiser step ``step`` (dropout, VAE sampling...)."""
    return derived_seed(seed, 1, step)


def seed_all(seed: int) -> None:
    """Seed Python's ``random``, NumPy's global generator and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class StepSeed(L.Callback):
    """Re-seed Python, NumPy and torch before every training batch from ``(seed, global step)``.

    Whatever drew from the global generators before (a sanity check, a restore, a data loader's
    base seed, the epochs of an interrupted process) then leaves the model's random draws of each
    step unchanged. (Epoch-start hooks would not do: a fit resumed at an epoch's end skips them.)

    Args:
        seed: the run's seed (``cfg.seed``).
    """

    def __init__(self, seed: int) -> None:
        self.seed = int(seed)

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: object, batch_idx: int
    ) -> None:
        seed_all(step_seed(self.seed, trainer.global_step))


class SeededSampler(Sampler):
    """Rows of a dataset in a shuffled (or fixed) order, each with its own augmentation seed.

    Yields ``(row, seed)`` pairs; :class:`tagseg.data.datamodule.SliceDataset` seeds the sample's
    augmentation with ``seed``. Order and seeds are a function of ``(seed, epoch)`` only, where
    the epoch is the number of earlier passes, counted in ``progress["epochs"]``: the DataModule
    saves that count in the checkpoint and restores it before the first pass of a resumed fit
    (the trainer's epoch counter is not reliable then: Lightning fetches the first batch of a
    resumed fit before it settles).

    Args:
        n: number of rows.
        seed: the run's seed.
        progress: a mutable ``{"epochs": int}`` shared with the owner (a fresh one if ``None``).
        shuffle: a random order (else 0..n-1).
    """

    def __init__(self, n: int, seed: int = 0, progress: dict[str, int] | None = None, shuffle: bool = True) -> None:
        self.n = int(n)
        self.seed = int(seed)
        self.progress = progress if progress is not None else {"epochs": 0}
        self.shuffle = shuffle

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self.progress["epochs"]
        self.progress["epochs"] = epoch + 1
        gen = torch.Generator().manual_seed(epoch_seed(self.seed, epoch))
        order = torch.randperm(self.n, generator=gen) if self.shuffle else torch.arange(self.n)
        seeds = torch.randint(0, MAX_SEED, (self.n,), generator=gen)
        return iter(list(zip(order.tolist(), seeds.tolist())))


__all__ = ["MAX_SEED", "SeededSampler", "StepSeed", "derived_seed", "epoch_seed", "seed_all", "step_seed"]
