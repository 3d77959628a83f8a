"""``DegradedPhantomSource``: the phantom with acquisition effects laid over its images, for
shifted test sets (``conf/shift/*.yaml``) that the phantom itself does not simulate.

Each subject's rendered slices go through :class:`tagseg.augment.compose.BatchAugment` (the
same transforms ``augment=robust`` trains with, here at their shift's ranges, usually with
``prob: 1``), seeded by ``(seed, subject)``, so a store is the same on every machine. The
reference signal of :class:`~tagseg.augment.acquisition.RicianNoise` is the myocardium. Labels,
spacing and every other record field are the phantom's; transforms that move pixels
(geometry) are refused, since they would leave the labels behind.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from tagseg.augment.compose import BatchAugment, build_batch_augment
from tagseg.conventions import MYO
from tagseg.data.phantom.source import PhantomSource
from tagseg.data.records import SliceRecord
from tagseg.errors import ConfigError

#: added to a subject's seed: the degradation draws apart from the phantom's own streams
DEGRADE_STREAM = 0xDE9


class DegradedPhantomSource(PhantomSource):
    """A :class:`~tagseg.data.phantom.source.PhantomSource` whose images are then degraded.

    Args:
        degrade: ``{families, transforms}`` as ``datamodule.batch_augment`` (a geometry
            transform is an error); null: the plain phantom.
        **kwargs: the phantom's arguments (``conf/data/phantom_tagged.yaml``).

    Raises:
        ConfigError: a bad transform config, or a geometry transform.
    """

    def __init__(self, degrade: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.degrade: BatchAugment | None = build_batch_augment(degrade, seed=0, mean=0.0, std=1.0)
        if self.degrade is not None:
            moving = [name for name, t in self.degrade.transforms.items() if t.family == "geometry"]
            if moving:
                raise ConfigError(
                    f"data.degrade.transforms: {moving} move pixels; a shifted set keeps its labels in place"
                )

    def load(self, item: int, seed: int) -> list[SliceRecord]:
        """The phantom's records of subject ``item`` with degraded images (deterministic in (seed, item))."""
        records = super().load(item, seed)
        if self.degrade is None or not records:
            return records
        images = torch.from_numpy(np.stack([r.image for r in records]).astype(np.float32))[:, None]
        peak = images.flatten(1).amax(1).clamp(min=1e-6).view(-1, 1, 1, 1)
        batch = {
            "image": images / peak,
            "label": torch.from_numpy(np.stack([r.mask == MYO for r in records]))[:, None].long(),
            "spacing_mm": torch.tensor([r.spacing_mm for r in records], dtype=torch.float32),
            "frame": torch.tensor([r.frame for r in records]),
            "slice": torch.tensor([r.slice for r in records]),
            "subject": [r.subject for r in records],
        }
        self.degrade.seed = int(
            np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(item), DEGRADE_STREAM]).generate_state(1)[0]
        )
        out = (self.degrade(batch)["image"] * peak).numpy()
        for record, image in zip(records, out):
            record.image = image[0].astype(np.float32)
        return records


__all__ = ["DEGRADE_STREAM", "DegradedPhantomSource"]
