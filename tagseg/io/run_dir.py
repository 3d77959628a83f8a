"""The run-folder contract: what a tagseg run writes where, its typed results, one summary rule.

A *run folder* (``paths.output_dir`` of ``tagseg train`` / ``evaluate`` / ``cyclegan``) holds::

    config.yaml             the resolved config                       CONFIG_FILE
    config_tree.log         the printed config tree                   CONFIG_TREE_FILE
    checkpoints/best.ckpt   the best checkpoint by val/dice           CHECKPOINTS_DIR, BEST_CKPT
    checkpoints/last.ckpt   the checkpoint to resume from             LAST_CKPT
    test_metrics.csv        one row per test image (metric_columns)   METRICS_FILE
    summary.json            summarise(rows) + checkpoint/stores/split SUMMARY_FILE
    strategy.json           a strategy cell: its stages and results   STRATEGY_FILE
    tagness.json            a CycleGAN run's tagness check            TAGNESS_FILE

``summary.json`` holds :func:`summarise` of the per-image rows: for every registered metric
(:mod:`tagseg.metric_registry`) ``<name>_mean``, ``<name>_std``, ``<name>_median`` (``dice_mean``,
..., ``hd95_mm_median``), and ``n_images``, overall and the same under ``per_group`` and
``per_frame`` (standard deviations with ddof=1; 0 for one image).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from tagseg.errors import ConfigError
from tagseg.io.atomic import publish
from tagseg.metric_registry import mean_std_keys, metric_names
from tagseg.metric_registry import stat_keys as registry_stat_keys

CONFIG_FILE = "config.yaml"
CONFIG_TREE_FILE = "config_tree.log"
CHECKPOINTS_DIR = "checkpoints"
BEST_CKPT = "best.ckpt"
LAST_CKPT = "last.ckpt"
METRICS_FILE = "test_metrics.csv"
SUMMARY_FILE = "summary.json"
STRATEGY_FILE = "strategy.json"
TAGNESS_FILE = "tagness.json"

#: a sweep folder's table (one row per cell): see :func:`sweep_columns` (``tagseg.pipeline.sweep``
#: writes it, ``tagseg.report.sweep`` reads it)
SWEEP_SUMMARY_FILE = "summary.csv"
#: the first columns of ``test_metrics.csv`` before the metrics (see :func:`metric_columns`)
ROW_KEYS = ("subject", "slice", "frame", "group")


def metric_columns() -> tuple[str, ...]:
    """The first columns of ``test_metrics.csv``: subject, slice, frame, group, then every registered
    metric (``dice``, ``hd95_mm``, ...); more may follow (e.g. ``index``, per-class columns)."""
    return (*ROW_KEYS, *metric_names())


def stat_keys() -> tuple[str, ...]:
    """The statistics :func:`metric_stats` gives for one set of rows: each metric's mean, std and
    median, then ``n_images``."""
    return (*registry_stat_keys(), "n_images")


def sweep_columns() -> tuple[str, ...]:
    """The fixed columns of a sweep's ``summary.csv``, in order; the swept keys come after ``job``, one
    column each."""
    return (
        "job",
        "overrides",
        "status",
        "error",
        *mean_std_keys("test_"),
        "val_dice_best",
        "val_dice_best_epoch",
        "epochs",
        "wall_s",
        "run_dir",
    )


#: what Hydra keeps in a job's folder: the job's overrides and its composed config
HYDRA_DIR = ".hydra"
HYDRA_OVERRIDES = "overrides.yaml"
HYDRA_CONFIG = "config.yaml"


def last_checkpoint_in(checkpoint_dir: str | Path) -> Path:
    """The checkpoint to resume from inside a checkpoint folder: ``<checkpoint_dir>/last.ckpt``
    (whether or not it exists); the one rule every stage and the checkpoint resolver use."""
    return Path(checkpoint_dir) / LAST_CKPT


def last_checkpoint(run_dir: str | Path) -> Path:
    """``<run_dir>/checkpoints/last.ckpt`` (whether or not it exists)."""
    return last_checkpoint_in(Path(run_dir) / CHECKPOINTS_DIR)


def write_run_config(cfg: Any, run_dir: str | Path) -> Path:
    """Write a run's resolved config as ``<run_dir>/config.yaml`` (atomically; the folder is made).

    Args:
        cfg: the composed config (an OmegaConf ``DictConfig``).
        run_dir: the run folder.
    """
    from omegaconf import OmegaConf

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    return write_atomic(run_dir / CONFIG_FILE, OmegaConf.to_yaml(cfg, resolve=True))


def hydra_config_path(job_dir: str | Path) -> Path:
    """The composed config Hydra saved for a job: ``<job_dir>/.hydra/config.yaml`` (whether or not it exists)."""
    return Path(job_dir) / HYDRA_DIR / HYDRA_CONFIG


def hydra_overrides(job_dir: str | Path) -> list[str] | None:
    """The command-line overrides of a Hydra job (``<job_dir>/.hydra/overrides.yaml``), or None when the
    folder is no Hydra job."""
    path = Path(job_dir) / HYDRA_DIR / HYDRA_OVERRIDES
    if not path.exists():
        return None
    return [str(item) for item in (yaml.safe_load(path.read_text()) or [])]


def job_dirs(folder: str | Path, recursive: bool = True) -> list[Path]:
    """The Hydra job folders below ``folder`` (not ``folder`` itself), sorted: each holding
    ``.hydra/overrides.yaml``; with ``recursive=False``, only its direct subfolders."""
    pattern = f"{'**/' if recursive else ''}*/{HYDRA_DIR}/{HYDRA_OVERRIDES}"
    return sorted(p.parent.parent for p in Path(folder).glob(pattern))


def saved_run_config(ckpt: str | Path) -> dict[str, Any] | None:
    """The resolved config saved by the run that wrote ``ckpt``: ``<run>/config.yaml`` when the checkpoint
    lies in ``<run>/checkpoints/``; ``None`` for a checkpoint outside a run folder.

    Raises:
        ConfigError: the file exists but is not a YAML mapping.
    """
    ckpt = Path(ckpt)
    if ckpt.parent.name != CHECKPOINTS_DIR or not (ckpt.parent.parent / CONFIG_FILE).is_file():
        return None
    path = ckpt.parent.parent / CONFIG_FILE
    try:
        config = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not readable YAML ({' '.join(str(exc).split())})") from None
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: expected the run's resolved config (a mapping), got {type(config).__name__}")
    return config


def metric_stats(df: pd.DataFrame) -> dict[str, Any]:
    """Each registered metric's mean, std (ddof=1; 0 for a single row) and median, and the row count.

    Args:
        df: per-image rows with a column per registered metric.

    Returns:
        The :func:`stat_keys` as plain floats (``n_images`` an int).
    """
    n = len(df)
    out: dict[str, Any] = {}
    for name in metric_names():
        out[f"{name}_mean"] = float(df[name].mean())
        out[f"{name}_std"] = float(df[name].std(ddof=1)) if n > 1 else 0.0
        out[f"{name}_median"] = float(df[name].median())
    out["n_images"] = n
    return out


def summarise(rows: Sequence[Mapping[str, Any]] | pd.DataFrame) -> dict[str, Any]:
    """Statistics of every registered metric over per-image rows: overall, ``per_group`` and ``per_frame``.

    Raises:
        ConfigError: no rows (nothing was tested).
    """
    df = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
    if df.empty:
        raise ConfigError("test: no test images were evaluated (is the test split empty?)")
    summary = metric_stats(df)
    summary["per_group"] = {str(g): metric_stats(d) for g, d in df.groupby("group", sort=True)}
    summary["per_frame"] = {str(int(f)): metric_stats(d) for f, d in df.groupby("frame", sort=True)}
    return summary


def write_atomic(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary name and a rename (never a half-written file)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    publish(tmp, path)
    return path


def write_test_results(
    rows: Sequence[Mapping[str, Any]], run_dir: str | Path, extra: Mapping[str, Any] | None = None
) -> tuple[Path, Path, dict[str, Any]]:
    """Write ``test_metrics.csv`` (one row per image) and ``summary.json`` into ``run_dir``.

    Returns:
        ``(metrics_path, summary_path, summary)``.

    Raises:
        ConfigError: no rows.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    df = pd.DataFrame(list(rows))
    summary = {**summarise(df), **dict(extra or {})}
    first = metric_columns()
    cols = list(first) + [c for c in df.columns if c not in first]
    metrics_path = write_atomic(run_dir / METRICS_FILE, df[cols].to_csv(index=False))
    summary_path = write_atomic(run_dir / SUMMARY_FILE, json.dumps(summary, indent=2, allow_nan=False))
    return metrics_path, summary_path, summary


