"""What a run shows on the W&B dashboard: test metrics in the summary, a per-image table with
overlays, the best validation Dice and its epoch, opt-in artifacts.

Everything is read from the files a run leaves (``summary.json``, ``test_metrics.csv``,
``overlays/``, ``csv/version_*/metrics.csv``, checkpoints), so a cell reused from the stage cache
logs the same run as a fresh one (:func:`log_cell_run`, tagged ``reused``).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from omegaconf import DictConfig, OmegaConf

from tagseg.io.run_dir import METRICS_FILE, SUMMARY_FILE, metric_columns
from tagseg.metric_registry import metric_names
from tagseg.runtime import wandb_run

log = logging.getLogger(__name__)

OVERLAYS = "overlays"
#: rows of the test table that carry their overlay image
N_TABLE_IMAGES = 8


def _finite(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


def summary_metrics(summary: Mapping[str, Any]) -> dict[str, Any]:
    """Flat W&B summary keys of a test ``summary.json``: for each registered metric ``test/<name>`` (mean),
    ``test/<name>_std``, ``test/<name>_median`` (``test/dice``, ..., ``test/hd95_mm_median``),
    ``test/n_images``, and per group / frame ``test/group/<g>/dice`` ... ``test/frame/<f>/hd95_mm``."""

    def stats(prefix: str, s: Mapping[str, Any]) -> dict[str, Any]:
        out = {}
        for metric in metric_names():
            out[f"{prefix}{metric}"] = _finite(s.get(f"{metric}_mean"))
            out[f"{prefix}{metric}_std"] = _finite(s.get(f"{metric}_std"))
            out[f"{prefix}{metric}_median"] = _finite(s.get(f"{metric}_median"))
        out[f"{prefix}n_images"] = s.get("n_images")
        return out

    out = stats("test/", summary)
    for kind in ("group", "frame"):
        for name, s in (summary.get(f"per_{kind}") or {}).items():
            out.update(stats(f"test/{kind}/{name}/", s))
    return out


def best_validation(run_dir: str | Path) -> dict[str, Any]:
    """``val/dice_best`` and ``val/dice_best_epoch`` (0-based, as Lightning counts) from a training
    run's CSV log (the last ``csv/version_*``); empty when it logged no validation Dice."""
    logs = sorted(Path(run_dir).glob("csv/version_*/metrics.csv"), key=lambda p: int(p.parent.name.split("_")[-1]))
    if not logs:
        return {}
    df = pd.read_csv(logs[-1])
    if "val/dice" not in df.columns or df["val/dice"].dropna().empty:
        return {}
    rows = df.dropna(subset=["val/dice"])
    best = rows.loc[rows["val/dice"].idxmax()]
    out = {"val/dice_best": float(best["val/dice"])}
    if "epoch" in rows.columns and not pd.isna(best["epoch"]):
        out["val/dice_best_epoch"] = int(best["epoch"])
    return out


def validation_curves(run_dir: str | Path) -> list[dict[str, Any]]:
    """The per-epoch ``train/*`` / ``val/*`` values of a training run's CSV log, one dict per epoch."""
    logs = sorted(Path(run_dir).glob("csv/version_*/metrics.csv"), key=lambda p: int(p.parent.name.split("_")[-1]))
    if not logs:
        return []
    df = pd.read_csv(logs[-1])
    if "epoch" not in df.columns:
        return []
    keep = [c for c in df.columns if c.startswith(("train/", "val/", "lr"))]
    out = []
    for epoch, rows in df.groupby("epoch", sort=True):
        values = {}
        for column in keep:
            found = rows[column].dropna()
            if not found.empty:
                values[column] = float(found.iloc[-1])
        if values:
            out.append({"epoch": int(epoch), **values})
    return out


