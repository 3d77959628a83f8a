"""``tagseg store check <path>``: the full check of a slice store (every chunk read, every value checked)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from tagseg.errors import ConfigError
from tagseg.io.store import verify_store

ACTIONS = ("check",)


def store(cfg: DictConfig) -> dict[str, Any]:
    """Run ``cfg.action`` on the store ``cfg.path``.

    Returns:
        ``path``, ``n_slices``, ``seconds``, ``bytes``.

    Raises:
        ConfigError: unknown action.
        StoreError: the store is missing, unreadable or invalid (one line: file, key, row, value).
    """
    if cfg.action not in ACTIONS:
        raise ConfigError(f"action: expected one of {list(ACTIONS)}, got {cfg.action!r}")
    path = Path(cfg.path)
    start = time.perf_counter()
    n = verify_store(path)
    return {"path": path, "n_slices": n, "seconds": time.perf_counter() - start, "bytes": path.stat().st_size}


__all__ = ["store"]
