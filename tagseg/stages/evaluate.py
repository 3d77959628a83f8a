"""``tagseg evaluate``: test a checkpoint on a store split; per-image table + summary.json."""

from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from tagseg.data.shifts import SHIFT_SEED_OFFSET, check_shifts, describe, prepare_shift_store, shift_data_config
from tagseg.data.store_spec import StoreSpec
from tagseg.errors import ConfigError, DataError
from tagseg.io.run_dir import EvalResult, saved_run_config
from tagseg.io.store import has_labels, store_attrs
from tagseg.metric_registry import mean_std_keys
from tagseg.models.orientation import IDENTITY, OrientationSettings, View, store_views
from tagseg.models.segmenter import load_segmentation_module, load_segmenter
from tagseg.postprocess import check_postprocess
from tagseg.qc.scoring import split_of
from tagseg.runtime.config import instantiate, instantiate_group
from tagseg.runtime.task import task_wrapper
from tagseg.stages.qc import EvalQC, eval_qc_settings, evaluate_qc, log_qc
from tagseg.stages.train import checked_stores, evaluate_module, one_device_trainer, save_run_config

log = logging.getLogger(__name__)


def require_labels(store: str | Path) -> None:
    """Refuse, in one line, a store that cannot be evaluated: one written without labels.

    Raises:
        DataError: the store says ``labelled: false`` or every mask is background.
    """
    attrs = store_attrs(store)
    if not bool(attrs.get("labelled", True)):
        raise DataError(
            f"{store}: the store has no labels (labelled: false, an images-only export); nothing to "
            "evaluate against (segment it with `tagseg predict`)"
        )
    if has_labels(store):
        return
    raise DataError(
        f"{store}: every mask is background (no labels); nothing to evaluate against (segment it with `tagseg predict`)"
    )


@task_wrapper
def evaluate(cfg: DictConfig) -> EvalResult:
    """Test a checkpoint on a store split; write ``test_metrics.csv`` and ``summary.json``.

    The network, image size, classes and normalisation come from the checkpoint alone; the
    store(s) and split from ``cfg.datamodule`` and ``cfg.split``.

    Args:
        cfg: the composed ``conf/evaluate.yaml`` (``ckpt``: a .ckpt file or run folder; ``split``:
            train | val | test | all). The store may hold that split only (an external test set).

    Returns:
        The :class:`~tagseg.io.run_dir.EvalResult`.

    Raises:
        TagsegError: missing, unreadable, unsafe or non-segmentation checkpoint (read with
            ``weights_only=True``), missing store, unknown split, an empty split, a store without labels.
    """
    if not cfg.get("ckpt"):
        raise ConfigError("ckpt: no checkpoint given (pass ckpt=<file.ckpt or run folder>)")
    if not Path(cfg.ckpt).exists():
        raise ConfigError(f"ckpt: {cfg.ckpt} does not exist (expected a .ckpt file or a run folder)")
    split = str(cfg.get("split", "test"))
    if split not in ("train", "val", "test", "all"):
        raise ConfigError(f"split: expected train, val, test or all, got '{split}'")
    postprocess = check_postprocess(cfg.get("postprocess"))
    run_dir = Path(cfg.paths.output_dir)
    model, ckpt = load_segmentation_module(cfg.ckpt)
    model.postprocess = postprocess
    hp = model.hparams
    stores = checked_stores(cfg)
    for store in stores:
        require_labels(store)
    save_run_config(cfg, run_dir)
    datamodule = instantiate(cfg.datamodule, "datamodule", **model_geometry(hp))
    datamodule.setup("test")
    loggers = instantiate_group(cfg.get("logger"), "logger")
    trainer = one_device_trainer(
        cfg.trainer, logger=loggers, callbacks=instantiate_group(cfg.get("callbacks"), "callbacks")
    )
    orientation = OrientationSettings.from_config(cfg.get("orientation"))
    segmenter = load_segmenter(ckpt, device=search_device()) if orientation.enabled else None
    model.test_views = split_views(segmenter, orientation, stores, split)
    extra = {
        "checkpoint": str(ckpt),
        "stores": [str(s) for s in stores],
        "split": split,
        "postprocess": postprocess,
        "orientation": turned(model.test_views),
    }
    tested = evaluate_module(trainer, model, run_dir, extra, dataloaders=datamodule.eval_dataloader(split))
    result = EvalResult(
        run_dir=run_dir,
        checkpoint=ckpt,
        summary=tested.summary,
        summary_path=tested.summary_path,
        metrics_path=tested.metrics_path,
    )
    qc = eval_qc_settings(cfg.get("qc"), ckpt)
    if qc is not None:  # QC columns next to the true metrics: <run dir>/qc.csv (tagseg/stages/qc.py)
        result["qc"] = evaluate_qc(qc, stores, split, run_dir, test_set=split, views=model.test_views)
    names = check_shifts(cfg.get("shifts"))
    if names:
        shifted = evaluate_shifts(cfg, model, ckpt, run_dir, names, tested.summary, split, qc, segmenter, orientation)
        result["shifts"] = shifted
    if qc is not None:
        log_qc(loggers, run_dir)
    return result


