"""``BatchAugment``: the configured batch transforms run in order on a training batch, seeded.

Config (``datamodule.batch_augment``, set by ``conf/augment/<choice>.yaml``)::

    families: [geometry, tags, noise, resolution, artefacts, appearance]   # the ones that run
    clean_prob: 0.0                                                       # share of samples left as they are
    clean_last_epochs: 0                                                  # the last epochs of a fit run clean
    transforms:                                                           # run in this order
      flip: {_target_: tagseg.augment.geometry.RandomFlip, prob: 0.5}
      noise: {_target_: tagseg.augment.acquisition.RicianNoise, prob: 0.3, snr: [2, 40]}

Every draw of one batch comes from one ``torch.Generator`` on the batch's device, seeded from
``(seed, batch count, rank)``: the same run gives the same augmentation, a resumed run continues
it, and DDP ranks differ.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from tagseg.augment.base import FAMILIES, BatchTransform, BatchView
from tagseg.conventions import NORM_MEAN, NORM_STD
from tagseg.errors import ConfigError, reject_unknown_keys
from tagseg.runtime.config import instantiate, plain

WHERE = "datamodule.batch_augment"


def batch_seed(seed: int, count: int, rank: int = 0) -> int:
    """The generator seed of batch ``count`` on ``rank`` of a run seeded ``seed`` (63-bit)."""
    state = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(count), int(rank), 0xA46]).generate_state(2)
    return int((int(state[0]) << 31) ^ int(state[1])) & ((1 << 63) - 1)


class BatchAugment(torch.nn.Module):
    """Run batch transforms in order on a training batch.

    Args:
        transforms: name -> transform (or its ``_target_`` config), in the order they run.
        families: the families that run (None: all); transforms of other families are left out.
        seed: the run's seed.
        clean_prob: the probability that a sample is left unaugmented (drawn per sample), so the
            network also trains on images as they come (in-distribution accuracy at short schedules).
        clean_last_epochs: the last epochs of a fit run without augmentation (the network settles on
            images as they come after learning from augmented ones); 0: every epoch is augmented.
        mean, std: the batch's intensity normalisation (undone before, redone after).

    Raises:
        ConfigError: an unknown family, or an entry that is not a batch transform.
    """

    def __init__(
        self,
        transforms: Mapping[str, Any],
        families: Sequence[str] | None = None,
        seed: int = 0,
        mean: float = NORM_MEAN,
        std: float = NORM_STD,
        clean_prob: float = 0.0,
        clean_last_epochs: int = 0,
    ) -> None:
        super().__init__()
        if not 0.0 <= float(clean_prob) <= 1.0:
            raise ConfigError(f"{WHERE}.clean_prob must be in [0, 1], got {clean_prob!r}")
        if isinstance(clean_last_epochs, bool) or int(clean_last_epochs) != clean_last_epochs or clean_last_epochs < 0:
            raise ConfigError(f"{WHERE}.clean_last_epochs must be an integer >= 0, got {clean_last_epochs!r}")
        self.clean_prob = float(clean_prob)
        self.clean_last_epochs = int(clean_last_epochs)
        chosen = list(FAMILIES if families is None else [str(f) for f in families])
        unknown = sorted(set(chosen) - set(FAMILIES))
        if unknown:
            raise ConfigError(f"{WHERE}.families: unknown {unknown}; expected some of {list(FAMILIES)}")
        self.families = chosen
        built: dict[str, BatchTransform] = {}
        for name, node in (transforms or {}).items():
            if node is None:
                continue
            try:
                t = (
                    node
                    if isinstance(node, BatchTransform)
                    else instantiate(node, f"{WHERE}.transforms.{name}", _convert_="all")
                )
            except ConfigError as exc:
                where = f"{WHERE}.transforms.{name}"
                raise ConfigError(str(exc) if str(exc).startswith(where) else f"{where}: {exc}") from None
            if not isinstance(t, BatchTransform):
                raise ConfigError(
                    f"{WHERE}.transforms.{name}: expected a tagseg.augment batch transform, got {type(t).__name__}"
                )
            if t.family in chosen:
                built[str(name)] = t
        self.transforms = torch.nn.ModuleDict(built)
        self.seed, self.mean, self.std = int(seed), float(mean), float(std)

    def generator(self, count: int, rank: int, device: torch.device) -> torch.Generator:
        """The generator of batch ``count`` on ``rank``, on ``device``."""
        gen = torch.Generator(device=device)
        gen.manual_seed(batch_seed(self.seed, count, rank))
        return gen

    def runs_at(self, epoch: int, max_epochs: int | None) -> bool:
        """Whether training epoch ``epoch`` (0-based) of ``max_epochs`` is augmented (see ``clean_last_epochs``)."""
        if not self.clean_last_epochs or max_epochs is None or max_epochs < 0:
            return True
        return epoch < max_epochs - self.clean_last_epochs

    def forward(self, batch: Mapping[str, Any], count: int = 0, rank: int = 0) -> dict[str, Any]:
        """The augmented batch (a new dict; ``image`` normalised, ``label`` long, as given).

        Args:
            batch: a training batch of :class:`~tagseg.data.datamodule.SliceDataModule`.
            count: the batch's index in the run (seeds its draws).
            rank: the process rank (DDP ranks draw differently).
        """
        image = batch["image"]
        gen = self.generator(count, rank, image.device)
        view: BatchView = dict(batch)
        view["image"] = image.float() * self.std + self.mean
        view["label"] = batch["label"].float()
        for transform in self.transforms.values():
            view = transform(view, gen)
        out = dict(batch)
        out["image"] = ((view["image"].clamp(min=0.0) - self.mean) / self.std).to(image.dtype)
        out["label"] = view["label"].round().to(batch["label"].dtype)
        for key in ("si", "spacing_mm"):
            if key in view:
                out[key] = view[key].to(batch[key].dtype)
        if self.clean_prob > 0:
            clean = torch.rand(image.shape[0], generator=gen, device=image.device) < self.clean_prob
            for key in ("image", "label", "si", "spacing_mm"):
                if key in out and key in batch:
                    keep = clean.view(-1, *([1] * (batch[key].ndim - 1)))
                    out[key] = torch.where(keep, batch[key], out[key])
        return out

    def extra_repr(self) -> str:
        return (
            f"families={self.families}, seed={self.seed}, clean_prob={self.clean_prob}, "
            f"clean_last_epochs={self.clean_last_epochs}"
        )


def build_batch_augment(
    cfg: Mapping[str, Any] | None, seed: int, mean: float = NORM_MEAN, std: float = NORM_STD
) -> BatchAugment | None:
    """``datamodule.batch_augment`` -> :class:`BatchAugment`, or None when it is null or runs nothing.

    Raises:
        ConfigError: unknown keys, families or transforms.
    """
    if cfg is None:
        return None
    values = plain(cfg)
    if not isinstance(values, dict):
        raise ConfigError(f"{WHERE}: expected a mapping with 'families' and 'transforms', got {values!r}")
    reject_unknown_keys(values, ("families", "transforms", "clean_prob", "clean_last_epochs"), WHERE)
    augment = BatchAugment(
        values.get("transforms") or {},
        values.get("families"),
        seed,
        mean,
        std,
        float(values.get("clean_prob") or 0.0),
        values.get("clean_last_epochs") or 0,
    )
    return augment if len(augment.transforms) else None


def trains_on_flips(datamodule: Mapping[str, Any]) -> bool:
    """Whether a ``datamodule`` config draws flipped images in training (METHOD 4's chain or ``RandomFlip``):
    only then are test-time flips views the network knows."""
    chain = dict(datamodule.get("augment") or {})
    if chain.get("enabled", True) and float(chain.get("flip_prob", 0.5) or 0.0) > 0:
        return True
    batch = datamodule.get("batch_augment") or {}
    families = batch.get("families")
    if families is not None and "geometry" not in families:
        return False
    for node in (batch.get("transforms") or {}).values():
        if node and str(node.get("_target_", "")).endswith("RandomFlip") and float(node.get("prob", 0.0)) > 0:
            return True
    return False


__all__ = ["BatchAugment", "batch_seed", "build_batch_augment", "trains_on_flips"]
