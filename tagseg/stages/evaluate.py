"""``tagseg evaluate``: test a checkpoint on a store split; per-image table + summary.json."""

from __future__ import annotations

from pathlib import Path

import h5py
from omegaconf import DictConfig

from tagseg.errors import ConfigError, DataError
from tagseg.io.run_dir import EvalResult
from tagseg.io.store import store_attrs
from tagseg.models.segmenter import load_segmentation_module
from tagseg.runtime.config import instantiate, instantiate_group
from tagseg.runtime.task import task_wrapper
from tagseg.stages.train import checked_stores, evaluate_module, one_device_trainer, save_run_config


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
    run_dir = Path(cfg.paths.output_dir)
    model, ckpt = load_segmentation_module(cfg.ckpt)
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
    return EvalResult(run_dir=run_dir, checkpoint=ckpt, summary=tested.summary, summary_path=tested.summary_path,
                      metrics_path=tested.metrics_path)


__all__ = ["evaluate"]
