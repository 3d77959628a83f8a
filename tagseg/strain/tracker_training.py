"""Training the learned tracker on phantom sequences, once per config (the tracker cache).

:func:`cached_tracker_checkpoint` hashes the training config (``tracker.training``) into a key and
keeps the trained checkpoint in ``<cache_dir>/<key>/``:

``config.yaml``    the training config the key hashes
``tracker.ckpt``   the trained :class:`~tagseg.models.tracking.TrackingModule` (written last, atomically)
``metrics.json``   validation RMSE (pixels), steps, wall time

A later call with the same config finds ``tracker.ckpt`` and trains nothing; concurrent callers
take a lock on the folder, so one trains and the others wait and reuse. The checkpoint is found
again by :func:`~tagseg.io.checkpoints.resolve_checkpoint` and read with ``weights_only=True``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import yaml

from tagseg.data.tracking import TrackingDataModule, TrackingSequence
from tagseg.errors import ConfigError
from tagseg.io.atomic import OutputLock, atomic_write_text, replaced
from tagseg.models.tracking import TrackingModule
from tagseg.runtime.config import instantiate, plain
from tagseg.strain.tracking import Tracker

log = logging.getLogger(__name__)

#: bump when what a cached tracker folder holds changes, or what a training config trains (old entries are then not found)
TRACKER_CACHE_VERSION = 2
CHECKPOINT_FILE = "tracker.ckpt"
CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.json"
#: keys of ``tracker.training`` (anything else is a typo, reported)
TRAINING_KEYS = (
    "seed",
    "steps",
    "batch_size",
    "train_subjects",
    "val_subjects",
    "val_pairs",
    "pairs",
    "model",
    "phantom",
)


def training_key(training: Mapping[str, Any], length: int = 12) -> str:
    """A short stable hash of a (plain, resolved) training config; key order does not matter."""
    blob = json.dumps(
        {"kind": "tracker", "version": TRACKER_CACHE_VERSION, "config": training},
        sort_keys=True,
        default=str,
        separators=(",", ":"),
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:length]


def train_tracker(training: Mapping[str, Any], out_dir: str | Path) -> Path:
    """Train a :class:`TrackingModule` on phantom sequences and write ``out_dir/tracker.ckpt``.

    Args:
        training: plain ``tracker.training`` config (see ``conf/tracker/learned.yaml``).
        out_dir: folder for the checkpoint and ``metrics.json``.

    Returns:
        The checkpoint path.

    Raises:
        ConfigError: unknown keys or invalid values in ``training``.
    """
    training = dict(plain(training))
    unknown = sorted(set(training) - set(TRAINING_KEYS))
    if unknown:
        raise ConfigError(f"tracker.training: unknown keys {unknown}; expected some of {list(TRAINING_KEYS)}")
    if "phantom" not in training:
        raise ConfigError("tracker.training.phantom: missing (a DatasetSource with true displacement, _target_)")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    seed = int(training.get("seed", 0))
    train_subjects, val_subjects = int(training.get("train_subjects", 16)), int(training.get("val_subjects", 2))
    source = instantiate(
        training["phantom"], "tracker.training.phantom", n_subjects=max(train_subjects + val_subjects, 1)
    )
    datamodule = TrackingDataModule(
        source,
        train_subjects=train_subjects,
        val_subjects=val_subjects,
        seed=seed,
        steps=int(training.get("steps", 1000)),
        batch_size=int(training.get("batch_size", 8)),
        val_pairs=int(training.get("val_pairs", 32)),
        pairs=training.get("pairs"),
    )
    L.seed_everything(seed, workers=True, verbose=False)
    module = TrackingModule(**dict(training.get("model") or {}))
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=1,
        max_steps=datamodule.steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=1.0 if val_subjects else 0,
    )
    start = time.perf_counter()
    trainer.fit(module, datamodule=datamodule)
    seconds = time.perf_counter() - start
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith(("val/", "train/"))}
    checkpoint = out_dir / CHECKPOINT_FILE
    atomic_write_text(
        out_dir / METRICS_FILE, json.dumps({**metrics, "steps": datamodule.steps, "seconds": seconds}, indent=2)
    )
    with replaced(checkpoint) as tmp:
        trainer.save_checkpoint(tmp, weights_only=True)
    log.info("trained the tracker in %.0f s (%s): %s", seconds, checkpoint, metrics)
    return checkpoint


def cached_tracker_checkpoint(training: Mapping[str, Any], cache_dir: str | Path) -> Path:
    """The checkpoint trained from ``training``: reused from ``cache_dir`` when there, else trained there once.

    Returns:
        ``<cache_dir>/<key>/tracker.ckpt``.
    """
    training = dict(plain(training))
    folder = Path(cache_dir) / training_key(training)
    checkpoint = folder / CHECKPOINT_FILE
    if checkpoint.is_file():
        log.info("reusing the tracker %s", checkpoint)
        return checkpoint
    with OutputLock(folder, wait=True, what="tracker"):
        if checkpoint.is_file():  # another process trained it while this one waited
            return checkpoint
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_text(folder / CONFIG_FILE, yaml.safe_dump(training, sort_keys=True))
        return train_tracker(training, folder)


def displacement_rmse_mm(tracker: Tracker, sequences: list[TrackingSequence]) -> dict[str, float]:
    """Tracking error of ``tracker`` on sequences with known motion.

    Every ED myocardial pixel is tracked through every frame; the error is the distance (mm) between
    the tracked position and the true one (the pixel plus its true Lagrangian displacement).

    Returns:
        ``rmse_mm`` over all points and frames after ED, ``es_rmse_mm`` at each sequence's frame of
        largest mean true displacement, ``max_true_mm`` the largest true displacement, ``n_points``.
    """
    sq_all, sq_es, largest, n_points = [], [], 0.0, 0
    for seq in sequences:
        rows, cols = np.nonzero(seq.myocardium)
        points = np.stack([rows, cols], axis=1).astype(np.float64)
        tracked = tracker.track(seq.frames, points, seq.spacing_mm)
        truth = points[None] + np.moveaxis(seq.displacement[:, :, rows, cols], 1, 2)
        scale = np.asarray(seq.spacing_mm, np.float64)
        err2 = (((tracked - truth) * scale) ** 2).sum(axis=-1)  # (T, P) squared mm
        true_mm = np.sqrt(((np.moveaxis(seq.displacement[:, :, rows, cols], 1, 2) * scale) ** 2).sum(axis=-1))
        es = int(np.argmax(true_mm.mean(axis=1)))
        sq_all.append(err2[1:].ravel())
        sq_es.append(err2[es])
        largest = max(largest, float(true_mm.max()))
        n_points += points.shape[0]
    return {
        "rmse_mm": float(np.sqrt(np.concatenate(sq_all).mean())),
        "es_rmse_mm": float(np.sqrt(np.concatenate(sq_es).mean())),
        "max_true_mm": largest,
        "n_points": n_points,
    }


__all__ = [
    "CHECKPOINT_FILE",
    "TRACKER_CACHE_VERSION",
    "cached_tracker_checkpoint",
    "displacement_rmse_mm",
    "train_tracker",
    "training_key",
]
