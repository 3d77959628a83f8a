"""``tagseg evaluate``: test a checkpoint on a store split; per-image table + summary.json."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import h5py
from omegaconf import DictConfig

from tagseg.errors import ConfigError, DataError
from tagseg.io.store import store_attrs
from tagseg.models.segmentation import SegmentationModule
from tagseg.runtime.config import instantiate, instantiate_group
from tagseg.stages.train import (
    save_run_config,
    with_wandb_finish,
    checked_stores,
    evaluate_module,
    one_device_trainer,
    resolve_checkpoint,
)


def require_labels(store: str | Path) -> None:
    """Refuse, in one line, a store that cannot be evaluated: one written without labels.

    Raises:
        DataError: the store says ``labelled: false`` or every mask is background.
    """
    attrs = store_attrs(store)
    if not bool(attrs.get("labelled", True)):
        raise DataError(f"{store}: the store has no labels (labelled: false, an images-only export); nothing to "
                        "evaluate against (segment it with `tagseg predict`)")
    with h5py.File(store, "r") as f:
        masks = f["masks"]
        for start in range(0, masks.shape[0], 64):  # chunks: a large store stays out of memory
            if masks[start:start + 64].any():
                return
    raise DataError(f"{store}: every mask is background (no labels); nothing to evaluate against "
                    "(segment it with `tagseg predict`)")


@with_wandb_finish
def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Test a checkpoint on a store split; write ``test_metrics.csv`` and ``summary.json``.

    The network, image size, classes and normalisation come from the checkpoint alone; the
    store(s) and split from ``cfg.datamodule`` and ``cfg.split``.

    Args:
        cfg: the composed ``conf/evaluate.yaml`` (``ckpt``: a .ckpt file or run folder; ``split``:
            train | val | test | all). The store may hold that split only (an external test set).

    Returns:
        ``run_dir``, ``checkpoint``, ``summary``, ``summary_path``, ``metrics_path``.

    Raises:
        TagsegError: missing checkpoint or store, unknown split, an empty split, a store without labels.
    """
    if not cfg.get("ckpt"):
        raise ConfigError("ckpt: no checkpoint given (pass ckpt=<file.ckpt or run folder>)")
    if not Path(cfg.ckpt).exists():
        raise ConfigError(f"ckpt: {cfg.ckpt} does not exist (expected a .ckpt file or a run folder)")
    split = str(cfg.get("split", "test"))
    if split not in ("train", "val", "test", "all"):
        raise ConfigError(f"split: expected train, val, test or all, got '{split}'")
    ckpt = resolve_checkpoint(cfg.ckpt)
    run_dir = Path(cfg.paths.output_dir)
    model = SegmentationModule.load_from_checkpoint(ckpt, map_location="cpu", weights_only=False)
    hp = model.hparams
    stores = checked_stores(cfg)
    for store in stores:
        require_labels(store)
    save_run_config(cfg, run_dir)
    datamodule = instantiate(cfg.datamodule, "datamodule", image_size=hp.image_size, classes=list(hp.classes), mean=hp.mean, std=hp.std)
    datamodule.setup("test")
    loggers = instantiate_group(cfg.get("logger"), "logger")
    trainer = one_device_trainer(cfg.trainer, logger=loggers, callbacks=instantiate_group(cfg.get("callbacks"), "callbacks"))
    extra = {"checkpoint": str(ckpt), "stores": [str(s) for s in stores], "split": split}
    tested = evaluate_module(trainer, model, run_dir, extra, dataloaders=datamodule.eval_dataloader(split))
    return {"run_dir": run_dir, "checkpoint": ckpt, **tested}


__all__ = ["evaluate"]
