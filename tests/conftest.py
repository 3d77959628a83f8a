"""Shared fixtures: a tiny synthetic slice store (rings of myocardium around a blood pool)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from tagseg.io.store import write_store

os.environ.setdefault("WANDB_MODE", "disabled")


def ring_slices(n: int, size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` images (N, size, size) in [0, 1] and ACDC masks: LV blood pool (3) inside a myocardial ring (2)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    images = np.zeros((n, size, size), np.float32)
    masks = np.zeros((n, size, size), np.uint8)
    for i in range(n):
        cy, cx = size / 2 + rng.uniform(-2, 2, 2)
        r_in = size * rng.uniform(0.12, 0.18)
        r_out = r_in + size * rng.uniform(0.08, 0.12)
        r = np.hypot(yy - cy, xx - cx)
        masks[i][r < r_out] = 2
        masks[i][r < r_in] = 3
        img = np.where(masks[i] == 3, 0.9, np.where(masks[i] == 2, 0.4, 0.1)) + rng.normal(0, 0.03, (size, size))
        images[i] = np.clip(img, 0, 1)
    return images, masks


def write_ring_store(
    path: Path,
    n_subjects: int = 6,
    n_slices: int = 2,
    n_frames: int = 2,
    size: int = 32,
    with_split: bool = True,
    spacing_mm: tuple[float, float] = (1.5, 1.25),
    seed: int = 0,
) -> Path:
    """Write a small store: subject ``s0..``, groups alternating control / dmd, splits by subject."""
    n = n_subjects * n_slices * n_frames
    images, masks = ring_slices(n, size, seed)
    subj = np.repeat(np.arange(n_subjects), n_slices * n_frames)
    meta = {
        "subject": [f"s{s}" for s in subj],
        "slice": np.tile(np.repeat(np.arange(n_slices), n_frames), n_subjects),
        "frame": np.tile(np.arange(n_frames), n_subjects * n_slices),
        "n_frames": np.full(n, n_frames),
        "phase": ["ED" if f == 0 else "" for f in np.tile(np.arange(n_frames), n_subjects * n_slices)],
        "group": ["control" if s % 2 == 0 else "dmd" for s in subj],
        "spacing_mm": np.tile(np.asarray(spacing_mm, np.float32), (n, 1)),
        "source": ["rings"] * n,
    }
    if with_split:
        names = ["test", "val"] + ["train"] * max(0, n_subjects - 2)
        meta["split"] = [names[s % len(names)] if s < len(names) else "train" for s in subj]
    return write_store(path, images, masks, meta, name="rings")


@pytest.fixture
def ring_store(tmp_path: Path) -> Path:
    """A 6-subject, 24-slice 32x32 store with a split column (4 train, 1 val, 1 test subjects)."""
    return write_ring_store(tmp_path / "rings.h5")


@pytest.fixture
def make_ring_store(tmp_path: Path) -> Callable[..., Path]:
    """Factory: ``make_ring_store(name, **kwargs)`` writes another store under ``tmp_path``."""

    def make(name: str = "store.h5", **kwargs) -> Path:
        return write_ring_store(tmp_path / name, **kwargs)

    return make


@pytest.fixture
def single_thread():
    """Run torch on one thread (tiny tensors: threads only contend on a shared CI machine)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def trained_ckpt(tmp_path_factory) -> Path:
    """A tiny ResNetVAE SegmentationModule trained for 2 steps on a ring store, saved by a Lightning Trainer."""
    import lightning as L

    from tagseg.data.datamodule import SliceDataModule
    from tagseg.models.segmentation import SegmentationModule

    tmp = tmp_path_factory.mktemp("ckpt")
    store = write_ring_store(tmp / "rings.h5")
    dm = SliceDataModule(stores=[str(store)], image_size=32, batch_size=4, augment={"enabled": False})
    module = SegmentationModule(
        network={"_target_": "tagseg.models.networks.build_network", "name": "resnetvae", "init_filters": 8},
        loss={"_target_": "tagseg.losses.SegmentationLoss", "gamma": 0.1},
        optimizer={"_target_": "torch.optim.Adam", "_partial_": True, "lr": 0.01},
        image_size=32,
    )
    trainer = L.Trainer(max_steps=2, limit_val_batches=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir=str(tmp), accelerator="cpu")
    trainer.fit(module, datamodule=dm)
    trainer.save_checkpoint(tmp / "run" / "checkpoints" / "best.ckpt")
    return tmp / "run" / "checkpoints" / "best.ckpt"
