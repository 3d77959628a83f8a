"""W&B validation overlays are images with masks (classes toggle in W&B), not contours burnt into RGB."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import torch
from lightning.pytorch.loggers import WandbLogger

from tagseg.callbacks import CLASS_LABELS, PredictionOverlays
from tagseg.conventions import LV, MYO, NORM_MEAN, NORM_STD, RV


class RecordingWandbLogger(WandbLogger):
    """A WandbLogger that keeps what it would send (no W&B run is started)."""

    def __init__(self) -> None:
        super().__init__(offline=True)
        self.logged: list[tuple[dict, int | None]] = []

    def log_metrics(self, metrics, step=None) -> None:
        self.logged.append((metrics, step))


def test_validation_overlays_are_wandb_images_with_labelled_masks(monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    truth = torch.zeros(3, 1, 8, 8, dtype=torch.long)
    truth[:, 0, 2:6, 2:6] = MYO
    truth[:, 0, 3:5, 3:5] = LV
    pred = truth[:, 0].clone()
    pred[:, 0, :] = RV
    image01 = torch.linspace(0, 1, 64).reshape(1, 1, 8, 8).repeat(3, 1, 1, 1)
    batch = {
        "image": (image01 - NORM_MEAN) / NORM_STD,
        "label": truth,
        "subject": ["s1", "s1", "s2"],
        "slice": torch.tensor([0, 1, 0]),
        "frame": torch.tensor([4, 4, 0]),
    }
    logger = RecordingWandbLogger()
    trainer = SimpleNamespace(sanity_checking=False, is_global_zero=True, loggers=[logger], global_step=7)
    module = SimpleNamespace(hparams={})

    PredictionOverlays(n_images=2, key="val/overlays").on_validation_batch_end(
        trainer, module, {"pred": pred}, batch, batch_idx=0
    )

    ((metrics, step),) = logger.logged
    assert step == 7
    images = metrics["val/overlays"]
    assert len(images) == 2 and images[1]._caption == "s1 slice 1 frame 4"
    for i, image in enumerate(images):
        masks = image._masks
        assert set(masks) == {"ground_truth", "prediction"}
        assert masks["ground_truth"]._val["class_labels"] == CLASS_LABELS
        assert CLASS_LABELS[MYO] == "myocardium" and CLASS_LABELS[LV] == "left ventricle"
        np.testing.assert_array_equal(masks["ground_truth"]._val["mask_data"], truth[i, 0].numpy())
        np.testing.assert_array_equal(masks["prediction"]._val["mask_data"], pred[i].numpy())
        # the image itself stays grey: the de-normalised input, no contour colours
        pixels = np.asarray(image.image)
        assert pixels.ndim == 2
        np.testing.assert_allclose(pixels / 255.0, image01[i, 0].numpy(), atol=1 / 255 + 1e-6)


def test_nothing_is_logged_without_a_wandb_logger():
    trainer = SimpleNamespace(sanity_checking=False, is_global_zero=True, loggers=[], global_step=0)
    batch = {"image": torch.zeros(1, 1, 4, 4), "label": torch.zeros(1, 1, 4, 4, dtype=torch.long)}
    PredictionOverlays().on_validation_batch_end(trainer, SimpleNamespace(hparams={}), {"pred": None}, batch, 0)
