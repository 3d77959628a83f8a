"""``SliceDataModule``: slice stores -> train / val / test batches for segmentation.

What it does, once per process (``setup``), all in memory:

1. read every store (``tagseg.io.store.read_store``), resize slices to ``image_size``
   (bilinear images, nearest labels; ``spacing_mm`` scaled so distances stay in mm);
2. map the store's ACDC labels to training classes: 0 = background, 1..K = ``classes`` in order
   (``classes: [2]``, the myocardium, by default);
3. compute the shape-information maps SI (METHOD Eq. 1-2) of each class once per slice;
4. split by subject: the store's ``split`` column where it is set, otherwise a seeded split of the
   subjects (several stores may be combined; a subject id is local to its store).

Each batch is a dict: ``image`` float32 (B, 1, H, W) normalised with (0.456, 0.224) after [0, 1]
scaling; ``label`` int64 (B, 1, H, W); ``si`` float32 (B, K, H, W); ``spacing_mm`` float32 (B, 2);
``subject``, ``group`` (lists of str); ``slice``, ``frame``, ``index`` (int64 (B,)). Training
batches are augmented (per sample by MONAI, see :mod:`tagseg.data.transforms`, then as a batch on
the training device by :mod:`tagseg.augment` in :meth:`SliceDataModule.on_after_batch_transfer`);
val / test batches are not.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from monai.data import DataLoader
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from tagseg.augment.compose import BatchAugment, build_batch_augment
from tagseg.conventions import LV, MYO, NORM_MEAN, NORM_STD, RV
from tagseg.data.grid import place_slices
from tagseg.data.sampling import SeededSampler
from tagseg.data.splits import SPLITS, split_column
from tagseg.data.transforms import AugmentConfig, build_augmentation, normalise
from tagseg.errors import ConfigError, DataError, StoreError
from tagseg.io.store import read_store
from tagseg.metrics import shape_information_batch

log = logging.getLogger(__name__)

#: labels of the store convention (0 bg, 1 RV, 2 MYO, 3 LV)
STORE_LABELS = (RV, MYO, LV)
SI_CHUNK = 256


@dataclass
class SliceArrays:
    """Slices of one or several stores, resized and ready to batch (all arrays have N rows).

    Attributes:
        images: float32 (N, H, W) in [0, 1].
        labels: uint8 (N, H, W) training classes 0..K.
        si: float32 (N, K, H, W) shape-information maps of classes 1..K.
        spacing_mm: float32 (N, 2) (row, col) spacing after resizing.
        subject: str (N,); slice, frame: int (N,); group, split, store: str (N,).
    """

    images: np.ndarray
    labels: np.ndarray
    si: np.ndarray
    spacing_mm: np.ndarray
    subject: np.ndarray
    slice: np.ndarray
    frame: np.ndarray
    group: np.ndarray
    split: np.ndarray
    store: np.ndarray

    def __len__(self) -> int:
        return int(self.images.shape[0])


def check_classes(classes: Sequence[int]) -> list[int]:
    """Validate the target classes (store labels 1 RV, 2 MYO, 3 LV).

    Raises:
        ConfigError: empty, repeated or unknown labels.
    """
    out = [int(c) for c in classes]
    if not out or len(set(out)) != len(out) or any(c not in STORE_LABELS for c in out):
        raise ConfigError(
            f"datamodule.classes: expected distinct store labels from {list(STORE_LABELS)} (1 RV, 2 MYO, 3 LV), got {list(classes)}"
        )
    return out


def to_classes(masks: np.ndarray, classes: Sequence[int]) -> np.ndarray:
    """Store labels -> training classes: 0 background, ``i + 1`` for ``classes[i]``."""
    out = np.zeros(masks.shape, dtype=np.uint8)
    for i, c in enumerate(classes):
        out[masks == c] = i + 1
    return out


def resize_slices(images: np.ndarray, masks: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Resize (N, H, W) images (bilinear) and masks (nearest) to ``size`` in one batched call."""
    if images.shape[1:] == tuple(size):
        return images, masks
    img = F.interpolate(
        torch.from_numpy(np.ascontiguousarray(images))[:, None], size=size, mode="bilinear", align_corners=False
    )
    msk = F.interpolate(torch.from_numpy(np.ascontiguousarray(masks))[:, None].float(), size=size, mode="nearest-exact")
    return img[:, 0].clamp_(0.0, 1.0).numpy(), msk[:, 0].to(torch.uint8).numpy()


