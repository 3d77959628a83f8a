"""``tagseg prepare``: build a slice store from the phantom or a raw dataset."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from tagseg.data.prepare import PrepareReport, prepare_store
from tagseg.runtime.config import config_yaml, instantiate


def prepare(cfg: DictConfig) -> tuple[PrepareReport, Path | None]:
    """Read ``cfg.data`` with its reader and write (or, with ``verify``, only check) its store.

    Returns:
        The report (counts, skips, output) and the montage PNG written next to the store (or ``None``).
    """
    source = instantiate(cfg.data, "data")
    report = prepare_store(
        source,
        cfg.output,
        seed=cfg.seed,
        split_ratios=cfg.prepare.split_ratios,
        strict=cfg.strict,
        verify=cfg.verify,
        image_size=cfg.prepare.image_size,
        spacing_mm=cfg.prepare.spacing_mm,
        attrs={"config": config_yaml(cfg)},
    )
    if cfg.verify or not cfg.prepare.figure:
        return report, None
    from tagseg.report.figures import store_montage

    return report, store_montage(report.output)


__all__ = ["prepare"]