def images_table(test_dir: str | Path, n_images: int = N_TABLE_IMAGES) -> Any:
    """A ``wandb.Table`` of the per-image test rows (``test_metrics.csv``), with the overlay image
    (``overlays/<index>.png``) of the rows that have one (the first ``n_images``)."""
    import wandb

    test_dir = Path(test_dir)
    df = pd.read_csv(test_dir / METRICS_FILE)
    columns = [c for c in metric_columns() if c in df.columns]
    table = wandb.Table(columns=[*columns, "overlay"])
    shown = 0
    for row in df.to_dict("records"):
        picture = test_dir / OVERLAYS / f"{int(row['index'])}.png" if "index" in row else None
        image = None
        if picture is not None and picture.exists() and shown < n_images:
            image = wandb.Image(
                str(picture), caption=f"{row.get('subject')} slice {row.get('slice')} frame {row.get('frame')}"
            )
            shown += 1
        table.add_data(*[_finite(row[c]) for c in columns], image)
    return table


def log_test(run: Any, test_dir: str | Path, summary: Mapping[str, Any] | None = None) -> None:
    """Put a test's results into a W&B run: summary metrics and the ``test/images`` table."""
    test_dir = Path(test_dir)
    if summary is None:
        summary = json.loads((test_dir / SUMMARY_FILE).read_text())
    run.summary.update(summary_metrics(summary))
    if (test_dir / METRICS_FILE).exists():
        run.log({"test/images": images_table(test_dir)})


def wandb_runs(loggers: Iterable[Any]) -> list[Any]:
    """The W&B runs behind the ``WandbLogger``\\ s among ``loggers`` (rank 0 only)."""
    from lightning.pytorch.loggers import WandbLogger

    return [lg.experiment for lg in loggers if isinstance(lg, WandbLogger)]


def artifact_settings(cfg: DictConfig) -> tuple[bool, bool]:
    """(log the best checkpoint, log the slice stores): ``logger.wandb.log_model`` and ``artifacts.stores``."""
    log_model = bool(OmegaConf.select(cfg, "logger.wandb.log_model", default=False))
    stores = bool(OmegaConf.select(cfg, "artifacts.stores", default=False))
    return log_model, stores