class _Fields:
    """Mapping access (``result["summary"]``, ``"summary" in result``, ``result.get``, ``**result``) on a
    result dataclass, for callers written against the former dict results; unset (None) fields
    count as absent. A key that is no field (a stage's own addition, e.g. ``result["shifts"] = path``)
    lives in the ``extra`` dict."""

    extra: dict[str, Any]

    def _present(self) -> dict[str, Any]:
        own = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"}  # type: ignore[arg-type]
        return {k: v for k, v in {**own, **self.extra}.items() if v is not None}

    def __setitem__(self, key: str, value: Any) -> None:
        if key in {f.name for f in fields(self)} and key != "extra":  # type: ignore[arg-type]
            setattr(self, key, value)
        else:
            self.extra[key] = value

    def update(self, other: Mapping[str, Any]) -> None:
        for key, value in dict(other).items():
            self[key] = value

    def __getitem__(self, key: str) -> Any:
        present = self._present()
        if key not in present:
            raise KeyError(key)
        return present[key]

    def __contains__(self, key: object) -> bool:
        return key in self._present()

    def __iter__(self) -> Iterator[str]:
        return iter(self._present())

    def get(self, key: str, default: Any = None) -> Any:
        return self._present().get(key, default)

    def keys(self) -> list[str]:
        return list(self._present())


