"""``tagseg evaluate``: test a checkpoint on a store split; per-image table + summary.json."""

from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf, open_dict

from tagseg.data.shifts import SHIFT_SEED_OFFSET, check_shifts, describe, prepare_shift_store, shift_data_config
from tagseg.data.store_spec import StoreSpec
from tagseg.errors import ConfigError, DataError
from tagseg.io.run_dir import EvalResult, saved_run_config
from tagseg.io.store import has_labels, store_attrs
from tagseg.metric_registry import mean_std_keys
from tagseg.models.ensemble import load_ensemble_module
from tagseg.models.orientation import IDENTITY, OrientationSettings, View, subject_views
from tagseg.models.segmenter import find_checkpoints, load_segmenters
from tagseg.postprocess import check_postprocess
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
    store(s) and split from ``cfg.datamodule`` and ``cfg.split``. Several checkpoints (a list or a
    sweep folder) are tested as one ensemble, their softmax averaged (:mod:`tagseg.models.ensemble`);
    the shifted sets are then built from the first member's run.

    Args:
        cfg: the composed ``conf/evaluate.yaml`` (``ckpt``: a .ckpt file, run folder, sweep folder or
            a list of them; ``split``: train | val | test | all). The store may hold that split only
            (an external test set).

    Returns:
        The :class:`~tagseg.io.run_dir.EvalResult`.

    Raises:
        TagsegError: missing, unreadable, unsafe or non-segmentation checkpoint (read with
            ``weights_only=True``), missing store, unknown split, an empty split, a store without labels.
    """
    if not cfg.get("ckpt"):
        raise ConfigError("ckpt: no checkpoint given (pass ckpt=<file.ckpt or run folder>)")
    if isinstance(cfg.ckpt, str) and not Path(cfg.ckpt).exists():
        raise ConfigError(f"ckpt: {cfg.ckpt} does not exist (expected a .ckpt file or a run folder)")
    split = str(cfg.get("split", "test"))
    if split not in ("train", "val", "test", "all"):
        raise ConfigError(f"split: expected train, val, test or all, got '{split}'")
    postprocess = check_postprocess(cfg.get("postprocess"))
    run_dir = Path(cfg.paths.output_dir)
    model, members = load_ensemble_module(find_checkpoints(cfg.ckpt))
    ckpt = members[0]
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
    segmenter = load_segmenters(members, device=search_device()) if orientation.enabled else None
    loader = datamodule.eval_dataloader(split)
    views = split_views(model, loader, segmenter, orientation)
    extra = {
        "checkpoint": str(ckpt),
        "stores": [str(s) for s in stores],
        "split": split,
        "postprocess": postprocess,
        "orientation": turned(views),
        **ensemble_record(members),
    }
    tested = evaluate_module(trainer, model, run_dir, extra, dataloaders=loader)
    result = EvalResult(
        run_dir=run_dir,
        checkpoint=ckpt,
        summary=tested.summary,
        summary_path=tested.summary_path,
        metrics_path=tested.metrics_path,
    )
    qc = eval_qc_settings(cfg.get("qc"), members)
    if qc is not None:  # QC columns next to the true metrics: <run dir>/qc.csv (tagseg/stages/qc.py)
        result["qc"] = evaluate_qc(qc, split_rows(loader), run_dir, test_set=split, views=views)
    names = check_shifts(cfg.get("shifts"))
    if names:
        shifted = evaluate_shifts(
            cfg, model, members, run_dir, names, tested.summary, split, qc, segmenter, orientation
        )
        result["shifts"] = shifted
    if qc is not None:
        log_qc(loggers, run_dir)
    return result


def ensemble_record(members: list[Path]) -> dict[str, Any]:
    """``{"members": [...]}`` for an ensemble (recorded in every summary.json it writes), else nothing."""
    return {"members": [str(m) for m in members]} if len(members) > 1 else {}


def split_views(model: Any, loader: Any, segmenter: Any, settings: OrientationSettings) -> dict[str, dict[str, View]]:
    """Choose the view of each subject the test reads (:mod:`tagseg.models.orientation`, on the rows of
    ``loader``, already on the model's grid) and hand it to ``model`` (``test_views``, by row).

    Returns:
        ``{store: {subject: view}}`` (empty when ``settings`` are off); a subject id is local to its store.
    """
    model.test_views = {}
    if segmenter is None or not settings.enabled:
        return {}
    data, rows = loader.dataset.data, loader.dataset.rows
    keys = [(str(data.store[r]), str(data.subject[r])) for r in rows]
    index = {key: str(i) for i, key in enumerate(dict.fromkeys(keys))}
    names = np.asarray([index[key] for key in keys], dtype=object)
    chosen = subject_views(segmenter, data.images[rows], names, settings, scaled=True)
    model.test_views = {int(r): chosen[n] for r, n in zip(rows, names) if chosen[n] != IDENTITY}
    views: dict[str, dict[str, View]] = {}
    for (store, subject), n in index.items():
        views.setdefault(store, {})[subject] = chosen[n]
    if turned(views):
        log.info("orientation: subjects read in another view than stored: %s", turned(views))
    return views


def split_rows(loader: Any) -> dict[str, np.ndarray]:
    """The rows of each store (its own row numbers) that ``loader`` tests, by store path."""
    data, rows = loader.dataset.data, np.asarray(loader.dataset.rows)
    out = {}
    for store in dict.fromkeys(str(s) for s in data.store):
        mine = np.flatnonzero(data.store == store)
        out[store] = np.asarray(rows[np.isin(rows, mine)] - mine[0], np.int64)
    return out


def search_device() -> str:
    """Where the orientation search runs: the GPU when there is one (the test itself runs where the trainer says)."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def turned(views: dict[str, dict[str, View]]) -> dict[str, str]:
    """The subjects read in another view than stored, with its name (recorded in summary.json); a
    subject is named ``<store>::<subject>`` when several stores are tested."""
    several = len(views) > 1
    return {
        (f"{store}::{subject}" if several else subject): view.name
        for store, chosen in views.items()
        for subject, view in chosen.items()
        if view != IDENTITY
    }


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
    members: list[Path],
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
    checkpoint (``members``: one, or an ensemble's, whose first decides; its saved ``config.yaml``: the
    image size and field of view it was trained at), or ``cfg.data`` for a checkpoint outside a run
    folder (see :mod:`tagseg.data.shifts`), with
    ``cfg.shift_subjects`` subjects; its per-image table and summary go to ``<run dir>/shift/<name>/``
    (with ``qc``: also its ``qc.csv``),
    one row per test set to ``<run dir>/shifts.csv``. With ``orientation`` on, each subject is read
    in the view ``segmenter`` reads it best (:func:`split_views`).

    Returns:
        The path of ``shifts.csv``.
    """
    hp = model.hparams
    ckpt = members[0]
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
        loader = datamodule.eval_dataloader("test")
        views = split_views(model, loader, segmenter, orientation or OrientationSettings(mode="none"))
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
                "orientation": turned(views),
                **ensemble_record(members),
            },
            dataloaders=loader,
        )
        rows.append(_shift_row(name, description, tested["summary"]))
        if qc is not None:
            evaluate_qc(qc, split_rows(loader), run_dir / "shift" / name, test_set=name, views=views)
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
