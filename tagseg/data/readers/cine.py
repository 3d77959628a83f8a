"""The cine pretraining set: several cine readers (ACDC + M&Ms + SCD) combined into one store.

Each sub-dataset keeps its own reader, root and ``source`` column, so ``tagseg prepare data=cine``
prints the counts per dataset, split and phase. Subject ids do not collide across the three
datasets (``patientNNN``, M&Ms codes, ``SC-...``), so splits stay by subject.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from tagseg.data.records import DatasetSource, SliceRecord
from tagseg.errors import ConfigError, DataError


class CineSource:
    """Concatenate the items of several dataset sources.

    Args:
        sources: dataset name -> reader (built by Hydra from ``conf/data/cine.yaml``).
        datasets: which of ``sources`` to read, in order (e.g. ``[acdc, scd]`` without M&Ms).
        name: dataset name (store name).
        store: the store path (used by the stages, not by the reader).
        roots: the ``<dataset>_root`` keys of the config (already interpolated into ``sources``).

    Raises:
        ConfigError: ``datasets`` names a source that is not configured.
    """

    def __init__(
        self,
        sources: Mapping[str, DatasetSource],
        datasets: Sequence[str] | None = None,
        name: str = "cine",
        store: str | None = None,
        **roots: Any,
    ) -> None:
        self.sources = dict(sources)
        self.datasets = list(datasets if datasets is not None else self.sources)
        unknown = [d for d in self.datasets if d not in self.sources]
        if unknown:
            raise ConfigError(f"data.datasets names {unknown}, but data.sources has only {sorted(self.sources)}")
        if not self.datasets:
            raise ConfigError("data.datasets is empty: name at least one of " + str(sorted(self.sources)))
        self.name = name
        self.store = store
        labelled = {bool(getattr(self.sources[d], "store_attrs", {}).get("labelled", True)) for d in self.datasets}
        self.store_attrs = {"labelled": all(labelled), "datasets": list(self.datasets)}

    def items(self) -> list[tuple[str, Any]]:
        """``(dataset, item)`` pairs, dataset by dataset.

        Raises:
            DataError: a dataset's root is unusable (its reader's message, prefixed by its name).
        """
        items = []
        for name in self.datasets:
            try:
                items += [(name, item) for item in self.sources[name].items()]
            except DataError as exc:
                raise DataError(
                    f"data={self.name}, dataset '{name}' (set data.{name}_root=<folder> or drop it from "
                    f"data.datasets): {exc}"
                ) from exc
        return items

    def describe(self, item: tuple[str, Any]) -> str:
        name, inner = item
        return f"{name}:{self.sources[name].describe(inner)}"

    def load(self, item: tuple[str, Any], seed: int) -> list[SliceRecord]:
        name, inner = item
        return self.sources[name].load(inner, seed)