def _store_split(path: Path, meta: Mapping[str, np.ndarray], n: int) -> np.ndarray:
    if "split" not in meta:
        return np.full(n, "", dtype=object)
    split = np.asarray([str(s) for s in meta["split"]], dtype=object)
    bad = sorted(set(split) - set(SPLITS) - {""})
    if bad:
        raise StoreError(f"{path}: meta/split holds {bad}; expected 'train', 'val', 'test' or ''")
    return split


def load_slices(
    stores: Sequence[str | Path],
    image_size: int | Sequence[int],
    classes: Sequence[int],
    si_k: float = 0.2,
    seed: int = 0,
    split_ratios: Sequence[float] = (0.7, 0.15, 0.15),
    grid_mm: float | None = None,
) -> SliceArrays:
    """Read, resize, relabel, split and compute SI for every slice of ``stores``.

    Args:
        stores: slice store paths (one or several).
        image_size: square side or (H, W) to resize to.
        classes: store labels to segment, in channel order.
        si_k: temperature of the shape-information sigmoid (must match the loss's ``k``).
        seed: seeds the subject split of rows without a stored split.
        split_ratios: (train, val, test) ratios of that split.
        grid_mm: place every slice on the square grid of this pixel size (resampled from its own
            spacing and centred, :func:`tagseg.data.grid.place_slices`) instead of resizing it: a
            model trained at one pixel size sees any store at that size (``None``: resize).

    Returns:
        :class:`SliceArrays`.

    Raises:
        StoreError: a store is missing, malformed, or has a bad split column.
        ConfigError: bad classes or image size.
    """
    if not stores:
        raise ConfigError("datamodule.stores: no slice store given (expected a list of .h5 paths)")
    classes = check_classes(classes)
    size = (int(image_size), int(image_size)) if np.isscalar(image_size) else tuple(int(s) for s in image_size)  # type: ignore[arg-type]
    if len(size) != 2 or min(size) < 8:
        raise ConfigError(f"datamodule.image_size: expected a side >= 8 pixels, got {image_size}")
    parts: dict[str, list[np.ndarray]] = {
        k: [] for k in ("images", "labels", "spacing_mm", "subject", "slice", "frame", "group", "split", "store")
    }
    for path in stores:
        path = Path(path)
        store = read_store(path, extras=False)
        n, h, w = store.images.shape
        own = np.asarray(store.meta["spacing_mm"], np.float32).reshape(n, 2)
        if grid_mm:
            if size[0] != size[1]:
                raise ConfigError(f"datamodule.grid_mm needs a square image_size, got {image_size}")
            images, masks = place_slices(store.images, store.masks, own, float(grid_mm), size[0])
            spacing = np.full((n, 2), float(grid_mm), np.float32)
        else:
            images, masks = resize_slices(store.images, store.masks, size)
            spacing = own * np.array([h / size[0], w / size[1]], np.float32)
        parts["images"].append(images.astype(np.float32, copy=False))
        parts["labels"].append(to_classes(masks, classes))
        parts["spacing_mm"].append(spacing)
        parts["subject"].append(np.asarray([str(s) for s in store.meta["subject"]], dtype=object))
        parts["slice"].append(np.asarray(store.meta["slice"], np.int64))
        parts["frame"].append(np.asarray(store.meta["frame"], np.int64))
        parts["group"].append(np.asarray([str(g) for g in store.meta["group"]], dtype=object))
        parts["split"].append(_store_split(path, store.meta, n))
        parts["store"].append(np.full(n, str(path), dtype=object))
        log.info("read %s: %d slices %dx%d -> %dx%d", path, n, h, w, *size)
    cat = {k: np.concatenate(v) for k, v in parts.items()}
    split = cat["split"]
    unset = split == ""
    if unset.any():
        keys = [f"{st}::{sub}" for st, sub in zip(cat["store"][unset], cat["subject"][unset])]
        split = split.copy()
        split[unset] = split_column(keys, split_ratios, seed)
    si = compute_si(cat["labels"], len(classes), si_k)
    return SliceArrays(
        images=cat["images"],
        labels=cat["labels"],
        si=si,
        spacing_mm=cat["spacing_mm"],
        subject=cat["subject"],
        slice=cat["slice"],
        frame=cat["frame"],
        group=cat["group"],
        split=split,
        store=cat["store"],
    )


