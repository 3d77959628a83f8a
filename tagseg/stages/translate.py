"""``tagseg translate``: turn a labelled cine store into a tagged-looking store."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from tagseg.errors import ConfigError
from tagseg.runtime.config import config_yaml, instantiate

log = logging.getLogger("tagseg.translate")


def build_translator(cfg: DictConfig) -> Any:
    """Instantiate ``cfg.method``; a config error inside the constructor surfaces as itself."""
    return instantiate(cfg.method, "method")


def input_store(cfg: DictConfig) -> Path:
    """The input store; a dataset's own store (``input=${data.store}``) is prepared if missing."""
    if cfg.input is None:
        raise ConfigError("input: no input store; pass input=<store.h5> or data=<dataset>")
    path = Path(cfg.input)
    if not path.exists() and cfg.get("data") is not None and str(cfg.data.get("store")) == str(cfg.input):
        from tagseg.data.prepare import ensure_store
        from tagseg.data.store_spec import StoreSpec

        return ensure_store(cfg.data, StoreSpec.from_config(cfg.get("prepare"), cfg.data))
    return path


def translate(cfg: DictConfig, attrs: Mapping[str, Any] | None = None) -> Any:
    """Translate the input store as ``cfg.method`` says (``cfg.compression`` and the method's options
    applied); returns the translator's report.

    Args:
        cfg: the composed ``conf/translate.yaml``.
        attrs: the output's file attributes; default ``{"config": <the resolved cfg as YAML>}`` (a
            strategy records its stage's key config instead).
    """
    translator = build_translator(cfg)
    source = input_store(cfg)
    output = Path(cfg.output) if cfg.output else Path(cfg.paths.data_dir) / f"{translator.method}_{source.stem}.h5"
    attrs = dict(attrs) if attrs is not None else {"config": config_yaml(cfg)}
    return translator.run(source, output, attrs=attrs, compression=cfg.compression)


__all__ = ["build_translator", "input_store", "translate"]
