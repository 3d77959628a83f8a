"""Configs: where they live, how they are composed, printed, flattened and instantiated.

The Hydra configs are package data (``tagseg/conf``, also ``pkg://tagseg.conf``), so a wheel or a
non-editable install finds them from any folder. Users add config folders of their own with
``--config-dir`` or ``hydra.searchpath``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import hydra.utils
from hydra.errors import InstantiationException
from omegaconf import DictConfig, OmegaConf, open_dict

from tagseg.errors import ConfigError, TagsegError

#: the folder holding the Hydra configs (package data)
CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")


def randomise_suffix(value: Any) -> str:
    """File-name suffix of a ``data.randomise`` setting (the resolver ``${randomise_suffix:...}``).

    The phantom's default store names carry it, so a randomised phantom never reuses the fixed
    phantom's store (or another randomisation's): ``''`` for the fixed phantom (``null``, an empty
    mapping), ``_<preset>`` for a preset name, ``_r<8 hex>`` (a hash of the ranges) for a mapping.
    """
    if OmegaConf.is_config(value):
        value = OmegaConf.to_container(value, resolve=True)
    if value is None or value is False or (isinstance(value, Mapping) and not value):
        return ""
    if isinstance(value, str):
        return "_" + re.sub(r"[^A-Za-z0-9_-]+", "-", value)
    text = json.dumps(value, sort_keys=True, default=str)
    return "_r" + hashlib.sha256(text.encode()).hexdigest()[:8]


OmegaConf.register_new_resolver("randomise_suffix", randomise_suffix, replace=True)


def compose(config_name: str, overrides: Sequence[str] = ()) -> DictConfig:
    """Compose ``conf/<config_name>.yaml`` with overrides, outside any running Hydra app."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    if GlobalHydra.instance().is_initialized():
        return hydra_compose(config_name=config_name, overrides=list(overrides))
    with initialize_config_dir(CONF_DIR, version_base="1.3"):
        return hydra_compose(config_name=config_name, overrides=list(overrides))


def config_yaml(cfg: DictConfig) -> str:
    """The resolved config as YAML (recorded in stores and run folders)."""
    return OmegaConf.to_yaml(cfg, resolve=True)


def plain(cfg: Any) -> Any:
    """A config node as plain, resolved Python containers (dicts, lists, scalars); other values as they are."""
    if OmegaConf.is_config(cfg):
        return OmegaConf.to_container(cfg, resolve=True)
    return cfg


#: what ``paths.output_dir`` reads as in :func:`key_config` (a run's folder is no part of what it computes)
RUN_DIR = "<run dir>"


def key_config(cfg: Any, drop: Sequence[str] = ()) -> dict[str, Any]:
    """What determines a stage's result: ``cfg`` as a resolved plain dict without the dotted keys in
    ``drop`` (the stage cache hashes it).

    Dropped leaves are blanked before resolving (they may hold what cannot be resolved here);
    dropped sections are removed after. ``paths.output_dir`` (Hydra's run folder, unknown
    outside a run) resolves to the placeholder :data:`RUN_DIR`, so a stage's hash does not depend
    on which run computed it.
    """
    node = cfg.copy() if OmegaConf.is_config(cfg) else OmegaConf.create(cfg)
    raw = OmegaConf.to_container(node, resolve=False)
    with open_dict(node):
        if node._get_parent() is None and isinstance(raw.get("paths"), dict) and "output_dir" in raw["paths"]:
            node.paths.output_dir = RUN_DIR
        for key in drop:
            parent, _, leaf = key.rpartition(".")
            holder = _walk(raw, parent)
            if isinstance(holder, dict) and leaf in holder and not isinstance(holder[leaf], (dict, list)):
                OmegaConf.update(node, key, None, merge=False)
    out = OmegaConf.to_container(node, resolve=True)
    for key in drop:
        parent, _, leaf = key.rpartition(".")
        holder = _walk(out, parent)
        if isinstance(holder, dict):
            holder.pop(leaf, None)
    return out  # type: ignore[return-value]


def _walk(tree: Any, dotted: str) -> Any:
    for part in [p for p in dotted.split(".") if p]:
        if not isinstance(tree, dict) or part not in tree:
            return None
        tree = tree[part]
    return tree


def instantiate(cfg: Any, what: str, **kwargs: Any) -> Any:
    """Build the object a config node describes (``_target_``), surfacing tagseg errors as themselves.

    Args:
        cfg: the config node (with ``_target_``).
        what: the config key, named in errors that Hydra raises itself.
        **kwargs: extra constructor arguments.

    Raises:
        TagsegError: raised by the constructor, unchanged (not wrapped by Hydra).
        ConfigError: the target cannot be imported or called (names ``what``).
    """
    try:
        return hydra.utils.instantiate(cfg, **kwargs)
    except InstantiationException as exc:
        cause = exc.__cause__
        while cause is not None and not isinstance(cause, TagsegError):
            cause = cause.__cause__
        if isinstance(cause, TagsegError):
            raise cause from None
        raise ConfigError(f"{what}: cannot instantiate: {exc}") from exc


def instantiate_group(cfg: Any, what: str) -> list[Any]:
    """Instantiate every entry of a group holding several objects (``callbacks``, ``logger``); null entries are skipped."""
    out = []
    for key, node in (cfg or {}).items():
        if node is not None and "_target_" in node:
            out.append(instantiate(node, f"{what}.{key}"))
    return out


def set_torch_threads(n_threads: Any) -> None:
    """Apply ``torch_threads``: ``None`` keeps torch's default; an int sets this process's intra-op
    threads and ``OMP_NUM_THREADS``, which the DDP ranks it starts inherit (Lightning keeps it).

    Raises:
        ConfigError: not null or an integer >= 1.
    """
    if n_threads is None:
        return
    if isinstance(n_threads, bool) or not isinstance(n_threads, int) or n_threads < 1:
        raise ConfigError(f"torch_threads: expected null or an integer >= 1, got {n_threads!r}")
    import torch

    torch.set_num_threads(n_threads)
    os.environ["OMP_NUM_THREADS"] = str(n_threads)


__all__ = [
    "CONF_DIR",
    "RUN_DIR",
    "compose",
    "config_yaml",
    "instantiate",
    "instantiate_group",
    "key_config",
    "plain",
    "set_torch_threads",
]