def compute_si(labels: np.ndarray, n_classes: int, k: float) -> np.ndarray:
    """SI maps (N, K, H, W) of classes 1..K of (N, H, W) class-index labels, once per slice."""
    onehot = np.stack([labels == c for c in range(1, n_classes + 1)], axis=1)
    chunks = range(0, len(onehot), SI_CHUNK)
    out = [
        shape_information_batch(onehot[i : i + SI_CHUNK], k)
        for i in tqdm(chunks, desc="shape information", unit="chunk", disable=len(chunks) < 4)
    ]
    return np.concatenate(out).astype(np.float32) if out else np.zeros(onehot.shape, np.float32)


class SliceDataset(Dataset):
    """Rows of :class:`SliceArrays` as training samples (optionally augmented).

    Args:
        data: the cached arrays.
        rows: which rows (indices into ``data``) this dataset serves.
        augment: a MONAI dict transform over image/label/si, or None.
        mean, std: intensity normalisation applied after augmentation.
    """

    def __init__(
        self,
        data: SliceArrays,
        rows: np.ndarray,
        augment: Any | None = None,
        mean: float = NORM_MEAN,
        std: float = NORM_STD,
    ) -> None:
        self.data = data
        self.rows = np.asarray(rows, dtype=np.int64)
        self.augment = augment
        self.mean, self.std = float(mean), float(std)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        """Sample ``key``: a position, or ``(position, seed)`` from :class:`~tagseg.data.sampling.SeededSampler`
        (the augmentation of that sample is then seeded with ``seed``, whichever worker loads it)."""
        i, seed = key if isinstance(key, tuple) else (key, None)
        r = int(self.rows[i])
        d = self.data
        sample: dict[str, Any] = {
            "image": torch.from_numpy(d.images[r])[None],
            "label": torch.from_numpy(d.labels[r])[None],
            "si": torch.from_numpy(d.si[r]),
        }
        if self.augment is not None:
            if seed is not None:
                self.augment.set_random_state(seed=int(seed))
            sample["label"] = sample["label"].float()
            sample = self.augment(sample)
        return {
            "image": normalise(sample["image"].float(), self.mean, self.std),
            "label": sample["label"].round().long() if sample["label"].is_floating_point() else sample["label"].long(),
            "si": sample["si"].float(),
            "spacing_mm": torch.from_numpy(d.spacing_mm[r]),
            "subject": str(d.subject[r]),
            "slice": int(d.slice[r]),
            "frame": int(d.frame[r]),
            "group": str(d.group[r]),
            "index": r,
        }