@dataclass
class TestResult(_Fields):
    """What testing wrote: the summary and the two files."""

    summary: dict[str, Any]
    summary_path: Path
    metrics_path: Path
    extra: dict[str, Any] = field(default_factory=dict)

    __test__ = False  # not a pytest test class


@dataclass
class TrainResult(_Fields):
    """What :func:`tagseg.stages.train.train` returns.

    Attributes:
        run_dir: the run folder.
        best_ckpt: the best checkpoint (None without a monitored ModelCheckpoint).
        last_ckpt: ``checkpoints/last.ckpt`` when written.
        epochs: epochs fitted in total (a resumed run counts its earlier epochs).
        global_step: optimiser steps in total.
        metrics: the last logged scalar metrics.
        summary, summary_path, metrics_path: set when the run was tested (in the process owning
            the run folder).
        extra: anything else a caller records (read and written as ``result[key]``).
    """

    run_dir: Path
    best_ckpt: Path | None
    last_ckpt: Path | None
    epochs: int
    global_step: int
    metrics: dict[str, float] = field(default_factory=dict)
    summary: dict[str, Any] | None = None
    summary_path: Path | None = None
    metrics_path: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def add_test(self, test: TestResult) -> None:
        """Record what testing wrote."""
        self.summary, self.summary_path, self.metrics_path = test.summary, test.summary_path, test.metrics_path


@dataclass
class CycleGANResult(_Fields):
    """What :func:`tagseg.stages.cyclegan.train_cyclegan` returns.

    Attributes:
        run_dir: the run folder.
        last_ckpt: ``checkpoints/last.ckpt`` when written.
        epochs: epochs fitted; global_step: optimiser steps (two per batch: generators, discriminators).
        seconds: the fit's wall time.
        grids: the translation-grid PNGs written.
        tagness: the tagness check (when ``tagness_check.enabled``).
        extra: anything else a caller records.
    """

    run_dir: Path
    last_ckpt: Path | None
    epochs: int
    global_step: int
    seconds: float
    grids: list[Path] = field(default_factory=list)
    tagness: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class EvalResult(_Fields):
    """What :func:`tagseg.stages.evaluate.evaluate` returns: the checkpoint tested and what it wrote."""

    run_dir: Path
    checkpoint: Path
    summary: dict[str, Any]
    summary_path: Path
    metrics_path: Path
    extra: dict[str, Any] = field(default_factory=dict)


__all__ = [
    "BEST_CKPT",
    "CHECKPOINTS_DIR",
    "CONFIG_FILE",
    "CONFIG_TREE_FILE",
    "CycleGANResult",
    "HYDRA_CONFIG",
    "HYDRA_DIR",
    "HYDRA_OVERRIDES",
    "EvalResult",
    "LAST_CKPT",
    "METRICS_FILE",
    "ROW_KEYS",
    "STRATEGY_FILE",
    "SUMMARY_FILE",
    "SWEEP_SUMMARY_FILE",
    "TAGNESS_FILE",
    "TestResult",
    "TrainResult",
    "hydra_config_path",
    "hydra_overrides",
    "job_dirs",
    "last_checkpoint",
    "last_checkpoint_in",
    "metric_columns",
    "metric_stats",
    "stat_keys",
    "saved_run_config",
    "summarise",
    "sweep_columns",
    "write_atomic",
    "write_run_config",
    "write_test_results",
]
