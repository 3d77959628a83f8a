"""Lightning callbacks of tagseg (built from ``conf/callbacks/*.yaml``)."""

from __future__ import annotations

import csv
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
from lightning.pytorch.loggers import CSVLogger, WandbLogger

from tagseg.conventions import BACKGROUND, LV, MYO, NORM_MEAN, NORM_STD, RV
from tagseg.data.transforms import denormalise
from tagseg.metrics import boundary

#: RGB of ground-truth and predicted contours on the overlays
TRUTH_RGB = (0, 220, 0)
PRED_RGB = (230, 30, 30)


def overlay(image: np.ndarray, truth: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """uint8 (H, W, 3): a [0, 1] image in grey with the truth (green) and prediction (red) boundaries.

    Args:
        image: float (H, W) in [0, 1].
        truth: (H, W) foreground mask of the ground truth.
        pred: (H, W) foreground mask of the prediction.
    """
    grey = (np.clip(image, 0.0, 1.0) * 255).astype(np.uint8)
    rgb = np.repeat(grey[..., None], 3, axis=-1)
    rgb[boundary(truth)] = TRUTH_RGB
    rgb[boundary(pred)] = PRED_RGB
    return rgb


#: W&B mask class labels (the store's label convention): one toggle per class in the W&B image panel
CLASS_LABELS = {BACKGROUND: "background", RV: "right ventricle", MYO: "myocardium", LV: "left ventricle"}


def wandb_masks(truth: np.ndarray, pred: np.ndarray) -> dict[str, dict[str, Any]]:
    """``wandb.Image(..., masks=...)``: the truth and prediction label maps (uint8 (H, W)) with class labels,
    so W&B draws them over the image and each class and each map can be switched on and off."""
    return {
        name: {"mask_data": np.asarray(labels, dtype=np.uint8), "class_labels": CLASS_LABELS}
        for name, labels in (("ground_truth", truth), ("prediction", pred))
    }


def batch_masks(
    pl_module: L.LightningModule, batch: Mapping[str, Any], outputs: Mapping[str, Any], n: int
) -> tuple[list[np.ndarray], list[dict[str, dict[str, Any]]]]:
    """The first ``n`` images of a batch as uint8 grey (de-normalised with the module's mean / std) and their
    :func:`wandb_masks` (truth from ``batch["label"]``, prediction from ``outputs["pred"]``)."""
    mean, std = pl_module.hparams.get("mean", NORM_MEAN), pl_module.hparams.get("std", NORM_STD)
    images = denormalise(batch["image"][:n, 0].float(), mean, std).clamp(0.0, 1.0).cpu().numpy()
    truth = batch["label"][:n, 0].cpu().numpy()
    pred = outputs["pred"][:n].cpu().numpy()
    grey = [(images[i] * 255).astype(np.uint8) for i in range(n)]
    return grey, [wandb_masks(truth[i], pred[i]) for i in range(n)]


def batch_overlays(
    pl_module: L.LightningModule, batch: Mapping[str, Any], outputs: Mapping[str, Any], n: int
) -> list[np.ndarray]:
    """The first ``n`` images of a batch, de-normalised with the module's mean / std, with truth and
    prediction contours (:func:`overlay`)."""
    mean, std = pl_module.hparams.get("mean", NORM_MEAN), pl_module.hparams.get("std", NORM_STD)
    images = denormalise(batch["image"][:n, 0].float(), mean, std).cpu().numpy()
    truth = (batch["label"][:n, 0] > 0).cpu().numpy()
    pred = (outputs["pred"][:n] > 0).cpu().numpy()
    return [overlay(images[i], truth[i], pred[i]) for i in range(n)]


class PredictionOverlays(L.Callback):
    """Log a few validation images with the truth and prediction as W&B masks each validation epoch.

    The label maps go as ``wandb.Image(image, masks=...)`` with class labels (:func:`wandb_masks`), not
    burnt into the pixels, so each class, the truth and the prediction can be toggled in the W&B panel.

    Does nothing unless a :class:`~lightning.pytorch.loggers.WandbLogger` is attached, so it can
    stay in the default callbacks. Uses the first validation batch (the same images every epoch).

    Args:
        n_images: how many images per epoch.
        key: the W&B panel name.
    """

    def __init__(self, n_images: int = 4, key: str = "val/overlays") -> None:
        self.n_images = int(n_images)
        self.key = key

    def on_validation_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Mapping[str, Any],
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if batch_idx != 0 or trainer.sanity_checking or self.n_images <= 0 or not trainer.is_global_zero:
            return
        loggers = [lg for lg in trainer.loggers if isinstance(lg, WandbLogger)]
        if not loggers or not isinstance(outputs, Mapping) or "pred" not in outputs:
            return
        n = min(self.n_images, batch["image"].shape[0])
        pictures, masks = batch_masks(pl_module, batch, outputs, n)
        captions = [
            f"{batch['subject'][i]} slice {int(batch['slice'][i])} frame {int(batch['frame'][i])}" for i in range(n)
        ]
        for lg in loggers:
            lg.log_image(key=self.key, images=pictures, caption=captions, masks=masks, step=trainer.global_step)


class TestExamples(L.Callback):
    """Save the first test images with truth / prediction contours as PNGs (``<dirpath>/<index>.png``).

    Added by :func:`tagseg.stages.train.evaluate_module`; the W&B test table shows them next to
    their rows, also when a cached test is logged again later.

    Args:
        dirpath: the folder (created on the first image).
        n_images: how many images (the first ones of the test loader, on rank 0).
    """

    def __init__(self, dirpath: str, n_images: int = 8) -> None:
        self.dirpath = dirpath
        self.n_images = int(n_images)
        self._saved = 0

    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._saved = 0

    def on_test_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Mapping[str, Any],
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if (
            self._saved >= self.n_images
            or not trainer.is_global_zero
            or not isinstance(outputs, Mapping)
            or "pred" not in outputs
        ):
            return
        from pathlib import Path

        from PIL import Image

        n = min(self.n_images - self._saved, batch["image"].shape[0])
        folder = Path(self.dirpath)
        folder.mkdir(parents=True, exist_ok=True)
        for i, picture in enumerate(batch_overlays(pl_module, batch, outputs, n)):
            Image.fromarray(picture).save(folder / f"{int(batch['index'][i])}.png")
        self._saved += n


class ResumedMetrics(L.Callback):
    """Keep a resumed fit's metrics in one ``metrics.csv``: the rows the interrupted run logged for the
    epochs the checkpoint holds are carried into the CSV logger's file, later rows are dropped.

    Lightning's CSV logger starts a new file (``version_<N+1>``, or an emptied ``version_N``) when a
    fit resumes; this callback puts the earlier epochs back in front of the resumed ones.

    Args:
        source: the interrupted run's ``metrics.csv`` (``None`` or missing: nothing to carry).
    """

    def __init__(self, source: str | Path | None) -> None:
        self.source = Path(source) if source else None
        self.rows: list[dict[str, str]] = []
        # read now: creating the logger's writer in the same folder deletes the old file
        if self.source is not None and self.source.is_file():
            with open(self.source, newline="") as fh:
                self.rows = list(csv.DictReader(fh))

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        done, steps = trainer.current_epoch, trainer.global_step  # restored from the checkpoint

        def before(row: dict[str, str]) -> bool:
            # rows of an epoch by their epoch; rows without one (e.g. the learning rate at an epoch's start) by step
            if row.get("epoch") not in (None, ""):
                return float(row["epoch"]) < done
            return row.get("step") not in (None, "") and float(row["step"]) < steps

        keep = [{k: v for k, v in row.items() if v not in ("", None)} for row in self.rows if before(row)]
        for lg in trainer.loggers:
            if isinstance(lg, CSVLogger) and keep:
                lg.experiment.metrics[:0] = keep
        self.rows = []


def latest_metrics_csv(run_dir: str | Path, name: str = "csv") -> Path | None:
    """The newest ``<run_dir>/<name>/version_N/metrics.csv`` (highest N), or ``None``."""
    versions = sorted(
        (Path(run_dir) / name).glob("version_*"),
        key=lambda p: int(p.name.split("_")[-1]) if p.name.split("_")[-1].isdigit() else -1,
    )
    for v in reversed(versions):
        if (v / "metrics.csv").is_file():
            return v / "metrics.csv"
    return None


__all__ = ["PredictionOverlays", "ResumedMetrics", "TestExamples", "latest_metrics_csv", "overlay"]
