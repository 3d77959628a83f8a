"""The run-folder contract: what a tagseg run writes where, its typed results, one summary rule.

A *run folder* (``paths.output_dir`` of ``tagseg train`` / ``evaluate`` / ``cyclegan``) holds::

    config.yaml             the resolved config                       CONFIG_FILE
    config_tree.log         the printed config tree                   CONFIG_TREE_FILE
    checkpoints/best.ckpt   the best checkpoint by val/dice           CHECKPOINTS_DIR, BEST_CKPT
    checkpoints/last.ckpt   the checkpoint to resume from             LAST_CKPT
    test_metrics.csv        one row per test image (METRIC_COLUMNS)   METRICS_FILE
    summary.json            summarise(rows) + checkpoint/stores/split SUMMARY_FILE
    strategy.json           a strategy cell: its stages and results   STRATEGY_FILE
    tagness.json            a CycleGAN run's tagness check            TAGNESS_FILE

``summary.json`` holds :func:`summarise` of the per-image rows: ``dice_mean``, ``dice_std``,
``dice_median``, ``hd95_mm_mean``, ``hd95_mm_std``, ``hd95_mm_median``, ``n_images`` overall and
the same under ``per_group`` and ``per_frame`` (standard deviations with ddof=1; 0 for one image).
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

CONFIG_FILE = "config.yaml"
CONFIG_TREE_FILE = "config_tree.log"
CHECKPOINTS_DIR = "checkpoints"
BEST_CKPT = "best.ckpt"
LAST_CKPT = "last.ckpt"
METRICS_FILE = "test_metrics.csv"
SUMMARY_FILE = "summary.json"
STRATEGY_FILE = "strategy.json"
TAGNESS_FILE = "tagness.json"

#: a sweep folder's table (one row per cell) and its fixed columns, in order: the swept keys come
#: after ``job``, one column each (``tagseg.pipeline.sweep`` writes it, ``tagseg.report.sweep`` reads it)
SWEEP_SUMMARY_FILE = "summary.csv"
SWEEP_COLUMNS = (
    "job",
    "overrides",
    "status",
    "error",
    "test_dice_mean",
    "test_dice_std",
    "test_hd95_mm_mean",
    "test_hd95_mm_std",
    "val_dice_best",
    "val_dice_best_epoch",
    "epochs",
    "wall_s",
    "run_dir",
)

#: the first columns of ``test_metrics.csv`` (more may follow, e.g. ``index``)
METRIC_COLUMNS = ("subject", "slice", "frame", "group", "dice", "hd95_mm")
#: the statistics :func:`metric_stats` gives for one set of rows
STAT_KEYS = ("dice_mean", "dice_std", "dice_median", "hd95_mm_mean", "hd95_mm_std", "hd95_mm_median", "n_images")


def last_checkpoint(run_dir: str | Path) -> Path:
    """``<run_dir>/checkpoints/last.ckpt`` (whether or not it exists)."""
    return Path(run_dir) / CHECKPOINTS_DIR / LAST_CKPT


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
    """Dice / HD95 mean, std (ddof=1; 0 for a single row) and median, and the row count.

    Args:
        df: per-image rows with ``dice`` and ``hd95_mm`` columns.

    Returns:
        The :data:`STAT_KEYS` as plain floats (``n_images`` an int).
    """
    n = len(df)

    def std(col: str) -> float:
        return float(df[col].std(ddof=1)) if n > 1 else 0.0

    return {
        "dice_mean": float(df["dice"].mean()),
        "dice_std": std("dice"),
        "dice_median": float(df["dice"].median()),
        "hd95_mm_mean": float(df["hd95_mm"].mean()),
        "hd95_mm_std": std("hd95_mm"),
        "hd95_mm_median": float(df["hd95_mm"].median()),
        "n_images": n,
    }


def summarise(rows: Sequence[Mapping[str, Any]] | pd.DataFrame) -> dict[str, Any]:
    """Dice / HD95 statistics over per-image rows: overall, ``per_group`` and ``per_frame``.

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
    cols = list(METRIC_COLUMNS) + [c for c in df.columns if c not in METRIC_COLUMNS]
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
    "EvalResult",
    "LAST_CKPT",
    "METRICS_FILE",
    "METRIC_COLUMNS",
    "STAT_KEYS",
    "STRATEGY_FILE",
    "SUMMARY_FILE",
    "TAGNESS_FILE",
    "TestResult",
    "TrainResult",
    "last_checkpoint",
    "metric_stats",
    "saved_run_config",
    "summarise",
    "write_atomic",
    "write_test_results",
]
