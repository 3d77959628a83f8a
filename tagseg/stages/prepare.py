"""``tagseg prepare``: build a slice store from the phantom or a raw dataset."""

from __future__ import annotations

from pathlib import Path

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
    report = build_store(
        cfg.data, cfg.output, spec, strict=cfg.strict, verify=cfg.verify, attrs={"config": config_yaml(cfg)}
    )
    if cfg.verify or not cfg.prepare.get("figure", True):
        return report, None
    from tagseg.report.figures import store_montage

    return report, store_montage(report.output)


__all__ = ["prepare"]
