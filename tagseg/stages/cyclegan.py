"""Train the cine <-> tagged CycleGAN from a composed ``conf/cyclegan.yaml`` (behind ``tagseg cyclegan``).

:func:`train_cyclegan`: prepare the two domain stores if missing -> check the image sizes ->
datamodule, model, callbacks, loggers, trainer -> fit (or resume ``ckpt_path``) -> optionally
translate domain A with the final generator and compare tagness (:func:`tagness_check`).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import DictConfig, OmegaConf

from tagseg.data.prepare import ensure_store
from tagseg.data.store_spec import StoreSpec
from tagseg.errors import ConfigError
from tagseg.io.checkpoints import CYCLEGAN, resume_checkpoint
from tagseg.io.run_dir import TAGNESS_FILE, CycleGANResult, last_checkpoint_in, write_run_config
from tagseg.runtime.config import instantiate, instantiate_group, set_torch_threads
from tagseg.runtime.task import task_wrapper
from tagseg.tagness import store_tagness

log = logging.getLogger(__name__)

#: DDP strategies and the variant a CycleGAN needs (each optimiser step leaves the other
#: networks without gradients)
_UNUSED_PARAMETER_STRATEGIES = {
    "ddp": "ddp_find_unused_parameters_true",
    "ddp_spawn": "ddp_spawn_find_unused_parameters_true",
}


def gan_strategy(strategy: Any) -> Any:
    """The trainer strategy with DDP's ``find_unused_parameters`` switched on where needed.

    Args:
        strategy: ``trainer.strategy`` (a name such as ``ddp``, or a strategy object / config).

    Returns:
        ``ddp`` -> ``ddp_find_unused_parameters_true``, ``ddp_spawn`` ->
        ``ddp_spawn_find_unused_parameters_true``; anything else unchanged.
    """
    if isinstance(strategy, str):
        return _UNUSED_PARAMETER_STRATEGIES.get(strategy, strategy)
    return strategy


def _last_checkpoint(trainer: L.Trainer) -> Path | None:
    cb = next((c for c in trainer.callbacks if isinstance(c, ModelCheckpoint)), None)  # type: ignore[attr-defined]
    if cb is None or not cb.dirpath:
        return None
    last = last_checkpoint_in(cb.dirpath)
    return last if last.exists() else None


@task_wrapper
def train_cyclegan(cfg: DictConfig) -> CycleGANResult:
    """Fit the CycleGAN described by ``cfg``; return where everything went.

    Args:
        cfg: the composed ``conf/cyclegan.yaml``. Keys used: ``seed``, ``data_a``, ``data_b``
            (dataset configs, stores prepared if missing), ``datamodule``, ``model``, ``trainer``
            (``max_epochs: null`` = the whole lr schedule), ``callbacks``, ``logger``,
            ``ckpt_path`` (resume: a ``last.ckpt`` or its run folder), ``tagness_check``,
            ``torch_threads`` (CPU threads), ``paths.output_dir``.

    Returns:
        The :class:`~tagseg.io.run_dir.CycleGANResult`: ``run_dir``, ``last_ckpt``, ``epochs``,
        ``global_step``, ``seconds`` (fit), ``grids`` (PNG paths) and, when ``tagness_check.enabled``,
        ``tagness`` (see :func:`tagness_check`); read as ``result.epochs`` or ``result["epochs"]``.

    Raises:
        TagsegError: bad input (missing resume checkpoint, a dataset that cannot be prepared, an
            image size the generator does not accept, a bad setting), before any training.
    """
    set_torch_threads(cfg.get("torch_threads"))
    run_dir = Path(cfg.paths.output_dir)
    resume = resume_checkpoint(cfg.get("ckpt_path"), kind=CYCLEGAN)
    for key in ("data_a", "data_b"):
        ensure_store(cfg[key], StoreSpec.from_config(cfg.get("prepare"), cfg[key]))
    L.seed_everything(cfg.get("seed", 0), workers=True)
    write_run_config(cfg, run_dir)
    datamodule = instantiate(cfg.datamodule, "datamodule")
    model = instantiate(cfg.model, "model")
    for domain, (h, w) in datamodule.image_shapes().items():
        path = datamodule.store_a if domain == "A" else datamodule.store_b
        model.check_image_size(h, w, where=f"data_{domain.lower()} store {path}")
    callbacks = instantiate_group(cfg.get("callbacks"), "callbacks")
    loggers = instantiate_group(cfg.get("logger"), "logger")
    max_epochs = cfg.trainer.get("max_epochs") or model.max_epochs
    extra: dict[str, Any] = {"max_epochs": int(max_epochs)}
    if cfg.trainer.get("strategy") is not None:
        extra["strategy"] = gan_strategy(cfg.trainer.strategy)
    trainer: L.Trainer = instantiate(cfg.trainer, "trainer", callbacks=callbacks, logger=loggers, **extra)
    for lg in loggers:
        lg.log_hyperparams({"config": OmegaConf.to_container(cfg, resolve=True)})
    t0 = time.perf_counter()
    trainer.fit(model, datamodule=datamodule, ckpt_path=resume, weights_only=True)
    seconds = time.perf_counter() - t0
    grids = next((list(c.saved) for c in callbacks if hasattr(c, "saved")), [])
    result = CycleGANResult(
        run_dir=run_dir,
        last_ckpt=_last_checkpoint(trainer),
        epochs=int(trainer.current_epoch),
        global_step=int(trainer.global_step),
        seconds=seconds,
        grids=grids,
    )
    check = cfg.get("tagness_check") or {}
    if check.get("enabled") and trainer.is_global_zero:
        if result.last_ckpt is None:
            raise ConfigError(
                "tagness_check: no last.ckpt was written (callbacks.model_checkpoint.save_last must be true)"
            )
        result.tagness = tagness_check(
            result.last_ckpt,
            datamodule.store_a,
            datamodule.store_b,
            Path(check["output"]),
            max_images=check.get("max_images"),
            batch_size=int(check.get("batch_size", 32)),
            splits_b=datamodule.splits_b,
            device=str(model.device),
        )
        (run_dir / TAGNESS_FILE).write_text(json.dumps(result.tagness, indent=2))
    return result


def tagness_check(
    ckpt: str | Path,
    store_a: str | Path,
    store_b: str | Path,
    output: str | Path,
    max_images: int | None = 500,
    batch_size: int = 32,
    splits_b: Any = None,
    device: str = "cpu",
) -> dict[str, Any]:
    """Translate ``store_a`` with the checkpoint's A -> B generator and compare mean tagness.

    Args:
        ckpt: the CycleGAN checkpoint.
        store_a: the cine store (translated as a whole, masks and meta carried).
        store_b: the real tagged store.
        output: where the translated store is written.
        max_images: evenly spaced rows per store used for the means (``None``: all).
        batch_size: translation batch size.
        splits_b: splits of ``store_b`` to measure (``None``: all).
        device: where the generator runs.

    Returns:
        ``{"cine", "translated", "tagged"}`` mean tagness, the ratios ``translated / cine`` and
        ``translated / tagged``, ``output`` and ``seconds`` (translation).
    """
    from tagseg.translate.cyclegan import CycleGANTranslator

    t0 = time.perf_counter()
    translator = CycleGANTranslator(ckpt, batch_size=batch_size, device=device, progress=False)
    report = translator.run(store_a, output)
    seconds = time.perf_counter() - t0
    splits = list(splits_b) if splits_b is not None else None
    means = {
        "cine": float(np.mean(store_tagness(store_a, max_images=max_images))),
        "translated": float(np.mean(store_tagness(report.output, max_images=max_images))),
        "tagged": float(np.mean(store_tagness(store_b, splits=splits, max_images=max_images))),
    }
    out: dict[str, Any] = {
        **means,
        "translated_over_cine": means["translated"] / max(means["cine"], 1e-12),
        "translated_over_tagged": means["translated"] / max(means["tagged"], 1e-12),
        "output": str(report.output),
        "seconds_translate": seconds,
    }
    log.info("tagness: %s", json.dumps(out))
    return out


def format_tagness(result: Mapping[str, Any]) -> str:
    """The tagness comparison as three lines (means and ratios)."""
    return (
        f"mean tagness: cine {result['cine']:.4f} | translated {result['translated']:.4f} | "
        f"real tagged {result['tagged']:.4f}\n"
        f"translated / cine = {result['translated_over_cine']:.1f}x, "
        f"translated / tagged = {result['translated_over_tagged']:.2f}\n"
        f"translated store: {result['output']}"
    )


__all__ = ["format_tagness", "gan_strategy", "tagness_check", "train_cyclegan"]
