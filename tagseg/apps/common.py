"""Helpers shared by the thin stage apps."""

from __future__ import annotations

import functools
import logging
import sys
from pathlib import Path
from typing import Any, Callable

from omegaconf import DictConfig, OmegaConf

from tagseg.errors import TagsegError

log = logging.getLogger("tagseg")

#: the folder holding the Hydra configs (``conf/`` at the project root)
CONF_DIR = str(Path(__file__).resolve().parents[2] / "conf")


def user_errors(task: Callable[[DictConfig], Any]) -> Callable[[DictConfig], Any]:
    """Turn a :class:`TagsegError` into one clear line on stderr and exit status 2.

    Anything else is a bug and keeps its traceback.
    """

    @functools.wraps(task)
    def wrapper(cfg: DictConfig) -> Any:
        try:
            return task(cfg)
        except TagsegError as exc:
            log.error("%s", exc)
            print(f"tagseg: error: {exc}", file=sys.stderr)
            raise SystemExit(2) from None

    return wrapper


def config_yaml(cfg: DictConfig) -> str:
    """The resolved config as YAML (recorded in stores and run folders)."""
    return OmegaConf.to_yaml(cfg, resolve=True)