class SliceDataModule(L.LightningDataModule):
    """Train / val / test loaders over one or several slice stores (see the module docstring).

    Args:
        stores: slice store paths.
        image_size: square side the slices are resized to (256 in the paper).
        classes: store labels to segment (``[2]``: myocardium).
        batch_size: training batch size.
        eval_batch_size: val / test batch size (None: ``batch_size``).
        num_workers: DataLoader workers (0: in the main process).
        pin_memory: pin host memory (GPU runs).
        seed: seeds the subject split and the augmentation.
        split_ratios: (train, val, test) for rows without a stored split.
        si_k: shape-information temperature (the loss's ``k``).
        augment: :class:`~tagseg.data.transforms.AugmentConfig` fields; ``enabled: false`` turns it off.
        batch_augment: batch transforms run on the training device after the per-sample chain
            (:func:`tagseg.augment.compose.build_batch_augment`; ``conf/augment/``); null: none.
        grid_mm: place every slice on the grid of this pixel size instead of resizing it (set by
            ``tagseg evaluate`` for a model trained at one pixel size; see :func:`load_slices`).
        mean, std: intensity normalisation after [0, 1] scaling.
        n_train_subjects: train on this many of the training split's subjects only (null: all), a
            seeded choice: the first ``n`` of a permutation by ``seed``, so smaller sets are nested
            in larger ones for the same seed (data-efficiency experiments).
        min_train_samples: repeat the training rows so an epoch has at least this many samples
            (null: one pass), so runs with few subjects get as many steps per epoch as the rest.

    Raises:
        ConfigError / StoreError: in ``setup`` for bad settings or stores, before any training.
    """

    def __init__(
        self,
        stores: Sequence[str],
        image_size: int = 256,
        classes: Sequence[int] = (2,),
        batch_size: int = 16,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        pin_memory: bool = False,
        seed: int = 0,
        split_ratios: Sequence[float] = (0.7, 0.15, 0.15),
        si_k: float = 0.2,
        augment: Mapping[str, Any] | None = None,
        mean: float = NORM_MEAN,
        std: float = NORM_STD,
        n_train_subjects: int | None = None,
        min_train_samples: int | None = None,
        batch_augment: Mapping[str, Any] | None = None,
        grid_mm: float | None = None,
    ) -> None:
        super().__init__()
        self.grid_mm = None if grid_mm is None else float(grid_mm)
        if isinstance(stores, (str, Path)):
            stores = [stores]
        self.stores = [str(s) for s in stores]
        self.image_size = int(image_size)
        self.classes = check_classes(classes)
        if int(batch_size) < 1:
            raise ConfigError(f"datamodule.batch_size: expected >= 1, got {batch_size}")
        self.batch_size = int(batch_size)
        self.eval_batch_size = int(eval_batch_size or batch_size)
        self.num_workers = int(num_workers)
        self.pin_memory = bool(pin_memory)
        self.seed = int(seed)
        self.split_ratios = tuple(float(r) for r in split_ratios)
        self.si_k = float(si_k)
        aug = dict(augment or {})
        self.augment_enabled = bool(aug.pop("enabled", True))
        self.augment_cfg = AugmentConfig.from_mapping(aug)
        self.mean, self.std = float(mean), float(std)
        self.batch_augment: BatchAugment | None = build_batch_augment(batch_augment, self.seed, self.mean, self.std)
        for key, value in (("n_train_subjects", n_train_subjects), ("min_train_samples", min_train_samples)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1):
                raise ConfigError(f"datamodule.{key}: expected null or an integer >= 1, got {value!r}")
        self.n_train_subjects = None if n_train_subjects is None else int(n_train_subjects)
        self.min_train_samples = None if min_train_samples is None else int(min_train_samples)
        self.data: SliceArrays | None = None
        self.datasets: dict[str, SliceDataset] = {}
        #: training passes started (saved in checkpoints, see SeededSampler)
        self.train_progress = {"epochs": 0}

    @property
    def n_classes(self) -> int:
        """K, the number of foreground classes."""
        return len(self.classes)

    def setup(self, stage: str | None = None) -> None:
        """Load and cache every slice (once per process) and build the split datasets."""
        if self.data is not None:
            return
        self.data = load_slices(
            self.stores, self.image_size, self.classes, self.si_k, self.seed, self.split_ratios, self.grid_mm
        )
        augment = None
        if self.augment_enabled and self.augment_cfg.enabled:
            augment = build_augmentation(self.augment_cfg, (self.image_size, self.image_size))
            augment.set_random_state(seed=self.seed)
        for split in SPLITS:
            rows = np.flatnonzero(self.data.split == split)
            if split == "train":
                rows = self._train_rows(rows)
            self.datasets[split] = SliceDataset(
                self.data, rows, augment if split == "train" else None, self.mean, self.std
            )
        where = ", ".join(self.stores)
        # fitting needs train and val slices; testing one split (an external, test-only store) does not
        for split in ("train", "val") if stage in (None, "fit", "validate") else ():
            if len(self.datasets[split]) == 0:
                raise DataError(
                    f"{where}: no '{split}' slices (split column / subject split gives {self.split_counts()})"
                )
        if stage in (None, "fit"):
            for split in ("train", "val"):
                self.check_labelled(split)
        log.info("slices per split: %s", self.split_counts())

    def check_labelled(self, split: str, rows: np.ndarray | None = None) -> None:
        """Refuse a split whose masks hold none of the trained classes (its Dice would be 0 everywhere).

        Raises:
            StoreError: ``<stores>: every '<split>' mask is empty for classes [...]``.
        """
        rows = self.datasets[split].rows if rows is None else rows
        if len(rows) and not any(self.data.labels[rows[i : i + SI_CHUNK]].any() for i in range(0, len(rows), SI_CHUNK)):
            raise StoreError(
                f"{', '.join(self.stores)}: every '{split}' mask ({len(rows)} slices) is empty for "
                f"datamodule.classes={self.classes}; expected labelled slices (labels 1 RV, 2 MYO, 3 LV)"
            )

    def train_subjects(self, rows: np.ndarray) -> list[str]:
        """The training subjects used (``store::subject``): all, or ``n_train_subjects`` of them, seeded."""
        assert self.data is not None
        keys = sorted(set(f"{st}::{sub}" for st, sub in zip(self.data.store[rows], self.data.subject[rows])))
        if self.n_train_subjects is None:
            return keys
        if self.n_train_subjects > len(keys):
            raise DataError(
                f"datamodule.n_train_subjects={self.n_train_subjects}, but the training split of "
                f"{', '.join(self.stores)} has only {len(keys)} subjects"
            )
        order = np.random.default_rng([self.seed, 0x5EB]).permutation(len(keys))
        return sorted(keys[i] for i in order[: self.n_train_subjects])

    def _train_rows(self, rows: np.ndarray) -> np.ndarray:
        assert self.data is not None
        if self.n_train_subjects is not None:
            keep = set(self.train_subjects(rows))
            rows = np.asarray([r for r in rows if f"{self.data.store[r]}::{self.data.subject[r]}" in keep], np.int64)
            log.info("training on %d subject(s): %s", len(keep), ", ".join(k.split("::")[-1] for k in sorted(keep)))
        if self.min_train_samples is not None and 0 < len(rows) < self.min_train_samples:
            rows = np.resize(rows, self.min_train_samples)  # whole passes plus the start of one more
        return rows

    def split_counts(self) -> dict[str, int]:
        """Number of slices per split (after ``setup``)."""
        return {s: len(self.datasets.get(s, ())) for s in SPLITS}

    def _loader(self, split: str, shuffle: bool, batch_size: int) -> DataLoader:
        if split == "test" and len(self.datasets[split]) == 0:
            raise DataError(f"{', '.join(self.stores)}: no 'test' slices to evaluate")
        if split == "test":
            self.check_labelled(split)
        # the training order and augmentation come from (seed, epoch) (tagseg.data.sampling), so a resumed fit is exact
        sampler = SeededSampler(len(self.datasets[split]), self.seed, self.train_progress) if split == "train" else None
        return DataLoader(
            self.datasets[split],
            batch_size=batch_size,
            shuffle=shuffle if sampler is None else None,
            sampler=sampler,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
            drop_last=False,
        )

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Batch augmentation of training batches, on the device they were moved to (never val / test).

        The draws are seeded by the number of training batches fetched before this one (restored
        on resume) and the rank.
        """
        trainer = self.trainer
        if self.batch_augment is None or trainer is None or not trainer.training:
            return batch
        if self.batch_augment.clean_last_epochs and not self.batch_augment.runs_at(
            trainer.current_epoch, trainer.max_epochs
        ):
            return batch
        count = trainer.fit_loop.epoch_loop.batch_progress.total.ready
        return self.batch_augment(batch, count=count, rank=trainer.global_rank)

    def state_dict(self) -> dict[str, Any]:
        """Saved in checkpoints: the number of training passes started (the sampler's epoch)."""
        return {"train_epochs": int(self.train_progress["epochs"])}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` (before the first pass of a resumed fit)."""
        self.train_progress["epochs"] = int(state.get("train_epochs", 0))

    def eval_dataloader(self, split: str) -> DataLoader:
        """An un-augmented, unshuffled loader over any split (``tagseg evaluate split=train``), or over
        every slice of the stores (``split=all``: a whole new cohort).

        Raises:
            ConfigError: unknown split.
            DataError: the split holds no slice.
        """
        if split not in (*SPLITS, "all"):
            raise ConfigError(f"split: expected one of {[*SPLITS, 'all']}, got '{split}'")
        if split == "all":
            ds = SliceDataset(self.data, np.arange(len(self.data)), None, self.mean, self.std)
        else:
            ds = self.datasets[split]
        if len(ds) == 0:
            raise DataError(
                f"{', '.join(self.stores)}: no '{split}' slices to evaluate (slices per split: "
                f"{self.split_counts()}; split=all evaluates every slice)"
            )
        self.check_labelled(split, ds.rows)
        plain_ds = SliceDataset(ds.data, ds.rows, None, self.mean, self.std)
        return DataLoader(
            plain_ds,
            batch_size=self.eval_batch_size,
            shuffle=False,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", True, self.batch_size)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", False, self.eval_batch_size)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", False, self.eval_batch_size)


__all__ = [
    "SliceArrays",
    "SliceDataModule",
    "SliceDataset",
    "check_classes",
    "compute_si",
    "load_slices",
    "resize_slices",
    "to_classes",
]
