"""``tagseg prepare``: build a slice store from the phantom or a raw dataset."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from tagseg.data.prepare import PrepareReport, build_store
from tagseg.data.store_spec import StoreSpec
from tagseg.runtime.config import config_yaml


def prepare(cfg: DictConfig) -> tuple[PrepareReport, Path | None]:
    """Read ``cfg.data`` with its reader and write (or, with ``verify``, only check) its store.

    The store follows the one store specification (``cfg.prepare``, see
    :class:`~tagseg.data.store_spec.StoreSpec`), as on-demand and strategy preparation do.

    Returns:
        The report (counts, skips, output) and the montage PNG written next to the store (or ``None``).
    """
    spec = StoreSpec.from_config(cfg.prepare, cfg.data)
    report = prepare_store(
        cfg.data, cfg.output, spec, strict=cfg.strict, verify=cfg.verify, attrs={"config": config_yaml(cfg)}
    )
    if cfg.verify or not cfg.prepare.get("figure", True):
        return report, None
    from tagseg.report.figures import store_montage

    return report, store_montage(report.output)


def prepare_store(
    data: DictConfig,
    output: str | Path,
    spec: StoreSpec,
    *,
    strict: bool = False,
    verify: bool = False,
    attrs: Mapping[str, Any] | None = None,
) -> PrepareReport:
    """The store of one dataset config (``cfg.data``) by one specification: what :func:`prepare` writes
    and a strategy's ``prepare[...]`` stage calls (which may change the specification's seed or split
    ratios).

    Args:
        data: a dataset config (a reader and its ``store``).
        output: the store to write.
        spec: the store specification.
        strict: a subject that cannot be read is an error, not a skip.
        verify: only check the existing ``output`` against the dataset.
        attrs: the store's file attributes (``config``: what made it).
    """
    return build_store(data, output, spec, strict=strict, verify=verify, attrs=dict(attrs or {}))


__all__ = ["prepare", "prepare_store"]