def split_views(segmenter: Any, settings: OrientationSettings, stores: list[Path], split: str) -> dict[str, View]:
    """The view each subject of ``split`` of ``stores`` is read in (:mod:`tagseg.models.orientation`;
    empty when ``settings`` are off)."""
    if segmenter is None or not settings.enabled:
        return {}
    views: dict[str, View] = {}
    for store in stores:
        views.update(store_views(segmenter, split_of(store, split), settings))
    if turned(views):
        log.info("orientation: subjects read in another view than stored: %s", turned(views))
    return views


def search_device() -> str:
    """Where the orientation search runs: the GPU when there is one (the test itself runs where the trainer says)."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def turned(views: dict[str, View]) -> dict[str, str]:
    """The subjects read in another view than stored, with its name (recorded in summary.json)."""
    return {subject: view.name for subject, view in views.items() if view != IDENTITY}


def model_geometry(hp: Any) -> dict[str, Any]:
    """The datamodule settings a checkpoint fixes: its input size, classes, normalisation and, for a model
    trained at one pixel size, the grid every store is placed on (``grid_mm``)."""
    grid = hp.get("spacing_mm")
    return {
        "image_size": hp.image_size,
        "classes": list(hp.classes),
        "mean": hp.mean,
        "std": hp.std,
        "grid_mm": None if grid is None else float(grid),
    }


def evaluate_shifts(
    cfg: DictConfig,
    model: Any,
    ckpt: Path,
    run_dir: Path,
    names: list[str],
    in_distribution: dict[str, Any],
    split: str,
    qc: EvalQC | None = None,
    segmenter: Any = None,
    orientation: OrientationSettings | None = None,
) -> Path:
    """Test ``model`` on each shifted test set (``conf/shift``) next to the in-distribution split.

    Each set is prepared once under ``cfg.shift_dir`` from the data config of the run that wrote the
    checkpoint (its saved ``config.yaml``: the image size and field of view it was trained at), or
    ``cfg.data`` for a checkpoint outside a run folder (see :mod:`tagseg.data.shifts`), with
    ``cfg.shift_subjects`` subjects; its per-image table and summary go to ``<run dir>/shift/<name>/``
    (with ``qc``: also its ``qc.csv``),
    one row per test set to ``<run dir>/shifts.csv``. With ``orientation`` on, each subject is read
    in the view ``segmenter`` reads it best (:func:`split_views`).

    Returns:
        The path of ``shifts.csv``.
    """
    hp = model.hparams
    trained = OmegaConf.create(saved_run_config(ckpt) or {})
    source = trained if trained.get("data") is not None else cfg
    log.info("shifted sets built on the data config of %s", ckpt if source is trained else "this evaluate run")
    seed = int(OmegaConf.select(source, "prepare.seed", default=source.get("seed", 0))) + SHIFT_SEED_OFFSET
    spec = StoreSpec.from_config(source.get("prepare"), source.data)
    rows = [_shift_row(split, "in-distribution test split", in_distribution)]
    for name, description in describe(names).items():
        data_cfg = shift_data_config(source.data, name, int(cfg.get("shift_subjects", 8)))
        store = prepare_shift_store(data_cfg, seed, cfg.shift_dir, spec)
        dm_cfg = cfg.datamodule.copy()
        with open_dict(dm_cfg):
            dm_cfg.stores = [str(store)]
            dm_cfg.n_train_subjects = None
        datamodule = instantiate(dm_cfg, "datamodule", **model_geometry(hp))
        datamodule.setup("test")
        trainer = one_device_trainer(cfg.trainer, logger=False, callbacks=[], enable_progress_bar=False)
        model.test_views = split_views(segmenter, orientation or OrientationSettings(mode="none"), [store], "test")
        tested = evaluate_module(
            trainer,
            model,
            run_dir / "shift" / name,
            {
                "checkpoint": str(ckpt),
                "stores": [str(store)],
                "split": "test",
                "shift": name,
                "postprocess": model.postprocess,
                "orientation": turned(model.test_views),
            },
            dataloaders=datamodule.eval_dataloader("test"),
        )
        rows.append(_shift_row(name, description, tested["summary"]))
        if qc is not None:
            evaluate_qc(qc, [store], "test", run_dir / "shift" / name, test_set=name, views=model.test_views)
    path = run_dir / "shifts.csv"
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def _shift_row(name: str, description: str, summary: dict[str, Any]) -> dict[str, Any]:
    return {
        "test_set": name,
        "description": description,
        **{k: summary.get(k) for k in (*mean_std_keys(), "n_images")},
    }


__all__ = ["evaluate"]
