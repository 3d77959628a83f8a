"""``tagseg translate``: turn a labelled cine store into a tagged-looking store."""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
from hydra.errors import InstantiationException
from omegaconf import DictConfig

from tagseg.apps.common import CONF_DIR, config_yaml, user_errors
from tagseg.errors import ConfigError, TagsegError

log = logging.getLogger("tagseg.translate")


def build_translator(cfg: DictConfig):
    """Instantiate ``cfg.method``; a config error inside the constructor surfaces as itself."""
    try:
        return hydra.utils.instantiate(cfg.method)
    except InstantiationException as exc:
        if isinstance(exc.__cause__, TagsegError):
            raise exc.__cause__ from None
        raise


def input_store(cfg: DictConfig) -> Path:
    """The input store; a dataset's own store (``input=${data.store}``) is prepared if missing."""
    if cfg.input is None:
        raise ConfigError("input: no input store; pass input=<store.h5> or data=<dataset>")
    path = Path(cfg.input)
    if not path.exists() and cfg.get("data") is not None and str(cfg.data.get("store")) == str(cfg.input):
        from tagseg.data.prepare import ensure_store

        return ensure_store(cfg.data, seed=cfg.seed)
    return path


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="translate")
@user_errors
def main(cfg: DictConfig) -> None:
    translator = build_translator(cfg)
    source = input_store(cfg)
    output = Path(cfg.output) if cfg.output else Path(cfg.paths.data_dir) / f"{translator.method}_{source.stem}.h5"
    report = translator.run(source, output, attrs={"config": config_yaml(cfg)},
                           compression=cfg.compression)
    print(report.summary())
    if report.figure is not None:
        print(f"figure: {report.figure}")
    print(f"store: {report.output}")


if __name__ == "__main__":
    main()
