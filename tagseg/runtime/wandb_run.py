"""Who a W&B run is: short names from the swept keys, one group per sweep, tags, flat config, metric summaries.

Used by every stage that logs to W&B (``logger=wandb``): a plain ``tagseg train`` cell (through its
``WandbLogger``), the run of a strategy cell and the summary run at the end of a sweep.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from tagseg.metric_registry import metric_specs

#: overrides never part of a run name (folders, the logger itself, launcher settings)
NAME_SKIP = ("hydra", "paths", "logger", "experiment", "hparams_search", "trainer.devices", "torch_threads")


def _hydra_config() -> Any | None:
    from hydra.core.hydra_config import HydraConfig

    return HydraConfig.get() if HydraConfig.initialized() else None


def in_multirun() -> bool:
    from hydra.types import RunMode

    hc = _hydra_config()
    return hc is not None and hc.mode == RunMode.MULTIRUN


def swept_keys() -> list[str]:
    """The keys a multirun sweeps: its ``hydra.sweeper.params`` (an experiment's grid, an Optuna
    search space) and the command-line overrides with several values (read back from the
    sweep's ``multirun.yaml``). Empty outside a multirun."""
    hc = _hydra_config()
    if hc is None or not in_multirun():
        return []
    keys = [str(k) for k in (OmegaConf.select(hc, "sweeper.params") or {})]
    saved = Path(str(hc.sweep.dir)) / "multirun.yaml"
    if saved.exists():
        from hydra.core.override_parser.overrides_parser import OverridesParser

        raw = OmegaConf.select(OmegaConf.load(saved), "hydra.overrides.task") or []
        try:
            parsed = OverridesParser.create().parse_overrides([str(o) for o in raw])
        except Exception:  # an override this Hydra cannot parse back: name from the params only
            parsed = []
        keys += [o.get_key_element() for o in parsed if o.is_sweep_override()]
    return [k for k in dict.fromkeys(keys) if not k.startswith(NAME_SKIP)]


def cell_values() -> dict[str, str]:
    """``{swept key: this cell's value}`` (the job's own overrides, in the order Hydra gives them)."""
    hc = _hydra_config()
    keys = swept_keys()
    if hc is None or not keys:
        return {}
    out: dict[str, str] = {}
    for item in hc.overrides.task:
        key, _, value = str(item).partition("=")
        key = key.lstrip("+~")
        if key in keys:
            out[key] = value
    return out


def short_key(key: str) -> str:
    """``loss.gamma`` -> ``gamma``, ``model.optimizer.lr`` -> ``lr``; groups (``model``) stay as they are."""
    return key.rsplit(".", 1)[-1].removeprefix("/")


def run_name(default: str) -> str:
    """The cell's swept values, e.g. ``model=resnetvae,strategy=cine,gamma=0.1``; ``default`` when
    nothing is swept (a single run). Numbers are shortened to 4 significant digits (Optuna's floats)."""
    values = cell_values()
    if not values:
        return default
    parts = []
    for key, value in values.items():
        try:
            number = float(value)
            value = value if number.is_integer() and "." not in value else f"{number:.4g}"
        except ValueError:
            pass
        parts.append(f"{short_key(key)}={value}")
    return ",".join(parts)


def group_name(cfg: DictConfig) -> str:
    """One W&B group per sweep (``<task>-<sweep folder>``); a single run is its own group."""
    hc = _hydra_config()
    task = str(cfg.get("task_name", "tagseg"))
    if hc is None:
        return task
    if in_multirun():
        return f"{task}-{Path(str(hc.sweep.dir)).name}"
    return f"{task}-{Path(str(hc.runtime.output_dir)).name}"


def run_tags(cfg: DictConfig) -> list[str]:
    """The config's ``tags`` plus ``task:<task_name>`` and, for a strategy, ``strategy:<name>``."""
    tags = [str(t) for t in (cfg.get("tags") or [])]
    tags.append(f"task:{cfg.get('task_name', 'tagseg')}")
    name = OmegaConf.select(cfg, "strategy.name", default=None)
    if name is not None:
        tags.append(f"strategy:{name}")
    return list(dict.fromkeys(tags))


def flatten(tree: Any, prefix: str = "", sep: str = ".") -> dict[str, Any]:
    """A nested config as ``{"model.optimizer.lr": 0.01, ...}`` (lists kept as values): W&B filters and
    groups on flat keys."""
    out: dict[str, Any] = {}
    if isinstance(tree, Mapping):
        for key, value in tree.items():
            out.update(flatten(value, f"{prefix}{key}{sep}", sep))
        return out
    out[prefix[: -len(sep)] if prefix else "value"] = tree
    return out


def flat_config(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config without the Hydra node, flattened; values that cannot resolve here are skipped."""
    node = cfg.copy()
    with open_dict(node):
        node.pop("hydra", None)
    try:
        tree = OmegaConf.to_container(node, resolve=True)
    except Exception:  # an interpolation only Hydra's app can resolve: keep the unresolved text
        tree = OmegaConf.to_container(node, resolve=False)
    return flatten(tree)


def apply_identity(cfg: DictConfig) -> None:
    """Fill ``logger.wandb``'s name, group and tags (unless set explicitly) before the logger is built."""
    node = OmegaConf.select(cfg, "logger.wandb", default=None)
    if node is None:
        return
    with open_dict(node):
        if node.get("name") in (None, cfg.get("task_name")):
            node.name = run_name(Path(str(OmegaConf.select(cfg, "paths.output_dir", default="run"))).name)
        if node.get("group") is None:
            node.group = group_name(cfg)
        node.tags = list(dict.fromkeys([*(str(t) for t in (node.get("tags") or [])), *run_tags(cfg)]))


@contextmanager
def open_run(**settings: Any) -> Iterator[Any]:
    """A W&B run of its own (``wandb.init(**settings, reinit="finish_previous")``), finished when the
    block ends, however it ends: the one place tagseg starts and finishes W&B runs outside Lightning's
    ``WandbLogger`` (a strategy cell's run, a sweep's summary run)."""
    import wandb

    run = wandb.init(**settings, reinit="finish_previous")
    try:
        yield run
    finally:
        run.finish()


def finish_active_run() -> None:
    """Finish the W&B run still open in this process, if any (a ``WandbLogger``'s run at the end of a
    stage): one run per job, so a sweep's next cell never logs into this one. W&B is not imported
    here when nothing imported it."""
    wandb = sys.modules.get("wandb")
    if wandb is not None and getattr(wandb, "run", None) is not None:
        wandb.finish()


def define_metrics(run: Any) -> None:
    """Summaries that answer "how good did it get": each registered metric's best ``val/<name>`` (max when
    higher is better: ``val/dice``; min otherwise: ``val/hd95_mm``) and the lowest loss."""
    run.define_metric("epoch")
    for spec in metric_specs():
        run.define_metric(f"val/{spec.name}", summary="max" if spec.higher_is_better else "min")
    run.define_metric("val/loss", summary="min")


__all__ = [
    "apply_identity",
    "cell_values",
    "define_metrics",
    "flat_config",
    "finish_active_run",
    "flatten",
    "group_name",
    "in_multirun",
    "open_run",
    "run_name",
    "run_tags",
    "short_key",
    "swept_keys",
]
