"""Train, test and evaluate segmenters from a composed config (the library behind ``tagseg train``
and ``tagseg evaluate``, also called by the strategy pipeline).

:func:`train`: check inputs -> prepare the store if missing -> datamodule, model, callbacks,
loggers, trainer -> fit (or resume ``ckpt_path``; or start from ``init_from`` weights) -> test the
best checkpoint -> ``test_metrics.csv`` + ``summary.json`` in the run folder.
:func:`tagseg.stages.evaluate.evaluate`: a checkpoint alone + a store -> the same two files.

Testing always runs in one process on one device (:func:`evaluate_module`): after a DDP fit the
process owning the run folder (the ``ddp_spawn`` parent, or rank 0 of launcher-created ranks)
tests the best checkpoint alone, so every test image is counted once.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, WandbLogger
from omegaconf import DictConfig, OmegaConf

from tagseg.augment.compose import trains_on_flips
from tagseg.callbacks import ResumedMetrics, latest_metrics_csv
from tagseg.data.sampling import StepSeed
from tagseg.data.store_spec import StoreSpec
from tagseg.errors import ConfigError
from tagseg.io.checkpoints import SEGMENTATION, check_checkpoint, load_checkpoint, resolve_checkpoint, resume_checkpoint
from tagseg.io.run_dir import (
    CONFIG_TREE_FILE,
    TestResult,
    TrainResult,
    last_checkpoint_in,
    write_run_config,
    write_test_results,
)
from tagseg.io.store import check_store
from tagseg.metric_registry import metric_names
from tagseg.models.networks import NETWORKS, check_image_size
from tagseg.models.segmentation import SegmentationModule
from tagseg.runtime.config import instantiate, instantiate_group, plain, set_torch_threads
from tagseg.runtime.console import print_config_tree
from tagseg.runtime.ddp import single_process_env
from tagseg.runtime.task import task_wrapper
from tagseg.runtime.wandb_run import apply_identity, define_metrics, flat_config

log = logging.getLogger(__name__)


def network_settings(model_cfg: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """(network name, overrides) of a model config's ``network`` node."""
    net = dict(plain(model_cfg["network"]))
    net.pop("_target_", None)
    name = net.pop("name", None)
    if name is None:
        raise ConfigError(f"model.network.name: missing (expected one of {sorted(NETWORKS)})")
    net.pop("out_channels", None)
    net.pop("image_size", None)
    return str(name), net


def check_inputs(cfg: DictConfig) -> list[Path]:
    """Every check that needs no training, so bad input fails in one clear line before any work.

    Prepares the dataset's own store when it is missing (``tagseg.data.prepare.ensure_store``).

    Returns:
        The store paths.

    Raises:
        StoreError: a store is missing (and not the dataset's own) or malformed.
        ConfigError: unknown network, image size the network does not accept, bad loss settings,
            a resume / init checkpoint that does not exist.
    """
    name, overrides = network_settings(cfg.model)
    check_image_size(name, cfg.datamodule.image_size, **overrides)
    instantiate(cfg.model.loss, "loss")
    for key in ("ckpt_path", "init_from"):
        value = cfg.get(key)
        if value and not Path(value).exists():
            raise ConfigError(f"{key}: {value} does not exist (expected a .ckpt file or a run folder)")
    return checked_stores(cfg)


def checked_stores(cfg: DictConfig) -> list[Path]:
    """``datamodule.stores``, each checked; the dataset's own store is prepared if missing.

    Raises:
        StoreError: a store is missing (and may not be prepared here) or malformed.
    """
    stores = [Path(s) for s in cfg.datamodule.stores]
    data_store = cfg.data.get("store") if cfg.get("data") is not None else None
    for store in stores:
        if not store.exists() and data_store is not None and str(store) == str(data_store):
            from tagseg.data.prepare import ensure_store
            from tagseg.data.store_spec import StoreSpec

            ensure_store(cfg.data, StoreSpec.from_config(cfg.get("prepare"), cfg.data))
        check_store(store)
    return stores


