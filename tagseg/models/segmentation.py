"""``SegmentationModule``: the LightningModule that trains, validates and tests a segmenter.

* network: ``conf/model/<name>.yaml``'s ``network`` config (``_target_:
  tagseg.models.networks.build_network``), built here with the module's ``image_size`` and
  ``out_channels = 1 + K`` (background + the K target classes);
* loss: METHOD Eq. 4 (``tagseg.losses.SegmentationLoss``: Dice + CE + gamma * shape loss) plus
  ``vae_weight`` times SegResNetVAE's VAE loss when the network returns one (training only);
* optimiser / scheduler: ``_partial_: true`` configs (Adam lr 0.01, ReduceLROnPlateau patience 10
  on ``val/loss``) bound to the parameters in :meth:`configure_optimizers`;
* logs per epoch: ``train/{loss,dice_loss,ce,shape,vae}``, ``val/{loss,dice_loss,ce,shape}``,
  ``val/<metric>`` of every registered metric (:mod:`tagseg.metric_registry`: ``val/dice``,
  ``val/hd95_mm``; per image, each image's own spacing, averaged over classes);
* test: one row per image in :attr:`SegmentationModule.test_rows` (subject, slice, frame, group,
  then each registered metric), written to disk by :func:`tagseg.io.run_dir.write_test_results`. The rows are
  gathered with a torchmetrics ``CatMetric`` (numbers only: dataset index, slice, frame, the metrics)
  and de-duplicated by dataset index, so a test under DDP counts every image exactly once (the
  distributed sampler pads the last batch with repeats); subject and group are looked up by index.

Every constructor argument is a plain value or mapping saved as a hyper-parameter, so a
checkpoint alone rebuilds the module (:func:`tagseg.models.segmenter.load_segmentation_module`,
which reads it with ``weights_only=True``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import lightning as L
import numpy as np
import torch
from torchmetrics.aggregation import CatMetric
from torchmetrics.utilities import dim_zero_cat

from tagseg.conventions import NORM_MEAN, NORM_STD
from tagseg.errors import ConfigError
from tagseg.io.checkpoints import MODEL_KEY, SEGMENTATION
from tagseg.metric_registry import metric_specs
from tagseg.models.networks import init_xavier_normal_, main_head, split_output
from tagseg.models.orientation import IDENTITY, View, apply_view, invert_view
from tagseg.postprocess import apply_postprocess
from tagseg.runtime.config import instantiate, plain

INITS = ("xavier_normal", "default")


def image_metrics(
    pred: torch.Tensor, label: torch.Tensor, spacing_mm: torch.Tensor, n_classes: int
) -> tuple[np.ndarray, ...]:
    """Per-image, per-class values of every registered metric (:mod:`tagseg.metric_registry`) of
    class-index maps.

    Args:
        pred: int (B, H, W) predicted classes 0..K.
        label: int (B, H, W) ground-truth classes 0..K.
        spacing_mm: (B, 2) (row, col) spacing of each image.
        n_classes: K.

    Returns:
        One float64 (B, K) array per metric, in registry order (``(dice, hd95_mm)`` for the
        built-ins); empty-mask policy of :mod:`tagseg.metrics`.
    """
    p, g = pred.detach().cpu().numpy(), label.detach().cpu().numpy()
    sp = spacing_mm.detach().cpu().numpy().astype(np.float64)
    classes = range(1, n_classes + 1)
    return tuple(
        np.stack([np.asarray(spec.compute(p == c, g == c, sp), dtype=np.float64) for c in classes], axis=1)
        for spec in metric_specs()
    )


class SegmentationModule(L.LightningModule):
    """Segmentation of K target classes with a MONAI network and the loss of Eq. 4.

    Args:
        network: network config (``_target_`` + name + overrides); ``image_size`` and
            ``out_channels`` are set here.
        loss: loss config (``_target_: tagseg.losses.SegmentationLoss``, ``gamma``, ``k``).
        optimizer: ``_partial_: true`` optimiser config (params bound later).
        scheduler: ``_partial_: true`` LR scheduler config, or None.
        image_size: square input side the network is built for (pixels).
        classes: store labels of the K target classes (``[2]``: myocardium).
        mean, std: intensity normalisation the inputs had (recorded for prediction).
        vae_weight: weight of SegResNetVAE's VAE loss (0 disables it).
        init: ``xavier_normal`` (runs from scratch, the paper) or ``default`` (MONAI's init).
        scheduler_monitor: the metric ReduceLROnPlateau watches.
        spacing_mm: the pixel size (mm) of the input grid when the store has one (``prepare.fit=crop``,
            set by ``tagseg train``); recorded so predict places new scans on the same grid.
        flips: whether training drew flipped images (set by ``tagseg train``): test-time flips
            (``tta=flip``) need a network that knows flipped views.

    Raises:
        ConfigError: unknown ``init``, negative ``vae_weight``, or ``out_channels`` not 1 + K.
    """

    def __init__(
        self,
        network: Mapping[str, Any],
        loss: Mapping[str, Any],
        optimizer: Mapping[str, Any],
        scheduler: Mapping[str, Any] | None = None,
        image_size: int = 256,
        classes: Sequence[int] = (2,),
        mean: float = NORM_MEAN,
        std: float = NORM_STD,
        vae_weight: float = 0.1,
        init: str = "xavier_normal",
        scheduler_monitor: str = "val/loss",
        spacing_mm: float | None = None,
        flips: bool = True,
    ) -> None:
        super().__init__()
        network, loss, optimizer, scheduler, classes = (
            plain(network),
            plain(loss),
            plain(optimizer),
            plain(scheduler),
            list(plain(classes)),
        )
        image_size = int(image_size)
        self.save_hyperparameters()
        if init not in INITS:
            raise ConfigError(f"model.init: expected one of {list(INITS)}, got '{init}'")
        if not vae_weight >= 0:
            raise ConfigError(f"model.vae_weight: expected >= 0, got {vae_weight}")
        self.n_classes = len(classes)
        net_cfg = dict(network)
        out_channels = net_cfg.pop("out_channels", None)
        if out_channels is not None and int(out_channels) != self.n_classes + 1:
            raise ConfigError(
                f"model.network.out_channels: {out_channels} but classes {classes} need 1 + {self.n_classes}"
            )
        self.net = instantiate(net_cfg, "model.network", image_size=image_size, out_channels=self.n_classes + 1)
        if init == "xavier_normal":
            init_xavier_normal_(self.net)
        self.loss_fn = instantiate(loss, "loss")
        self.vae_weight = float(vae_weight)
        self.test_rows: list[dict[str, Any]] = []
        # test-time only (``tagseg evaluate postprocess=``), so not a hyperparameter of the checkpoint
        self.postprocess = "none"
        # test-time only: the view each test row is read in when not as stored (``tagseg evaluate``,
        # :mod:`tagseg.models.orientation`)
        self.test_views: dict[int, View] = {}
        # per-image rows: index, slice, frame, mean Dice, mean HD95, then Dice and HD95 per class
        self.test_table = CatMetric(nan_strategy="disable")
        self.test_table.set_dtype(torch.float64)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Logits (B, 1 + K, H, W) of normalised images (B, 1, H, W) (full-resolution head only)."""
        logits, _ = split_output(self.net(image))
        return main_head(logits)

    def _step(self, batch: Mapping[str, Any], stage: str) -> tuple[torch.Tensor, torch.Tensor]:
        logits, aux = split_output(self.net(batch["image"]))
        parts = self.loss_fn(logits, batch["label"], batch["si"])
        loss = parts["loss"]
        size = batch["image"].shape[0]
        logged = {
            f"{stage}/loss": loss,
            f"{stage}/dice_loss": parts["dice"],
            f"{stage}/ce": parts["ce"],
            f"{stage}/shape": parts["shape"],
        }
        if aux is not None and self.vae_weight > 0:
            loss = loss + self.vae_weight * aux
            logged[f"{stage}/vae"] = aux.detach()
            logged[f"{stage}/loss"] = loss
        sync = stage != "train"
        self.log_dict(
            {k: v.detach() for k, v in logged.items()}, on_step=False, on_epoch=True, batch_size=size, sync_dist=sync
        )
        return loss, main_head(logits)

    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> torch.Tensor:
        loss, _ = self._step(batch, "train")
        return loss

    def validation_step(self, batch: Mapping[str, Any], batch_idx: int) -> dict[str, torch.Tensor]:
        loss, logits = self._step(batch, "val")
        pred = logits.argmax(dim=1)
        values = image_metrics(pred, batch["label"][:, 0], batch["spacing_mm"], self.n_classes)
        size = pred.shape[0]
        for spec, value in zip(metric_specs(), values):
            self.log(
                f"val/{spec.name}", float(value.mean()), on_epoch=True, prog_bar=True, batch_size=size, sync_dist=True
            )
        return {"loss": loss, "pred": pred}

    def on_test_epoch_start(self) -> None:
        self.test_rows = []
        self.test_table.reset()

    def oriented_logits(self, image: torch.Tensor, rows: Sequence[int]) -> torch.Tensor:
        """Logits of a test batch, each image (dataset row ``rows[i]``) read in its view of
        :attr:`test_views` (absent: as stored) and turned back."""
        if not self.test_views:
            return self(image)
        views = [self.test_views.get(int(r), IDENTITY) for r in rows]
        if len(views) != len(image) or all(v == IDENTITY for v in views):
            return self(image)
        out = None
        for view in dict.fromkeys(views):
            idx = torch.as_tensor([i for i, v in enumerate(views) if v == view], device=image.device)
            part = invert_view(self(apply_view(image[idx], view)), view)
            out = part.new_empty((len(views), *part.shape[1:])) if out is None else out
            out[idx] = part
        return out

    def test_step(self, batch: Mapping[str, Any], batch_idx: int) -> dict[str, torch.Tensor]:
        logits = self.oriented_logits(batch["image"], batch.get("index", ()))
        pred = logits.argmax(dim=1)
        if self.postprocess != "none":
            pred = torch.as_tensor(apply_postprocess(self.postprocess, pred.cpu().numpy()), device=pred.device)
        values = image_metrics(pred, batch["label"][:, 0], batch["spacing_mm"], self.n_classes)
        # one line per image: index, slice, frame, each metric's class mean, then each metric per class
        numbers = np.column_stack(
            [
                np.asarray(batch["index"], dtype=np.float64),
                np.asarray(batch["slice"], dtype=np.float64),
                np.asarray(batch["frame"], dtype=np.float64),
                *(v.mean(axis=1) for v in values),
                *values,
            ]
        )
        self.test_table.update(torch.as_tensor(numbers, dtype=torch.float64, device=self.device))
        size = pred.shape[0]
        for spec, value in zip(metric_specs(), values):
            self.log(f"test/{spec.name}", float(value.mean()), on_epoch=True, batch_size=size, sync_dist=True)
        return {"pred": pred}

    def on_test_epoch_end(self) -> None:
        # compute() gathers every rank's rows (a collective: every rank calls it); a one-device test
        # inside a DDP job (rank 0 after launcher-created ranks) reads its own rows, waiting for no one
        width = 3 + len(metric_specs()) * (1 + self.n_classes)
        if not self.test_table.update_called:
            value = None
        elif self._trainer is not None and self._trainer.world_size == 1:
            value = dim_zero_cat(self.test_table.value)
        else:
            value = self.test_table.compute()
        table = value.detach().cpu().numpy().reshape(-1, width) if torch.is_tensor(value) else np.zeros((0, width))
        self.test_rows = self.rows_from_table(table)

    def rows_from_table(self, table: np.ndarray) -> list[dict[str, Any]]:
        """Per-image row dicts from the gathered numbers, one per dataset index, sorted by it; subject
        and group come from the test dataset's arrays."""
        data = _test_arrays(self.trainer)
        classes = list(self.hparams.classes)
        rows: dict[int, dict[str, Any]] = {}
        k, specs = self.n_classes, metric_specs()
        per_class = 3 + len(specs)  # where the per-class columns start (see test_step)
        for line in table:
            index = int(line[0])
            row = {
                "index": index,
                "subject": str(data.subject[index]) if data is not None else "",
                "slice": int(line[1]),
                "frame": int(line[2]),
                "group": str(data.group[index]) if data is not None else "",
                **{spec.name: float(line[3 + m]) for m, spec in enumerate(specs)},
            }
            if len(classes) > 1:
                for m, spec in enumerate(specs):
                    row.update({f"{spec.name}_{c}": float(line[per_class + m * k + j]) for j, c in enumerate(classes)})
            rows.setdefault(index, row)
        return [rows[i] for i in sorted(rows)]

    def predict_step(self, batch: Mapping[str, Any], batch_idx: int) -> torch.Tensor:
        """Softmax probabilities (B, 1 + K, H, W)."""
        return torch.softmax(self(batch["image"]).float(), dim=1)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[MODEL_KEY] = SEGMENTATION  # the model type the stages check when loading

    def configure_optimizers(self) -> Any:
        optimizer = instantiate(self.hparams.optimizer, "model.optimizer")
        optimizer = (
            optimizer(self.parameters())
            if callable(optimizer) and not isinstance(optimizer, torch.optim.Optimizer)
            else optimizer
        )
        if not self.hparams.scheduler:
            return optimizer
        scheduler = instantiate(self.hparams.scheduler, "model.scheduler")(optimizer)
        return {
            "optimizer": optimizer,
            # strict=False: a run stopped by max_steps before any validation just keeps its LR
            "lr_scheduler": {
                "scheduler": scheduler,
                "monitor": self.hparams.scheduler_monitor,
                "interval": "epoch",
                "frequency": 1,
                "strict": False,
            },
        }


def _test_arrays(trainer: Any) -> Any | None:
    """The :class:`~tagseg.data.datamodule.SliceArrays` behind the trainer's (first) test loader."""
    loaders = getattr(trainer, "test_dataloaders", None)
    loader = loaders[0] if isinstance(loaders, (list, tuple)) and loaders else loaders
    dataset = getattr(loader, "dataset", None)
    return getattr(dataset, "data", None)


__all__ = ["SegmentationModule", "image_metrics", "plain"]
