"""``tagseg evaluate``: test a checkpoint on a store split; per-image table + summary.json."""

from __future__ import annotations

from pathlib import Path


from omegaconf import DictConfig

from tagseg.errors import ConfigError
from tagseg.io.run_dir import EvalResult
from tagseg.models.segmenter import load_segmentation_module
from tagseg.runtime.config import instantiate, instantiate_group
from tagseg.runtime.task import task_wrapper
from tagseg.stages.train import checked_stores, evaluate_module, one_device_trainer, save_run_config


@task_wrapper
def evaluate(cfg: DictConfig) -> EvalResult:
    """Test a checkpoint on a store split; write ``test_metrics.csv`` and ``summary.json``.

    The network, image size, classes and normalisation come from the checkpoint alone; the
    store(s) and split from ``cfg.datamodule`` and ``cfg.split``.

    Args:
        cfg: the composed ``conf/evaluate.yaml`` (``ckpt``: a .ckpt file or run folder; ``split``:
            train | val | test).

    Returns:
        The :class:`~tagseg.io.run_dir.EvalResult`.

    Raises:
        TagsegError: missing, unreadable, unsafe or non-segmentation checkpoint (read with
            ``weights_only=True``), missing store, unknown split.
    """
    if not cfg.get("ckpt"):
        raise ConfigError("ckpt: no checkpoint given (pass ckpt=<file.ckpt or run folder>)")
    if not Path(cfg.ckpt).exists():
        raise ConfigError(f"ckpt: {cfg.ckpt} does not exist (expected a .ckpt file or a run folder)")
    split = str(cfg.get("split", "test"))
    if split not in ("train", "val", "test"):
        raise ConfigError(f"split: expected train, val or test, got '{split}'")
    run_dir = Path(cfg.paths.output_dir)
    model, ckpt = load_segmentation_module(cfg.ckpt)
    hp = model.hparams
    stores = checked_stores(cfg)
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