def load_weights(model: torch.nn.Module, ckpt: str | Path, strict: bool = True) -> dict[str, list[str]]:
    """Load another run's weights into ``model`` (fine-tuning from a pretrained run).

    Args:
        model: the module to fill.
        ckpt: a segmentation checkpoint or run folder (:func:`tagseg.io.checkpoints.resolve_checkpoint`),
            read with ``weights_only=True``.
        strict: every key must match in name and shape; otherwise matching keys are loaded and
            the others reported.

    Returns:
        ``{"missing", "unexpected", "mismatched"}`` key lists (empty when everything matched).

    Raises:
        CheckpointError: an unreadable, unsafe or non-segmentation checkpoint.
        ConfigError: with ``strict``, any missing / unexpected / shape-mismatched key, all listed.
    """
    path = resolve_checkpoint(ckpt, key="init_from")
    source = load_checkpoint(path, kind=SEGMENTATION)["state_dict"]
    target = model.state_dict()
    missing = sorted(set(target) - set(source))
    unexpected = sorted(set(source) - set(target))
    mismatched = sorted(k for k in set(source) & set(target) if tuple(source[k].shape) != tuple(target[k].shape))
    report = {
        "missing": missing,
        "unexpected": unexpected,
        "mismatched": [f"{k} {tuple(source[k].shape)} vs {tuple(target[k].shape)}" for k in mismatched],
    }
    if strict and (missing or unexpected or mismatched):
        parts = [
            f"{kind} {len(keys)}: {', '.join(keys[:8])}{' ...' if len(keys) > 8 else ''}"
            for kind, keys in report.items()
            if keys
        ]
        raise ConfigError(
            f"init_from {path}: weights do not match the model ({'; '.join(parts)}); "
            "use the same model config, or init_from_strict=false to load only matching keys"
        )
    keep = {k: v for k, v in source.items() if k in target and k not in mismatched}
    model.load_state_dict(keep, strict=False)
    log.info(
        "loaded %d/%d tensors from %s%s",
        len(keep),
        len(target),
        path,
        "" if len(keep) == len(target) else f" (skipped: {report})",
    )
    return report


def one_device_trainer(trainer_cfg: Mapping[str, Any], **kwargs: Any) -> L.Trainer:
    """The configured trainer (precision, accelerator, limits) on one device, for testing.

    A DDP test would split the test set over the ranks (and under ``ddp_spawn`` keep the rows in
    them); one device sees every image once, in this process.

    Args:
        trainer_cfg: a ``conf/trainer/*.yaml`` node; ``devices``, ``num_nodes``, ``strategy`` and
            ``sync_batchnorm`` are replaced.
        **kwargs: other Trainer arguments (``logger``, ``callbacks``, ...).

    Returns:
        A Lightning Trainer with one device and the default (single-device) strategy.
    """
    node = OmegaConf.create(plain(trainer_cfg))
    node.update(devices=1, num_nodes=1, strategy="auto", sync_batchnorm=False)
    return instantiate(node, "trainer", **kwargs)


def evaluate_module(
    trainer: L.Trainer, model: SegmentationModule, run_dir: str | Path, extra: Mapping[str, Any], **test_kwargs: Any
) -> dict[str, Any]:
    """Test ``model`` with a one-device ``trainer`` and write ``test_metrics.csv`` + ``summary.json``.

    Args:
        trainer: a trainer on one device (see :func:`one_device_trainer`).
        model: the module to test (its rows land in ``model.test_rows``).
        run_dir: where the two files go.
        extra: entries added to the summary (``checkpoint``, ``stores``, ``split``).
        **test_kwargs: passed to ``trainer.test`` (``datamodule`` or ``dataloaders``, ``ckpt_path``).

    Returns:
        The summary and the two files.

    Raises:
        ConfigError: nothing was tested (empty split).
    """
    from tagseg.callbacks import TestExamples
    from tagseg.report.dashboard import OVERLAYS, log_test, wandb_runs

    trainer.callbacks.append(TestExamples(str(Path(run_dir) / OVERLAYS)))
    trainer.test(model, **test_kwargs)
    metrics_path, summary_path, summary = write_test_results(model.test_rows, run_dir, extra)
    for run in wandb_runs(trainer.loggers):
        log_test(run, run_dir, summary)
    return TestResult(summary=summary, summary_path=summary_path, metrics_path=metrics_path)


def _test_loggers(loggers: Sequence[Any]) -> list[Any]:
    """The loggers of a one-device test after a DDP fit, less the CSV logger: under ``ddp_spawn``
    rank 0's copy wrote ``metrics.csv`` and this process's copy, not knowing its columns, would
    rewrite it with the test columns only (the test metrics are in ``summary.json``)."""
    return [lg for lg in loggers if not isinstance(lg, CSVLogger)]


