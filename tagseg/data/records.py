"""What every dataset source yields: one 2D slice at one time frame, in tagseg's conventions.

Conventions (the only ones inside tagseg; readers convert at the edge):

* image: float32 (H, W), any range; ``prepare`` scales each slice to [0, 1].
* mask: uint8 (H, W), the labels of :mod:`tagseg.conventions` (0 bg, 1 RV, 2 MYO, 3 LV).
* orientation: :data:`tagseg.conventions.ORIENTATION` (rows = image y, columns = image x).
* frame: 0-based; phase "ED", "ES" or "".
* spacing_mm: (row, col) in millimetres.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from tagseg.conventions import BACKGROUND, LABELS, LV, MYO, RV  # noqa: F401  (the convention's home: tagseg.conventions)


@dataclass
class SliceRecord:
    """One slice of one subject at one frame."""

    image: np.ndarray
    mask: np.ndarray
    subject: str
    slice: int
    frame: int
    n_frames: int
    phase: str
    group: str
    spacing_mm: tuple[float, float]
    source: str
    #: extra per-row arrays written as top-level store datasets (e.g. ``displacement`` (2, H, W))
    extras: dict[str, np.ndarray] = field(default_factory=dict)
    #: extra string/number meta columns (e.g. ``vendor``, ``centre``)
    extra_meta: dict[str, Any] = field(default_factory=dict)
    #: pre-assigned split ("train"/"val"/"test"), e.g. from a dataset's own test folder; "" = seeded
    split: str = ""


class DatasetSource(Protocol):
    """A dataset that ``tagseg prepare`` can turn into a slice store.

    Built from ``conf/data/<name>.yaml`` with ``hydra.utils.instantiate``. Work is split into
    items (a patient folder, a file, a phantom subject) so that a bad item can be skipped and
    counted while the rest goes on, and so that progress can be shown.

    Optional: a ``store_attrs`` dict attribute (e.g. ``{"labelled": False}`` for an all-frames
    export with zero masks) that ``prepare_store`` writes into the store's attributes after the
    last item (explicit ``attrs`` win). Every record of one source must carry the same
    ``extra_meta`` keys (they become ``/meta`` columns).
    """

    name: str

    def items(self) -> list[Any]:
        """The work units, in a deterministic order. Raise :class:`tagseg.errors.DataError` if the
        dataset root itself is unusable (missing folder, missing index file)."""
        ...

    def load(self, item: Any, seed: int) -> list[SliceRecord]:
        """Every slice record of one item. Raise :class:`tagseg.errors.DataError` naming the file
        and the problem for a bad item."""
        ...

    def describe(self, item: Any) -> str:
        """A short name for ``item`` used in messages (e.g. its folder)."""
        ...