def store_key(path: str | Path) -> str:
    """A store outside the stage cache, keyed as the strategy keys it (resolved path, size, modification time)."""
    import hashlib

    stat = Path(path).stat()
    blob = json.dumps({"path": str(Path(path).resolve()), "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns})
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def log_artifacts(
    run: Any,
    *,
    checkpoint: str | Path | None = None,
    checkpoint_key: str = "",
    stores: Mapping[str, tuple[str | Path, str]] | None = None,
) -> None:
    """Log (opt-in) the best checkpoint and the slice stores a run used, each named by its stage-cache
    key when it has one, as artifacts the run *uses* / *produces* (W&B lineage).

    Args:
        run: the W&B run.
        checkpoint: the best checkpoint (logged as a ``model`` artifact the run produced).
        checkpoint_key: its stage-cache key (the artifact's name ``model-<key>``), else the run id.
        stores: ``{label: (path, key)}`` of the stores used (``store-<key>``, ``dataset`` artifacts).
    """
    import wandb

    for label, (path, key) in (stores or {}).items():
        name = f"store-{key or Path(path).stem}"
        run.summary[f"artifacts/{label}"] = name
        art = wandb.Artifact(name, type="dataset", metadata={"label": label, "path": str(path), "key": key})
        art.add_reference(Path(path).resolve().as_uri(), name=Path(path).name, checksum=False)
        try:
            run.use_artifact(art)
        except TypeError as exc:  # offline runs cannot record inputs (wandb: "Cannot use artifact ...")
            log.warning("store artifact %s not linked: %s (the name is in the run summary)", name, exc)
    if checkpoint is not None and Path(checkpoint).exists():
        name = f"model-{checkpoint_key or run.id}"
        art = wandb.Artifact(name, type="model", metadata={"path": str(checkpoint), "key": checkpoint_key})
        art.add_file(str(checkpoint), name="best.ckpt")
        run.log_artifact(art, aliases=["best"])


def log_cell_run(
    cfg: DictConfig,
    *,
    name: str,
    test_dir: str | Path,
    train_dir: str | Path | None,
    reused: bool,
    extra: Mapping[str, Any] | None = None,
    checkpoint: tuple[str | Path, str] | None = None,
    stores: Mapping[str, tuple[str | Path, str]] | None = None,
) -> str | None:
    """One W&B run for a finished cell (a strategy's), logged from its files: the fine-tuning's
    curves replayed per epoch, the best validation Dice, the test summary and table.

    Args:
        cfg: the cell's composed config (``logger.wandb`` settings; nothing is logged without it).
        name: the run's name (the cell's swept values).
        test_dir: the folder with ``summary.json`` / ``test_metrics.csv`` / ``overlays``.
        train_dir: the training run whose CSV log has the curves (``None``: no curves).
        reused: the results came from the stage cache (tag ``reused``, config ``reused``).
        extra: more summary entries (stage keys, epochs).
        checkpoint: (best checkpoint, its stage key) for ``logger.wandb.log_model``.
        stores: ``{label: (store, key)}`` for ``artifacts.stores``.

    Returns:
        The run's folder (``<output dir>/wandb/...``), or ``None`` when W&B is not configured.
    """
    node = OmegaConf.select(cfg, "logger.wandb", default=None)
    if node is None:
        return None
    out_dir = Path(str(OmegaConf.select(cfg, "paths.output_dir", default=".")))
    out_dir.mkdir(parents=True, exist_ok=True)
    tags = sorted(
        set(wandb_run.run_tags(cfg) + [str(t) for t in (node.get("tags") or [])] + (["reused"] if reused else []))
    )
    config = {**wandb_run.flat_config(cfg), "reused": reused}
    with wandb_run.open_run(
        project=node.get("project") or "tagseg",
        entity=node.get("entity"),
        name=name,
        group=node.get("group") or wandb_run.group_name(cfg),
        job_type="cell",
        tags=tags,
        config=config,
        dir=str(out_dir),
    ) as run:
        wandb_run.define_metrics(run)
        if train_dir is not None:
            for row in validation_curves(train_dir):
                run.log(row)
            run.summary.update(best_validation(train_dir))
        log_test(run, test_dir)
        run.summary.update({"reused": reused, **dict(extra or {})})
        log_model, log_stores = artifact_settings(cfg)
        log_artifacts(
            run,
            checkpoint=checkpoint[0] if checkpoint and log_model else None,
            checkpoint_key=checkpoint[1] if checkpoint else "",
            stores=stores if log_stores else None,
        )
        return str(Path(run.dir).parent)


def log_sweep(config: DictConfig, rows: Sequence[Mapping[str, Any]], table_csv: Path, figure: Path | None) -> None:
    """The sweep's own W&B run (``job_type=sweep``, in the sweep's group): the summary table and figure."""
    node = OmegaConf.select(config, "logger.wandb", default=None)
    if node is None or not rows:
        return
    import wandb

    sweep_dir = Path(str(config.hydra.sweep.dir))
    task = str(config.get("task_name", "tagseg"))
    with wandb_run.open_run(
        project=node.get("project") or "tagseg",
        entity=node.get("entity"),
        name="sweep summary",
        group=node.get("group") or f"{task}-{sweep_dir.name}",
        job_type="sweep",
        tags=[str(t) for t in (config.get("tags") or [])] + [f"task:{task}"],
        dir=str(sweep_dir),
    ) as run:
        df = pd.read_csv(table_csv)
        run.log({"sweep/summary": wandb.Table(dataframe=df.astype(object).where(df.notna(), None))})
        if figure is not None and figure.exists():
            run.log({"sweep/figure": wandb.Image(str(figure))})


__all__ = [
    "best_validation",
    "log_artifacts",
    "log_cell_run",
    "log_sweep",
    "log_test",
    "store_key",
    "summary_metrics",
    "images_table",
    "validation_curves",
    "wandb_runs",
]