def fit_progress(trainer: L.Trainer, last_ckpt: Path | None) -> tuple[int, int]:
    """(epochs, global step) of a finished fit.

    A spawned DDP fit counts in its ranks, not in this process's trainer (it reports 0); the
    ``last.ckpt`` rank 0 wrote has the counters (its ``epoch`` is 0-based).
    """
    if trainer.world_size == 1 or last_ckpt is None:
        return int(trainer.current_epoch), int(trainer.global_step)
    state = load_checkpoint(last_ckpt)
    return int(state["epoch"]) + 1, int(state["global_step"])


def save_run_config(cfg: DictConfig, run_dir: Path) -> None:
    write_run_config(cfg, run_dir)
    if cfg.get("print_config", True):
        print_config_tree(cfg, save_to=run_dir / CONFIG_TREE_FILE)


def resume_logging(cfg: DictConfig, run_dir: Path) -> tuple[DictConfig, ResumedMetrics | None]:
    """Loggers and callback of a fit resumed from ``ckpt_path``, so its metrics stay in one file.

    Resumed in the interrupted run's own folder, the CSV logger writes its latest ``version_N``
    again (not ``version_N+1``); in any folder, the rows of the epochs the checkpoint holds are
    carried into the new file (:class:`tagseg.callbacks.ResumedMetrics`).

    Returns:
        The ``logger`` config to instantiate and the callback (``None`` when not resuming).
    """
    loggers = OmegaConf.create(plain(cfg.get("logger") or {}))
    if not cfg.get("ckpt_path"):
        return loggers, None
    old_run = Path(cfg.ckpt_path).resolve().parent.parent
    source = None
    for node in loggers.values():
        if node is None or not str(node.get("_target_", "")).endswith("CSVLogger"):
            continue
        name = str(node.get("name", "lightning_logs"))
        source = latest_metrics_csv(old_run, name)
        if source is not None and old_run == run_dir.resolve() and node.get("version") is None:
            node.version = int(source.parent.name.split("_")[-1])
    return loggers, ResumedMetrics(source)


def progress_bar_setting(trainer_cfg: Mapping[str, Any], callbacks: Sequence[Any]) -> dict[str, bool]:
    """``enable_progress_bar`` follows the callbacks (``callbacks=minimal`` has no progress bar, so Lightning
    must not add its default one), unless the trainer config sets it."""
    from lightning.pytorch.callbacks import ProgressBar

    if trainer_cfg.get("enable_progress_bar") is not None:
        return {}
    return {"enable_progress_bar": any(isinstance(c, ProgressBar) for c in callbacks)}


def _checkpoint_callback(callbacks: Sequence[Any]) -> ModelCheckpoint | None:
    return next((c for c in callbacks if isinstance(c, ModelCheckpoint)), None)


