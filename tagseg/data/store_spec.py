"""One store specification (size, spacing, seed, splits) for every path that turns a dataset into a store.

``tagseg prepare``, on-demand preparation (:func:`tagseg.data.prepare.ensure_store`) and the
strategies' prepare stages all build a :class:`StoreSpec` from the ``prepare`` config node
(defaults in ``conf/store/default.yaml``) and call :func:`tagseg.data.prepare.build_store`, so the
same dataset and seed give the same store whichever command wrote it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from tagseg.data.grid import check_fit
from tagseg.errors import ConfigError
from tagseg.runtime.config import CONF_DIR

#: the YAML holding the defaults of every key
DEFAULTS_YAML = Path(CONF_DIR) / "store" / "default.yaml"
KEYS = ("image_size", "auto_size", "spacing_mm", "fit", "seed", "split_ratios")


def spec_defaults() -> dict[str, Any]:
    """The defaults of ``conf/store/default.yaml`` as a plain dict."""
    return dict(OmegaConf.to_container(OmegaConf.load(DEFAULTS_YAML), resolve=True))


@dataclass(frozen=True)
class StoreSpec:
    """How a dataset becomes a store.

    Attributes:
        image_size: square side of every stored slice (``None``: each file's own size).
        spacing_mm: in-plane resampling before the resize (``None``: keep).
        seed: seeds the source (phantom) and the subject-level split.
        split_ratios: (train, val, test) subject ratios.
        fit: ``resize`` to ``image_size``, or ``crop``: centre on it at ``spacing_mm``
            (:mod:`tagseg.data.grid`).
    """

    image_size: int | None
    spacing_mm: float | None
    seed: int
    split_ratios: tuple[float, float, float]
    fit: str = "resize"

    def network_spacing(self, input_size: int) -> float | None:
        """The pixel size (mm) a network reading this store's slices at ``input_size`` px sees, when the
        store has one pixel size (``fit=crop``); ``None`` otherwise."""
        if self.fit != "crop" or self.spacing_mm is None or self.image_size is None:
            return None
        return float(self.spacing_mm) * self.image_size / int(input_size)

    @classmethod
    def from_config(cls, node: Any = None, data_cfg: Any = None) -> StoreSpec:
        """The spec of ``data_cfg`` under the ``prepare`` node ``node`` (missing keys: the YAML defaults).

        ``image_size: auto`` becomes ``data_cfg.image_size`` where the dataset renders at a size of
        its own (the phantom), else ``auto_size``.

        Raises:
            ConfigError: an unknown key or a value out of range, naming ``prepare.<key>``.
        """
        given = _plain(node)
        values = spec_defaults()
        for key in ("figure",):  # keys of `tagseg prepare` that are not part of the store
            given.pop(key, None)
        unknown = sorted(set(given) - set(KEYS))
        if unknown:
            raise ConfigError(f"prepare: unknown key(s) {unknown}; expected {list(KEYS)} (conf/store/default.yaml)")
        values.update(given)
        size = values["image_size"]
        if size == "auto":
            own = _plain(data_cfg).get("image_size")
            size = own if own is not None else values["auto_size"]
        return cls(
            image_size=_size(size),
            spacing_mm=_spacing(values["spacing_mm"]),
            seed=_seed(values["seed"]),
            split_ratios=_ratios(values["split_ratios"]),
            fit=check_fit(values["fit"], values["spacing_mm"], size),
        )

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (store attribute ``store_spec``, strategy cache keys)."""
        out = asdict(self)
        out["split_ratios"] = list(self.split_ratios)
        return out


def _plain(node: Any) -> dict[str, Any]:
    if node is None:
        return {}
    if OmegaConf.is_config(node):
        return dict(OmegaConf.to_container(node, resolve=True))
    if isinstance(node, Mapping):
        return dict(node)
    return {k: getattr(node, k) for k in KEYS if hasattr(node, k)}


def _size(value: Any) -> int | None:
    if value is None:
        return None
    try:
        size = int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"prepare.image_size must be an integer >= 8, auto or null, got {value!r}") from None
    if size < 8 or size != float(value):
        raise ConfigError(f"prepare.image_size must be an integer >= 8, auto or null, got {value!r}")
    return size


def _spacing(value: Any) -> float | None:
    if value is None:
        return None
    try:
        spacing = float(value)
    except (TypeError, ValueError):
        spacing = float("nan")
    if not spacing > 0:
        raise ConfigError(f"prepare.spacing_mm must be > 0 (mm) or null, got {value!r}")
    return spacing


def _seed(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"prepare.seed must be an integer, got {value!r}") from None


def _ratios(value: Any) -> tuple[float, float, float]:
    try:
        ratios = tuple(float(r) for r in value)
    except (TypeError, ValueError):
        ratios = ()
    if len(ratios) != 3 or min(ratios) < 0 or sum(ratios) <= 0:
        raise ConfigError(f"prepare.split_ratios must be three non-negative numbers (train, val, test), got {value!r}")
    return ratios  # type: ignore[return-value]


__all__ = ["DEFAULTS_YAML", "StoreSpec", "spec_defaults"]
