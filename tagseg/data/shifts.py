"""Shifted test sets: phantom variants outside the training ranges (``conf/shift/<name>.yaml``).

A shift is a small YAML file with a ``description`` and ``data`` overrides applied to the tagged
phantom config a model was trained on (so image size and field of view match), after resetting
``data.randomise`` to ``null``: the shifted sets are the same whichever randomisation the model
saw. Their subjects are drawn with seed ``prepare seed + SHIFT_SEED_OFFSET`` (other people than
the training cohort) and every slice is in the ``test`` split. ``tagseg evaluate shifts=[...]`` and
strategy runs with ``strategy.shifts`` evaluate a model on each of them next to the
in-distribution test split.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf, open_dict

from tagseg.data.store_spec import StoreSpec
from tagseg.errors import ConfigError, reject_unknown_keys
from tagseg.runtime.config import CONF_DIR

SHIFT_DIR = Path(CONF_DIR) / "shift"
#: added to the preparation seed: shifted subjects are not the training subjects
SHIFT_SEED_OFFSET = 1000
#: every subject of a shifted set is a test subject
TEST_ONLY = (0.0, 0.0, 1.0)


def shift_names() -> list[str]:
    """Every shift shipped in ``conf/shift``."""
    return sorted(p.stem for p in SHIFT_DIR.glob("*.yaml"))


def load_shift(name: str) -> dict[str, Any]:
    """The shift ``name`` (``description`` and ``data`` overrides).

    Raises:
        ConfigError: unknown name or malformed file.
    """
    path = SHIFT_DIR / f"{name}.yaml"
    if not path.exists():
        raise ConfigError(f"shifts: unknown shifted test set '{name}'; expected some of {shift_names()}")
    spec = yaml.safe_load(path.read_text()) or {}
    if not isinstance(spec, dict) or not isinstance(spec.get("data"), dict):
        raise ConfigError(f"{path}: expected a mapping with 'description' and 'data' (overrides of the phantom config)")
    reject_unknown_keys(spec, ("description", "data"), str(path))
    return spec


def check_shifts(names: Any) -> list[str]:
    """``shifts`` as a list of known names (``all``: every shipped shift).

    Raises:
        ConfigError: not a list of names, or an unknown name.
    """
    if names is None:
        return []
    if isinstance(names, str):
        names = shift_names() if names == "all" else [names]
    out = [str(n) for n in names]
    for name in out:
        load_shift(name)
    return out


def shift_data_config(data_cfg: DictConfig | Mapping[str, Any], name: str, n_subjects: int) -> DictConfig:
    """The phantom config of shifted set ``name``, built on ``data_cfg`` (the tagged training data).

    The store path is dropped (``store: null``): callers decide where the store lives.

    Raises:
        ConfigError: ``data_cfg`` is not the phantom (shifts are phantom variants).
    """
    node = OmegaConf.create(
        OmegaConf.to_container(data_cfg, resolve=True) if OmegaConf.is_config(data_cfg) else dict(data_cfg)
    )
    if not str(node.get("_target_", "")).endswith("PhantomSource"):
        raise ConfigError(
            f"shifts: shifted test sets are phantom variants; data must be the phantom "
            f"(data=phantom_tagged), got {node.get('_target_')}"
        )
    spec = load_shift(name)
    with open_dict(node):
        node.randomise = None
        node.store = None
    node = OmegaConf.merge(node, OmegaConf.create(spec["data"]))
    with open_dict(node):
        node.name = f"shift_{name}"
        node.n_subjects = int(n_subjects)
    return node


def shift_key(data_cfg: DictConfig, seed: int, spec: StoreSpec | None = None) -> str:
    """A short hash of a shifted set's resolved config, seed and (one pixel size) grid (names its store file)."""
    plain = OmegaConf.to_container(data_cfg, resolve=True)
    key: dict[str, Any] = {"data": plain, "seed": int(seed)}
    if spec is not None and spec.fit == "crop":
        key["grid"] = [spec.image_size, spec.spacing_mm]
    blob = json.dumps(key, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:10]


def prepare_shift_store(data_cfg: DictConfig, seed: int, folder: str | Path, spec: StoreSpec | None = None) -> Path:
    """Prepare (once) the shifted set ``data_cfg`` under ``folder`` and return its store path.

    With the ``spec`` of a one-pixel-size store (``prepare.fit=crop``) the shifted set is placed on the
    same grid as the store the model trained on; otherwise it is stored at the dataset's own size.
    """
    from tagseg.data.prepare import prepare_store
    from tagseg.runtime.config import instantiate

    grid = spec if spec is not None and spec.fit == "crop" else None
    key = shift_key(data_cfg, seed, grid)
    path = Path(folder) / f"{data_cfg.name}-{key}.h5"
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    source = instantiate(data_cfg, "data")
    prepare_store(
        source,
        path,
        seed=seed,
        split_ratios=TEST_ONLY,
        image_size=grid.image_size if grid else data_cfg.get("image_size"),
        spacing_mm=grid.spacing_mm if grid else None,
        fit=grid.fit if grid else "resize",
        attrs={"config": json.dumps(OmegaConf.to_container(data_cfg, resolve=True), default=str)},
    )
    return path


def describe(names: Sequence[str]) -> dict[str, str]:
    """name -> description of each shift."""
    return {n: str(load_shift(n).get("description", "")) for n in names}


__all__ = [
    "SHIFT_DIR",
    "SHIFT_SEED_OFFSET",
    "TEST_ONLY",
    "check_shifts",
    "describe",
    "load_shift",
    "prepare_shift_store",
    "shift_data_config",
    "shift_key",
    "shift_names",
]