@task_wrapper
def train(cfg: DictConfig) -> TrainResult:
    """Fit a segmenter, test its best checkpoint, write the results.

    Args:
        cfg: the composed ``conf/train.yaml``. Keys used: ``seed``, ``datamodule``, ``model``,
            ``trainer``, ``callbacks``, ``logger``, ``paths.output_dir``, ``ckpt_path`` (resume this
            run from its ``last.ckpt``: epoch, global step and optimiser continue), ``init_from``
            (a checkpoint or run folder to take the weights from), ``init_from_strict``, ``test``,
            ``torch_threads``.

    Every checkpoint is read with ``weights_only=True`` (:mod:`tagseg.io.checkpoints`): the
    ``init_from`` weights, the ``ckpt_path`` resumed from, and the best checkpoint a resumed
    ModelCheckpoint state names, before it is tested.

    Returns:
        The :class:`~tagseg.io.run_dir.TrainResult` (tested: in the process owning the run folder only).

    Raises:
        TagsegError: bad input, in one clear line, before any training.
    """
    set_torch_threads(cfg.get("torch_threads"))
    run_dir = Path(cfg.paths.output_dir)
    stores = check_inputs(cfg)
    resume = resume_checkpoint(cfg.get("ckpt_path"), kind=SEGMENTATION)
    L.seed_everything(cfg.get("seed", 0), workers=True)
    apply_identity(cfg)
    save_run_config(cfg, run_dir)
    datamodule = instantiate(cfg.datamodule, "datamodule")
    grid_mm = StoreSpec.from_config(cfg.get("prepare"), cfg.data).network_spacing(cfg.datamodule.image_size)
    flips = trains_on_flips(plain(cfg.datamodule))
    model: SegmentationModule = instantiate(cfg.model, "model", spacing_mm=grid_mm, flips=flips)
    if cfg.get("init_from") and not cfg.get("ckpt_path"):
        load_weights(model, cfg.init_from, strict=bool(cfg.get("init_from_strict", True)))
    datamodule.setup("fit")
    logger_cfg, resumed = resume_logging(cfg, run_dir)
    # data order and augmentation from (seed, epoch), other draws from (seed, step): a resumed fit is exact
    callbacks = [*instantiate_group(cfg.get("callbacks"), "callbacks"), StepSeed(cfg.get("seed", 0))]
    callbacks += [resumed] if resumed is not None else []
    loggers = instantiate_group(logger_cfg, "logger")
    trainer: L.Trainer = instantiate(
        cfg.trainer, "trainer", callbacks=callbacks, logger=loggers, **progress_bar_setting(cfg.trainer, callbacks)
    )
    from tagseg.report.dashboard import best_validation, wandb_runs

    hparams = {"slices": datamodule.split_counts(), "stores": [str(s) for s in stores]}
    for lg in loggers:
        if isinstance(lg, WandbLogger):  # flat keys: W&B filters and groups on them
            define_metrics(lg.experiment)
            lg.experiment.config.update({**flat_config(cfg), **hparams}, allow_val_change=True)
        else:
            lg.log_hyperparams({"config": plain(cfg), **hparams})
    trainer.fit(model, datamodule=datamodule, ckpt_path=resume, weights_only=True)
    ckpt_cb = _checkpoint_callback(callbacks)
    best = ckpt_cb.best_model_path if ckpt_cb is not None and ckpt_cb.best_model_path else None
    last = last_checkpoint_in(ckpt_cb.dirpath) if ckpt_cb is not None and ckpt_cb.dirpath else None
    last = last if last is not None and last.exists() else None
    epochs, global_step = fit_progress(trainer, last)
    log.info(
        "fit: %d epochs, %d steps on %d device(s); best checkpoint %s", epochs, global_step, trainer.world_size, best
    )
    result = TrainResult(
        run_dir=run_dir,
        best_ckpt=Path(best) if best else None,
        last_ckpt=last,
        epochs=epochs,
        global_step=global_step,
        metrics={k: float(v) for k, v in trainer.callback_metrics.items() if torch.is_tensor(v) and v.numel() == 1},
    )
    best_val = best_validation(run_dir) if trainer.is_global_zero else {}
    result.metrics.update(best_val)
    for run in wandb_runs(loggers) if trainer.is_global_zero else []:
        run.summary.update(best_val)
    if cfg.get("test", True) and trainer.is_global_zero:
        # a resumed ModelCheckpoint state names its best file: read it safely before Lightning does
        tested = check_checkpoint(best, kind=SEGMENTATION) if best else None
        extra = {
            "checkpoint": str(best or "final weights"),
            "stores": [str(s) for s in stores],
            "split": "test",
            "epochs": epochs,
            "global_step": global_step,
            **{k.replace("/", "_"): v for k, v in best_val.items()},
        }
        test = dict(datamodule=datamodule, ckpt_path=tested, weights_only=True)
        if trainer.world_size == 1:
            result.add_test(evaluate_module(trainer, model, run_dir, extra, **test))
        else:
            with single_process_env():
                tester = one_device_trainer(
                    cfg.trainer,
                    logger=_test_loggers(loggers),
                    callbacks=instantiate_group(cfg.get("callbacks"), "callbacks"),
                )
                result.add_test(evaluate_module(tester, model, run_dir, extra, **test))
    if trainer.is_global_zero and wandb_runs(loggers) and OmegaConf.select(cfg, "artifacts.stores", default=False):
        from tagseg.report.dashboard import log_artifacts, store_key

        for run in wandb_runs(loggers):
            log_artifacts(run, stores={str(s): (s, store_key(s)) for s in stores})
    return result


def cell_metrics(result: Mapping[str, Any]) -> dict[str, float]:
    """The numbers a sweep may optimise (``optimized_metric``): ``test/<metric>`` (the mean) of every
    registered metric (``test/dice``, ``test/hd95_mm``, ...), ``val/dice_best``, ``val/dice_best_epoch``;
    only those the run produced."""
    out = {k: float(v) for k, v in (result.get("metrics") or {}).items() if k.startswith("val/dice_best")}
    summary = result.get("summary")
    if summary:
        out.update({f"test/{name}": float(summary[f"{name}_mean"]) for name in metric_names()})
    return out


__all__ = [
    "cell_metrics",
    "check_inputs",
    "evaluate_module",
    "fit_progress",
    "load_weights",
    "one_device_trainer",
    "train",
]
